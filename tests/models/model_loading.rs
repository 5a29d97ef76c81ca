//! Loading HF folders: task-model names, and one-line errors naming the file and the problem.

use crate::common;

use common::tiny::write_model;
use common::{binary, max_abs_diff};
use pac_wgpu::model::{Pretrained, cls_vectors};
use pac_wgpu::util::device::{DeviceChoice, select};
use pac_wgpu::util::tokenize::{PaddedBatch, TextTokenizer};

fn cls_of(dir: &std::path::Path) -> Vec<f32> {
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let tokenizer = TextTokenizer::from_model_dir(dir, 16).unwrap();
    let enc = tokenizer
        .encode("the cat sat on the mat .", Some("it was good"))
        .unwrap();
    let model = Pretrained::load(dir, 0.0, &device).unwrap();
    pollster::block_on(cls_vectors(
        &model.encoder,
        &PaddedBatch::new(&[&enc], 0),
        &device,
    ))
    .unwrap()
    .remove(0)
}

#[test]
fn vocab_txt_tokenizer_builds_bert_pairs() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), 1, |_| {});
    let tokenizer = TextTokenizer::from_model_dir(dir.path(), 8).unwrap();
    let enc = tokenizer
        .encode("The cat sat on the mat", Some("a dog ran"))
        .unwrap();
    // [CLS] the cat sat [SEP] a dog [SEP]: longest-first truncation to 8 tokens.
    assert_eq!(enc.input_ids, vec![2, 5, 7, 9, 3, 6, 8, 3]);
    assert_eq!(enc.token_type_ids, vec![0, 0, 0, 0, 0, 1, 1, 1]);
    let single = tokenizer.encode("Unknownword", None).unwrap();
    assert_eq!(single.input_ids, vec![2, 1, 3]);
}

#[test]
fn task_model_prefix_loads_the_same_weights() {
    let plain = tempfile::tempdir().unwrap();
    let prefixed = tempfile::tempdir().unwrap();
    write_model(plain.path(), 7, |_| {});
    write_model(prefixed.path(), 7, |tensors| {
        for t in tensors.iter_mut() {
            t.0 = format!("bert.{}", t.0);
        }
        // A task head and a pooler, which the encoder ignores.
        tensors.push(("classifier.weight".into(), vec![2, 32], vec![0.1; 64]));
        tensors.push(("bert.pooler.dense.bias".into(), vec![32], vec![0.0; 32]));
    });
    let a = cls_of(plain.path());
    let b = cls_of(prefixed.path());
    assert_eq!(a.len(), 32);
    assert!(a.iter().any(|x| x.abs() > 1e-3), "CLS vector looks empty");
    assert_eq!(max_abs_diff(&a, &b), 0.0);

    let other = tempfile::tempdir().unwrap();
    write_model(other.path(), 8, |_| {});
    assert!(
        max_abs_diff(&a, &cls_of(other.path())) > 1e-3,
        "weights were not loaded"
    );
}

/// Runs `encode` on a broken folder and returns its one-line stderr.
fn encode_error(dir: &std::path::Path) -> String {
    let out = binary()
        .args([
            "encode", "--device", "cpu", "--text-a", "the cat", "--model",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "encode should fail on {}",
        dir.display()
    );
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    stderr
}

#[test]
fn missing_weights_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), 1, |_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = encode_error(dir.path());
    assert!(
        err.contains(&dir.path().display().to_string()) && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn corrupt_safetensors_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), 1, |_| {});
    let path = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..20].copy_from_slice(b"{not-json!!!");
    std::fs::write(&path, bytes).unwrap();
    let err = encode_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("corrupt header"),
        "{err}"
    );
}

#[test]
fn mis_shaped_and_missing_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), 1, |tensors| {
        let q = tensors
            .iter_mut()
            .find(|t| t.0 == "encoder.layer.1.attention.self.query.weight")
            .unwrap();
        q.1 = vec![32, 16];
        q.2.truncate(32 * 16);
    });
    let err = encode_error(dir.path());
    assert!(
        err.contains("model.safetensors")
            && err.contains("encoder.layer.1.attention.self.query.weight")
            && err.contains("shape"),
        "{err}"
    );

    write_model(dir.path(), 1, |tensors| {
        tensors.retain(|t| !t.0.contains("output.LayerNorm"))
    });
    let err = encode_error(dir.path());
    assert!(
        err.contains("missing") && err.contains("LayerNorm"),
        "{err}"
    );
}

#[test]
fn unknown_architecture_and_bad_config_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), 1, |_| {});
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"bert\"", "\"xlnet\"")).unwrap();
    let err = encode_error(dir.path());
    assert!(
        err.contains("config.json") && err.contains("xlnet") && err.contains("roberta"),
        "{err}"
    );

    std::fs::write(
        &config,
        text.replace("\"num_attention_heads\":4", "\"num_attention_heads\":5"),
    )
    .unwrap();
    let err = encode_error(dir.path());
    assert!(
        err.contains("config.json") && err.contains("divisible"),
        "{err}"
    );
}

#[test]
fn offline_hub_id_fails_fast_with_advice() {
    let cache = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let out = binary()
        .args([
            "encode",
            "--device",
            "cpu",
            "--text-a",
            "x",
            "--model",
            "bert-base-uncased",
        ])
        .env("HF_HOME", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bert-base-uncased") && stderr.contains("HF_HUB_OFFLINE"),
        "{stderr}"
    );
    assert!(
        start.elapsed().as_secs() < 20,
        "offline failure took {:?}",
        start.elapsed()
    );
}
