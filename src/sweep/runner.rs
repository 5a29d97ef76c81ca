//! Runs a plan: each run a child process of the same binary (a crash in one cannot take the
//! sweep down), `jobs` at a time; finished runs are skipped, interrupted ones continue with
//! `--resume`; a failed run is recorded with its error in status.json and the others go on.
//! Ctrl-C (or SIGTERM) stops launching runs and passes the stop on to the running ones, which
//! save their checkpoints.
//!
//! The sweep itself may die (kill -9): on Linux its children get the same stop as from Ctrl-C
//! when it does, and on every Unix the next sweep on the folder first stops any run an earlier
//! sweep left training. `sweep.lock` keeps one sweep per folder. A run that writes no history
//! line for `--run-timeout` seconds is killed and recorded as failed; the next sweep retries it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Plan, PlannedRun, RunState};
use crate::run::RUN_LOCK;
use crate::train::interrupt;
use crate::util::files::write_json;
use crate::util::lock::{Guard, local_pid};

/// `sweep.lock`: one sweep per `--out` folder.
pub const SWEEP_LOCK: Guard = Guard {
    file: "sweep.lock",
    flag: "--out",
    command: "sweep",
};

/// The exit status `pac-wgpu train` ends with when it stopped on request.
const INTERRUPTED_EXIT: i32 = 130;

/// status.json: how every run of the plan stands after the sweep's last invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub runs: Vec<RunStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub name: String,
    pub outcome: Outcome,
    /// A failed run's error, as its last `error:` line said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds this invocation spent on the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The run's stdout and stderr.
    pub log: PathBuf,
    /// The `--device` it last ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Finished,
    Failed,
    Interrupted,
    Pending,
}

/// How the runs are started.
pub struct Options {
    /// The `pac-wgpu` binary.
    pub exe: PathBuf,
    /// Runs at a time.
    pub jobs: usize,
    /// The `--device` values to spread runs over: each run starts on the one running the
    /// fewest runs (the first on ties).
    pub devices: Vec<String>,
    /// Flags added to every run's (`--quiet`).
    pub extra: Vec<String>,
    /// A run whose history.jsonl has not grown for this long is killed as stalled.
    pub run_timeout: Option<Duration>,
}

/// What the sweep reports as it goes.
pub enum Event<'a> {
    /// A run started: fresh, or continued with `--resume` / `--overwrite`.
    Started {
        run: &'a PlannedRun,
        how: Option<&'static str>,
        device: &'a str,
    },
    /// A run ended; `done` runs of `total` have ended (finished or failed) so far, and the rest
    /// should take about `eta` seconds.
    Ended {
        run: &'a PlannedRun,
        status: &'a RunStatus,
        done: usize,
        total: usize,
        eta: Option<f64>,
    },
    /// Something the user should know that is no error.
    Note(String),
}

struct Active {
    index: usize,
    device: usize,
    child: Child,
    started: Instant,
    log_offset: u64,
    /// The length of the run's history.jsonl, and when it last changed.
    history: (u64, Instant),
    /// Set when the run was killed for making no progress.
    stalled: Option<String>,
}

impl Active {
    /// Kills the run (its whole process group) when its history has not grown for `timeout`.
    fn check_progress(&mut self, run: &PlannedRun, timeout: Option<Duration>) {
        let Some(timeout) = timeout else { return };
        let len = std::fs::metadata(run.output_dir.join("history.jsonl")).map_or(0, |m| m.len());
        if len != self.history.0 {
            self.history = (len, Instant::now());
        } else if self.stalled.is_none() && self.history.1.elapsed() > timeout {
            let seconds = timeout.as_secs_f64();
            self.stalled = Some(format!(
                "no new history line for {seconds} s (--run-timeout {seconds}): killed as stalled; the next sweep retries it"
            ));
            signal_group(&self.child, Signal::Kill);
        }
    }
}

