//! `pac-wgpu sweep` and `pac-wgpu report` end to end on a tiny random BERT (CPU): 2 toy tasks ×
//! pac/vanilla/bitfit × 2 seeds × 2 epochs, a bad data file failing runs while the rest finish,
//! Ctrl-C and a second invocation that finishes the sweep, the Slurm script's command for index 0,
//! and the report's numbers recomputed here from the runs' summary.json files.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, history_without_timings, last_weights, read_json};

const TASKS: [&str; 2] = ["sst2", "cola"];
const METHODS: [&str; 3] = ["pac", "vanilla", "bitfit"];
const SEEDS: [u64; 2] = [1, 2];

/// A toy CoLA in GLUE's layout (no header; source, label, original label, sentence), labelled
/// by whether the sentence says "good".
fn write_toy_cola(dir: &Path, broken: bool) {
    let cola = dir.join("CoLA");
    std::fs::create_dir_all(&cola).unwrap();
    let sentences = [
        "the cat is good .",
        "a dog was bad .",
        "the movie is very good .",
        "a film was not good .",
        "the dog is big and good .",
        "it is bad .",
    ];
    let rows: Vec<String> = (0..30)
        .map(|i| {
            let s = sentences[i % sentences.len()];
            let label = u8::from(s.contains("good") && !s.contains("not"));
            format!("toy\t{label}\t\t{s}")
        })
        .collect();
    let (train, dev) = rows.split_at(20);
    let mut dev = dev.join("\n") + "\n";
    if broken {
        dev.push_str("toy\tnot-a-label\n");
    }
    std::fs::write(cola.join("train.tsv"), train.join("\n") + "\n").unwrap();
    std::fs::write(cola.join("dev.tsv"), dev).unwrap();
}

struct Setup {
    tmp: tempfile::TempDir,
    model: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("tiny-bert");
        common::tiny::write_model(&model, 17, |_| {});
        common::tiny::write_toy_sst2(tmp.path());
        write_toy_cola(tmp.path(), true);
        Setup { tmp, model }
    }

    fn out(&self) -> PathBuf {
        self.tmp.path().join("sweep")
    }

    /// `pac-wgpu sweep` over the toy tasks with `extra` sweep flags.
    fn sweep(&self, extra: &[&str]) -> Command {
        let mut cmd = binary();
        cmd.args(["sweep", "--device", "cpu", "--tasks"])
            .arg(TASKS.join(","))
            .arg("--methods")
            .arg(METHODS.join(","))
            .args(["--seeds", "1-2", "--out"])
            .arg(self.out())
            .args(extra)
            .args([
                "--",
                "--train-size",
                "0",
                "--epochs",
                "2",
                "--batch-size",
                "5",
            ])
            .args(["--lr-encoder", "1e-3", "--model"])
            .arg(&self.model)
            .arg("--data-dir")
            .arg(self.tmp.path());
        cmd
    }
}

fn run_name(task: &str, method: &str, seed: u64) -> String {
    format!("{task}-{method}-{seed}")
}

fn outcomes(out: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let status = read_json(&out.join("status.json"));
    status["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                (
                    r["outcome"].as_str().unwrap().to_string(),
                    r["error"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// Mean and sample std of `values`, written out here rather than taken from the crate.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The report's groups as (task, method) → (n, mean, std, J mean).
fn report_groups(report: &serde_json::Value) -> BTreeMap<(String, String), (usize, f64, f64)> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            // The run label: the method, or vanilla on a narrower set named by the set.
            let label = match (
                g["method"].as_str().unwrap(),
                g["trainable"].as_str().unwrap(),
            ) {
                (method, "full") => method.to_string(),
                ("vanilla", set) => set.to_string(),
                (method, set) => format!("{method}-{set}"),
            };
            let key = (g["task"].as_str().unwrap().to_string(), label);
            let n = g["values"].as_array().unwrap().len();
            (
                key,
                (n, g["mean"].as_f64().unwrap(), g["std"].as_f64().unwrap()),
            )
        })
        .collect()
}

