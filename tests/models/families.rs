//! Parity with Hugging Face transformers on the tiny RoBERTa and GPT-2 checkpoints
//! (tests/golden/families/): identical token ids, final hidden states at the first and last
//! token within 1e-4 on the CPU device (lavapipe: within 1e-4 of the CPU device on short inputs),
//! and right-padded batches equal to HF's and to one by one; plus `encode --json`.

use crate::common;

use std::path::{Path, PathBuf};

use common::{binary, floats, golden_dir, max_abs_diff, read_json, run_ok, test_devices};
use pac_wgpu::model::{Pretrained, token_states};
use pac_wgpu::util::tokenize::{Encoded, PaddedBatch, TextTokenizer};
use serde_json::Value;

/// The golden README's tolerance for float32 hidden states.
const TOLERANCE: f32 = 1e-4;

const FAMILIES: [&str; 2] = ["roberta", "gpt2"];

fn family_dir(family: &str) -> (PathBuf, Value) {
    let root = golden_dir().join("families");
    let json = read_json(&root.join(format!("{family}-forward.json")));
    (root.join(format!("tiny-{family}")), json)
}

fn ints(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every case of the golden file tokenized at its own max_length, and the pad id.
fn encode_cases(dir: &Path, golden: &Value) -> (Vec<Encoded>, u32) {
    let mut pad = 0;
    let encoded = golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let max_length = c["max_length"].as_u64().unwrap() as usize;
            let tokenizer = TextTokenizer::from_model_dir(dir, max_length).unwrap();
            pad = tokenizer.pad_id();
            tokenizer
                .encode(c["text_a"].as_str().unwrap(), c["text_b"].as_str())
                .unwrap()
        })
        .collect();
    (encoded, pad)
}

