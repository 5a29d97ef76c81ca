//! The host side of PAC-tuning's bound, all in f64: the KL between posterior and prior from the
//! per-tensor sums the kernels produce, the loss's exponential-moment constant K(λ) and its
//! interpolation K̂, the temperature γ, the bound term loss2, and its gradient with respect to
//! the prior log-stds b.
//!
//! Names follow docs/method.md: j indexes the L trainable tensors ("layers"),
//! d_j is the number of scalars in tensor j, p the posterior log-std (σ = exp(p)), b_j the prior
//! log-std of tensor j, theta0 (θ0) the weights at the start of fine-tuning, n the number of
//! training examples. Everything here is checked against tests/golden/pac-bound.json (the
//! authors' reference functions in float64) by tests/pac/pac_bound.rs.

use crate::model::trainable::Group;

/// The sums the closed-form KL needs for one trainable tensor j, centred on b_j so that
/// nothing cancels: with y_i = 2(p_i − b_j), E_j = Σ (e^y − 1), F_j = Σ (e^y − 1 − y) and
/// D_j = Σ (θ − θ0)² at the clean weights. Where p = b_j, E_j = F_j = 0 exactly (the kernels
/// compute e^y − 1 without cancellation), so the KL and ∂KL/∂b_j are exactly 0 at the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorSums {
    pub e: f64,
    pub f: f64,
    pub d: f64,
    /// d_j, the number of scalars in the tensor.
    pub numel: usize,
}

impl TensorSums {
    /// The sums of one tensor from host values, with prior log-std `b_j`.
    pub fn from_values(theta: &[f64], theta0: &[f64], p: &[f64], b_j: f64) -> Self {
        assert!(
            theta0.len() == theta.len() && p.len() == theta.len(),
            "θ, θ0 and p differ in size"
        );
        let mut sums = TensorSums {
            e: 0.0,
            f: 0.0,
            d: 0.0,
            numel: theta.len(),
        };
        for i in 0..theta.len() {
            let y = 2.0 * (p[i] - b_j);
            let diff = theta[i] - theta0[i];
            sums.e += y.exp_m1();
            sums.f += y.exp_m1() - y;
            sums.d += diff * diff;
        }
        sums
    }

    /// The sums of every tensor from `pac::kl::sums` read back as one flat slice (row j =
    /// (E_j, F_j, D_j)) and each tensor's number of scalars.
    pub fn from_rows(rows: &[f32], numels: &[usize]) -> Vec<Self> {
        assert_eq!(
            rows.len(),
            3 * numels.len(),
            "one row of three sums per tensor"
        );
        rows.chunks(3)
            .zip(numels)
            .map(|(row, &numel)| TensorSums {
                e: f64::from(row[0]),
                f: f64::from(row[1]),
                d: f64::from(row[2]),
                numel,
            })
            .collect()
    }
}

/// Number of points of the prior-std grid.
pub const PRIOR_GRID_POINTS: usize = 8;
/// Number of γ values the K search checks (log-spaced in [γ1, γ2]).
pub const GAMMA_GRID_POINTS: usize = 10;
/// The K search's starting point for the first prior std.
pub const K_START: f64 = 1e-3;

