//! `PacTuning::init` on a real model (the tiny random BERT + a head of known values) against the
//! spec's initialisation (docs/method.md, "Initialisation") computed on the host in
//! f64 from the safetensors file: p = 2·ln(mean |θ0|) over the encoder's trainable scalars,
//! p = ln(mean |ω0|) over the head's, b_j = its group's value, θ0 = the weights.

use crate::common;

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use pac_wgpu::model::trainable::{self, Group};
use pac_wgpu::model::{Classifier, Head, HeadKind, Pretrained};
use pac_wgpu::pac::PacTuning;
use pac_wgpu::pac::bound::KHat;

use common::tiny::HIDDEN;

/// The host's f64 values vs the library's: p is stored as f32, so it is off by up to half an
/// ulp of |p| ≈ 4 (2.4e-7, the error measured: 2.2e-7); the library's f32 sums of |θ| per
/// tensor (≤ 4096 terms) add relative errors of ~1e-7 to the mean, i.e. ~1e-7 to ln. 1e-6
/// absolute (4 ulp of p) covers both; a factor 2 lost or a scalar put in the wrong group moves
/// p by ≥ 1e-3.
const P_TOLERANCE: f64 = 1e-6;

fn host(t: &Tensor<1>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap()
}

/// The tiny model's tensors by HF name (Linear weights `[out, in]`), as written.
fn file_tensors(path: &std::path::Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// `values` of HF shape `[out, in]` in Burn's Linear layout `[in, out]`, flattened.
fn transposed(shape: &[usize], values: &[f32]) -> Vec<f32> {
    let (rows, cols) = (shape[0], shape[1]);
    let mut t = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = values[r * cols + c];
        }
    }
    t
}

/// p, b and θ0 of `PacTuning::init` equal the spec's formulas, with frozen and with trained
/// embeddings.
#[test]
fn pac_init_follows_the_spec_formulas() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-bert");
    common::tiny::write_model(&dir, 21, |_| {});
    let file = file_tensors(&dir.join("model.safetensors"));

    // A head of known values: weight [HIDDEN, 2] (Burn layout), bias [2], none zero.
    let head_w: Vec<f32> = (0..HIDDEN * 2)
        .map(|i| 0.01 * (i as f32 + 1.0) * if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let head_b = vec![0.3f32, -0.05];

    for selected in common::test_devices() {
        let device = &selected.device;
        for train_embeddings in [false, true] {
            let p = Pretrained::load(&dir, 0.0, device).unwrap();
            let mut model = Classifier::new(p.encoder, &p.config, HeadKind::Cls, 2, 0.0, 0, device);
            model.head = Head::Cls(Linear {
                weight: Param::from_tensor(Tensor::from_data(
                    TensorData::new(head_w.clone(), [HIDDEN, 2]),
                    device,
                )),
                bias: Some(Param::from_tensor(Tensor::from_data(
                    TensorData::new(head_b.clone(), [2]),
                    device,
                ))),
            });
            let slots = trainable::list(&model, train_embeddings);
            let k_hat = KHat::new(vec![0.01, 0.1], vec![0.2, 0.3]);
            let init = PacTuning::init(
                &model,
                &slots,
                train_embeddings.into(),
                20,
                10.0,
                k_hat.clone(),
                1,
            );
            let state = pollster::block_on(init).unwrap();

            // The spec on the host: the encoder's trainable scalars are every tensor of the
            // file except the embeddings (unless they train); the head is head_w and head_b.
            let trainable = |name: &str| train_embeddings || !name.starts_with("embeddings.");
            let (mut sum, mut count) = (0.0f64, 0usize);
            for (name, (_, v)) in &file {
                if trainable(name) {
                    sum += v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
                    count += v.len();
                }
            }
            let p_encoder = 2.0 * (sum / count as f64).ln();
            let head: Vec<f64> = head_w
                .iter()
                .chain(&head_b)
                .map(|&x| f64::from(x))
                .collect();
            let p_head = (head.iter().map(|x| x.abs()).sum::<f64>() / head.len() as f64).ln();
            eprintln!(
                "{} train_embeddings={train_embeddings}: {count} encoder scalars, p_encoder {p_encoder:.7}, p_head {p_head:.7}",
                selected.name
            );

            // One slot per trainable tensor, encoder tensors first, the head's two last.
            let encoder_tensors = file.keys().filter(|n| trainable(n)).count();
            assert_eq!(slots.len(), encoder_tensors + 2);
            assert_eq!(state.p.len(), slots.len());
            assert_eq!(state.b.len(), slots.len());
            assert_eq!(state.theta0.len(), slots.len());
            assert_eq!((state.n, state.gamma_range), (20, (10.0, 10.0)));
            assert_eq!(state.k_hat, k_hat);

            let mut worst = 0.0f64;
            for (j, slot) in slots.iter().enumerate() {
                let want = match slot.group {
                    Group::Encoder => p_encoder,
                    Group::Head => p_head,
                };
                assert_eq!(
                    slot.group == Group::Head,
                    slot.name.starts_with("out."),
                    "{}",
                    slot.name
                );
                let err_b = (state.b[j] - want).abs();
                let p = host(&state.p[j]);
                assert_eq!(p.len(), slot.numel(), "{}", slot.name);
                let err_p = p
                    .iter()
                    .map(|&x| (f64::from(x) - want).abs())
                    .fold(0.0, f64::max);
                worst = worst.max(err_b).max(err_p);
                assert!(
                    err_b <= P_TOLERANCE,
                    "b of {}: {} vs {want}",
                    slot.name,
                    state.b[j]
                );
                assert!(err_p <= P_TOLERANCE, "p of {}: off by {err_p:e}", slot.name);

                // θ0 is the model's weights, bit for bit.
                let theta0 = host(&state.theta0[j]);
                let expected = match slot.name.as_str() {
                    "out.weight" => head_w.clone(),
                    "out.bias" => head_b.clone(),
                    name => {
                        let (shape, v) = &file[name.strip_prefix("bert.").unwrap()];
                        if shape.len() == 2 && !name.contains("embeddings") {
                            transposed(shape, v)
                        } else {
                            v.clone()
                        }
                    }
                };
                assert!(theta0 == expected, "θ0 of {} is not the weights", slot.name);
            }
            eprintln!("  largest |p − spec| {worst:.2e}");
        }
    }
}