#[test]
fn token_ids_match_hf() {
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        let (encoded, _) = encode_cases(&dir, &golden);
        let cases = golden["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 4, "{family}: the golden file has four cases");
        for (case, enc) in cases.iter().zip(&encoded) {
            assert_eq!(
                enc.input_ids,
                ints(&case["input_ids"]),
                "{family}: input_ids for {:?} / {:?}",
                case["text_a"],
                case["text_b"]
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn hidden_states_match_hf_one_by_one_and_padded() {
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        let (encoded, pad) = encode_cases(&dir, &golden);
        let golden_batch = common::golden_padded_batch(&golden["padded_batch"]);
        let refs: Vec<&Encoded> = encoded.iter().take(3).collect();
        let ours = PaddedBatch::new(&refs, pad);
        assert!(
            ours.attention_mask.contains(&0.0),
            "{family}: the batch should need padding"
        );
        assert_eq!(ours.seq, golden_batch.seq, "{family}: padded length");

        let devices = test_devices();
        let device = &devices[0].device;
        let model = Pretrained::load(&dir, 0.0, device).unwrap();
        let cases = golden["cases"].as_array().unwrap();
        for (case, enc) in cases.iter().zip(&encoded) {
            let states = pollster::block_on(token_states(
                &model.encoder,
                &PaddedBatch::new(&[enc], pad),
                device,
            ))
            .unwrap();
            for (key, got) in [("first", &states.first[0]), ("last", &states.last[0])] {
                let diff = max_abs_diff(got, &floats(&case[key]));
                println!("{family}: {key} max diff {diff:.2e}");
                assert!(
                    diff <= TOLERANCE,
                    "{family}: {key} differs from HF by {diff} for {:?}",
                    case["text_a"]
                );
            }
        }
        // HF's padded batch through the model: each row's first and last real token.
        let padded = &golden["padded_batch"];
        let states =
            pollster::block_on(token_states(&model.encoder, &golden_batch, device)).unwrap();
        for (key, got) in [("first", &states.first), ("last_real", &states.last)] {
            let want = padded[key].as_array().unwrap();
            for (row, (g, w)) in got.iter().zip(want).enumerate() {
                let diff = max_abs_diff(g, &floats(w));
                assert!(
                    diff <= TOLERANCE,
                    "{family}: padded row {row} {key} differs from HF by {diff}"
                );
            }
        }
        // The vector the heads read, the last layer computing only that position, against HF.
        let (ids, types, mask) = golden_batch.to_tensors(device);
        let summary = model.encoder.summary(ids, types, mask);
        let [rows, width] = summary.dims();
        let summary = summary.into_data().try_to_vec::<f32>().unwrap();
        let key = if family == "gpt2" {
            "last_real"
        } else {
            "first"
        };
        let want = padded[key].as_array().unwrap();
        assert_eq!(rows, want.len(), "{family}: one summary per row");
        for (row, w) in want.iter().enumerate() {
            let diff = max_abs_diff(&summary[row * width..(row + 1) * width], &floats(w));
            println!("{family}: summary of padded row {row} max diff {diff:.2e}");
            assert!(
                diff <= TOLERANCE,
                "{family}: summary of padded row {row} differs from HF by {diff}"
            );
        }
        // Our own padded batch equals the cases one by one: padding leaks nowhere.
        let batched = pollster::block_on(token_states(&model.encoder, &ours, device)).unwrap();
        for (row, enc) in refs.iter().enumerate() {
            let single = pollster::block_on(token_states(
                &model.encoder,
                &PaddedBatch::new(&[enc], pad),
                device,
            ))
            .unwrap();
            for (b, s) in [
                (&batched.first, &single.first),
                (&batched.last, &single.last),
            ] {
                let diff = max_abs_diff(&b[row], &s[0]);
                assert!(
                    diff <= 1e-5,
                    "{family}: padded row {row} differs from one by one by {diff}"
                );
            }
        }
    }
}

/// lavapipe computes what the CPU device does (which matches HF above) on a short padded batch;
/// lavapipe compiles kernels per input shape, slowly, so the 128-token golden inputs stay on the
/// CPU. GPT-2's first position sees only itself, so there it also equals HF's directly.
#[test]
#[cfg_attr(
    not(all(pac_test_lavapipe, pac_test_checkpoints)),
    ignore = "needs lavapipe (apt-get install mesa-vulkan-drivers libvulkan1) and the tiny golden checkpoints (scripts/fetch-golden.sh)"
)]
fn lavapipe_matches_the_cpu_device() {
    let lavapipe = common::lavapipe();
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        let (encoded, pad) = encode_cases(&dir, &golden);
        let short: Vec<Encoded> = encoded
            .iter()
            .zip([16, 12, 9])
            .map(|(e, n)| Encoded {
                input_ids: e.input_ids[..n].to_vec(),
                token_type_ids: e.token_type_ids[..n].to_vec(),
            })
            .collect();
        let batch = PaddedBatch::new(&short.iter().collect::<Vec<_>>(), pad);
        let on = |device: &burn::tensor::Device| {
            let model = Pretrained::load(&dir, 0.0, device).unwrap();
            pollster::block_on(token_states(&model.encoder, &batch, device)).unwrap()
        };
        let cpu = on(&test_devices()[0].device.clone());
        let gpu = on(&lavapipe.device);
        for (a, b) in [(&cpu.first, &gpu.first), (&cpu.last, &gpu.last)] {
            for (row, (x, y)) in a.iter().zip(b).enumerate() {
                let diff = max_abs_diff(x, y);
                println!("{family}: lavapipe row {row} max diff {diff:.2e}");
                assert!(
                    diff <= TOLERANCE,
                    "{family}: lavapipe differs from cpu by {diff}"
                );
            }
        }
        if family == "gpt2" {
            let hf = floats(&golden["cases"][0]["first"]);
            let diff = max_abs_diff(&gpu.first[0], &hf);
            assert!(
                diff <= TOLERANCE,
                "gpt2: lavapipe first differs from HF by {diff}"
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn encode_json_prints_ids_and_first_and_last() {
    for family in FAMILIES {
        let (dir, golden) = family_dir(family);
        let case = &golden["cases"][0];
        let mut cmd = binary();
        cmd.args(["encode", "--json", "--device", "cpu", "--model"])
            .arg(&dir)
            .args(["--text-a", case["text_a"].as_str().unwrap()]);
        if let Some(b) = case["text_b"].as_str() {
            cmd.args(["--text-b", b]);
        }
        let out: Value = serde_json::from_str(run_ok(&mut cmd).trim()).unwrap();
        assert_eq!(
            ints(&out["input_ids"]),
            ints(&case["input_ids"]),
            "{family}"
        );
        assert_eq!(
            out["attention_mask"].as_array().unwrap().len(),
            ints(&case["input_ids"]).len()
        );
        assert!(
            out.get("cls").is_none(),
            "{family}: cls is BERT's alias only"
        );
        for key in ["first", "last"] {
            let diff = max_abs_diff(&floats(&out[key]), &floats(&case[key]));
            assert!(
                diff <= TOLERANCE,
                "{family}: encode {key} differs by {diff}"
            );
        }
    }
}

/// A copy of the tiny `family` folder under `to`, with `edit` applied.
fn tiny_copy(family: &str, to: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let (dir, _) = family_dir(family);
    std::fs::create_dir_all(to).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join(file), to.join(file)).unwrap();
        let mut perms = std::fs::metadata(to.join(file)).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(to.join(file), perms).unwrap();
    }
    edit(to);
    to.to_path_buf()
}

/// `train` on the toy SST-2 with the CPU device, batches of 8.
fn train_cmd(model: &Path, glue: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = binary();
    cmd.args(["train", "--task", "sst2", "--device", "cpu", "--quiet"])
        .args([
            "--train-size",
            "0",
            "--batch-size",
            "8",
            "--eval-batch-size",
            "8",
        ])
        .args(["--max-length", "32", "--lr-encoder", "1e-3"])
        .arg("--model")
        .arg(model)
        .arg("--data-dir")
        .arg(glue)
        .arg("--output-dir")
        .arg(out)
        .args(extra);
    cmd
}

/// The tiny families the training test runs: these two and tests/golden/modern's.
const TRAINED: [&str; 6] = ["roberta", "gpt2", "llama", "qwen2", "qwen3", "modernbert"];

/// PAC (`--head cls`) and vanilla (`--head hf`) train on each tiny family; a run cut after one
/// epoch and resumed ends with the same history and weights as the uncut run.
#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn pac_and_vanilla_train_on_each_family_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = tmp.path().join("glue");
    common::tiny::write_toy_sst2(&glue);
    for family in TRAINED {
        let model = match family {
            "roberta" | "gpt2" => family_dir(family).0,
            _ => golden_dir().join(format!("modern/tiny-{family}")),
        };
        for (method, head) in [("pac", "cls"), ("vanilla", "hf")] {
            let flags = ["--method", method, "--head", head, "--stage1-epochs", "1"];
            let full = tmp.path().join(format!("{family}-{method}-full"));
            run_ok(train_cmd(&model, &glue, &full, &flags).args(["--epochs", "2"]));
            let cut = tmp.path().join(format!("{family}-{method}-cut"));
            run_ok(train_cmd(&model, &glue, &cut, &flags).args(["--epochs", "1"]));
            run_ok(&mut train_cmd(
                &model,
                &glue,
                &cut,
                &["--resume", "--epochs", "2"],
            ));

            let run = read_json(&full.join("run.json"));
            assert_eq!(
                run["head"], head,
                "{family} {method}: run.json names the head"
            );
            let history = common::history_without_timings(&full);
            assert_eq!(history.len(), 2, "{family} {method}");
            assert!(
                history
                    .iter()
                    .all(|r| r["train_loss"].as_f64().unwrap().is_finite()),
                "{family} {method}: {history:?}"
            );
            if method == "pac" {
                assert!(
                    history[0]["kl"].as_f64().is_some(),
                    "{family}: stage 1 has a bound"
                );
            }
            assert_eq!(
                common::history_without_timings(&cut),
                history,
                "{family} {method}: resumed history"
            );
            let weights = |run: &Path| common::last_weights(run);
            assert!(
                weights(&cut) == weights(&full),
                "{family} {method}: resumed weights differ"
            );
            // The last block trained (checkpoint names carry the family's prefix).
            let block = |t: std::collections::BTreeMap<String, Vec<u8>>| {
                t.into_iter()
                    .find(|(n, _)| {
                        [
                            "1.mlp.c_fc.weight",
                            "layer.1.output.dense.weight",
                            "layers.1.mlp.down_proj.weight",
                            "layers.3.mlp.Wo.weight",
                        ]
                        .iter()
                        .any(|end| n.ends_with(end))
                    })
                    .map(|(_, v)| v)
                    .unwrap()
            };
            assert!(
                block(weights(&full))
                    != block(common::tensor_bytes(&model.join("model.safetensors"))),
                "{family} {method}: training left the last block unchanged"
            );
        }
    }
}

/// Runs `train` expecting one `error:` line that contains every `needle`, and no output folder.
fn assert_fails(cmd: &mut std::process::Command, out: &Path, needles: &[&str]) {
    let output = cmd
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "the error does not name {needle:?}: {stderr}"
        );
    }
    assert!(!out.exists(), "{} was written: {stderr}", out.display());
}

