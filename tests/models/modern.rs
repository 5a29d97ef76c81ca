//! Parity with transformers on the tiny Llama, Qwen2, Qwen3 and ModernBERT checkpoints
//! (tests/golden/modern/, saved as the hub ships them): identical token ids, final hidden states
//! at the first and last token and the `*ForSequenceClassification` logits within 1e-4 on the
//! CPU device; sharded and 16-bit copies of a checkpoint load to the same model; configs that
//! change the maths in ways this code does not implement are refused by name.

use crate::common;

use std::path::{Path, PathBuf};

use burn::store::ModuleSnapshot;
use burn::store::SafetensorsStore;
use burn::tensor::Device;
use common::{golden_dir, max_abs_diff, read_json, test_devices};
use pac_wgpu::model::hf_names::from_hf_names;
use pac_wgpu::model::{Classifier, HeadKind, ModelConfig, Pretrained, token_states};
use pac_wgpu::util::tokenize::{Encoded, PaddedBatch, TextTokenizer};
use serde_json::Value;

/// The golden README's tolerance for float32 hidden states and logits.
const TOLERANCE: f32 = 1e-4;

const FAMILIES: [&str; 4] = ["llama", "qwen2", "qwen3", "modernbert"];

fn family_dir(family: &str) -> (PathBuf, Value) {
    let root = golden_dir().join("modern");
    let json = read_json(&root.join("modern-forward.json"));
    (root.join(format!("tiny-{family}")), json[family].clone())
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn tokenizer(dir: &Path, max_length: usize) -> TextTokenizer {
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    TextTokenizer::from_model_dir(dir, max_length)
        .unwrap()
        .with_pad_id(config.pad_id())
}

fn encode(dir: &Path, case: &Value) -> Encoded {
    let max_length = case["max_length"].as_u64().unwrap() as usize;
    tokenizer(dir, max_length)
        .encode(case["text_a"].as_str().unwrap(), case["text_b"].as_str())
        .unwrap()
}

/// The golden `padded_batch` as a batch (token types 0).
fn golden_batch(padded: &Value) -> PaddedBatch {
    let rows = padded["input_ids"].as_array().unwrap();
    let input_ids: Vec<i64> = rows.iter().flat_map(ints).collect();
    let attention_mask: Vec<f32> = padded["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    let batch = rows.len();
    PaddedBatch {
        batch,
        seq: input_ids.len() / batch,
        token_type_ids: vec![0; input_ids.len()],
        input_ids,
        attention_mask,
    }
}

#[test]
fn token_ids_and_pad_ids_match_hf() {
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        for case in golden["cases"].as_array().unwrap() {
            let ids: Vec<i64> = encode(&dir, case)
                .input_ids
                .into_iter()
                .map(i64::from)
                .collect();
            assert_eq!(
                ids,
                ints(&case["input_ids"]),
                "{family}: {:?}",
                case["text_a"]
            );
        }
        let pad = golden["padded_batch"]["pad_token_id"].as_u64().unwrap() as u32;
        assert_eq!(tokenizer(&dir, 128).pad_id(), pad, "{family}: pad id");
    }
}

#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn hidden_states_and_logits_match_hf() {
    let device = &test_devices()[0].device;
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        let model = Pretrained::load(&dir, 0.0, device).unwrap();
        let pad = tokenizer(&dir, 128).pad_id();
        for case in golden["cases"].as_array().unwrap() {
            let enc = encode(&dir, case);
            let batch = PaddedBatch::new(&[&enc], pad);
            let states = pollster::block_on(token_states(&model.encoder, &batch, device)).unwrap();
            for (key, got) in [("first", &states.first[0]), ("last", &states.last[0])] {
                let diff = max_abs_diff(got, &floats(&case[key]));
                println!("{family}: {key} max diff {diff:.2e}");
                assert!(
                    diff <= TOLERANCE,
                    "{family}: {key} differs from HF by {diff}"
                );
            }
        }
        let padded = &golden["padded_batch"];
        let batch = golden_batch(padded);
        let states = pollster::block_on(token_states(&model.encoder, &batch, device)).unwrap();
        for (key, got) in [("first", &states.first), ("last_real", &states.last)] {
            for (row, want) in padded[key].as_array().unwrap().iter().enumerate() {
                let diff = max_abs_diff(&got[row], &floats(want));
                assert!(
                    diff <= TOLERANCE,
                    "{family}: padded row {row} {key} differs by {diff}"
                );
            }
        }
        let logits = seqcls_logits(&dir, family, &batch, device);
        for (row, want) in padded["seqcls_logits"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let diff = max_abs_diff(&logits[row], &floats(want));
            println!("{family}: logits row {row} max diff {diff:.2e}");
            assert!(
                diff <= TOLERANCE,
                "{family}: logits of row {row} differ from HF by {diff}"
            );
        }
    }
}

/// The logits of `--head hf` with the golden head's tensors, on `batch`.
fn seqcls_logits(dir: &Path, family: &str, batch: &PaddedBatch, device: &Device) -> Vec<Vec<f32>> {
    let pretrained = Pretrained::load(dir, 0.0, device).unwrap();
    let mut model = Classifier::new(
        pretrained.encoder,
        &pretrained.config,
        HeadKind::Hf,
        2,
        0.0,
        7,
        device,
    );
    let head = golden_dir().join(format!("modern/{family}-seqcls-head.safetensors"));
    let mut store = from_hf_names(
        SafetensorsStore::from_file(&head),
        Some(model.head.hf_prefix()),
    );
    let result = model.load_from(&mut store).unwrap();
    assert!(result.errors.is_empty(), "{family}: {:?}", result.errors);
    let applied = result
        .applied
        .iter()
        .filter(|n| n.starts_with("head."))
        .count();
    let expected = if family == "modernbert" { 4 } else { 1 };
    assert_eq!(
        applied, expected,
        "{family}: head tensors applied: {:?}",
        result.applied
    );
    let (ids, types, mask) = batch.to_tensors(device);
    let logits = model.forward(ids, types, mask);
    let [rows, labels] = logits.dims();
    let flat = logits.into_data().try_to_vec::<f32>().unwrap();
    (0..rows)
        .map(|r| flat[r * labels..(r + 1) * labels].to_vec())
        .collect()
}