/// Runs every unfinished run of `plan` (in `out`) and returns the status written to
/// status.json.
pub fn run(
    out: &Path,
    plan: &Plan,
    options: &Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Status> {
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("{}: cannot create the log folder", logs.display()))?;
    let _lock = SWEEP_LOCK.acquire(out)?;
    stop_orphans(plan, on_event)?;
    let mut status = Status {
        runs: plan.runs.iter().map(|r| initial_status(r, &logs)).collect(),
    };
    let mut queue: VecDeque<usize> = (0..plan.runs.len())
        .filter(|&i| status.runs[i].outcome != Outcome::Finished)
        .collect();
    let total = plan.runs.len();
    let mut active: Vec<Active> = Vec::new();
    let mut durations: Vec<f64> = Vec::new();
    let mut forwarded = false;
    loop {
        while active.len() < options.jobs.max(1) && !interrupt::requested() {
            let Some(index) = queue.pop_front() else {
                break;
            };
            let run = &plan.runs[index];
            let device = least_busy(&active, options.devices.len());
            let name = &options.devices[device];
            let (child, how, log_offset) = spawn(run, &status.runs[index].log, options, name)?;
            on_event(Event::Started {
                run,
                how,
                device: name,
            });
            active.push(Active {
                index,
                device,
                child,
                started: Instant::now(),
                log_offset,
                history: (u64::MAX, Instant::now()),
                stalled: None,
            });
        }
        if active.is_empty() {
            break;
        }
        if interrupt::requested() && !forwarded {
            active
                .iter()
                .for_each(|a| signal_group(&a.child, Signal::Stop));
            forwarded = true;
        }
        let mut still = Vec::with_capacity(active.len());
        for mut a in active {
            a.check_progress(&plan.runs[a.index], options.run_timeout);
            let Some(exit) = a.child.try_wait()? else {
                still.push(a);
                continue;
            };
            let seconds = a.started.elapsed().as_secs_f64();
            let entry = &mut status.runs[a.index];
            let run = &plan.runs[a.index];
            *entry = ended(run, entry.log.clone(), exit, seconds, a.log_offset);
            if let Some(why) = a.stalled {
                (entry.outcome, entry.error) = (Outcome::Failed, Some(why));
            }
            entry.device = Some(options.devices[a.device].clone());
            if matches!(entry.outcome, Outcome::Finished | Outcome::Failed) {
                durations.push(seconds);
            }
            write_json(&out.join("status.json"), &status)?;
            let done = count(&status, Outcome::Finished) + count(&status, Outcome::Failed);
            let left = total - done;
            let eta = (!durations.is_empty()).then(|| {
                durations.iter().sum::<f64>() / durations.len() as f64 * left as f64
                    / options.jobs.max(1) as f64
            });
            on_event(Event::Ended {
                run,
                status: &status.runs[a.index],
                done,
                total,
                eta,
            });
        }
        active = still;
        std::thread::sleep(Duration::from_millis(20));
    }
    write_json(&out.join("status.json"), &status)?;
    Ok(status)
}

/// Runs entry `index` of `plan` with the terminal's stdout and stderr, and returns its exit
/// code (continued as in a sweep: skipped when finished, resumed when interrupted).
pub fn run_one(plan: &Plan, index: usize, options: &Options) -> Result<i32> {
    let run = plan.run(index)?;
    let state = RunState::of(&run.output_dir);
    if state == RunState::Finished {
        eprintln!(
            "{}: finished already ({})",
            run.name,
            run.output_dir.display()
        );
        return Ok(0);
    }
    let status = command(run, state, options, &options.devices[0])
        .status()
        .with_context(|| format!("cannot start {}", options.exe.display()))?;
    Ok(status.code().unwrap_or(1))
}

pub fn count(status: &Status, outcome: Outcome) -> usize {
    status.runs.iter().filter(|r| r.outcome == outcome).count()
}

fn initial_status(run: &PlannedRun, logs: &Path) -> RunStatus {
    let finished = RunState::of(&run.output_dir) == RunState::Finished;
    RunStatus {
        name: run.name.clone(),
        outcome: if finished {
            Outcome::Finished
        } else {
            Outcome::Pending
        },
        error: None,
        seconds: None,
        log: logs.join(format!("{}.log", run.name)),
        device: None,
    }
}

/// The device (index into `devices` of `count`) running the fewest of `active`.
fn least_busy(active: &[Active], count: usize) -> usize {
    (0..count)
        .min_by_key(|&d| active.iter().filter(|a| a.device == d).count())
        .unwrap_or(0)
}

