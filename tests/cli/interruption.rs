//! Runs that are interrupted (Ctrl-C, kill -9), blow up numerically or run long, through the
//! binary with a tiny random BERT on the CPU device: nothing finished is lost, a resumed run
//! ends exactly where an uninterrupted one does, and memory stays flat.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{
    assert_flat, binary, history, history_without_timings, last_weights, read_json, resume_command,
    run_ok,
};

/// A tiny model and the toy SST-2 under a temporary folder.
struct Setup {
    tmp: tempfile::TempDir,
    model: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny-bert");
    common::tiny::write_model(&model, 11, |_| {});
    common::tiny::write_toy_sst2(tmp.path());
    Setup { tmp, model }
}

impl Setup {
    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// PAC on the 20 toy examples, 2 per step: 10 steps an epoch, stage 2 from epoch 31.
    fn train(&self, out: &Path) -> Command {
        let mut cmd = self.base(out);
        cmd.args([
            "--batch-size",
            "2",
            "--epochs",
            "40",
            "--stage1-epochs",
            "30",
        ])
        .args(["--eval-every-epochs", "5"]);
        cmd
    }

    /// Checkpoint `last` after every epoch: most tests here stop runs between epochs.
    fn base(&self, out: &Path) -> Command {
        self.saving_every(out, "0")
    }

    fn saving_every(&self, out: &Path, save_interval: &str) -> Command {
        let mut cmd = binary();
        cmd.args(["train", "--task", "sst2", "--device", "cpu", "--quiet"])
            .args(["--save-interval", save_interval])
            .args(["--train-size", "0", "--seed", "5", "--model"])
            .arg(&self.model)
            .arg("--data-dir")
            .arg(self.tmp.path())
            .arg("--output-dir")
            .arg(out);
        cmd
    }
}

/// The state of the last checkpoint: `checkpoints/last`, or `last.old` when a kill landed
/// while the two were being swapped (as `--resume` reads it).
fn last_state(run: &Path) -> serde_json::Value {
    let last = run.join("checkpoints/last/state.json");
    match last.is_file() {
        true => read_json(&last),
        false => read_json(&run.join("checkpoints/last.old/state.json")),
    }
}

/// Starts `cmd` and waits until it has finished and saved at least one epoch (history is
/// written before the checkpoint, so the checkpoint is what shows an epoch saved).
fn start_and_wait_for_an_epoch(cmd: &mut Command, out: &Path) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("checkpoints/last/state.json").is_file() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first epoch");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// What must match between an interrupted-then-resumed run and an uninterrupted one.
fn assert_same_run(resumed: &Path, full: &Path) {
    assert_eq!(
        history_without_timings(resumed),
        history_without_timings(full)
    );
    let (a, b) = (
        read_json(&resumed.join("summary.json")),
        read_json(&full.join("summary.json")),
    );
    for key in ["best", "final", "bound", "epochs_run"] {
        assert_eq!(a[key], b[key], "summary {key}");
    }
    assert!(
        last_weights(resumed) == last_weights(full),
        "final weights differ"
    );
}

#[test]
fn ctrl_c_finishes_the_step_saves_and_resumes_to_the_same_result() {
    let s = setup();
    let full = s.out("full");
    run_ok(&mut s.train(&full));

    let cut = s.out("cut");
    let child = start_and_wait_for_an_epoch(&mut s.train(&cut), &cut);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted at epoch"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let state = last_state(&cut);
    let steps = state["step"].as_u64().unwrap();
    assert!(steps < 400, "the run was not interrupted: {state}");

    run_ok(&mut resume_command(&cut));
    assert_same_run(&cut, &full);
    // The summary's wall time counts the interrupted invocation too.
    let before = state["wall_seconds"].as_f64().unwrap();
    let total = read_json(&cut.join("summary.json"))["wall_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        before > 0.0 && total > before,
        "wall {before} s then {total} s"
    );
}