#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn bad_family_folders_fail_with_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = tmp.path().join("glue");
    common::tiny::write_toy_sst2(&glue);
    let out = tmp.path().join("out");
    let edit_json = |path: &Path, f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(path, v.to_string()).unwrap();
    };

    let unknown = tiny_copy("roberta", &tmp.path().join("unknown"), |d| {
        edit_json(&d.join("config.json"), &|v| {
            v["model_type"] = "xlnet".into()
        })
    });
    assert_fails(
        &mut train_cmd(&unknown, &glue, &out, &[]),
        &out,
        &["config.json", "model_type \"xlnet\""],
    );

    let no_merges = tiny_copy("gpt2", &tmp.path().join("no-merges"), |d| {
        // An empty list loads in the tokenizers crate (a missing one does not) and splits every
        // word into bytes.
        edit_json(&d.join("tokenizer.json"), &|v| {
            v["model"]["merges"] = Value::Array(vec![])
        })
    });
    assert_fails(
        &mut train_cmd(&no_merges, &glue, &out, &[]),
        &out,
        &["tokenizer.json", "merges"],
    );

    let short = tiny_copy("roberta", &tmp.path().join("short"), |d| {
        edit_json(&d.join("config.json"), &|v| {
            v["max_position_embeddings"] = 20.into()
        })
    });
    assert_fails(
        &mut train_cmd(&short, &glue, &out, &[]),
        &out,
        &[
            "config.json",
            "max_position_embeddings 20",
            "--max-length 32",
        ],
    );
}

