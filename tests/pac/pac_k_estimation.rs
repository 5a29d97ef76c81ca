//! The on-device K(λ) loop, `pac::estimate_k`, against the spec's K(λ) steps computed
//! another way on the host (docs/method.md, "K(λ)"), on the tiny random BERT and
//! the toy SST-2.
//!
//! The prior models are random, so the host needs the same ones: it regenerates each draw from
//! its Philox key (seed, PRIOR_STEPS + prior model number) and counter (element / 4, tensor j)
//! with the generator's host twin, unclipped. Everything after the draw is independent of the library's
//! loop: each prior model θ0 + s_k·z is built on the host in f64 and loaded as plain data, each
//! example's cross-entropy is computed from a forward pass of that example alone (no padding)
//! with an f64 log-sum-exp, and K_k is checked against the closed form of the search (below)
//! rather than against `bound::estimate_k`.

use crate::common;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use pac_wgpu::data::{Examples, Prepared};
use pac_wgpu::glue::{DataSource, Split, Task};
use pac_wgpu::model::trainable;
use pac_wgpu::model::{Classifier, Head, HeadKind, Pretrained};
use pac_wgpu::pac::noise::normal_quad;
use pac_wgpu::pac::{PRIOR_STEPS, PriorDraws, estimate_k};
use pac_wgpu::util::tokenize::TextTokenizer;

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// ln of the spec's moment (1/R) Σ_r (1/n) Σ_i exp(γ(μ̄ − ℓ_{r,i})), by log-sum-exp in f64.
fn log_moment(losses: &[Vec<f64>], gamma: f64) -> f64 {
    let all: Vec<f64> = losses.iter().flatten().copied().collect();
    let mu = all.iter().sum::<f64>() / all.len() as f64;
    let top = all
        .iter()
        .map(|l| gamma * (mu - l))
        .fold(f64::NEG_INFINITY, f64::max);
    let mean = all
        .iter()
        .map(|l| (gamma * (mu - l) - top).exp())
        .sum::<f64>()
        / all.len() as f64;
    top + mean.ln()
}

