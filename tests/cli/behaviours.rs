//! Training behaviours pinned through the binary: a tiny random BERT (tests/common/tiny.rs) on a
//! toy SST-2 (20 train, 10 dev) on the CPU device, each run read back from its folder
//! (history.jsonl, summary.json, checkpoints/last/model.safetensors).
//!
//! Tensors are compared by their names in the checkpoint (HF layout, e.g.
//! `bert.encoder.layer.0.attention.self.query.weight`, `out.weight`).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{binary, history_without_timings, read_json, run_ok};

/// AdamW's ε (src/optim/adamw.rs: PyTorch's default, 1e-8).
const ADAM_EPS: f64 = 1e-8;

/// A tiny model and the toy SST-2 under one temporary folder.
pub(crate) struct Toy {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) model: PathBuf,
}

pub(crate) fn toy() -> Toy {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny-bert");
    common::tiny::write_model(&model, 3, |_| {});
    common::tiny::write_toy_sst2(tmp.path());
    Toy { tmp, model }
}

impl Toy {
    /// `pac-wgpu train --task <task>` on the toy data into `<tmp>/<name>` on the CPU device, seed
    /// 5, every example, plus `args` (each test names the method and what else it relies on).
    pub(crate) fn command(&self, name: &str, task: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = binary();
        cmd.args(["train", "--task", task, "--device", "cpu", "--quiet"])
            .args(["--train-size", "0", "--seed", "5", "--model"])
            .arg(&self.model)
            .arg("--data-dir")
            .arg(self.tmp.path())
            .arg("--output-dir")
            .arg(self.out(name))
            .args(args);
        cmd
    }

    /// Trains the toy SST-2 with `args` (see [`Toy::command`]) and returns the run folder.
    pub(crate) fn train(&self, name: &str, args: &[&str]) -> PathBuf {
        run_ok(&mut self.command(name, "sst2", args));
        self.out(name)
    }

    pub(crate) fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// Every tensor of a safetensors file, by name, as f32.
pub(crate) fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

/// The weights of a run's last checkpoint.
fn last_weights(run: &Path) -> BTreeMap<String, Vec<f32>> {
    tensors(&run.join("checkpoints/last/model.safetensors"))
}

/// The tiny model's weights as written, under the checkpoint's names (`bert.` in front).
pub(crate) fn initial_encoder(model: &Path) -> BTreeMap<String, Vec<f32>> {
    tensors(&model.join("model.safetensors"))
        .into_iter()
        .map(|(name, v)| (format!("bert.{name}"), v))
        .collect()
}

fn column(history: &[serde_json::Value], key: &str) -> Vec<f64> {
    history
        .iter()
        .map(|r| r[key].as_f64().unwrap_or_else(|| panic!("no {key} in {r}")))
        .collect()
}

/// The attention key biases: softmax is shift-invariant, so their gradient is exactly 0 in
/// exact arithmetic and what a backward pass returns is rounding noise, which Adam's
/// normalisation turns into steps of up to lr in either direction.
fn is_key_bias(name: &str) -> bool {
    name.ends_with("attention.self.key.bias")
}

/// `--grad-accum 4` (four micro-batches of 5) trains the same weights as one batch of 20,
/// for vanilla and for PAC (both stages).
#[test]
fn grad_accum_gives_the_weights_of_one_batch() {
    let toy = toy();
    for (method, extra) in [("vanilla", vec![]), ("pac", vec!["--stage1-epochs", "2"])] {
        let run = |accum: &str| {
            let mut args = vec![
                "--method",
                method,
                "--batch-size",
                "20",
                "--grad-accum",
                accum,
                "--epochs",
                "3",
                "--lr-encoder",
                "1e-3",
                "--lr-head",
                "1e-2",
                "--eval-every-epochs",
                "3",
            ];
            args.extend(&extra);
            toy.train(&format!("{method}-accum-{accum}"), &args)
        };
        let (one, four) = (run("1"), run("4"));

        // The batch-mean loss: summing four micro-batch sums of 5 instead of one sum of 20
        // reorders f32 additions of ~0.7-sized terms: a few ulp.
        let (h1, h4) = (
            history_without_timings(&one),
            history_without_timings(&four),
        );
        for key in ["train_loss"] {
            for (a, b) in column(&h1, key).iter().zip(column(&h4, key)) {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs(),
                    "{method} {key}: {a} vs {b}"
                );
            }
        }

        // Weights: the gradient sums differ in their last bits (another order of additions);
        // AdamW's steps lr·m̂/(√v̂ + ε) change by about as much relatively, except where the
        // gradient is itself rounding noise (key biases, see is_key_bias). So the weights may
        // differ by a few ulp: 4.8e-7 is 4 ulp of the largest weights (|w| < 2, the LayerNorm
        // gains near 1), 8× the largest difference measured (6e-8, printed), and 5e-4 of one
        // step of the encoder's lr.
        let (w1, w4) = (last_weights(&one), last_weights(&four));
        assert_eq!(w1.keys().collect::<Vec<_>>(), w4.keys().collect::<Vec<_>>());
        let mut worst = (0.0f32, String::new());
        for (name, a) in &w1 {
            let diff = common::max_abs_diff(a, &w4[name]);
            if is_key_bias(name) {
                // 3 Adam steps of at most lr = 1e-3 each way from the same start.
                assert!(diff <= 2.0 * 3.0 * 1e-3, "{method} {name}: {diff:e}");
                continue;
            }
            if diff > worst.0 {
                worst = (diff, name.clone());
            }
            assert!(diff <= 4.8e-7, "{method} {name}: max |Δ| {diff:e}");
        }
        eprintln!(
            "{method}: largest weight difference {:e} in {}",
            worst.0, worst.1
        );
    }
}