fn report(out: &Path) -> serde_json::Value {
    common::run_ok(binary().arg("report").arg(out));
    read_json(&out.join("report.json"))
}

#[test]
fn a_sweep_fails_runs_apart_resumes_after_ctrl_c_and_reports_mean_and_std() {
    let setup = Setup::new();
    let out = setup.out();
    let started = Instant::now();

    // 1. CoLA's dev file is broken: its six runs fail with the file's error, SST-2's finish.
    let first = setup.sweep(&[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        !first.status.success(),
        "a sweep with failed runs exits non-zero"
    );
    assert_eq!(
        stdout.matches("/12] ").count(),
        12,
        "one line per run: {stdout}"
    );
    let status = outcomes(&out);
    for task in TASKS {
        for method in METHODS {
            for seed in SEEDS {
                let (outcome, error) = &status[&run_name(task, method, seed)];
                if task == "cola" {
                    assert_eq!(outcome, "failed");
                    let error = error.as_deref().unwrap();
                    assert!(error.contains("CoLA/dev.tsv"), "{error}");
                } else {
                    assert_eq!(outcome, "finished", "{task} {method} {seed}");
                }
            }
        }
    }
    let partial = report(&out);
    assert_eq!(partial["incomplete"].as_array().unwrap().len(), 6);
    let groups = report_groups(&partial);
    assert_eq!(groups.len(), 3, "only SST-2's groups: {groups:?}");
    assert!(groups.values().all(|(n, _, _)| *n == 2));

    // 2. Data fixed, the sweep again, stopped with Ctrl-C once a CoLA run has trained an epoch.
    write_toy_cola(setup.tmp.path(), false);
    let mut child = setup
        .sweep(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first_cola = out.join("runs").join(run_name("cola", "pac", 1));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !first_cola.join("history.jsonl").is_file() {
        assert!(Instant::now() < deadline, "no CoLA epoch within 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "an interrupted sweep exits with 130");
    let status = outcomes(&out);
    let finished = status.values().filter(|(o, _)| o == "finished").count();
    assert!(finished < 12, "Ctrl-C stopped nothing: {status:?}");

    // 3. The same command finishes the rest; finished runs are skipped.
    let third = setup.sweep(&[]).output().unwrap();
    let log = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{log}");
    assert!(
        !log.contains("start  sst2-"),
        "finished runs ran again: {log}"
    );
    let status = outcomes(&out);
    assert!(status.values().all(|(o, _)| o == "finished"), "{status:?}");

    // 4. The Slurm script parses, and its command for index 0 writes the sweep's run folder.
    let emitted = setup.sweep(&["--emit", "slurm"]).output().unwrap();
    assert!(emitted.status.success());
    let script = out.join("sweep.slurm");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n {}", script.display());
    let run0 = out.join("runs").join(run_name("sst2", "pac", 1));
    let history = history_without_timings(&run0);
    let saved = last_weights(&run0);
    std::fs::remove_dir_all(&run0).unwrap();
    let by_slurm = Command::new("bash")
        .arg(&script)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .output()
        .unwrap();
    assert!(
        by_slurm.status.success(),
        "{}",
        String::from_utf8_lossy(&by_slurm.stderr)
    );
    assert_eq!(history_without_timings(&run0), history);
    assert!(
        last_weights(&run0) == saved,
        "the Slurm command trained other weights"
    );

    // 5. The report's means and stds, recomputed from the summaries.
    let full = report(&out);
    assert!(full["incomplete"].as_array().unwrap().is_empty());
    let groups = report_groups(&full);
    assert_eq!(groups.len(), 6);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for task in TASKS {
        for method in METHODS {
            let values: Vec<f64> = SEEDS
                .iter()
                .map(|&seed| {
                    let dir = out.join("runs").join(run_name(task, method, seed));
                    let summary = read_json(&dir.join("summary.json"));
                    let metric = summary["metric"].as_str().unwrap().to_string();
                    summary["final"][metric.as_str()].as_f64().unwrap()
                })
                .collect();
            let (mean, std) = mean_std(&values);
            let (n, got_mean, got_std) = groups[&(task.to_string(), method.to_string())];
            assert_eq!(n, 2);
            assert!(
                (got_mean - mean).abs() < 1e-12,
                "{task} {method}: {got_mean} vs {mean}"
            );
            assert!(
                (got_std - std).abs() < 1e-12,
                "{task} {method}: {got_std} vs {std}"
            );
            let cell = format!("{:.1} ± {:.1} (2)", mean * 100.0, std * 100.0);
            assert!(markdown.contains(&cell), "{cell} not in\n{markdown}");
        }
    }
    assert!(markdown.contains("PAC bound J"), "{markdown}");
    let png = image::open(out.join("report.png")).unwrap().to_rgb8();
    assert!(
        png.pixels().any(|p| p.0 != [255, 255, 255]),
        "report.png is blank"
    );
    eprintln!("sweep test took {:.1} s", started.elapsed().as_secs_f64());
}

/// Bad sweep flags end with one line naming the flag (and the run), before anything is written.
#[test]
fn bad_sweep_flags_are_one_line_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let cases: [(&[&str], &[&str], &str); 5] = [
        (
            &["--methods", "pgd", "--seeds", "1"],
            &[],
            "run rte-pgd-1: --method pgd needs --noise-std",
        ),
        (
            &["--methods", "pac", "--seeds", "1"],
            &["--task", "mrpc"],
            "--task after --",
        ),
        (
            &["--methods", "pac", "--seeds", "3-1"],
            &[],
            "--seeds: the range \"3-1\" is empty",
        ),
        (
            &["--methods", "pac", "--seeds", "1"],
            &["--epochs", "0"],
            "run rte-pac-1: --epochs must be at least 1",
        ),
        (
            &["--methods", "lora", "--seeds", "1"],
            &["--lora-targets", "query,*"],
            "--lora-targets",
        ),
    ];
    for (flags, shared, expected) in cases {
        let output = binary()
            .args(["sweep", "--tasks", "rte", "--out"])
            .arg(&out)
            .args(flags)
            .arg("--")
            .args(shared)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} {shared:?} succeeded");
        assert!(stderr.contains(expected), "{flags:?} {shared:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            !out.exists(),
            "{flags:?} {shared:?} wrote {}",
            out.display()
        );
    }
}

/// `--devices` spreads runs: with two devices two runs start at once, one on each. The second
/// device here is an index no machine has, so its run fails, recorded with the device it had,
/// while the first finishes on the CPU.
#[test]
fn devices_spread_runs_one_per_device() {
    let s = Setup::new();
    let out = s.tmp.path().join("spread");
    let result = binary()
        .args([
            "sweep",
            "--devices",
            "cpu,99",
            "--tasks",
            "sst2",
            "--methods",
            "vanilla",
        ])
        .args(["--seeds", "1-2", "--out"])
        .arg(&out)
        .args([
            "--",
            "--train-size",
            "0",
            "--epochs",
            "1",
            "--batch-size",
            "5",
            "--model",
        ])
        .arg(&s.model)
        .arg("--data-dir")
        .arg(s.tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("2 at a time"), "{stderr}");
    let status = read_json(&out.join("status.json"));
    let runs: BTreeMap<String, (String, String)> = status["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("device"), (field("outcome"), field("error")))
        })
        .collect();
    assert_eq!(runs.len(), 2, "{status}");
    assert_eq!(runs["cpu"].0, "finished", "{status}");
    assert_eq!(runs["99"].0, "failed", "{status}");
    assert!(runs["99"].1.contains("--device 99"), "{status}");
}
