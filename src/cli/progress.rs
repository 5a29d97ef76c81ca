//! `train`'s progress on a terminal: K(λ)'s forward passes with their own count and ETA, then
//! the steps with the epoch, PAC's stage, the loss and an ETA from the mean step time so far
//! (evaluations counted apart), and a note while dev is evaluated.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pac_wgpu::run::EpochRecord;
use pac_wgpu::train::{Method, TrainConfig};

pub struct ProgressLine {
    bar: ProgressBar,
    /// The run's epochs, PAC's stage-1 epochs (None for the other methods) and evaluation
    /// period.
    epochs: usize,
    stage1_epochs: Option<usize>,
    eval_every: usize,
    steps_per_epoch: usize,
    steps_left: usize,
    /// Seconds of training (evaluation excluded) and steps, since this invocation started.
    train_seconds: f64,
    steps_done: usize,
    /// When the current epoch's steps began, and the evaluations' mean seconds.
    epoch_start: Instant,
    eval_seconds: Vec<f64>,
    k_start: Option<Instant>,
}

impl ProgressLine {
    pub fn new(config: &TrainConfig, first_epoch: usize, steps_per_epoch: usize) -> ProgressLine {
        let steps_left = (config.epochs - first_epoch) * steps_per_epoch;
        let bar = ProgressBar::new(steps_left as u64);
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}  [{elapsed_precise}]");
        bar.set_style(style.expect("valid template"));
        ProgressLine {
            bar,
            epochs: config.epochs,
            stage1_epochs: (config.method == Method::Pac).then_some(config.stage1_epochs),
            eval_every: config.eval_every_epochs,
            steps_per_epoch,
            steps_left,
            train_seconds: 0.0,
            steps_done: 0,
            epoch_start: Instant::now(),
            eval_seconds: Vec::new(),
            k_start: None,
        }
    }

    /// K(λ)'s `done` of `total` forward passes; the steps' count takes over after the last.
    pub fn k_estimation(&mut self, done: usize, total: usize) {
        let started = *self.k_start.get_or_insert_with(Instant::now);
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        let per_pass = started.elapsed().as_secs_f64() / done.max(1) as f64;
        let eta = clock(per_pass * (total - done) as f64);
        self.bar
            .set_message(format!("K(λ) forward passes (before epoch 1), ETA {eta}"));
        if done == total {
            self.bar.set_length(self.steps_left as u64);
            self.bar.set_position(0);
            self.bar.reset_elapsed();
            self.epoch_start = Instant::now();
        }
    }

    pub fn step(&mut self, epoch: usize, step_in_epoch: usize, loss: f64) {
        self.steps_done += 1;
        let stage = match self.stage1_epochs {
            Some(stage1) if epoch < stage1 => "stage 1 · ",
            Some(_) => "stage 2 · ",
            None => "",
        };
        let eta = clock(self.eta(epoch, step_in_epoch));
        self.bar.set_message(format!(
            "{stage}epoch {}/{} step {} · loss {loss:.4} · ETA {eta}",
            epoch + 1,
            self.epochs,
            step_in_epoch + 1
        ));
        self.bar.inc(1);
    }

    /// Seconds left after step `step_in_epoch` of `epoch` (0-based): the steps left at the mean
    /// step time, and the evaluations left at their mean time.
    fn eta(&self, epoch: usize, step_in_epoch: usize) -> f64 {
        let trained = self.train_seconds + self.epoch_start.elapsed().as_secs_f64();
        let per_step = trained / self.steps_done.max(1) as f64;
        let steps_left = (self.epochs - epoch) * self.steps_per_epoch - (step_in_epoch + 1);
        let evals_left = (epoch + 1..=self.epochs)
            .filter(|e| e % self.eval_every == 0 || *e == self.epochs)
            .count();
        let per_eval = match self.eval_seconds.len() {
            0 => 0.0,
            n => self.eval_seconds.iter().sum::<f64>() / n as f64,
        };
        per_step * steps_left as f64 + per_eval * evals_left as f64
    }

    pub fn evaluating(&self, epoch: usize, examples: usize) {
        self.bar.set_message(format!(
            "epoch {}/{}: evaluating on dev ({examples} examples)",
            epoch + 1,
            self.epochs
        ));
        self.bar.tick();
    }

    /// Prints the epoch's line (and the switch to stage 2 after stage 1's last epoch).
    pub fn epoch(&mut self, record: &EpochRecord, line: String) {
        self.train_seconds += record.epoch_seconds;
        self.eval_seconds.extend(record.eval_seconds);
        self.epoch_start = Instant::now();
        self.bar.println(line);
        if let Some(switch) = stage_switch(self.stage1_epochs, record) {
            self.bar.println(switch);
        }
    }

    pub fn println(&self, line: String) {
        self.bar.println(line);
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// After PAC's last stage-1 epoch: what stage 2 does from the next one.
pub fn stage_switch(stage1_epochs: Option<usize>, record: &EpochRecord) -> Option<String> {
    let stage1 = stage1_epochs.filter(|&s| s == record.epoch)?;
    let j = record
        .bound
        .map_or(String::new(), |j| format!(" with bound J {j:.4}"));
    Some(format!(
        "stage 1 ended at epoch {stage1}{j}; stage 2 (gradient descent with the learned noise, frozen) from epoch {}",
        stage1 + 1
    ))
}

/// `h:mm:ss`, or `m:ss` under an hour.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}