/// `--max-grad-norm`: with a tiny norm (1e-9) AdamW's first step shrinks to lr·g/ε (the global
/// L2 norm of the update between lr·c/(c + ε) and lr·c/ε); without clipping nearly every weight
/// moves by ≈ lr; a norm far above the gradient's changes nothing.
#[test]
fn max_grad_norm_clips_the_first_adamw_step() {
    let toy = toy();
    let lr = 1e-2;
    // One step (batch = all 20), no weight decay: θ1 − θ0 is exactly AdamW's first update,
    // lr·m̂/(√v̂ + ε) = lr·g/(|g| + ε) per element (m̂ = g, v̂ = g² after bias correction).
    let base = [
        "--method",
        "vanilla",
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--weight-decay",
        "0",
    ];
    let run = |name: &str, lr: &str, extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(["--lr-encoder", lr, "--lr-head", lr]);
        args.extend(extra);
        last_weights(&toy.train(name, &args))
    };
    // lr 0 and no decay: the initial weights, head included, as the checkpoint writes them.
    let start = run("start", "0", &[]);
    let free = run("free", "1e-2", &[]);
    let clipped = run("clipped", "1e-2", &["--max-grad-norm", "1e-9"]);
    let loose = run("loose", "1e-2", &["--max-grad-norm", "1e9"]);

    let deltas = |w: &BTreeMap<String, Vec<f32>>| -> Vec<(String, Vec<f64>)> {
        w.iter()
            .map(|(name, v)| {
                let d = v
                    .iter()
                    .zip(&start[name])
                    .map(|(a, b)| f64::from(*a) - f64::from(*b))
                    .collect();
                (name.clone(), d)
            })
            .collect()
    };

    // Clipped to c = 1e-9: every |g_i| ≤ ‖g‖ ≤ c, so |Δ_i| = lr·|g_i|/(|g_i| + ε) ≤ lr·c/(c + ε)
    // and ‖Δ‖ ≤ lr·‖g‖/ε ≤ lr·c/ε; ‖Δ‖ ≥ lr·‖g‖/(max|g| + ε) ≥ lr·‖g‖/(c + ε), and ‖g‖ =
    // c·N/(N + 1e-6) with N the unclipped norm (≫ 1e-6 here). So ‖Δ‖/lr ∈ [1/11, 1/10].
    // Reading Δ back as a difference of f32 weights (|θ| ≲ 1.3, half an ulp ≤ 6e-8 per element,
    // ~17 000 elements: ≤ 8e-6 in ‖Δ‖ against ‖Δ‖ ≈ 9.5e-4) costs < 1 %: 2 % is allowed.
    let c = 1e-9;
    let (mut sq, mut top) = (0.0f64, 0.0f64);
    for (_, d) in deltas(&clipped) {
        for x in d {
            sq += x * x;
            top = top.max(x.abs());
        }
    }
    let norm = sq.sqrt();
    eprintln!(
        "clipped: ‖Δ‖/lr = {:.5} (bounds {:.5}..{:.5}), max |Δ_i|/lr = {:.5}",
        norm / lr,
        c / (c + ADAM_EPS),
        c / ADAM_EPS,
        top / lr
    );
    assert!(
        norm >= 0.98 * lr * c / (c + ADAM_EPS) && norm <= 1.02 * lr * c / ADAM_EPS,
        "clipped update norm {norm:e}"
    );
    assert!(
        top <= lr * c / (c + ADAM_EPS) + 1.2e-7,
        "clipped element step {top:e}"
    );

    // Unclipped: |Δ_i| = lr·|g_i|/(|g_i| + ε) < lr, and ≥ 0.9·lr wherever |g_i| ≥ 9ε, which
    // is nearly every trainable weight of a random model (key biases and frozen embeddings
    // left out: their gradients are noise or absent).
    let (mut moved, mut total) = (0usize, 0usize);
    for (name, d) in deltas(&free) {
        if name.starts_with("bert.embeddings.") || is_key_bias(&name) {
            continue;
        }
        for x in d {
            total += 1;
            moved += usize::from(x.abs() >= 0.9 * lr);
            assert!(x.abs() <= lr * (1.0 + 1e-4), "{name}: step {x:e} above lr");
        }
    }
    eprintln!("unclipped: {moved} of {total} weights moved by ≥ 0.9·lr");
    assert!(moved * 10 >= total * 9, "{moved} of {total} moved by ≈ lr");

    // A norm no gradient reaches scales nothing: the very same weights.
    assert!(loose == free, "--max-grad-norm 1e9 changed the weights");
}