/// The K(λ) loop's K_k for each prior std, and K̂'s knots, match the spec on the host.
#[test]
fn k_estimation_matches_the_host_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-bert");
    common::tiny::write_model(&dir, 8, |_| {});
    common::tiny::write_toy_sst2(tmp.path());
    let device = pac_wgpu::util::device::select(pac_wgpu::util::device::DeviceChoice::Cpu)
        .unwrap()
        .device;

    let tokenizer = TextTokenizer::from_model_dir(&dir, 128).unwrap();
    let dataset = DataSource::new(Some(tmp.path().to_path_buf()))
        .load(&Task::Sst2, Split::Train)
        .unwrap();
    let train = Prepared::new(&dataset, None, &tokenizer).unwrap();
    let n = train.len();
    assert_eq!(n, 20);
    let p = Pretrained::load(&dir, 0.0, &device).unwrap();
    let mut model = Classifier::new(p.encoder, &p.config, HeadKind::Cls, 2, 0.0, 5, &device);
    // A head large enough that the losses spread (the HF init's 0.02 makes every loss ≈ ln 2).
    let head: Vec<f32> = (0..common::tiny::HIDDEN * 2)
        .map(|i| ((i * 37 % 23) as f32 / 23.0 - 0.5) * 2.0)
        .collect();
    model.head = Head::Cls(Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(head, [common::tiny::HIDDEN, 2]),
            &device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.1f32, -0.1], [2]),
            &device,
        ))),
    });
    // Three prior models per std, not the default ten: the count reaches the draws' numbering.
    let (gamma, seed, models) = (10.0, 77, 3);

    let examples = Examples {
        data: &train,
        pad: tokenizer.pad_id(),
        batch_size: 7, // batches of 7, 7, 6: padded and ragged, unlike the host's
    };
    let (k_hat, estimate) = pollster::block_on(estimate_k(
        &model,
        false.into(),
        &examples,
        (gamma, gamma),
        PriorDraws { models, seed },
        &device,
        &mut |_, _| {},
    ))
    .unwrap();

    // Step 1: s_k = exp(linspace(−6, −2, 8)), computed here: −6 + 4k/7.
    let grid: Vec<f64> = (0..8)
        .map(|k| (-6.0 + 4.0 * k as f64 / 7.0).exp())
        .collect();
    assert_eq!(k_hat.prior_std.len(), 8);
    for (got, want) in k_hat.prior_std.iter().zip(&grid) {
        assert!((got - want).abs() <= 1e-15 * want, "grid {got} vs {want}");
    }

    // Step 2 on the host: regenerate each prior model's draws, build it, one example at a time.
    let slots = trainable::list(&model, false);
    let mut theta0 = Vec::new();
    trainable::visit(&model, false, None, |_, v, _| theta0.push(host(v)));
    let mut host_losses: Vec<Vec<Vec<f64>>> = Vec::new();
    for (k, &s) in grid.iter().enumerate() {
        let mut per_model = Vec::new();
        for r in 0..models {
            let step = PRIOR_STEPS + (k * models + r) as u32;
            let prior_values: Vec<Vec<f32>> = slots
                .iter()
                .zip(&theta0)
                .enumerate()
                .map(|(j, (slot, t0))| {
                    assert_eq!(slot.numel(), t0.len());
                    t0.iter()
                        .enumerate()
                        .map(|(i, &a)| {
                            let z = normal_quad(seed as u32, step, j as u32, i as u32 / 4)[i % 4];
                            (f64::from(a) + s * f64::from(z)) as f32
                        })
                        .collect()
                })
                .collect();
            let prior = trainable::map(model.clone(), false, |j, _| {
                Tensor::from_data(
                    TensorData::new(prior_values[j].clone(), [prior_values[j].len()]),
                    &device,
                )
            });
            let losses: Vec<f64> = (0..n)
                .map(|i| {
                    let (ids, types, mask) =
                        train.batch(&[i], tokenizer.pad_id()).to_tensors(&device);
                    let logits: Vec<f64> = prior
                        .forward(ids, types, mask)
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap()
                        .into_iter()
                        .map(f64::from)
                        .collect();
                    let label = match dataset.examples[i].label {
                        pac_wgpu::glue::Label::Class(c) => c,
                        other => panic!("label {other:?}"),
                    };
                    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = top + logits.iter().map(|l| (l - top).exp()).sum::<f64>().ln();
                    lse - logits[label]
                })
                .collect();
            per_model.push(losses);
        }
        host_losses.push(per_model);
    }

    // Steps 3–4 in closed form: with one γ, x is feasible iff ln moment ≤ 1.5γ²x², i.e.
    // x ≥ x* = sqrt(ln moment / 1.5)/γ. The search ends at the first x that is not strictly
    // feasible after the last one that was, x/1.1 steps down, so K_k ∈ (x*/1.1, x*] whatever
    // it started from. The host's losses differ from the device's in their last bits
    // (another batching, f64 log-sum-exp): γ·1e-6 in ln moment at most, so 1e-4 relative slack
    // at both ends.
    let slack = 1e-4;
    let mut running_max = 0.0f64;
    for (k, losses) in host_losses.iter().enumerate() {
        let x_star = (log_moment(losses, gamma).max(0.0) / 1.5).sqrt() / gamma;
        let raw = estimate.raw[k];
        eprintln!(
            "s = {:.5}: K = {raw:.6e}, x* = {x_star:.6e}, K/x* = {:.4}",
            grid[k],
            raw / x_star
        );
        assert!(
            raw > x_star / 1.1 * (1.0 - slack) && raw <= x_star * (1.0 + slack),
            "K at s = {}: {raw} outside ({}, {x_star}]",
            grid[k],
            x_star / 1.1
        );
        // Step 5: the running maximum, which is also K̂'s K.
        running_max = running_max.max(raw);
        assert_eq!(estimate.monotone[k], running_max);
        assert_eq!(k_hat.k[k], running_max);
    }
    // The losses must spread, or every K is the search's floor and the check above is weak.
    let spread = host_losses[0][0]
        .iter()
        .fold(0.0f64, |m, l| m.max((l - host_losses[0][0][0]).abs()));
    assert!(spread > 0.1, "losses barely differ: {spread}");
}
