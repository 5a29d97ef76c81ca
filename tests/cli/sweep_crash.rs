//! A sweep that survives its own crash: kill -9 of the sweep stops its runs, and the same
//! command then ends exactly as an uninterrupted sweep; a second sweep on the folder is
//! refused at once; a run left training is stopped before the sweep goes on; a stalled run is
//! killed, recorded as failed, and retried by the next sweep.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{binary, history_without_timings, last_weights, read_json};
use pac_wgpu::run::RUN_LOCK;

/// Two PAC runs (seeds 1 and 2) of a tiny BERT, long enough to be stopped in the middle.
struct Setup {
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        common::tiny::write_model(&tmp.path().join("tiny-bert"), 19, |_| {});
        common::tiny::write_toy_sst2(tmp.path());
        Setup { tmp }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn sweep(&self, out: &Path, extra: &[&str]) -> Command {
        let mut cmd = binary();
        cmd.args([
            "sweep",
            "--device",
            "cpu",
            "--tasks",
            "sst2",
            "--methods",
            "pac",
        ])
        .args(["--seeds", "1-2", "--jobs", "1", "--out"])
        .arg(out)
        .args(extra)
        .args([
            "--",
            "--train-size",
            "0",
            "--epochs",
            "60",
            "--stage1-epochs",
            "40",
        ])
        .args(["--batch-size", "2", "--save-interval", "0", "--model"])
        .arg(self.tmp.path().join("tiny-bert"))
        .arg("--data-dir")
        .arg(self.tmp.path());
        cmd
    }

    fn spawn(&self, out: &Path, extra: &[&str]) -> Child {
        let mut cmd = self.sweep(out, extra);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }
}

fn run_dir(out: &Path, seed: u64) -> PathBuf {
    out.join("runs").join(format!("sst2-pac-{seed}"))
}

/// Waits until run `seed` has written a history line, and returns its process id.
fn wait_for_training(out: &Path, seed: u64, sweep: &mut Child) -> u32 {
    let dir = run_dir(out, seed);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = sweep.try_wait().unwrap() {
            panic!("the sweep ended ({status}) before run {seed} trained");
        }
        assert!(Instant::now() < deadline, "run {seed}: no epoch in 120 s");
        if dir.join("history.jsonl").is_file()
            && let Some(holder) = RUN_LOCK.holder(&dir)
        {
            return holder.split_once('@').unwrap().0.parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_until_free(dir: &Path, within: Duration) {
    let started = Instant::now();
    while RUN_LOCK.holder(dir).is_some() {
        assert!(
            started.elapsed() < within,
            "{}: still training",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{name} {pid}");
}

fn assert_ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn assert_same_runs(out: &Path, full: &Path) {
    for seed in [1, 2] {
        let (a, b) = (run_dir(out, seed), run_dir(full, seed));
        assert_eq!(
            history_without_timings(&a),
            history_without_timings(&b),
            "seed {seed}"
        );
        assert!(
            last_weights(&a) == last_weights(&b),
            "seed {seed}: weights differ"
        );
        let (sa, sb) = (
            read_json(&a.join("summary.json")),
            read_json(&b.join("summary.json")),
        );
        for key in ["best", "final", "bound"] {
            assert_eq!(sa[key], sb[key], "seed {seed}: summary {key}");
        }
    }
}

fn outcome(out: &Path, seed: u64) -> (String, String) {
    let status = read_json(&out.join("status.json"));
    let run = status["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == format!("sst2-pac-{seed}"))
        .unwrap()
        .clone();
    let error = run["error"].as_str().unwrap_or_default().to_string();
    (run["outcome"].as_str().unwrap().to_string(), error)
}

#[test]
fn kill_9_of_the_sweep_stops_its_run_and_the_same_command_ends_as_an_uninterrupted_sweep() {
    let s = Setup::new();
    let full = s.out("full");
    assert_ok(&s.sweep(&full, &[]).output().unwrap());

    let cut = s.out("cut");
    let mut sweep = s.spawn(&cut, &[]);
    wait_for_training(&cut, 1, &mut sweep);
    signal(sweep.id(), "KILL");
    sweep.wait().unwrap();
    // The run saw its parent die and stopped as on Ctrl-C.
    wait_until_free(&run_dir(&cut, 1), Duration::from_secs(30));
    assert!(
        !run_dir(&cut, 1).join("summary.json").exists(),
        "the run had finished"
    );

    assert_ok(&s.sweep(&cut, &[]).output().unwrap());
    assert_same_runs(&cut, &full);
}

#[test]
fn a_second_sweep_is_refused_at_once_and_a_run_left_training_is_stopped_first() {
    let s = Setup::new();
    let out = s.out("sweep");
    let mut first = s.spawn(&out, &[]);
    wait_for_training(&out, 1, &mut first);
    let started = Instant::now();
    let second = s.sweep(&out, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("another pac-wgpu sweep is running there"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second sweep waited"
    );
    signal(first.id(), "INT");
    assert_eq!(first.wait().unwrap().code(), Some(130));

    // A run training with no sweep (as one an earlier sweep left on a system where runs do
    // not die with it) is stopped, then resumed by the sweep.
    let plan = read_json(&out.join("plan.json"));
    let args: Vec<String> = plan["runs"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut left = binary()
        .args(&args)
        .args(["--device", "cpu", "--quiet", "--resume"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = run_dir(&out, 1);
    while RUN_LOCK.holder(&dir).is_none() {
        assert!(
            left.try_wait().unwrap().is_none(),
            "the left run ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stderr = assert_ok(&s.sweep(&out, &[]).output().unwrap());
    assert!(
        stderr.contains("left training by an earlier sweep"),
        "{stderr}"
    );
    assert_eq!(
        left.wait().unwrap().code(),
        Some(130),
        "the left run was not stopped"
    );
    assert_eq!(outcome(&out, 1).0, "finished");
}

#[test]
fn a_stalled_run_is_killed_recorded_as_failed_and_retried_by_the_next_sweep() {
    let s = Setup::new();
    let out = s.out("sweep");
    let mut sweep = s.spawn(&out, &["--run-timeout", "2"]);
    let pid = wait_for_training(&out, 1, &mut sweep);
    signal(pid, "STOP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sweep.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            signal(pid, "KILL");
            let _ = sweep.kill();
            panic!("the stalled run was not killed within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended = sweep.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert!(!ended.status.success(), "{stderr}");
    let (what, error) = outcome(&out, 1);
    assert_eq!(what, "failed", "{error}");
    assert!(error.contains("--run-timeout 2"), "{error}");
    assert_eq!(
        outcome(&out, 2).0,
        "finished",
        "the other run did not go on"
    );

    assert_ok(&s.sweep(&out, &["--run-timeout", "30"]).output().unwrap());
    assert_eq!(outcome(&out, 1).0, "finished");
}
