//! What a new user meets in the first hour, through the binary: a closed pipe, the Vulkan
//! probe's messages, resuming a run that already finished.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{binary, run_ok};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let modified = path.metadata().unwrap().modified().unwrap();
                files.push((path.clone(), std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// `pac-wgpu encode … --json | head -c 0`: the reader goes away before the output is written.
/// The command ends without a word on stderr, with status 0 or killed by SIGPIPE (141 in a
/// shell), as other command-line tools do.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny-bert");
    common::tiny::write_model(&model, 2, |_| {});
    let mut child = binary()
        .args([
            "encode",
            "--device",
            "cpu",
            "--json",
            "--text-a",
            "A cat sat.",
        ])
        .arg("--model")
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    let sigpipe = out.status.signal() == Some(libc::SIGPIPE);
    assert!(
        out.status.success() || sigpipe,
        "{:?}: {stderr}",
        out.status
    );
    assert!(stderr.trim().is_empty(), "{stderr}");
}

/// Without a desktop session (no XDG_RUNTIME_DIR), the Vulkan probe prints nothing: only our
/// own errors may start with `error:`.
#[test]
#[cfg_attr(
    not(pac_test_lavapipe),
    ignore = "needs lavapipe: apt-get install mesa-vulkan-drivers libvulkan1"
)]
fn the_vulkan_probe_prints_no_error_lines() {
    let out = binary()
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("llvmpipe"));
    assert!(!stderr.contains("error"), "{stderr}");
}

/// A tiny BERT and a toy SST-2 in a temporary folder, and the command that trains it for two
/// epochs into `<tmp>/run`.
struct Toy {
    tmp: tempfile::TempDir,
    model: PathBuf,
}

impl Toy {
    fn new() -> Toy {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("tiny-bert");
        common::tiny::write_model(&model, 2, |_| {});
        common::tiny::write_toy_sst2(tmp.path());
        Toy { tmp, model }
    }

    fn run(&self) -> PathBuf {
        self.tmp.path().join("run")
    }

    fn train(&self) -> std::process::Command {
        let mut cmd = binary();
        cmd.args(["train", "--task", "sst2", "--device", "cpu", "--quiet"])
            .args(["--method", "vanilla", "--epochs", "2", "--train-size", "0"])
            .arg("--model")
            .arg(&self.model)
            .arg("--data-dir")
            .arg(self.tmp.path())
            .arg("--output-dir")
            .arg(self.run());
        cmd
    }
}

/// `score` reads what `predict --probabilities` writes (a third column, named in the header).
#[test]
fn score_reads_predictions_with_probabilities() {
    let toy = Toy::new();
    run_ok(&mut toy.train());
    let file = toy.tmp.path().join("dev-probabilities.tsv");
    let text = common::predict_dev_probabilities(&toy.run(), &file);
    assert!(
        text.starts_with("index\tprediction\tnegative\tpositive\n"),
        "{text}"
    );
    let score = |predictions: &Path| {
        let mut cmd = binary();
        cmd.args(["score", "--task", "sst2", "--json", "--data-dir"])
            .arg(toy.tmp.path())
            .arg("--predictions")
            .arg(predictions);
        serde_json::from_str::<serde_json::Value>(&run_ok(&mut cmd)).unwrap()
    };
    let with_probabilities = score(&file);
    let plain = toy.run().join("checkpoints/best/dev_predictions.tsv");
    assert_eq!(
        with_probabilities,
        score(&plain),
        "the same predictions, the same score"
    );
    // A row with a missing column is still refused, naming the line.
    std::fs::write(&file, text.replacen("\t0.", "\n", 1)).unwrap();
    let out = binary()
        .args(["score", "--task", "sst2", "--data-dir"])
        .arg(toy.tmp.path())
        .arg("--predictions")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("4 columns"),
        "{stderr}"
    );
}

