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
use common::{floats, golden_dir, max_abs_diff, read_json, test_devices};
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
        let batch = common::golden_padded_batch(padded);
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
        Some(model.head.hf_renames()),
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

/// A writable copy of the tiny `family` folder under `to`, with `edit` applied to config.json.
fn tiny_copy(family: &str, to: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let (dir, _) = family_dir(family);
    std::fs::create_dir_all(to).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::write(to.join(file), std::fs::read(dir.join(file)).unwrap()).unwrap();
    }
    let mut config = read_json(&dir.join("config.json"));
    edit(&mut config);
    std::fs::write(to.join("config.json"), config.to_string()).unwrap();
    to.to_path_buf()
}

/// The golden padded batch's hidden states through the model in `dir`.
fn padded_states(dir: &Path, family: &str) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let device = &test_devices()[0].device;
    let (_, golden) = family_dir(family);
    let model = Pretrained::load(dir, 0.0, device).unwrap();
    let batch = common::golden_padded_batch(&golden["padded_batch"]);
    let states = pollster::block_on(token_states(&model.encoder, &batch, device)).unwrap();
    (states.first, states.last)
}

/// `tensors` written as safetensors of `dtype` (values rounded to nearest).
fn write_as(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: safetensors::Dtype) {
    use burn::tensor::{bf16, f16};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| match dtype {
            safetensors::Dtype::BF16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
            safetensors::Dtype::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<_> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), b).unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn read_f32(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = bytemuck::pod_collect_to_vec::<u8, f32>(view.data());
            (name, view.shape().to_vec(), values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn sharded_and_16_bit_checkpoints_load_as_the_same_model() {
    use burn::tensor::{bf16, f16};
    let tmp = tempfile::tempdir().unwrap();
    let family = "qwen2";
    let (dir, _) = family_dir(family);
    let original = padded_states(&dir, family);
    let tensors = read_f32(&dir.join("model.safetensors"));

    // Three shards and an index, as `save_pretrained(max_shard_size=…)` writes them.
    let sharded = tiny_copy(family, &tmp.path().join("sharded"), |_| {});
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in tensors.chunks(tensors.len().div_ceil(3)).enumerate() {
        let file = format!("model-{:05}-of-00003.safetensors", i + 1);
        write_as(&sharded.join(&file), part, safetensors::Dtype::F32);
        for (name, _, _) in part {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    assert_eq!(padded_states(&sharded, family), original, "sharded");

    // bf16 and f16 copies equal f32 copies of the same rounded values, bit for bit.
    let round: [(safetensors::Dtype, fn(f32) -> f32); 2] = [
        (safetensors::Dtype::BF16, |v| bf16::from_f32(v).to_f32()),
        (safetensors::Dtype::F16, |v| f16::from_f32(v).to_f32()),
    ];
    for (dtype, round) in round {
        let low = tiny_copy(family, &tmp.path().join(format!("{dtype:?}")), |_| {});
        write_as(&low.join("model.safetensors"), &tensors, dtype);
        let rounded: Vec<_> = tensors
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), v.iter().map(|x| round(*x)).collect()))
            .collect();
        let wide = tiny_copy(family, &tmp.path().join(format!("{dtype:?}-f32")), |_| {});
        write_as(
            &wide.join("model.safetensors"),
            &rounded,
            safetensors::Dtype::F32,
        );
        let states = padded_states(&low, family);
        assert_eq!(states, padded_states(&wide, family), "{dtype:?}");
        assert_ne!(states, original, "{dtype:?}: rounding changes something");
    }

    // A shard the index names but the folder lacks.
    std::fs::remove_file(sharded.join("model-00002-of-00003.safetensors")).unwrap();
    let device = &test_devices()[0].device;
    let error = Pretrained::load(&sharded, 0.0, device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("model.safetensors.index.json")
            && error.contains("model-00002-of-00003.safetensors is missing"),
        "{error}"
    );
}

/// transformers 5 writes `rope_parameters` (and `layer_types`) where the hub's configs have
/// `rope_theta`, `rope_scaling` and ModernBERT's own keys: both layouts give the same model.
#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn transformers_5_config_layout_gives_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = tiny_copy("llama", &tmp.path().join("llama"), |c| {
        let mut rope = c["rope_scaling"].clone();
        rope["rope_theta"] = c["rope_theta"].clone();
        c["rope_parameters"] = rope;
        let map = c.as_object_mut().unwrap();
        map.remove("rope_scaling");
        map.remove("rope_theta");
    });
    let modernbert = tiny_copy("modernbert", &tmp.path().join("modernbert"), |c| {
        let theta = |key: &str| serde_json::json!({"rope_type": "default", "rope_theta": c[key]});
        c["rope_parameters"] = serde_json::json!({
            "full_attention": theta("global_rope_theta"),
            "sliding_attention": theta("local_rope_theta"),
        });
        let every = c["global_attn_every_n_layers"].as_u64().unwrap();
        let layers = c["num_hidden_layers"].as_u64().unwrap();
        c["layer_types"] = (0..layers)
            .map(|i| match i % every {
                0 => "full_attention",
                _ => "sliding_attention",
            })
            .collect();
        let map = c.as_object_mut().unwrap();
        for key in [
            "global_rope_theta",
            "local_rope_theta",
            "global_attn_every_n_layers",
        ] {
            map.remove(key);
        }
    });
    for (family, copy) in [("llama", llama), ("modernbert", modernbert)] {
        let (dir, _) = family_dir(family);
        assert_eq!(
            padded_states(&copy, family),
            padded_states(&dir, family),
            "{family}"
        );
    }
}