/// `numpy.linspace(start, stop, num)`: start + i·step, the last point exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// The prior-std grid s_k = exp(linspace(−6, −2, 8)) (spec, "Before training: K(λ)" step 1).
pub fn prior_std_grid() -> Vec<f64> {
    linspace(-6.0, -2.0, PRIOR_GRID_POINTS)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// The γ range [γ1, γ2] of a run: `--gamma` fixes γ, so both ends are it.
pub fn fixed_gamma(gamma: f64) -> (f64, f64) {
    (gamma, gamma)
}

/// The γ-grid of the K search: exp(linspace(ln γ1, ln γ2, 10)); all γ when γ1 = γ2 = γ.
pub fn gamma_grid(gamma_range: (f64, f64)) -> Vec<f64> {
    let (g1, g2) = gamma_range;
    assert!(
        g1 > 0.0 && g2 >= g1 && g2.is_finite(),
        "γ range must satisfy 0 < γ1 ≤ γ2 < ∞"
    );
    linspace(g1.ln(), g2.ln(), GAMMA_GRID_POINTS)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// K̂(s), the interpolation of K over the prior std s (spec, "Before training: K(λ)" step 6), written as the
/// authors' `fun_K_auto` writes it: a sum of ReLUs,
///
/// K̂(s) = K_1 + Σ_{i=1}^{m−1} c_i·relu(s − s_i),  c_1 = m_1,  c_{i+1} = m_{i+1} − c_i,
///
/// where m_i = (K_{i+1} − K_i)/(s_{i+1} − s_i) is the slope of segment i.
///
/// **From the golden file, not the spec:** the spec calls this piecewise-linear interpolation
/// through (s_k, K_k), which would need c_{i+1} = m_{i+1} − m_i. The authors' recursion
/// subtracts the previous *coefficient* instead, so the slope on segment i is
/// m_i − m_{i−1} + m_{i−2} − … ± m_1 rather than m_i: K̂ passes through (s_1, K_1), (s_2, K_2)
/// and (s_3, K_3) only, and above s_3 it differs from the line through the points. It is
/// constant K_1 below s_1 and linear above s_{m−1} (the last point s_m is not a knot).
/// pac-bound.json's `K_at` and `K` match this form (to rounding) and not the interpolation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KHat {
    /// s_k, increasing.
    pub prior_std: Vec<f64>,
    /// K_k, the running-max K of [`estimate_k`].
    pub k: Vec<f64>,
}

impl KHat {
    pub fn new(prior_std: Vec<f64>, k: Vec<f64>) -> Self {
        let k_hat = KHat { prior_std, k };
        k_hat.check();
        k_hat
    }

    fn check(&self) {
        assert!(
            self.prior_std.len() >= 2 && self.k.len() == self.prior_std.len(),
            "K̂ needs at least two (s, K) points"
        );
        assert!(
            self.prior_std.windows(2).all(|w| w[0] < w[1]),
            "the prior stds of K̂ must increase"
        );
    }

    /// The coefficients c_i of relu(s − s_i), i = 1..m−1, in the authors' recursion.
    fn coefficients(&self) -> Vec<f64> {
        self.check();
        let (s, k) = (&self.prior_std, &self.k);
        let slope = |i: usize| (k[i + 1] - k[i]) / (s[i + 1] - s[i]);
        let mut c = Vec::with_capacity(s.len() - 1);
        c.push(slope(0));
        for i in 0..s.len() - 2 {
            let prev = c[i];
            c.push(-prev + slope(i + 1));
        }
        c
    }

    /// K̂(s) (the authors' `fun_K_auto`, evaluated in the same order).
    pub fn value(&self, s: f64) -> f64 {
        let knots = &self.prior_std;
        let mut y = self.k[0];
        for (i, c) in self.coefficients().into_iter().enumerate() {
            y += (s - knots[i]).max(0.0) * c;
        }
        y
    }

    /// dK̂/ds: the sum of the coefficients of the knots strictly below s (relu'(0) = 0, as
    /// in PyTorch's autograd).
    pub fn derivative(&self, s: f64) -> f64 {
        let knots = &self.prior_std;
        self.coefficients()
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| s > knots[i])
            .map(|(_, c)| c)
            .sum()
    }
}

/// K per prior std: as searched (`raw`) and after the running maximum (`monotone`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KEstimate {
    pub raw: Vec<f64>,
    pub monotone: Vec<f64>,
}

/// ln of (1/R) Σ_r (1/n_r) Σ_i exp(γ(μ̄ − ℓ_{r,i})), by log-sum-exp (γ(μ̄ − ℓ) can be several
/// hundred). μ̄ is the mean over r of each prior model's mean loss (the authors'
/// `np.mean(error_mean_list)`; the mean of all ℓ when every row has n entries).
fn log_mean_exp_moment(losses: &[Vec<f64>], gamma: f64) -> f64 {
    let rows = losses.len() as f64;
    let mu = losses
        .iter()
        .map(|row| row.iter().sum::<f64>() / row.len() as f64)
        .sum::<f64>()
        / rows;
    let top = losses
        .iter()
        .flatten()
        .map(|&l| gamma * (mu - l))
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = losses
        .iter()
        .map(|row| {
            row.iter()
                .map(|&l| (gamma * (mu - l) - top).exp())
                .sum::<f64>()
                / row.len() as f64
        })
        .sum();
    top + (sum / rows).ln()
}