/// The seed of the kill delay: `$PAC_WGPU_KILL_SEED` to replay a run, else taken from the clock.
fn kill_seed() -> u64 {
    match std::env::var("PAC_WGPU_KILL_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PAC_WGPU_KILL_SEED={v:?}: expected an unsigned integer")),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// The delay after the first epoch at which the kill lands: 0..400 ms from the seed (SplitMix64's
/// output function, so neighbouring seeds give unrelated delays).
fn kill_delay(seed: u64) -> Duration {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Duration::from_millis((z ^ (z >> 31)) % 400)
}

/// The kill delay is a function of the seed alone (so a printed seed replays it): known
/// answers from Python, `(mix64(seed + 0x9E3779B97F4A7C15) % 400)` with SplitMix64's mix64.
#[test]
fn kill_delay_is_replayable_from_its_seed() {
    assert_eq!(kill_delay(0), Duration::from_millis(335));
    assert_eq!(kill_delay(1), Duration::from_millis(65));
    assert_eq!(kill_delay(12345), Duration::from_millis(144));
}

/// kill -9 at a moment drawn from a printed seed; a failure replays with
/// `PAC_WGPU_KILL_SEED=<seed> cargo test --release --test cli interruption::kill_9 -- --nocapture`
/// (the same delay; where the run then is still depends on the machine's speed).
#[test]
fn kill_9_at_a_random_moment_leaves_a_checkpoint_that_resumes_to_the_same_result() {
    let s = setup();
    let full = s.out("full");
    run_ok(&mut s.train(&full));

    let seed = kill_seed();
    let delay = kill_delay(seed);
    eprintln!("kill seed {seed} (PAC_WGPU_KILL_SEED={seed} replays it): delay {delay:?}");
    let cut = s.out("cut");
    let mut child = start_and_wait_for_an_epoch(&mut s.train(&cut), &cut);
    let holder = format!("process {}@", child.id());
    let second = resume_command(&cut).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second run into a busy folder started"
    );
    assert!(
        stderr.contains("another pac-wgpu train is running there") && stderr.contains(&holder),
        "{stderr}"
    );
    std::thread::sleep(delay);
    child.kill().unwrap();
    child.wait().unwrap();
    let state = last_state(&cut);
    eprintln!("killed {delay:?} after the first epoch (seed {seed}), at {state}");

    let resumed = resume_command(&cut).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("note: took over the run lock left by {holder}")),
        "{stderr}"
    );
    assert!(
        !cut.join("run.lock").exists(),
        "a finished run left its lock"
    );
    assert_same_run(&cut, &full);
}

/// Vanilla with absurd learning rates: the first step is finite, after it the weights are not.
fn blow_up(mut cmd: Command, extra: &[&str]) -> std::process::Output {
    cmd.args(["--method", "vanilla", "--batch-size", "20", "--epochs", "3"])
        .args(["--lr-encoder", "1e38", "--lr-head", "1e38"])
        .args(extra);
    cmd.output().unwrap()
}