/// Config values that change the maths in ways this code does not implement are refused,
/// naming the file and the key.
#[test]
fn configs_this_code_cannot_follow_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, fn(&mut Value), &str); 6] = [
        (
            "llama",
            |c| c["rope_scaling"]["rope_type"] = "yarn".into(),
            "rope type \"yarn\"",
        ),
        (
            "llama",
            |c| c["num_key_value_heads"] = 3.into(),
            "num_key_value_heads 3 does not divide",
        ),
        (
            "llama",
            |c| c["hidden_act"] = "gelu".into(),
            "hidden_act \"gelu\"",
        ),
        (
            "qwen3",
            |c| c["partial_rotary_factor"] = 0.5.into(),
            "partial_rotary_factor",
        ),
        (
            "modernbert",
            |c| c["classifier_pooling"] = "max".into(),
            "classifier_pooling \"max\"",
        ),
        (
            "qwen2",
            |c| c["layer_types"] = serde_json::json!(["full_attention"]),
            "layer_types",
        ),
    ];
    for (i, (family, edit, needle)) in cases.into_iter().enumerate() {
        let dir = tiny_copy(family, &tmp.path().join(i.to_string()), edit);
        let error = ModelConfig::from_file(&dir.join("config.json"))
            .err()
            .unwrap_or_else(|| panic!("{family}: accepted, expected {needle}"))
            .to_string();
        assert!(
            error.contains("config.json") && error.contains(needle),
            "{error}"
        );
    }
}

/// LoRA adapts each family's own layers: the query and value projections by default
/// (recorded in run.json), and a layer name the model lacks is refused with the names it has.
/// BitFit trains the bias terms a family has, and is refused where it has none.
#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn lora_targets_use_each_family_s_layer_names() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = tmp.path().join("glue");
    common::tiny::write_toy_sst2(&glue);
    let train = |family: &str, out: &Path, extra: &[&str]| {
        let mut cmd = common::binary();
        cmd.args(["train", "--task", "sst2", "--device", "cpu", "--quiet"])
            .args(["--epochs", "1", "--train-size", "0"])
            .args(["--batch-size", "8", "--max-length", "32", "--model"])
            .arg(family_dir(family).0)
            .arg("--data-dir")
            .arg(&glue)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir());
        cmd
    };
    for (family, targets) in [("llama", "q_proj,v_proj"), ("modernbert", "Wqkv")] {
        let out = tmp.path().join(family);
        common::run_ok(&mut train(family, &out, &["--method", "lora"]));
        let run = read_json(&out.join("run.json"));
        assert_eq!(run["lora_targets"], targets, "{family}");
        let adapters = common::last_weights(&out)
            .into_keys()
            .filter(|name| name.contains("lora"))
            .count();
        assert!(
            adapters > 0,
            "{family}: no adapter tensors in the checkpoint"
        );
    }
    let out = tmp.path().join("bad");
    let lora = ["--method", "lora", "--lora-targets", "query"];
    let output = train("qwen2", &out, &lora).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("\"query\"") && stderr.contains("q_proj") && stderr.contains("down_proj"),
        "{stderr}"
    );
    // BitFit needs bias terms: Llama has none (refused), Qwen2's q/k/v projections have them.
    let bitfit = ["--method", "bitfit"];
    let output = train("llama", &out, &bitfit).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("no bias terms"),
        "{stderr}"
    );
    assert!(!out.exists(), "a refused run wrote {}", out.display());
    common::run_ok(&mut train("qwen2", &out, &bitfit));
    let biases = 2 * (32 + 16 + 16);
    let head = 2 * 32 + 2;
    let run = read_json(&out.join("run.json"));
    assert_eq!(run["trainable_parameters"], biases + head);
}