/// The K search at one prior std (spec, "Before training: K(λ)" steps 3–4), starting from `start` (the previous
/// grid point's K, [`K_START`] for the first). `losses[r][i]` is prior model r's loss on
/// example i; `gammas` the γ-grid ([`gamma_grid`]).
///
/// x is feasible for γ when (1/R) Σ_r (1/n) Σ_i exp(γ(μ̄ − ℓ_{r,i})) ≤ exp(1.5 γ² x²), compared
/// here in logs. While some γ is violated, x ← 1.5x; then while every γ holds strictly,
/// x ← x/1.1; the result is the final x (the first one that fails to hold strictly, as in the
/// authors' `est_K`, whose tests are `< −1e-20` and `> 0` on the summed differences).
pub fn search_k(losses: &[Vec<f64>], gammas: &[f64], start: f64) -> f64 {
    assert!(
        !losses.is_empty() && losses.iter().all(|row| !row.is_empty()),
        "the K search needs at least one prior model with at least one loss"
    );
    assert!(
        losses.iter().flatten().all(|l| l.is_finite()),
        "the K search needs finite losses"
    );
    assert!(
        !gammas.is_empty() && gammas.iter().all(|g| *g > 0.0 && g.is_finite()),
        "the K search needs positive finite γ values"
    );
    assert!(
        start > 0.0 && start.is_finite(),
        "the K search starts at x > 0"
    );
    // The left side does not depend on x: ln of the mean exponential moment per γ. It is
    // ≥ 0 (Jensen: the mean of exp(γ(μ̄ − ℓ)) is at least exp(0)); clamping the rounding of
    // identical losses (−1e-16) to 0 lets the shrinking below end.
    let lhs: Vec<f64> = gammas
        .iter()
        .map(|&g| log_mean_exp_moment(losses, g).max(0.0))
        .collect();
    let rhs = |g: f64, x: f64| 1.5 * g * g * x * x;
    let violated = |x: f64| gammas.iter().zip(&lhs).any(|(&g, &l)| l > rhs(g, x));
    let holds_strictly = |x: f64| gammas.iter().zip(&lhs).all(|(&g, &l)| l < rhs(g, x));
    let mut x = start;
    while violated(x) {
        x *= 1.5;
    }
    // Terminates: once x² underflows the right side is 0 ≤ the left side, so "holds strictly"
    // fails by then at the latest.
    while holds_strictly(x) {
        x /= 1.1;
    }
    x
}

/// K for every prior std (spec, "Before training: K(λ)" steps 3–5). `losses[k][r][i]`: grid point k, prior model
/// r, example i; `gammas`: the γ-grid ([`gamma_grid`]). Each grid point's search starts from
/// the previous raw K ([`K_START`] for the first); `monotone` is the running maximum of `raw`.
pub fn estimate_k(losses: &[Vec<Vec<f64>>], gammas: &[f64]) -> KEstimate {
    let mut raw = Vec::with_capacity(losses.len());
    let mut x = K_START;
    for point in losses {
        x = search_k(point, gammas, x);
        raw.push(x);
    }
    let mut monotone = Vec::with_capacity(raw.len());
    let mut top = 0.0f64;
    for &k in &raw {
        top = top.max(k);
        monotone.push(top);
    }
    KEstimate { raw, monotone }
}

/// The authors' `weight_decay_mulb`: Σ_j exp(−2 b_j)·D_j = Σ_j exp(−2 b_j)·‖θ_j − θ0_j‖², the
/// distance from θ0 weighted by each tensor's prior precision. Inferred from pac-bound.json
/// (its `wdecay` with inputs theta, theta0, b, shapes) and matched there to 1e-15 relative; it
/// is the D_j part of the spec's KL.
pub fn wdecay(sums: &[TensorSums], b: &[f64]) -> f64 {
    assert_eq!(sums.len(), b.len(), "one b_j per tensor");
    sums.iter()
        .zip(b)
        .map(|(t, &bj)| (-2.0 * bj).exp() * t.d)
        .sum()
}

/// KL = ½ [Σ_j exp(−2 b_j)(S_j + D_j) − 2 Σ_i p_i + 2 Σ_j d_j b_j − d] with S_j = Σ exp(2p),
/// written as ½ Σ_j (F_j + exp(−2 b_j) D_j) so that no large terms cancel.
pub fn kl(sums: &[TensorSums], b: &[f64]) -> f64 {
    assert_eq!(sums.len(), b.len(), "one b_j per tensor");
    0.5 * sums
        .iter()
        .zip(b)
        .map(|(t, &bj)| t.f + (-2.0 * bj).exp() * t.d)
        .sum::<f64>()
}

/// ∂KL/∂b_j = d_j − exp(−2 b_j)(S_j + D_j) = −E_j − exp(−2 b_j) D_j.
pub fn kl_grad_b(sums: &[TensorSums], b: &[f64]) -> Vec<f64> {
    assert_eq!(sums.len(), b.len(), "one b_j per tensor");
    sums.iter()
        .zip(b)
        .map(|(t, &bj)| -t.e - (-2.0 * bj).exp() * t.d)
        .collect()
}