/// The learning rate reaches the optimiser as Hugging Face's schedules define it (the
/// multiplier's formula itself is a unit test of `lr_scale`): 5 epochs of one step each (batch
/// = all 20 examples), linear decay after a warm-up of ⌈0.3 · 5⌉ = 2 steps, so history.jsonl's
/// lr_encoder/lr_head at step k is the rate × 0, 1/2, then 3/3, 2/3, 1/3.
#[test]
fn learning_rate_schedule_and_warm_up_reach_the_optimiser_like_hugging_face() {
    let toy = toy();
    let args = [
        "--method",
        "vanilla",
        "--epochs",
        "5",
        "--batch-size",
        "20",
        "--lr-encoder",
        "1e-3",
        "--lr-head",
        "2e-2",
        "--eval-every-epochs",
        "5",
        "--lr-schedule",
        "linear",
        "--warmup-ratio",
        "0.3",
    ];
    let history = history_without_timings(&toy.train("warm-linear", &args));
    assert_eq!(column(&history, "step"), [1.0, 2.0, 3.0, 4.0, 5.0]);
    let expected = [0.0, 0.5, 1.0, 2.0 / 3.0, 1.0 / 3.0];
    for (key, lr) in [("lr_encoder", 1e-3), ("lr_head", 2e-2)] {
        for (k, (got, multiplier)) in column(&history, key).into_iter().zip(expected).enumerate() {
            // lr × multiplier in f64, written as JSON: a few ulp.
            let want = multiplier * lr;
            assert!(
                (got - want).abs() <= 1e-12 * lr,
                "{key} step {k}: got {got}, want {want}"
            );
        }
    }
}