/// lavapipe computes what the CPU device does (which matches HF above) on a short padded batch,
/// the logits of the `hf` head included (lavapipe compiles kernels per shape, slowly, so the
/// 128-token inputs stay on the CPU).
#[test]
#[cfg_attr(
    not(all(pac_test_lavapipe, pac_test_checkpoints)),
    ignore = "needs lavapipe (apt-get install mesa-vulkan-drivers libvulkan1) and the tiny golden checkpoints (scripts/fetch-golden.sh)"
)]
fn lavapipe_matches_the_cpu_device() {
    let lavapipe = common::lavapipe();
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        let short: Vec<Encoded> = golden["cases"]
            .as_array()
            .unwrap()
            .iter()
            .zip([16, 12, 9])
            .map(|(case, n)| {
                let e = encode(&dir, case);
                Encoded {
                    input_ids: e.input_ids[..n].to_vec(),
                    token_type_ids: e.token_type_ids[..n].to_vec(),
                }
            })
            .collect();
        let pad = tokenizer(&dir, 128).pad_id();
        let batch = PaddedBatch::new(&short.iter().collect::<Vec<_>>(), pad);
        let on = |device: &Device| {
            let model = Pretrained::load(&dir, 0.0, device).unwrap();
            let states = pollster::block_on(token_states(&model.encoder, &batch, device)).unwrap();
            let logits = seqcls_logits(&dir, family, &batch, device);
            [states.first, states.last, logits]
        };
        let cpu = on(&test_devices()[0].device.clone());
        let gpu = on(&lavapipe.device);
        for (what, (a, b)) in ["first", "last", "logits"].iter().zip(cpu.iter().zip(&gpu)) {
            for (row, (x, y)) in a.iter().zip(b).enumerate() {
                let diff = max_abs_diff(x, y);
                println!("{family}: lavapipe {what} row {row} max diff {diff:.2e}");
                assert!(
                    diff <= TOLERANCE,
                    "{family}: lavapipe {what} differs by {diff}"
                );
            }
        }
    }
}

/// What the hub's tiny checkpoints do not use, against transformers
/// (tests/golden/modern/variants.json, from scripts/golden-variants.py): sliding windows
/// (tiny-llama as Mistral with a window of 8 on every layer, tiny-qwen2 with a window from
/// layer 1 on) and `linear` and `dynamic` rope scaling.
#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn config_variants_match_hf() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = read_json(&golden_dir().join("modern/variants.json"));
    let device = &test_devices()[0].device;
    for (name, variant) in golden["variants"].as_object().unwrap() {
        let base = variant["base"]
            .as_str()
            .unwrap()
            .trim_start_matches("tiny-");
        let dir = tiny_copy(base, &tmp.path().join(name), |c| {
            for (key, value) in variant["edits"].as_object().unwrap() {
                match value {
                    Value::Null => _ = c.as_object_mut().unwrap().remove(key),
                    v => c[key] = v.clone(),
                }
            }
        });
        let enc = tokenizer(&dir, 128)
            .encode(golden["text"].as_str().unwrap(), None)
            .unwrap();
        let ids: Vec<i64> = enc.input_ids.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(ids, ints(&variant["input_ids"]), "{name}");
        assert!(
            ids.len() > 32,
            "{name}: the input must cross the window and 32 positions"
        );
        let model = Pretrained::load(&dir, 0.0, device).unwrap();
        let batch = PaddedBatch::new(&[&enc], 0);
        let states = pollster::block_on(token_states(&model.encoder, &batch, device)).unwrap();
        for (key, got) in [("first", &states.first[0]), ("last", &states.last[0])] {
            let diff = max_abs_diff(got, &floats(&variant[key]));
            println!("{name}: {key} max diff {diff:.2e}");
            assert!(diff <= TOLERANCE, "{name}: {key} differs from HF by {diff}");
        }
    }
}