#[test]
fn a_save_interval_skips_checkpoints_between_epochs_but_the_last_epoch_writes_one() {
    let s = setup();
    let out = s.out("interval");
    let result = blow_up(s.saving_every(&out, "3600"), &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(
        stderr.contains("(last good checkpoint: none yet)"),
        "{stderr}"
    );
    assert!(!out.join("checkpoints/last").exists());

    let whole = s.out("interval-whole");
    let mut cmd = s.saving_every(&whole, "3600");
    run_ok(cmd.args(["--method", "vanilla", "--batch-size", "20", "--epochs", "2"]));
    let state = read_json(&whole.join("checkpoints/last/state.json"));
    assert_eq!(state["epoch"], 2, "{state}");
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_term_step_and_last_checkpoint() {
    let s = setup();
    let out = s.out("nan");
    let result = blow_up(s.base(&out), &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    let line = stderr.lines().last().unwrap();
    assert!(
        line.starts_with("error: epoch 2 step 1: loss1 is"),
        "{stderr}"
    );
    assert!(line.contains("checkpoints/last (epoch 1)"), "{stderr}");
    assert!(line.contains("--on-nonfinite skip"), "{stderr}");
    // The checkpoint it names is the finished first epoch.
    assert_eq!(
        read_json(&out.join("checkpoints/last/state.json"))["epoch"],
        1
    );
}

#[test]
fn on_nonfinite_skip_skips_such_steps_and_counts_them() {
    let s = setup();
    let out = s.out("skip");
    let result = blow_up(s.base(&out), &["--on-nonfinite", "skip"]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let skipped: Vec<u64> = history_without_timings(&out)
        .iter()
        .map(|r| r["skipped_steps"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped, [0, 1, 1]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("epoch 2 step 1: skipped, loss1 is"),
        "{stderr}"
    );
}

/// 1 000 PAC steps (100 epochs of 10): memory is flat from step 20 to the end and a second run
/// with the same seed is identical. (The reading after step 10 precedes the first checkpoint
/// and plots, whose one-off allocations would count as growth.)
#[test]
fn a_thousand_pac_steps_keep_memory_flat_and_repeat_exactly() {
    let s = setup();
    let long = |out: &Path| {
        let mut cmd = s.base(out);
        cmd.args([
            "--batch-size",
            "2",
            "--epochs",
            "100",
            "--stage1-epochs",
            "80",
        ])
        .args(["--eval-every-epochs", "50"]);
        cmd
    };
    let (a, b) = (s.out("a"), s.out("b"));
    run_ok(&mut long(&a));
    let history = history(&a);
    assert_eq!(history.last().unwrap()["step"], 1000);
    assert_flat(&history, "rss_bytes", 2, 100);

    run_ok(&mut long(&b));
    assert_eq!(history_without_timings(&a), history_without_timings(&b));
    assert!(last_weights(&a) == last_weights(&b), "final weights differ");
}

/// A disk that fills up between checkpoints: every file the run writes is limited (RLIMIT_FSIZE,
/// so writes fail with EFBIG where a full disk gives ENOSPC) to fewer bytes than a checkpoint. The run
/// ends with one line that says what to do, the checkpoint before is whole, and it resumes.
#[test]
fn a_full_disk_ends_the_run_cleanly_and_keeps_the_checkpoint_before() {
    use std::os::unix::process::CommandExt;
    let s = setup();
    let out = s.out("disk");
    run_ok(
        s.base(&out)
            .args(["--method", "vanilla", "--epochs", "1", "--batch-size", "10"])
            .arg("--train-embeddings"),
    );
    let before = last_weights(&out);
    // The optimiser's moments (m and v of every trainable tensor) are the largest file.
    let moments_bytes = std::fs::metadata(out.join("checkpoints/last/optimizer.safetensors"))
        .unwrap()
        .len();

    // Above every plot and history file, below the weights: the checkpoint is what fails.
    let largest_plot = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(
        largest_plot < moments_bytes,
        "{largest_plot} {moments_bytes}"
    );
    let limit = (largest_plot + moments_bytes) / 2;
    let mut full = resume_command(&out);
    full.args(["--epochs", "3"]);
    // Safety: only async-signal-safe calls between fork and exec.
    unsafe {
        full.pre_exec(move || {
            let cap = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let result = full.output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "the run ignored a full disk: {stderr}"
    );
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: saving epoch 2 failed")
            && line.contains("--resume")
            && line.contains("File too large"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        last_weights(&out) == before,
        "the checkpoint before the full disk changed"
    );
    let state = read_json(&out.join("checkpoints/last/state.json"));
    assert_eq!(state["epoch"], 1, "{state}");

    run_ok(resume_command(&out).args(["--epochs", "3"]));
    let epochs: Vec<u64> = history(&out)
        .iter()
        .map(|r| r["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
}
