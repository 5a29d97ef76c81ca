//! AdamW's update of the `small` BERT's 34 trainable tensors as Burn tensor operations (PyTorch's
//! order, 14 per tensor), on a wgpu adapter, with or without Burn's fusion (`--features fusion`).
//! Prints launches per step, milliseconds per step, and writes the updated weights after
//! `STEPS` steps so that two builds can be compared.
//!
//!     cargo run --release -- 0 unfused.bin
//!     cargo run --release --features fusion -- 0 fused.bin
//!     cargo run --release -- compare unfused.bin fused.bin

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::cubecl::logging::{LaunchObservation, LaunchObserver};
use burn::tensor::{Device, DeviceKind, Tensor};

const STEPS: usize = 20;
const WARMUP: usize = 3;

/// The trainable tensors of `small` (hidden 128, 2 layers, FFN 512, a 2-way head).
fn numels() -> Vec<usize> {
    let layer = [
        128 * 128,
        128,
        128 * 128,
        128,
        128 * 128,
        128,
        128 * 128,
        128,
        128,
        128,
        128 * 512,
        512,
        512 * 128,
        128,
        128,
        128,
    ];
    let mut all: Vec<usize> = layer.iter().chain(&layer).copied().collect();
    all.extend([128 * 2, 2]);
    all
}

struct Adam {
    step: i32,
    m: Vec<Tensor<1>>,
    v: Vec<Tensor<1>>,
}

impl Adam {
    fn update(&mut self, j: usize, theta: Tensor<1>, grad: Tensor<1>, lr: f64) -> Tensor<1> {
        let (beta1, beta2, eps, weight_decay) = (0.9f64, 0.999f64, 1e-8, 0.01);
        let m = self.m[j].clone();
        let m = m.clone() + (grad.clone() - m) * (1.0 - beta1);
        let v = self.v[j].clone() * beta2 + grad.clone() * (1.0 - beta2) * grad;
        let bias1 = 1.0 - beta1.powi(self.step);
        let bias2 = 1.0 - beta2.powi(self.step);
        let denom = (v.clone().sqrt() / bias2.sqrt()).add_scalar(eps);
        let decayed = theta * (1.0 - lr * weight_decay);
        let updated = decayed - m.clone() / denom * (lr / bias1);
        self.m[j] = m;
        self.v[j] = v;
        updated
    }
}

#[derive(Default)]
struct Count(AtomicU64);

impl LaunchObserver for Count {
    fn launched(&self, _kernel: &'static str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args[0] == "compare" {
        let read = |p: &str| -> Vec<f32> {
            let bytes = std::fs::read(p).unwrap();
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let (a, b) = (read(&args[1]), read(&args[2]));
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        println!("{} weights, largest difference {worst:e}", a.len());
        return;
    }
    let device = match args[0].as_str() {
        "cpu" => Device::flex(),
        _ => Device::wgpu(DeviceKind::Cpu),
    };
    let shapes = numels();
    let fixed = |seed: u64, n: usize| {
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let x = (seed.wrapping_mul(6364136223846793005) ^ (i as u64 * 1442695040888963407))
                    >> 40;
                (x as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::<1>::from_floats(values.as_slice(), &device)
    };
    let mut theta: Vec<Tensor<1>> = shapes
        .iter()
        .enumerate()
        .map(|(j, &n)| fixed(j as u64 + 1, n) * 0.1)
        .collect();
    let grads: Vec<Tensor<1>> = shapes
        .iter()
        .enumerate()
        .map(|(j, &n)| fixed(j as u64 + 100, n) * 0.01)
        .collect();
    let mut adam = Adam {
        step: 0,
        m: shapes
            .iter()
            .map(|&n| Tensor::zeros([n], &device))
            .collect(),
        v: shapes
            .iter()
            .map(|&n| Tensor::zeros([n], &device))
            .collect(),
    };
    let mut step = |theta: &mut Vec<Tensor<1>>| {
        adam.step += 1;
        let updated: Vec<Tensor<1>> = theta
            .drain(..)
            .enumerate()
            .map(|(j, t)| adam.update(j, t, grads[j].clone(), 1e-3))
            .collect();
        *theta = updated;
    };
    let sync = || device.sync().unwrap();
    for _ in 0..WARMUP {
        step(&mut theta);
    }
    sync();
    let count = Arc::new(Count::default());
    let watching = LaunchObservation::new(count.clone());
    step(&mut theta);
    sync();
    drop(watching);
    let launches = count.0.load(Ordering::Relaxed);
    let mut times = Vec::new();
    for _ in WARMUP + 1..STEPS {
        let start = Instant::now();
        step(&mut theta);
        sync();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let fused = cfg!(feature = "fusion");
    println!(
        "fusion {fused}: {} tensors, {launches} launches per step, median {:.2} ms per step",
        shapes.len(),
        times[times.len() / 2]
    );
    let mut out = Vec::new();
    for t in theta {
        let values: Vec<f32> = t.into_data().try_to_vec().unwrap();
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(&args[1], out).unwrap();
}
