//! `reduce::sum`, the whole-tensor sum every parameter-sized reduction goes through (burn's own
//! `sum()` is wrong on lavapipe above ~262 000 elements), against an f64 sum on the host, at the
//! sizes where its row split changes shape: one element, one short of a row, a row, one over,
//! and past lavapipe's threshold. On the CPU device, and on lavapipe when present.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use pac_wgpu::util::reduce;

/// Around one row of 1024 (reduce.rs's ROW), and past 262 144 (lavapipe's broken sum()).
const SIZES: [usize; 7] = [1, 2, 1023, 1024, 1025, 262_145, 300_000];

/// xorshift64*: deterministic inputs.
struct Inputs(u64);

impl Inputs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sum_on(values: &[f32], device: &Device) -> f32 {
    let x = Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), device);
    let s = reduce::sum(x);
    assert_eq!(s.dims(), [1], "one-element result");
    s.into_scalar::<f32>()
}

/// Non-zero integers in ±[1, 31]: every partial sum of up to 300 000 of them is an integer below
/// 2^24 in magnitude, so exact in f32 in any order. The sum must be exact: a dropped, doubled
/// or padded-with-garbage element shows as an error of at least 1.
#[test]
fn sum_of_integers_is_exact_at_every_size() {
    let mut inputs = Inputs(0x5EED_0001);
    for selected in common::test_devices() {
        for n in SIZES {
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let magnitude = 1 + (inputs.next() % 31) as i32;
                    let sign = if inputs.next() & 1 == 0 { 1 } else { -1 };
                    (sign * magnitude) as f32
                })
                .collect();
            let exact: f64 = values.iter().map(|&v| f64::from(v)).sum();
            // Also all positive (the sign flips above let lost elements cancel by chance).
            let positive: Vec<f32> = values.iter().map(|v| v.abs()).collect();
            let exact_positive: f64 = positive.iter().map(|&v| f64::from(v)).sum();
            let got = sum_on(&values, &selected.device);
            let got_positive = sum_on(&positive, &selected.device);
            eprintln!(
                "{} n = {n}: {got} vs {exact}, {got_positive} vs {exact_positive}",
                selected.name
            );
            assert_eq!(f64::from(got), exact, "{} n = {n}", selected.name);
            assert_eq!(
                f64::from(got_positive),
                exact_positive,
                "{} n = {n}, all positive",
                selected.name
            );
        }
    }
}

/// Real values of mixed sign and magnitude (|x| in [1e-3, 1]): within 2^-20 of Σ|x| of the f64
/// sum. Why 2^-20 (≈ 9.5e-7, 8 ulp of f32): f32 summation errs by at most about (the longest
/// chain of additions)·2^-24·Σ|x|, and random rounding errors grow like its square root; the
/// chains here are a row (≤ 1024) then the row sums (≤ 293), so the measured error is a few
/// 1e-8 of Σ|x| (printed with --nocapture). The integer test above is the sharp one for lost or
/// doubled elements; this one bounds the rounding.
#[test]
fn sum_of_reals_is_within_rounding_of_the_f64_sum() {
    let mut inputs = Inputs(0x5EED_0002);
    for selected in common::test_devices() {
        for n in SIZES {
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    // Log-uniform magnitude in [1e-3, 1], random sign.
                    let magnitude = (1e-3f64).powf(inputs.unit()) as f32;
                    if inputs.next() & 1 == 0 {
                        magnitude
                    } else {
                        -magnitude
                    }
                })
                .collect();
            let exact: f64 = values.iter().map(|&v| f64::from(v)).sum();
            let scale: f64 = values.iter().map(|&v| f64::from(v).abs()).sum();
            let got = f64::from(sum_on(&values, &selected.device));
            let error = (got - exact).abs() / scale;
            eprintln!(
                "{} n = {n}: Σ = {got:.6e} vs {exact:.6e}, error {error:.2e} of Σ|x|",
                selected.name
            );
            assert!(
                error <= 2f64.powi(-20),
                "{} n = {n}: {got} vs {exact} (error {error:e} of Σ|x| = {scale})",
                selected.name
            );
        }
    }
}
