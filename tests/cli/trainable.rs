//! `--trainable full|bitfit|lora` apart from `--method`: the old `--method bitfit|lora` runs
//! unchanged (against run folders made before the flag existed, tests/golden/legacy-runs/), and
//! PAC over LoRA adapters and over BitFit's biases: only that set trains and carries noise, the
//! bound's terms are those of that set, and the run resumes exactly.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{binary, history_without_timings, read_json, run_ok};
use serde_json::Value;

use super::behaviours::{Toy, initial_encoder, tensors, toy};

/// What the runs before `--trainable` were given (tests/golden/README.md, "legacy-runs").
fn legacy_args(set: &str) -> Vec<&'static str> {
    let mut args = vec!["--batch-size", "10", "--lr-encoder", "1e-2"];
    if set == "lora" {
        args.extend(["--lora-rank", "2", "--lora-alpha", "6"]);
    }
    args
}

fn legacy_dir(set: &str) -> PathBuf {
    common::golden_dir().join("legacy-runs").join(set)
}

/// Tensors of the golden run's `tensors.json` at JSON pointer `at`: name → (shape, values), the
/// values as their f32 bit patterns.
fn legacy_tensors(set: &str, at: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let doc = read_json(&legacy_dir(set).join("tensors.json"));
    let entries = doc.pointer(at).and_then(Value::as_object).expect(at);
    let numbers = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    entries
        .iter()
        .map(|(name, t)| {
            let shape = numbers(&t["shape"])
                .into_iter()
                .map(|d| d as usize)
                .collect();
            let values = numbers(&t["bits"])
                .into_iter()
                .map(|b| f32::from_bits(b as u32))
                .collect();
            (name.clone(), (shape, values))
        })
        .collect()
}

/// Writes `tensors` as a safetensors file with metadata `at`/metadata of the golden run's
/// tensors.json.
fn write_legacy_file(
    path: &Path,
    set: &str,
    at: &str,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) {
    let doc = read_json(&legacy_dir(set).join("tensors.json"));
    let metadata: std::collections::HashMap<String, String> =
        serde_json::from_value(doc.pointer(&format!("{at}/metadata")).unwrap().clone()).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), shape.clone(), data)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data);
        (name.clone(), view.unwrap())
    });
    std::fs::write(path, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
}

/// The golden one-epoch run folder of `set` in `run`: its JSON and text files as written, its
/// checkpoint's model (the tiny model `model` with the tensors the epoch changed) and optimiser
/// state rebuilt from tensors.json.
fn legacy_run_folder(set: &str, model: &Path, run: &Path) {
    copy_dir(&legacy_dir(set).join("epoch1"), run);
    let last = run.join("checkpoints/last");
    let mut weights: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        tensors_with_shapes(&model.join("model.safetensors"))
            .into_iter()
            .map(|(name, t)| (format!("bert.{name}"), t))
            .collect();
    weights.extend(legacy_tensors(set, "/epoch1_model/changed"));
    write_legacy_file(
        &last.join("model.safetensors"),
        set,
        "/epoch1_model",
        &weights,
    );
    let optimizer = legacy_tensors(set, "/epoch1_optimizer/tensors");
    write_legacy_file(
        &last.join("optimizer.safetensors"),
        set,
        "/epoch1_optimizer",
        &optimizer,
    );
}

/// Every tensor of a safetensors file with its shape, by name, as f32.
fn tensors_with_shapes(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view.data().chunks_exact(4);
            let values = values.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            (name, (view.shape().to_vec(), values.collect()))
        })
        .collect()
}

/// `a` and `b` equal, numbers within `tol` relative (another CPU's matrix products may round
/// differently from the one that made the golden run).
fn assert_json_close(what: &str, a: &Value, b: &Value, tol: f64) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= tol * y.abs().max(1e-3),
                "{what}: {x} vs {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(x), keys(y), "{what}: fields");
            for (k, v) in x {
                assert_json_close(&format!("{what}.{k}"), v, &y[k], tol);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{what}: lengths");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_json_close(&format!("{what}[{i}]"), v, w, tol);
            }
        }
        _ => assert_eq!(a, b, "{what}"),
    }
}