/// `predict --file` labels new, unlabelled text with the label names, and `--probabilities`
/// adds a column per label, headed by its name, summing to 1.
#[test]
fn predict_labels_new_text_from_a_file() {
    let toy = Toy::new();
    run_ok(&mut toy.train());
    let file = toy.tmp.path().join("new.csv");
    let rows = "text\nthe film is good .\n\"a bad, bad film .\"\nit is red .\n";
    std::fs::write(&file, rows).unwrap();
    let predict = |extra: &[&str]| {
        let mut cmd = binary();
        cmd.args(["predict", "--device", "cpu", "--run"])
            .arg(toy.run())
            .arg("--file")
            .arg(&file)
            .args(extra);
        cmd
    };
    run_ok(&mut predict(&["--probabilities"]));
    let text = std::fs::read_to_string(toy.tmp.path().join("new-predictions.tsv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("index\tprediction\tnegative\tpositive"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], i.to_string());
        let p: Vec<f64> = row[2..].iter().map(|v| v.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{text}");
        let named = if p[1] > p[0] { "positive" } else { "negative" };
        assert_eq!(row[1], named, "{text}");
    }
    // Two text columns for a model trained on one: refused, naming the flags.
    std::fs::write(&file, "title,body\na,b\n").unwrap();
    let out = predict(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--text-a-column"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// `export`'s printed Python tokenizes what the task reads: one sentence for SST-2.
#[test]
fn export_prints_python_with_the_task_s_inputs() {
    let toy = Toy::new();
    run_ok(&mut toy.train());
    let printed = run_ok(
        binary()
            .args(["export", "--run"])
            .arg(toy.run())
            .arg("--out")
            .arg(toy.tmp.path().join("exported")),
    );
    let call = printed
        .lines()
        .find_map(|line| line.split("x = tok(").nth(1))
        .unwrap_or_else(|| panic!("no tok(...) call in: {printed}"));
    let texts = call.split(", return_tensors").next().unwrap();
    assert_eq!(
        texts.matches('"').count(),
        2,
        "one sentence for SST-2: {texts}"
    );
}

/// `--resume` of a finished run says so and changes no file, not even summary.json's
/// wall_seconds.
#[test]
fn resuming_a_finished_run_changes_nothing() {
    let toy = Toy::new();
    let out = toy.run();
    let train = || toy.train();
    run_ok(&mut train());
    let before = snapshot(&out);
    let resumed = train().arg("--resume").output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("is complete (2 of 2 epochs)"), "{stderr}");
    assert!(!stderr.contains("epochs 3..2"), "{stderr}");
    assert!(
        snapshot(&out) == before,
        "--resume of a finished run changed its folder"
    );
}

/// Every flag of every command says what it does in `--help`, beyond its default, and commands
/// that compute nothing offer no `--device`.
#[test]
fn every_flag_has_a_description() {
    let commands = [
        "train", "eval", "predict", "export", "encode", "data", "score", "sweep", "report",
        "devices",
    ];
    for command in commands {
        let help = run_ok(binary().args([command, "--help"]));
        // Flags are listed under "Options:" and the headings that group them, before examples.
        let options = help.split("\nExamples:").next().unwrap();
        let lines: Vec<&str> = options.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start().len();
            if indent >= 10 || !line.trim_start().starts_with('-') {
                continue;
            }
            // The description follows on the same line after a gap, or on the next lines.
            let same_line = line.trim().split_once("  ").map(|(_, d)| d.trim());
            let next_line = lines.get(i + 1).filter(|l| l.starts_with("          "));
            let description = same_line.or(next_line.map(|l| l.trim())).unwrap_or("");
            assert!(
                !description.is_empty() && !description.starts_with("[default"),
                "`{command} --help`: {} has no description",
                line.trim()
            );
            assert!(
                description.matches("[default:").count() <= 1,
                "`{command} --help`: {} states its default twice",
                line.trim()
            );
        }
        let computes = ["train", "eval", "predict", "encode", "sweep"].contains(&command);
        let has_device = lines
            .iter()
            .any(|l| l.trim_start().starts_with("--device "));
        assert_eq!(has_device, computes, "`{command} --help`");
    }
}

/// Typos get a suggestion on the error's one line, and a train flag given to `sweep` before
/// `--` says where it goes.
#[test]
fn typos_get_a_suggestion() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["train", "--epoch", "3"],
            "a similar argument exists: '--epochs'",
        ),
        (&["trian"], "a similar subcommand exists: 'train'"),
        (&["train", "--task", "mrcp"], "did you mean mrpc?"),
        (
            &[
                "sweep",
                "--tasks",
                "mrpc",
                "--methods",
                "pac",
                "--seeds",
                "1",
                "--out",
                "x",
                "--epochs",
                "3",
            ],
            "--epochs is a train flag: give it after `--`",
        ),
    ];
    for (args, expected) in cases {
        let out = binary().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