/// `--early-stopping N`: with nothing trained (both learning rates 0, no decay) the metric never
/// improves after the first evaluation, so the run stops after N + 1 evaluations.
#[test]
fn early_stopping_stops_after_n_evaluations_without_improvement() {
    let toy = toy();
    for (every, stop_epoch) in [(1usize, 3usize), (2, 6)] {
        let every_s = every.to_string();
        let name = format!("every-{every}");
        let out = toy.train(
            &name,
            &[
                "--method",
                "vanilla",
                "--epochs",
                "10",
                "--batch-size",
                "10",
                "--lr-encoder",
                "0",
                "--lr-head",
                "0",
                "--weight-decay",
                "0",
                "--early-stopping",
                "2",
                "--eval-every-epochs",
                &every_s,
            ],
        );
        // Evaluations at epochs every, 2·every, 3·every: the first sets the best, the next two
        // do not beat it (equal is no improvement), so patience 2 ends the run at 3·every.
        let summary = read_json(&out.join("summary.json"));
        assert_eq!(summary["epochs_run"], stop_epoch, "{name}: {summary}");
        assert_eq!(summary["best"]["epoch"], every, "{name}: {summary}");
        let history = history_without_timings(&out);
        assert_eq!(history.len(), stop_epoch, "{name}");
        let evaluated: Vec<u64> = history
            .iter()
            .filter(|r| r.get("dev").is_some())
            .map(|r| r["epoch"].as_u64().unwrap())
            .collect();
        let every = every as u64;
        assert_eq!(evaluated, [every, 2 * every, 3 * every], "{name}");
    }
}

/// The token ids of the toy vocabulary (tests/common/tiny.rs: 5 special tokens, then WORDS).
fn token_id(word: &str) -> usize {
    5 + common::tiny::WORDS.iter().position(|w| *w == word).unwrap()
}

/// `--train-embeddings`: without it the embeddings stay exactly as loaded; with it they train
/// (rows of tokens in the training data move, rows of unused tokens do not); every other
/// encoder tensor trains either way.
#[test]
fn train_embeddings_unfreezes_exactly_the_embeddings() {
    let toy = toy();
    // No weight decay: a weight changes only through its gradient.
    let args = [
        "--method",
        "vanilla",
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--lr-encoder",
        "1e-3",
        "--weight-decay",
        "0",
    ];
    let frozen = last_weights(&toy.train("frozen", &args));
    let mut with = args.to_vec();
    with.push("--train-embeddings");
    let trained = last_weights(&toy.train("trained", &with));
    let initial = initial_encoder(&toy.model);

    for (name, start) in &initial {
        let (f, t) = (&frozen[name], &trained[name]);
        if name.starts_with("bert.embeddings.") {
            assert!(f == start, "{name} changed without --train-embeddings");
            assert!(t != start, "{name} did not change with --train-embeddings");
        } else if !is_key_bias(name) {
            assert!(f != start, "{name} did not train (embeddings frozen)");
            assert!(t != start, "{name} did not train (embeddings trained)");
        }
    }

    // Word-embedding rows: the 20 training sentences use [CLS], [SEP] and these words (the
    // first 20 of write_toy_sst2's rows: subjects "the movie", "a film", "the cat", "the dog"),
    // and never [UNK], [MASK], "it", "sat", "ran", "on", "mat", "small", "red", "blue" or ",".
    // Adam moves a row only where its gradient is non-zero: used rows move, unused rows keep
    // every bit.
    let hidden = common::tiny::HIDDEN;
    let name = "bert.embeddings.word_embeddings.weight";
    let row = |w: &Vec<f32>, id: usize| w[id * hidden..(id + 1) * hidden].to_vec();
    let used = [
        "the", "a", "movie", "film", "cat", "dog", "is", "was", "good", "bad", "very", "not",
        "and", "big", ".",
    ];
    for word in used {
        let id = token_id(word);
        assert!(
            row(&trained[name], id) != row(&initial[name], id),
            "row of {word:?} did not train"
        );
    }
    for id in [2, 3] {
        assert!(
            row(&trained[name], id) != row(&initial[name], id),
            "row of special token {id} did not train"
        );
    }
    let unused = ["it", "sat", "ran", "on", "mat", "small", "red", "blue", ","];
    for id in unused.iter().map(|w| token_id(w)).chain([1, 4]) {
        assert_eq!(
            row(&trained[name], id),
            row(&initial[name], id),
            "row of unused token {id} changed"
        );
    }
    // Token type 1 never occurs in single sentences.
    let types = "bert.embeddings.token_type_embeddings.weight";
    assert_eq!(row(&trained[types], 1), row(&initial[types], 1));
    assert!(row(&trained[types], 0) != row(&initial[types], 0));
}