/// name → (dtype, shape) of every tensor of a safetensors file.
fn layout(path: &Path) -> std::collections::BTreeMap<String, (String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, (format!("{:?}", view.dtype()), view.shape().to_vec())))
        .collect()
}

/// One epoch on the toy SST-2, exported; the export predicts what the run predicts, and its
/// files have HF's names, shapes and dtypes for each family and head.
#[test]
#[cfg_attr(
    not(pac_test_checkpoints),
    ignore = "needs the tiny golden checkpoints: run scripts/fetch-golden.sh"
)]
fn export_round_trips_and_has_the_hf_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = tmp.path().join("glue");
    common::tiny::write_toy_sst2(&glue);
    for family in FAMILIES {
        let (model, _) = family_dir(family);
        let pretrained = layout(&model.join("model.safetensors"));
        let prefix = if family == "gpt2" {
            "transformer"
        } else {
            family
        };
        for (method, head) in [("pac", "cls"), ("vanilla", "hf")] {
            let run = tmp.path().join(format!("{family}-{head}"));
            let flags = ["--method", method, "--head", head, "--epochs", "1"];
            run_ok(train_cmd(&model, &glue, &run, &flags).args(["--stage1-epochs", "1"]));
            let out = tmp.path().join(format!("{family}-{head}-export"));
            let printed = run_ok(
                binary()
                    .arg("export")
                    .arg("--run")
                    .arg(&run)
                    .arg("--out")
                    .arg(&out),
            );
            let half = tmp.path().join(format!("{family}-{head}-f16"));
            run_ok(
                binary()
                    .arg("export")
                    .arg("--run")
                    .arg(&run)
                    .arg("--out")
                    .arg(&half)
                    .args(["--dtype", "f16"]),
            );

            // Round trip: the same logits (as probabilities to 6 decimals) from run and export.
            let predict = |from: &Path, file: &str| {
                common::predict_dev_probabilities(from, &tmp.path().join(file))
            };
            let from_run = predict(&run, &format!("{family}-{head}-run.tsv"));
            assert_eq!(from_run.lines().count(), 11, "{from_run}");
            assert_eq!(
                predict(&out, &format!("{family}-{head}-export.tsv")),
                from_run,
                "{family} {head}"
            );
            let rounded = predict(&half, &format!("{family}-{head}-f16.tsv"));
            assert_eq!(rounded.lines().count(), 11);

            // config.json
            let config = read_json(&out.join("config.json"));
            let arch = match (family, head) {
                ("roberta", "hf") => "RobertaForSequenceClassification",
                ("roberta", _) => "RobertaModel",
                (_, "hf") => "GPT2ForSequenceClassification",
                _ => "GPT2Model",
            };
            assert_eq!(config["architectures"][0], arch);
            assert_eq!(config["model_type"], family);
            assert_eq!(config["num_labels"], 2);
            assert_eq!(config["id2label"]["1"], "positive");
            assert_eq!(config["label2id"]["negative"], 0);
            assert_eq!(config["problem_type"], "single_label_classification");
            assert!(out.join("tokenizer.json").is_file());

            // Tensors: the encoder as HF names it, in HF's [out, in] layout.
            let model_file = layout(&out.join("model.safetensors"));
            let mut want = std::collections::BTreeMap::new();
            for (name, (_, shape)) in &pretrained {
                let name = if head == "hf" {
                    format!("{prefix}.{name}")
                } else {
                    name.clone()
                };
                want.insert(name, ("F32".to_string(), shape.clone()));
            }
            let f32 = |shape: &[usize]| ("F32".to_string(), shape.to_vec());
            match (family, head) {
                ("roberta", "hf") => {
                    want.insert("classifier.dense.weight".into(), f32(&[32, 32]));
                    want.insert("classifier.dense.bias".into(), f32(&[32]));
                    want.insert("classifier.out_proj.weight".into(), f32(&[2, 32]));
                    want.insert("classifier.out_proj.bias".into(), f32(&[2]));
                }
                (_, "hf") => {
                    want.insert("score.weight".into(), f32(&[2, 32]));
                }
                _ => {
                    let head_file = layout(&out.join("head.safetensors"));
                    assert_eq!(head_file["out.weight"], f32(&[2, 32]));
                    assert_eq!(head_file["out.bias"], f32(&[2]));
                    let pooling = read_json(&out.join("head.json"))["pooling"].clone();
                    assert_eq!(
                        pooling,
                        if family == "gpt2" {
                            "last_real"
                        } else {
                            "first"
                        }
                    );
                    assert!(
                        printed.contains("AutoModel") && printed.contains("out.weight"),
                        "{printed}"
                    );
                }
            }
            assert_eq!(model_file, want, "{family} {head}: model.safetensors");
            let halves = layout(&half.join("model.safetensors"));
            assert!(
                halves.values().all(|(dtype, _)| dtype == "F16"),
                "{halves:?}"
            );

            // PAC: p of every trainable tensor, shaped like the tensor it belongs to.
            if method == "pac" {
                let noise = layout(&out.join("noise.safetensors"));
                let mut tensors = model_file.clone();
                tensors.extend(layout(&out.join("head.safetensors")));
                assert!(noise.contains_key("p.out.weight"), "{noise:?}");
                for (name, (_, shape)) in &noise {
                    let tensor = name.strip_prefix("p.").unwrap();
                    let base = tensor.strip_prefix(&format!("{prefix}.")).unwrap_or(tensor);
                    let owner = tensors
                        .get(base)
                        .unwrap_or_else(|| panic!("{name}: no tensor"));
                    assert_eq!(&owner.1, shape, "{name}");
                }
            } else {
                assert!(!out.join("noise.safetensors").exists());
            }
        }
    }
}