/// The bound's terms at one step of Stage 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoundTerms {
    /// KL(posterior ‖ prior).
    pub kl: f64,
    /// Σ_j exp(−2 b_j) D_j (already inside `kl`; reported by the authors).
    pub wdecay: f64,
    /// C = 10 + 3L.
    pub c: f64,
    /// exp(mean_j b_j), where K̂ is evaluated.
    pub prior_scale: f64,
    /// K̂(exp(mean_j b_j)).
    pub k: f64,
    /// K̂⁻¹ sqrt(2(KL + C)/(3n)) before clipping (what the authors print as `gamma1`).
    pub gamma_unclipped: f64,
    /// γ = clip(gamma_unclipped, γ1, γ2).
    pub gamma: f64,
    /// loss2 = 1.5 K̂² γ + (KL + C)/(nγ).
    pub loss2: f64,
    /// ∂loss2/∂KL = 1/(nγ): the factor of ∂KL/∂p and ∂KL/∂θ in the kernels.
    pub kl_coef: f64,
    /// ∂loss2/∂b_j, through the KL and through K̂(exp(mean b)).
    pub grad_b: Vec<f64>,
}

/// loss2 and its gradient for b (spec, "Stage 1: the bound"):
///
/// C = 10 + 3L, γ = clip(K̂⁻¹ sqrt(2(KL + C)/(3n)), γ1, γ2), loss2 = 1.5 K̂² γ + (KL + C)/(nγ),
/// K̂ = k_hat(s) at s = exp(mean_j b_j);
/// ∂loss2/∂b_j = (∂KL/∂b_j)/(nγ) + 3 K̂ γ · K̂'(s) · s / L.
///
/// γ's own dependence on KL and K̂ adds nothing: unclipped, γ minimises loss2 over γ, so
/// ∂loss2/∂γ = 1.5 K̂² − (KL + C)/(nγ²) = 0; clipped, it is constant.
pub fn bound_terms(
    sums: &[TensorSums],
    b: &[f64],
    n: usize,
    gamma_range: (f64, f64),
    k_hat: &KHat,
) -> BoundTerms {
    let layers = sums.len();
    assert!(layers > 0 && b.len() == layers, "one b_j per tensor");
    assert!(n > 0, "n must be positive");
    let (g1, g2) = gamma_range;
    assert!(g1 > 0.0 && g2 >= g1, "γ range must satisfy 0 < γ1 ≤ γ2");
    let n = n as f64;
    let kl_value = kl(sums, b);
    let c = 10.0 + 3.0 * layers as f64;
    let prior_scale = (b.iter().sum::<f64>() / layers as f64).exp();
    let k = k_hat.value(prior_scale);
    let gamma_unclipped = (2.0 * (kl_value + c) / n / 3.0).sqrt() / k;
    let gamma = gamma_unclipped.clamp(g1, g2);
    let loss2 = 3.0 * k * k * gamma / 2.0 + (kl_value + c) / n / gamma;
    let kl_coef = 1.0 / (n * gamma);
    let through_k = 3.0 * k * gamma * k_hat.derivative(prior_scale) * prior_scale / layers as f64;
    let grad_b = kl_grad_b(sums, b)
        .into_iter()
        .map(|g| kl_coef * g + through_k)
        .collect();
    BoundTerms {
        kl: kl_value,
        wdecay: wdecay(sums, b),
        c,
        prior_scale,
        k,
        gamma_unclipped,
        gamma,
        loss2,
        kl_coef,
        grad_b,
    }
}

/// The initial log-stds (spec, "Initialisation"): p_encoder = 2 ln(mean |θ0|) over all encoder
/// scalars (σ = (mean |θ0|)²) and p_head = ln(mean |ω0|) over the head's scalars. Every b_j
/// starts at its group's value ([`initial_b`]).
pub fn init_log_std(mean_abs_encoder: f64, mean_abs_head: f64) -> (f64, f64) {
    assert!(
        mean_abs_encoder > 0.0 && mean_abs_head > 0.0,
        "mean |θ0| must be positive"
    );
    (2.0 * mean_abs_encoder.ln(), mean_abs_head.ln())
}