/// PGD (`--method pgd --noise-std S`): trains, differs from vanilla with the same seed, and a
/// run stopped after epoch 1 and resumed ends exactly where the uninterrupted one does.
#[test]
fn pgd_trains_differs_from_vanilla_and_resumes_exactly() {
    let toy = toy();
    let common_args = ["--batch-size", "10", "--lr-encoder", "1e-3"];
    let pgd = |name: &str, epochs: &str, resume: bool| {
        let mut cmd = toy.command(name, "sst2", &common_args);
        cmd.args(["--method", "pgd", "--noise-std", "0.01", "--epochs", epochs]);
        if resume {
            cmd.arg("--resume");
        }
        run_ok(&mut cmd);
        toy.out(name)
    };
    let full = pgd("pgd", "3", false);
    let mut args = common_args.to_vec();
    args.extend(["--method", "vanilla", "--epochs", "3"]);
    let vanilla = toy.train("vanilla", &args);

    let (hp, hv) = (
        history_without_timings(&full),
        history_without_timings(&vanilla),
    );
    assert_eq!(hp.len(), 3);
    // The noise changes the loss at every step (σ = 0.01 on weights of size ~0.1) and so every
    // update.
    for (p, v) in column(&hp, "train_loss")
        .iter()
        .zip(column(&hv, "train_loss"))
    {
        assert!(p.is_finite() && *p != v, "PGD loss {p} vs vanilla {v}");
    }
    let (wp, wv) = (last_weights(&full), last_weights(&vanilla));
    for (name, v) in &wv {
        if !name.starts_with("bert.embeddings.") && !is_key_bias(name) {
            assert!(&wp[name] != v, "{name}: PGD trained as vanilla did");
        }
    }

    pgd("resumed", "1", false);
    pgd("resumed", "3", true);
    let resumed = toy.out("resumed");
    assert_eq!(history_without_timings(&resumed), hp);
    assert!(
        last_weights(&resumed) == wp,
        "resumed PGD weights differ from the uninterrupted run's"
    );
}

/// A toy STS-B (regression: predictions are scores with three decimals, so any randomness left
/// in evaluation shows in them): sentence pairs over the tiny vocabulary, score 5 when both say
/// the same, 1 otherwise.
fn write_toy_stsb(dir: &Path) {
    let sts = dir.join("STS-B");
    std::fs::create_dir_all(&sts).unwrap();
    let header =
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore";
    let a = [
        "the movie is good .",
        "a film is bad .",
        "the cat was very good .",
    ];
    let b = [
        "it is good .",
        "the dog is bad .",
        "a film was not good .",
        "the movie is very good and big .",
        "it was bad .",
    ];
    let good = |s: &str| s.contains("good") && !s.contains("not");
    let mut rows = Vec::new();
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            let score = if good(x) == good(y) { 5.0 } else { 1.0 };
            rows.push(format!(
                "{}\tmain\tnone\t2012\t{i}{j}\tnone\tnone\t{x}\t{y}\t{score:.3}",
                rows.len()
            ));
        }
    }
    let (train, dev) = rows.split_at(10);
    for (name, part) in [("train.tsv", train), ("dev.tsv", dev)] {
        std::fs::write(sts.join(name), format!("{header}\n{}\n", part.join("\n"))).unwrap();
    }
}