/// `pac-wgpu <plan args> --device D [--resume | --overwrite] <extra>` for a run in `state`.
fn command(run: &PlannedRun, state: RunState, options: &Options, device: &str) -> Command {
    let mut cmd = Command::new(&options.exe);
    cmd.args(&run.args)
        .args(["--device", device])
        .args(state.continue_flag())
        .args(&options.extra);
    cmd
}

/// Starts `run` in its own process group (so Ctrl-C reaches it once, through
/// [`signal_group`]), its output appended to `log`; returns the child, how it continues, and
/// where its log starts. On Linux the child is stopped as by Ctrl-C when the sweep dies.
fn spawn(
    run: &PlannedRun,
    log: &Path,
    options: &Options,
    device: &str,
) -> Result<(Child, Option<&'static str>, u64)> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("{}: cannot open the run's log", log.display()))?;
    let offset = file.metadata()?.len();
    let state = RunState::of(&run.output_dir);
    let mut cmd = command(run, state, options, device);
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    #[cfg(target_os = "linux")]
    stop_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", options.exe.display()))?;
    Ok((child, state.continue_flag(), offset))
}

#[derive(Clone, Copy)]
enum Signal {
    /// SIGINT: finish the step, save, exit (as Ctrl-C).
    Stop,
    /// SIGKILL, for a run that no longer answers.
    Kill,
}

/// Sends `signal` to the process group of `child` (the run and anything it started).
fn signal_group(child: &Child, signal: Signal) {
    signal_pid(child.id(), signal, true);
}

fn signal_pid(pid: u32, signal: Signal, group: bool) {
    #[cfg(unix)]
    {
        let number = match signal {
            Signal::Stop => libc::SIGINT,
            Signal::Kill => libc::SIGKILL,
        };
        let target = if group {
            -(pid as libc::pid_t)
        } else {
            pid as libc::pid_t
        };
        // SAFETY: kill(2) on a process (group) this sweep started or found holding a run lock.
        unsafe {
            libc::kill(target, number);
        }
    }
    #[cfg(not(unix))]
    let _ = (pid, signal, group);
}

/// Linux: the child gets SIGINT when the sweep dies (also if it died before the child's exec).
#[cfg(target_os = "linux")]
fn stop_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and raise are async-signal-safe, as pre_exec requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            if libc::getppid() != parent {
                libc::raise(libc::SIGINT);
            }
            Ok(())
        });
    }
}

/// Stops the runs an earlier sweep on this folder left training (it was killed where children
/// do not die with it), waiting for each to save.
fn stop_orphans(plan: &Plan, on_event: &mut dyn FnMut(Event)) -> Result<()> {
    for run in &plan.runs {
        let Some(holder) = RUN_LOCK.holder(&run.output_dir) else {
            continue;
        };
        let Some(pid) = local_pid(&holder) else {
            anyhow::bail!(
                "{}: run {} is training on another machine (process {holder}); stop it first",
                run.output_dir.display(),
                run.name
            );
        };
        on_event(Event::Note(format!(
            "{}: left training by an earlier sweep (process {holder}); stopping it",
            run.name
        )));
        let (asked, started) = (Duration::from_secs(60), Instant::now());
        signal_pid(pid, Signal::Stop, false);
        while RUN_LOCK.holder(&run.output_dir).is_some() {
            if started.elapsed() > asked {
                signal_pid(pid, Signal::Kill, false);
            }
            if started.elapsed() > asked * 2 {
                anyhow::bail!(
                    "{}: process {pid} holds the run and does not stop; stop it first",
                    run.output_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

fn ended(run: &PlannedRun, log: PathBuf, exit: ExitStatus, seconds: f64, offset: u64) -> RunStatus {
    let finished = exit.success() && RunState::of(&run.output_dir) == RunState::Finished;
    let (outcome, error) = if finished {
        (Outcome::Finished, None)
    } else if exit.code() == Some(INTERRUPTED_EXIT) {
        (Outcome::Interrupted, None)
    } else {
        let error = last_error(&log, offset).unwrap_or_else(|| format!("exited with {exit}"));
        (Outcome::Failed, Some(error))
    };
    RunStatus {
        name: run.name.clone(),
        outcome,
        error,
        seconds: Some(seconds),
        log,
        device: None,
    }
}

/// The last `error: ...` line the run wrote to `log` after `offset`.
fn last_error(log: &Path, offset: u64) -> Option<String> {
    let mut file = File::open(log).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
}
