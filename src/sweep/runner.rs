//! Runs a plan: each run a child process of the same binary (a crash in one cannot take the
//! sweep down), `jobs` at a time; finished runs are skipped, interrupted ones continue with
//! `--resume`; a failed run is recorded with its error in status.json and the others go on.
//! Ctrl-C (or SIGTERM) stops launching runs and passes the stop on to the running ones, which
//! save their checkpoints.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Plan, PlannedRun, RunState};
use crate::train::interrupt;
use crate::util::files::write_json;

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
}

struct Active {
    index: usize,
    device: usize,
    child: Child,
    started: Instant,
    log_offset: u64,
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
            });
        }
        if active.is_empty() {
            break;
        }
        if interrupt::requested() && !forwarded {
            active.iter().for_each(|a| stop(&a.child));
            forwarded = true;
        }
        let mut still = Vec::with_capacity(active.len());
        for mut a in active {
            let Some(exit) = a.child.try_wait()? else {
                still.push(a);
                continue;
            };
            let seconds = a.started.elapsed().as_secs_f64();
            let entry = &mut status.runs[a.index];
            let run = &plan.runs[a.index];
            *entry = ended(run, entry.log.clone(), exit, seconds, a.log_offset);
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

/// Starts `run` in its own process group (so Ctrl-C reaches it once, through [`stop`]), its
/// output appended to `log`; returns the child, how it continues, and where its log starts.
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
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", options.exe.display()))?;
    Ok((child, state.continue_flag(), offset))
}

/// Asks a running child to stop as Ctrl-C does (it finishes its step and saves).
fn stop(child: &Child) {
    #[cfg(unix)]
    // SAFETY: kill(2) with the pid of a child this process started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    #[cfg(not(unix))]
    let _ = child;
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