/// The weights of a run's last checkpoint against the golden run of `set`: the tensors it
/// trained within 1e-6, every other one equal to the initial model's.
fn assert_matches_legacy(run: &Path, model: &Path, set: &str) {
    let weights = tensors(&run.join("checkpoints/last/model.safetensors"));
    let trained: BTreeMap<String, Vec<f32>> = legacy_tensors(set, "/epoch2_trained")
        .into_iter()
        .map(|(name, (_, values))| (name, values))
        .collect();
    let initial = initial_encoder(model);
    for (name, values) in &weights {
        let expected = trained.get(name).or(initial.get(name));
        let expected = expected.unwrap_or_else(|| panic!("{set}: {name} is new"));
        let worst = values
            .iter()
            .zip(expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "{set}: {name} differs by {worst}");
    }
    assert!(trained.keys().all(|name| weights.contains_key(name)));
    let history = history_without_timings(run);
    let golden: Vec<Value> = std::fs::read_to_string(legacy_dir(set).join("epoch2/history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let golden: Vec<Value> = golden
        .into_iter()
        .map(|mut r| {
            let timing = |k: &String| k.ends_with("_seconds") || k.ends_with("_per_s");
            r.as_object_mut()
                .unwrap()
                .retain(|k, _| !timing(k) && !k.ends_with("_bytes"));
            r
        })
        .collect();
    assert_json_close(set, &Value::from(history), &Value::from(golden), 1e-6);
}

/// `--method bitfit` and `--method lora` give, bit for bit, the runs of `--method vanilla
/// --trainable bitfit|lora`, and the runs their names gave before `--trainable` existed.
#[test]
fn method_aliases_match_runs_made_before_trainable_existed() {
    let toy = toy();
    for set in ["bitfit", "lora"] {
        let mut alias = legacy_args(set);
        alias.extend(["--method", set, "--epochs", "2"]);
        let alias = toy.train(&format!("alias-{set}"), &alias);
        let mut explicit = legacy_args(set);
        explicit.extend(["--method", "vanilla", "--trainable", set, "--epochs", "2"]);
        let explicit = toy.train(&format!("explicit-{set}"), &explicit);
        assert_eq!(
            history_without_timings(&alias),
            history_without_timings(&explicit),
            "{set}"
        );
        assert!(
            common::last_weights(&alias) == common::last_weights(&explicit),
            "--method {set} and --method vanilla --trainable {set} trained other weights"
        );
        let run = read_json(&alias.join("run.json"));
        assert_eq!(
            (run["method"].as_str(), run["trainable"].as_str()),
            (Some("vanilla"), Some(set))
        );
        assert_eq!(read_json(&alias.join("summary.json"))["trainable"], set);
        assert_matches_legacy(&alias, &toy.model, set);
    }
}

/// A run folder written before `--trainable` existed (run.json's method `bitfit`/`lora`, one
/// epoch) resumes to the golden two-epoch run, and a conflicting flag is one line.
#[test]
fn run_folders_from_before_trainable_resume() {
    let toy = toy();
    for set in ["bitfit", "lora"] {
        let run = toy.out(&format!("old-{set}"));
        legacy_run_folder(set, &toy.model, &run);
        let mut config = read_json(&run.join("run.json"));
        assert_eq!(config["method"], set, "the fixture is an old run folder");
        config["model"] = toy.model.display().to_string().into();
        config["data_dir"] = toy.tmp.path().display().to_string().into();
        config["output_dir"] = run.display().to_string().into();
        std::fs::write(run.join("run.json"), config.to_string()).unwrap();
        let resume = || {
            let mut cmd = binary();
            cmd.args([
                "train", "--resume", "--device", "cpu", "--quiet", "--epochs", "2",
            ])
            .arg("--output-dir")
            .arg(&run);
            cmd
        };
        let output = resume().args(["--trainable", "full"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{set}: resumed as another set");
        assert!(stderr.contains(&format!("method {set}, not")), "{stderr}");
        run_ok(&mut resume());
        assert_matches_legacy(&run, &toy.model, set);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}

/// PAC on the toy SST-2 over `set`, 1 step per epoch, stage 1 for `stage1` epochs.
fn pac_run(toy: &Toy, name: &str, set: &str, epochs: &str, stage1: &str) -> std::process::Command {
    let mut args = vec![
        "--lr-encoder",
        "1e-2",
        "--lora-rank",
        "2",
        "--batch-size",
        "20",
    ];
    args.extend(["--method", "pac", "--trainable", set, "--prior-models", "2"]);
    args.extend(["--epochs", epochs, "--stage1-epochs", stage1]);
    toy.command(name, "sst2", &args)
}

/// The trainable tensors of a `set` run of the tiny BERT, by checkpoint name.
fn expected_trainable(model: &Path, set: &str) -> Vec<String> {
    let mut names: Vec<String> = initial_encoder(model)
        .into_keys()
        .filter(|n| !n.starts_with("bert.embeddings."))
        .flat_map(|n| match set {
            "bitfit" if n.ends_with(".bias") => vec![n],
            "lora" if n.ends_with("query.weight") || n.ends_with("value.weight") => {
                vec![format!("{n}.lora.a"), format!("{n}.lora.b")]
            }
            _ => vec![],
        })
        .collect();
    names.extend(["out.weight".to_string(), "out.bias".to_string()]);
    names.sort();
    names
}

/// PAC over LoRA adapters and over BitFit's biases: every frozen tensor keeps every bit, θ0, p
/// and their Adam moments exist for exactly the trainable set, b has one entry per tensor of
/// it, and the noise export names the same tensors.
#[test]
fn pac_over_lora_and_bitfit_trains_and_perturbs_only_that_set() {
    let toy = toy();
    let initial = initial_encoder(&toy.model);
    for set in ["lora", "bitfit"] {
        let name = format!("pac-{set}");
        run_ok(&mut pac_run(&toy, &name, set, "3", "2"));
        let run = toy.out(&name);
        let weights = tensors(&run.join("checkpoints/last/model.safetensors"));
        let expected = expected_trainable(&toy.model, set);
        for (name, start) in &initial {
            let trains = expected.contains(name);
            if !trains {
                assert!(&weights[name] == start, "{set}: frozen {name} changed");
            } else if !name.ends_with("key.bias") {
                assert!(&weights[name] != start, "{set}: {name} did not train");
            }
        }
        let pac = tensors(&run.join("checkpoints/last/pac.safetensors"));
        for part in ["theta0", "p", "m_p", "v_p"] {
            let mut names: Vec<String> = pac
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("{part}.")))
                .map(String::from)
                .collect();
            names.sort();
            assert_eq!(names, expected, "{set}: {part}");
        }
        let b = pac_metadata(&run, "b");
        assert_eq!(b.len(), expected.len(), "{set}: one b per trainable tensor");
        let config = read_json(&run.join("run.json"));
        assert_eq!(config["trainable"], set);
        let scalars: usize = expected.iter().map(|n| weights[n].len()).sum();
        assert_eq!(config["trainable_parameters"], scalars, "{set}");
        let history = common::history(&run);
        assert_eq!(history[1]["stage"], 1);
        assert_eq!(history[2]["stage"], 2);
    }
}

/// A PAC-over-LoRA run stopped after epoch 1 (stage 1) and resumed ends exactly where the
/// uninterrupted one does.
#[test]
fn pac_over_lora_resumes_exactly() {
    let toy = toy();
    run_ok(&mut pac_run(&toy, "full", "lora", "3", "2"));
    run_ok(&mut pac_run(&toy, "resumed", "lora", "1", "1"));
    run_ok(pac_run(&toy, "resumed", "lora", "3", "2").arg("--resume"));
    let (full, resumed) = (toy.out("full"), toy.out("resumed"));
    assert_eq!(
        history_without_timings(&resumed),
        history_without_timings(&full)
    );
    assert!(
        common::last_weights(&resumed) == common::last_weights(&full),
        "resumed PAC-over-LoRA weights differ from the uninterrupted run's"
    );
}

/// f64 values of the JSON list of f64 bit patterns `key` in pac.safetensors' metadata.
fn pac_metadata(run: &Path, key: &str) -> Vec<f64> {
    let bytes = std::fs::read(run.join("checkpoints/last/pac.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let text = &meta.metadata().as_ref().unwrap()[key];
    let bits: Vec<u64> = serde_json::from_str(text).unwrap();
    bits.into_iter().map(f64::from_bits).collect()
}

/// The bound's terms over LoRA adapters, from the state a run left after one stage-1 step,
/// by hand: KL(N(θ, e^{2p}) ‖ N(θ0, e^{2b_j})) summed over the adapters' and head's scalars,
/// C = 10 + 3L with L their tensor count, and loss2 = 3K̂²γ/2 + (KL + C)/(nγ); the next step
/// (a resumed run's first) records the same.
#[test]
fn pac_over_lora_bound_matches_a_host_computation() {
    let toy = toy();
    run_ok(&mut pac_run(&toy, "run", "lora", "1", "1"));
    let run = toy.out("run");
    let weights = tensors(&run.join("checkpoints/last/model.safetensors"));
    let pac = tensors(&run.join("checkpoints/last/pac.safetensors"));
    let b = pac_metadata(&run, "b");
    let names = expected_trainable(&toy.model, "lora");
    let mut kl = 0.0f64;
    let mut moved = 0.0f64;
    // b follows the trainable tensors' order in the model: layer by layer, then the head.
    let order = trainable_order(&names);
    for (j, name) in order.iter().enumerate() {
        let theta = burn_layout(name, &weights[name]);
        let (theta0, p) = (&pac[&format!("theta0.{name}")], &pac[&format!("p.{name}")]);
        for ((&t, &t0), &p) in theta.iter().zip(theta0).zip(p) {
            let (t, t0, p) = (t as f64, t0 as f64, p as f64);
            let var_ratio = (2.0 * (p - b[j])).exp();
            kl += 0.5 * (var_ratio + (t - t0).powi(2) * (-2.0 * b[j]).exp() - 1.0) + (b[j] - p);
            moved += (t - t0).abs();
        }
    }
    assert!(moved > 0.0, "the adapters did not move in stage 1");
    run_ok(&mut pac_run(&toy, "run", "lora", "2", "2").arg("--resume"));
    let record = &common::history(&run)[1];
    let (n, c) = (20.0, 10.0 + 3.0 * order.len() as f64);
    let (k, gamma) = (
        record["k_hat"].as_f64().unwrap(),
        record["gamma"].as_f64().unwrap(),
    );
    assert_eq!(gamma, 10.0, "SST-2's γ");
    let loss2 = 3.0 * k * k * gamma / 2.0 + (kl + c) / (n * gamma);
    let close = |what: &str, got: f64, want: f64| {
        assert!(
            (got - want).abs() <= 1e-4 * want.abs(),
            "{what}: recorded {got}, by hand {want}"
        );
    };
    close("KL", record["kl"].as_f64().unwrap(), kl);
    close("loss2", record["loss2"].as_f64().unwrap(), loss2);
}

/// The checkpoint names of the trainable tensors in the model's order (encoder layers in
/// order, query before value, A before B, then the head's weight and bias).
fn trainable_order(names: &[String]) -> Vec<String> {
    let key = |n: &String| {
        let layer = n
            .split('.')
            .skip_while(|p| *p != "layer")
            .nth(1)
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let within = ["query", "value", "out.weight", "out.bias"]
            .iter()
            .position(|p| n.contains(p))
            .unwrap_or(9);
        (layer, within, n.ends_with(".b"))
    };
    let mut order = names.to_vec();
    order.sort_by_key(key);
    order
}

/// A checkpoint tensor in the layout Burn keeps (and θ0 and p follow): the adapters as
/// stored, the head's weight transposed back to `[in, out]`.
fn burn_layout(name: &str, values: &[f32]) -> Vec<f32> {
    if name != "out.weight" {
        return values.to_vec();
    }
    let hidden = common::tiny::HIDDEN;
    let labels = values.len() / hidden;
    let mut t = vec![0.0; values.len()];
    for l in 0..labels {
        for h in 0..hidden {
            t[h * labels + l] = values[l * hidden + h];
        }
    }
    t
}

/// A PAC-over-LoRA run of the tiny BERT with the HF head, exported as a PEFT adapter folder:
/// adapter_config.json names the rank, α, targets and the head's modules (BERT's pooler with
/// its classifier); the noise covers exactly the adapters and the classifier under PEFT's names; and peft + transformers reload it onto
/// the base model with `predict --probabilities`' probabilities (≤ 1e-5,
/// scripts/check-export-transformers.py).
#[test]
#[cfg_attr(
    not(pac_test_peft),
    ignore = "needs python3 with torch, transformers and peft (pip install torch transformers peft)"
)]
fn peft_export_reloads_in_peft_with_the_same_probabilities() {
    let toy = toy();
    let mut train = pac_run(&toy, "run", "lora", "2", "1");
    run_ok(train.args(["--head", "hf", "--lora-alpha", "6"]));
    let (run, export) = (toy.out("run"), toy.out("export"));
    let printed = run_ok(
        binary()
            .args(["export", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&export),
    );
    assert!(printed.contains("PeftModel.from_pretrained"), "{printed}");
    let adapter = read_json(&export.join("adapter_config.json"));
    assert_eq!(adapter["peft_type"], "LORA");
    assert_eq!(adapter["task_type"], "SEQ_CLS");
    assert_eq!(
        (adapter["r"].as_u64(), adapter["lora_alpha"].as_f64()),
        (Some(2), Some(6.0))
    );
    assert_eq!(
        adapter["target_modules"],
        serde_json::json!(["query", "value"])
    );
    assert_eq!(
        adapter["modules_to_save"],
        serde_json::json!(["pooler", "classifier"])
    );
    let weights = tensors(&export.join("adapter_model.safetensors"));
    let noise = tensors(&export.join("noise.safetensors"));
    let mut adapted: Vec<&String> = weights.keys().collect();
    adapted.sort();
    let mut noisy: Vec<String> = noise.keys().map(|k| k.replacen("p.", "", 1)).collect();
    noisy.sort();
    assert_eq!(
        adapted.len(),
        2 * 2 * common::tiny::LAYERS + 4,
        "{adapted:?}"
    );
    // The pooler is saved (the run drew it) but frozen: no noise.
    let trained: Vec<&&String> = adapted.iter().filter(|n| !n.contains(".pooler.")).collect();
    assert_eq!(trained.len(), noisy.len(), "{noisy:?}");
    assert!(
        trained.iter().zip(&noisy).all(|(a, n)| **a == n),
        "{noisy:?}"
    );
    let a = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight";
    assert_eq!(weights[a].len(), 2 * common::tiny::HIDDEN);

    let probabilities = toy.out("probabilities.tsv");
    common::predict_dev_probabilities(&run, &probabilities);
    let output = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check-export-transformers.py"
        ))
        .arg(&export)
        .arg(&probabilities)
        .arg(toy.tmp.path().join("SST-2/dev.tsv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("peft"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `--checkpoint-activations` (activations recomputed in the backward pass) trains the weights
/// of a run that keeps them, bit for bit, with PAC over LoRA and over every weight.
#[test]
fn checkpointed_activations_train_the_same_weights() {
    let toy = toy();
    for set in ["lora", "full"] {
        let kept = format!("kept-{set}");
        run_ok(&mut pac_run(&toy, &kept, set, "2", "1"));
        let recomputed = format!("recomputed-{set}");
        let mut cmd = pac_run(&toy, &recomputed, set, "2", "1");
        run_ok(cmd.arg("--checkpoint-activations"));
        let (kept, recomputed) = (toy.out(&kept), toy.out(&recomputed));
        assert_eq!(
            read_json(&recomputed.join("run.json"))["checkpoint_activations"],
            true
        );
        assert_eq!(
            history_without_timings(&kept),
            history_without_timings(&recomputed),
            "{set}"
        );
        assert!(
            common::last_weights(&kept) == common::last_weights(&recomputed),
            "{set}: checkpointed activations trained other weights"
        );
    }
}
