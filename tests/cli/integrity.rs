//! Checkpoints that prove they are whole: each folder's manifest.json (sizes and checksums) is
//! checked by `--resume`, `eval`, `predict` and `export`; a flipped byte or a cut file is one
//! line naming the file, and `--resume` falls back to `last.old` when that one is whole.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{binary, history_without_timings, last_weights, run_ok};
use pac_wgpu::util::manifest::{Integrity, verify};

/// A finished 3-epoch PAC run of a tiny BERT (checkpoint `last` after every epoch, so
/// `last.old` holds epoch 2), under a temporary folder.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        common::tiny::write_model(&tmp.path().join("tiny-bert"), 13, |_| {});
        common::tiny::write_toy_sst2(tmp.path());
        let f = Fixture { tmp };
        let mut train = binary();
        train
            .args(["train", "--task", "sst2", "--device", "cpu", "--quiet"])
            .args(["--epochs", "3", "--stage1-epochs", "2", "--batch-size", "4"])
            .args(["--save-interval", "0", "--train-size", "0", "--model"])
            .arg(f.path("tiny-bert"))
            .arg("--data-dir")
            .arg(f.tmp.path())
            .arg("--output-dir")
            .arg(f.run());
        run_ok(&mut train);
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn run(&self) -> PathBuf {
        self.path("run")
    }

    /// A copy of the finished run, to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.path(name);
        let ok = Command::new("cp")
            .arg("-r")
            .arg(self.run())
            .arg(&to)
            .status()
            .unwrap();
        assert!(ok.success());
        to
    }
}

fn eval(run: &Path) -> Output {
    binary()
        .args(["eval", "--checkpoint", "last", "--device", "cpu", "--run"])
        .arg(run)
        .output()
        .unwrap()
}

fn resume(run: &Path) -> Output {
    common::resume_command(run).output().unwrap()
}

/// The one `error:` line of a failed command.
fn error_line(out: &Output) -> String {
    let line = common::error_line(out);
    assert!(line.starts_with("error: "), "{line}");
    line
}

fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_in_any_checkpoint_file_is_named_and_resume_falls_back_to_last_old() {
    let f = Fixture::new();
    let names = common::file_names(&f.run().join("checkpoints/last"));
    for name in [
        "manifest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    for name in &names {
        let run = f.copy(&format!("flip-{name}"));
        flip_middle_byte(&run.join("checkpoints/last").join(name));
        // A damaged manifest may name the file whose entry it damaged.
        let names_it = |text: &str| match name.as_str() {
            "manifest.json" => text.contains("manifest.json"),
            _ => text.contains(&format!("last/{name}")),
        };
        let line = error_line(&eval(&run));
        assert!(names_it(&line), "{name}: {line}");

        // Resuming the run from its epoch-2 checkpoint redoes epoch 3 exactly.
        std::fs::remove_file(run.join("summary.json")).unwrap();
        let out = resume(&run);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            names_it(&stderr) && stderr.contains("last.old (epoch 2)"),
            "{name}: {stderr}"
        );
        assert_eq!(
            history_without_timings(&run),
            history_without_timings(&f.run())
        );
        assert!(
            last_weights(&run) == last_weights(&f.run()),
            "{name}: weights differ"
        );
        // The damaged checkpoint is gone; `last.old` is still the one the run resumed from.
        let old = run.join("checkpoints/last.old");
        assert_eq!(verify(&old).unwrap(), Integrity::Verified, "{name}");
        assert_eq!(
            common::read_json(&old.join("state.json"))["epoch"],
            2,
            "{name}"
        );
    }
}

#[test]
fn cut_files_and_damaged_fallbacks_end_in_one_line_and_old_folders_load_with_a_note() {
    let f = Fixture::new();
    let run = f.copy("cut");
    let model = run.join("checkpoints/best/model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let export = binary()
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(f.path("exported"))
        .output()
        .unwrap();
    let line = error_line(&export);
    assert!(
        line.contains("best/model.safetensors") && line.contains("bytes"),
        "{line}"
    );
    assert!(
        !f.path("exported").exists(),
        "a failed export left a folder"
    );

    // Both `last` and `last.old` damaged: nothing to fall back to.
    let run = f.copy("both");
    flip_middle_byte(&run.join("checkpoints/last/state.json"));
    flip_middle_byte(&run.join("checkpoints/last.old/model.safetensors"));
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let line = error_line(&resume(&run));
    assert!(line.contains("last/state.json"), "{line}");

    // A folder from before manifests: loads, and says its files are not verified.
    let run = f.copy("old");
    std::fs::remove_file(run.join("checkpoints/last/manifest.json")).unwrap();
    let out = eval(&run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("note:") && stderr.contains("not verified"),
        "{stderr}"
    );
}