/// Trains the toy STS-B with `--dropout <dropout>` into `<tmp>/<name>`.
fn train_stsb(toy: &Toy, name: &str, dropout: &str) -> PathBuf {
    run_ok(&mut toy.command(
        name,
        "stsb",
        &[
            "--method",
            "vanilla",
            "--epochs",
            "2",
            "--batch-size",
            "5",
            "--lr-encoder",
            "1e-3",
            "--dropout",
            dropout,
        ],
    ));
    toy.out(name)
}

/// `--dropout 0.3`: training differs from `--dropout 0`, and the same seed reproduces it
/// exactly (losses and weights).
#[test]
fn dropout_changes_training_and_the_same_seed_reproduces_it() {
    let toy = toy();
    write_toy_stsb(toy.tmp.path());
    let plain = train_stsb(&toy, "dropout-0", "0");
    let first = train_stsb(&toy, "dropout-a", "0.3");
    let second = train_stsb(&toy, "dropout-b", "0.3");

    let loss = |run: &Path| column(&history_without_timings(run), "train_loss");
    assert!(
        loss(&first) != loss(&plain),
        "dropout 0.3 trained as dropout 0 did"
    );
    assert_eq!(
        loss(&first),
        loss(&second),
        "the same seed gave other training losses with dropout"
    );
    assert!(
        last_weights(&first) == last_weights(&second),
        "the same seed gave other weights with dropout"
    );
}

/// Evaluation runs without dropout: what a `--dropout 0.3` run recorded for its best checkpoint
/// (dev scores with three decimals) is what the reloaded checkpoint predicts, every time.
#[test]
fn dropout_is_off_in_evaluation() {
    let toy = toy();
    write_toy_stsb(toy.tmp.path());
    let run = train_stsb(&toy, "dropout", "0.3");
    let recorded =
        std::fs::read_to_string(run.join("checkpoints/best/dev_predictions.tsv")).unwrap();
    assert_eq!(recorded.lines().count(), 1 + 5, "header + 5 dev pairs");
    for i in 0..2 {
        let out = toy.tmp.path().join(format!("dev-{i}.tsv"));
        run_ok(
            binary()
                .args(["predict", "--device", "cpu", "--split", "dev", "--run"])
                .arg(&run)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            recorded,
            "predict #{i}"
        );
    }
}

/// The scalars of the tensors of `weights` whose name passes `keep`.
fn scalars(weights: &BTreeMap<String, Vec<f32>>, keep: impl Fn(&str) -> bool) -> usize {
    weights
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(_, v)| v.len())
        .sum()
}

/// `--method bitfit`: every encoder tensor but the biases keeps every bit; the biases and the
/// head train; run.json counts exactly those scalars.
#[test]
fn bitfit_trains_only_the_biases_and_the_head() {
    let toy = toy();
    let args = [
        "--method",
        "bitfit",
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--lr-encoder",
        "1e-2",
    ];
    let run = toy.train("bitfit", &args);
    let trained = last_weights(&run);
    let initial = initial_encoder(&toy.model);
    for (name, start) in &initial {
        let bias = name.ends_with(".bias") && !name.starts_with("bert.embeddings.");
        if !bias {
            assert!(&trained[name] == start, "{name} changed under BitFit");
        } else if !is_key_bias(name) {
            assert!(&trained[name] != start, "{name} did not train under BitFit");
        }
    }
    let head = |name: &str| !name.starts_with("bert.");
    let expected = scalars(&trained, |n| {
        head(n) || (n.ends_with(".bias") && !n.starts_with("bert.embeddings."))
    });
    let run_json = read_json(&run.join("run.json"));
    assert_eq!(run_json["trainable_parameters"], expected);
    assert_eq!(
        read_json(&run.join("summary.json"))["trainable_parameters"],
        expected
    );
}

