//! Parity with Hugging Face transformers on all-MiniLM-L6-v2 (tests/golden/minilm-forward.json):
//! identical token ids and [CLS] vectors within 1e-4, on the CPU device and on lavapipe.

use crate::common;

use common::{binary, golden_dir, max_abs_diff, minilm_dir, read_json, test_devices};
use pac_wgpu::model::{Pretrained, cls_vectors};
use pac_wgpu::util::device::is_cpu;
use pac_wgpu::util::tokenize::{Encoded, PaddedBatch, TextTokenizer};

/// The tolerance the golden README states for float32 [CLS] vectors.
const CLS_TOLERANCE: f32 = 1e-4;

struct Case {
    text_a: String,
    text_b: Option<String>,
    max_length: usize,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
    cls: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let golden = read_json(&golden_dir().join("minilm-forward.json"));
    let ints = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let cases: Vec<Case> = golden["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text_a: c["text_a"].as_str().unwrap().to_string(),
            text_b: c["text_b"].as_str().map(str::to_string),
            max_length: c["max_length"].as_u64().unwrap() as usize,
            input_ids: ints(&c["input_ids"]),
            token_type_ids: ints(&c["token_type_ids"]),
            cls: c["cls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect();
    assert!(cases.len() >= 8, "golden file has {} cases", cases.len());
    cases
}

fn encode_all(cases: &[Case], dir: &std::path::Path) -> (Vec<Encoded>, u32) {
    let mut pad = 0;
    let encoded = cases
        .iter()
        .map(|c| {
            let tokenizer = TextTokenizer::from_model_dir(dir, c.max_length).unwrap();
            pad = tokenizer.pad_id();
            tokenizer.encode(&c.text_a, c.text_b.as_deref()).unwrap()
        })
        .collect();
    (encoded, pad)
}

#[test]
#[cfg_attr(
    not(pac_test_minilm),
    ignore = "needs all-MiniLM-L6-v2: run scripts/fetch-model.sh"
)]
fn token_ids_match_hf() {
    let (dir, cases) = (minilm_dir(), cases());
    let (encoded, _) = encode_all(&cases, &dir);
    assert!(
        cases
            .iter()
            .any(|c| c.input_ids.len() == c.max_length && c.text_b.is_some()),
        "the golden set should include a truncated pair"
    );
    for (case, enc) in cases.iter().zip(&encoded) {
        assert_eq!(
            enc.input_ids, case.input_ids,
            "input_ids for {:?}",
            case.text_a
        );
        assert_eq!(
            enc.token_type_ids, case.token_type_ids,
            "token_type_ids for {:?}",
            case.text_a
        );
    }
}

/// On every device, one padded batch of all cases against HF's [CLS] vectors (computed one case
/// at a time). On the CPU device each case also runs alone: padding must not leak into the real
/// tokens. (Software Vulkan compiles and tunes kernels for every new shape, so lavapipe runs the
/// batch only.)
#[test]
#[cfg_attr(
    not(pac_test_minilm),
    ignore = "needs all-MiniLM-L6-v2: run scripts/fetch-model.sh"
)]
fn cls_matches_hf_in_a_padded_batch_on_every_device_and_alone_on_the_cpu() {
    let (dir, cases) = (minilm_dir(), cases());
    let (encoded, pad) = encode_all(&cases, &dir);
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let batch = PaddedBatch::new(&refs, pad);
    assert!(
        batch.attention_mask.contains(&0.0),
        "the batch should need padding"
    );
    for selected in test_devices() {
        let device = &selected.device;
        let model = Pretrained::load(&dir, 0.0, device).unwrap();
        let batched = pollster::block_on(cls_vectors(&model.encoder, &batch, device)).unwrap();
        for (case, cls) in cases.iter().zip(&batched) {
            let diff = max_abs_diff(cls, &case.cls);
            println!(
                "{}: max |cls - hf| = {diff:.2e} for {:?}",
                selected.name, case.text_a
            );
            assert!(
                diff <= CLS_TOLERANCE,
                "{}: {diff} > {CLS_TOLERANCE} for {:?}",
                selected.name,
                case.text_a
            );
        }
        if !is_cpu(device) {
            continue;
        }
        for (enc, together) in encoded.iter().zip(&batched) {
            let alone = pollster::block_on(cls_vectors(
                &model.encoder,
                &PaddedBatch::new(&[enc], pad),
                device,
            ))
            .unwrap()
            .remove(0);
            let diff = max_abs_diff(&alone, together);
            assert!(
                diff <= 1e-5,
                "{}: batched differs from alone by {diff}",
                selected.name
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(pac_test_minilm),
    ignore = "needs all-MiniLM-L6-v2: run scripts/fetch-model.sh"
)]
fn encode_binary_matches_hf_on_a_pair() {
    let (dir, cases) = (minilm_dir(), cases());
    let case = cases
        .iter()
        .find(|c| c.text_b.is_some())
        .expect("a pair case");
    let output = binary()
        .args(["encode", "--json", "--device", "cpu", "--model"])
        .arg(&dir)
        .args([
            "--max-length",
            &case.max_length.to_string(),
            "--text-a",
            &case.text_a,
        ])
        .args(["--text-b", case.text_b.as_deref().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ids: Vec<u32> = json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let types: Vec<u32> = json["token_type_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let cls: Vec<f32> = json["cls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(ids, case.input_ids);
    assert_eq!(types, case.token_type_ids);
    assert!(max_abs_diff(&cls, &case.cls) <= CLS_TOLERANCE);
}