/// b_j = the initial p of tensor j's group, from [`init_log_std`]'s (p_encoder, p_head).
pub fn initial_b(groups: &[Group], (p_encoder, p_head): (f64, f64)) -> Vec<f64> {
    groups
        .iter()
        .map(|g| match g {
            Group::Encoder => p_encoder,
            Group::Head => p_head,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    fn uniform(rng: &mut SplitMix64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect()
    }

    /// Random tensors: (θ, θ0, p) per tensor, and b.
    fn random_sums(rng: &mut SplitMix64) -> (Vec<[Vec<f64>; 3]>, Vec<f64>) {
        let tensors: Vec<[Vec<f64>; 3]> = [5, 1, 12]
            .iter()
            .map(|&n| {
                let theta = uniform(rng, n, -1.0, 1.0);
                [
                    theta,
                    uniform(rng, n, -1.0, 1.0),
                    uniform(rng, n, -5.0, -1.0),
                ]
            })
            .collect();
        (tensors, uniform(rng, 3, -4.0, -2.0))
    }

    fn sums_of(tensors: &[[Vec<f64>; 3]], b: &[f64]) -> Vec<TensorSums> {
        tensors
            .iter()
            .zip(b)
            .map(|([theta, theta0, p], &bj)| TensorSums::from_values(theta, theta0, p, bj))
            .collect()
    }

    /// `kl` is the KL divergence of two diagonal Gaussians as textbooks write it:
    /// Σ_i (b − p_i) + (e^{2p_i} + (θ_i − θ0_i)²) / (2 e^{2b}) − ½.
    #[test]
    fn kl_is_the_gaussian_kl_divergence() {
        let mut rng = SplitMix64::new(3);
        let (tensors, b) = random_sums(&mut rng);
        let textbook: f64 = tensors
            .iter()
            .zip(&b)
            .flat_map(|([theta, theta0, p], &bj)| {
                (0..theta.len()).map(move |i| {
                    let d2 = (theta[i] - theta0[i]).powi(2);
                    bj - p[i] + ((2.0 * p[i]).exp() + d2) / (2.0 * (2.0 * bj).exp()) - 0.5
                })
            })
            .sum();
        let ours = kl(&sums_of(&tensors, &b), &b);
        assert!(
            (ours - textbook).abs() <= 1e-12 * textbook.abs(),
            "{ours} vs {textbook}"
        );
    }

    /// ∂KL/∂b_j against central differences of `kl` (the sums recomputed at each b).
    #[test]
    fn kl_grad_b_is_the_derivative_of_kl() {
        let mut rng = SplitMix64::new(4);
        let (tensors, b) = random_sums(&mut rng);
        let grad = kl_grad_b(&sums_of(&tensors, &b), &b);
        let h = 1e-6;
        for j in 0..b.len() {
            let at = |delta: f64| {
                let mut moved = b.clone();
                moved[j] += delta;
                kl(&sums_of(&tensors, &moved), &moved)
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (grad[j] - numeric).abs() <= 1e-6 * numeric.abs().max(1.0),
                "b_{j}: {} vs {numeric}",
                grad[j]
            );
        }
    }

    /// Unclipped, γ minimises loss2 = 1.5 K̂² γ + (KL + C)/(nγ); clipped, it is the range's end.
    #[test]
    fn gamma_minimises_loss2_within_its_range() {
        let mut rng = SplitMix64::new(5);
        let (tensors, b) = random_sums(&mut rng);
        let sums = sums_of(&tensors, &b);
        let k_hat = KHat::new(prior_std_grid(), (1..=8).map(|i| 0.1 * i as f64).collect());
        let free = bound_terms(&sums, &b, 100, (1e-6, 1e6), &k_hat);
        assert_eq!(free.gamma, free.gamma_unclipped);
        let loss2 = |g: f64| 1.5 * free.k * free.k * g + (free.kl + free.c) / (100.0 * g);
        assert!((loss2(free.gamma) - free.loss2).abs() <= 1e-12 * free.loss2);
        for factor in [0.9, 0.99, 1.01, 1.1] {
            assert!(loss2(free.gamma * factor) > free.loss2, "γ × {factor}");
        }
        let high = free.gamma * 2.0;
        let clipped = bound_terms(&sums, &b, 100, (high, high * 2.0), &k_hat);
        assert_eq!(clipped.gamma, high);
        assert!((clipped.loss2 - loss2(high)).abs() <= 1e-12 * clipped.loss2);
    }

    #[test]
    fn grids_end_exactly_at_their_ends() {
        let s = prior_std_grid();
        assert_eq!((s.len(), s[0], s[7]), (8, (-6.0f64).exp(), (-2.0f64).exp()));
        let g = gamma_grid((0.5, 10.0));
        assert_eq!(g.len(), GAMMA_GRID_POINTS);
        assert!((g[0] - 0.5).abs() < 1e-15 && (g[9] - 10.0).abs() < 1e-13);
        assert!(g.windows(2).all(|w| w[1] > w[0]));
        assert!(
            gamma_grid(fixed_gamma(3.0))
                .iter()
                .all(|&g| (g - 3.0).abs() < 1e-15 * 3.0 * 4.0)
        );
    }
}