/// `--method lora`: the base weights keep every bit and only the targeted ones get factors (A
/// `[in, r]`, B `[r, out]` in the checkpoints); `export --merge` writes the merged weight W +
/// α/r·A·B (W stored `[out, in]`); both checkpoints reload to the same predictions.
#[test]
fn lora_merges_into_base_plus_scaled_a_b_and_reloads() {
    let toy = toy();
    let (rank, alpha) = (2, 6.0);
    let args = [
        "--method",
        "lora",
        "--lora-rank",
        "2",
        "--lora-alpha",
        "6",
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--lr-encoder",
        "1e-2",
    ];
    let run = toy.train("lora", &args);
    let last = last_weights(&run);
    let merged = toy.out("merged");
    run_ok(
        binary()
            .args(["export", "--merge", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&merged),
    );
    let best: BTreeMap<String, Vec<f32>> = tensors(&merged.join("model.safetensors"))
        .into_iter()
        .map(|(name, v)| (format!("bert.{name}"), v))
        .collect();
    let initial = initial_encoder(&toy.model);
    let hidden = common::tiny::HIDDEN;
    let mut adapted = 0;
    for (name, start) in &initial {
        assert!(
            &last[name] == start,
            "{name}: the base weight changed under LoRA"
        );
        let targeted = name.ends_with("query.weight") || name.ends_with("value.weight");
        let (a, b) = (
            last.get(&format!("{name}.lora.a")),
            last.get(&format!("{name}.lora.b")),
        );
        if !targeted {
            assert!(a.is_none() && b.is_none(), "{name} has adapters");
            assert!(&best[name] == start, "{name} changed in the merged model");
            continue;
        }
        let (a, b) = (a.expect("lora.a"), b.expect("lora.b"));
        assert_eq!((a.len(), b.len()), (hidden * rank, rank * hidden), "{name}");
        assert!(b.iter().any(|x| *x != 0.0), "{name}: B did not train");
        let scale = alpha / rank as f64;
        let mut max_err = 0.0f64;
        for out in 0..hidden {
            for inp in 0..hidden {
                let ab: f64 = (0..rank)
                    .map(|k| a[inp * rank + k] as f64 * b[k * hidden + out] as f64)
                    .sum();
                let expected = start[out * hidden + inp] as f64 + scale * ab;
                let merged = best[name][out * hidden + inp] as f64;
                max_err = max_err.max((merged - expected).abs());
            }
        }
        assert!(max_err < 1e-6, "{name}: merged weight off by {max_err}");
        adapted += 1;
    }
    assert_eq!(adapted, 2 * common::tiny::LAYERS);
    let head = scalars(&last, |n| !n.starts_with("bert."));
    let factors = scalars(&last, |n| n.contains(".lora."));
    assert_eq!(factors, adapted * 2 * hidden * rank);
    assert_eq!(
        read_json(&run.join("run.json"))["trainable_parameters"],
        head + factors
    );

    let eval = |which: &str| {
        let out = run_ok(
            binary()
                .args([
                    "eval",
                    "--device",
                    "cpu",
                    "--json",
                    "--checkpoint",
                    which,
                    "--run",
                ])
                .arg(&run),
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let (from_best, from_last) = (eval("best"), eval("last"));
    assert_eq!(from_best["metrics"], from_last["metrics"]);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(
        from_best["metrics"]["accuracy"].as_f64(),
        summary["best"]["accuracy"].as_f64()
    );
}

/// A LoRA run stopped after epoch 1 and resumed ends exactly where the uninterrupted one does
/// (the factors and their AdamW moments come back from checkpoints/last).
#[test]
fn lora_resumes_exactly() {
    let toy = toy();
    let lora = |name: &str, epochs: &str, resume: bool| {
        let mut cmd = toy.command(
            name,
            "sst2",
            &["--batch-size", "10", "--lr-encoder", "1e-2"],
        );
        cmd.args(["--method", "lora", "--lora-rank", "2", "--epochs", epochs]);
        if resume {
            cmd.arg("--resume");
        }
        run_ok(&mut cmd);
        toy.out(name)
    };
    let full = lora("full", "3", false);
    lora("resumed", "1", false);
    let resumed = lora("resumed", "3", true);
    assert_eq!(
        history_without_timings(&resumed),
        history_without_timings(&full)
    );
    assert!(
        last_weights(&resumed) == last_weights(&full),
        "resumed LoRA weights differ from the uninterrupted run's"
    );
}
