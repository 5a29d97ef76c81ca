//! The PyTorch anchor: `benches/torch_step.py` in a child process, taking one vanilla step of the
//! same model on the same inputs (random ones of the same shape, or the batch file bench_step's
//! `--mrpc` mode writes) and thread count whenever asked, or K(λ)'s forward passes, so that
//! its steps interleave with ours in the same rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use pac_wgpu::model::ModelConfig;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_step.py");

/// What the anchor trains on.
pub enum AnchorInputs {
    /// Random token ids of exactly `seq` tokens, as bench_step's default inputs.
    Random { batch: usize, seq: usize },
    /// A batch file (see benches/torch_step.py).
    File(std::path::PathBuf),
}

pub struct TorchAnchor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The script's `ready` line: PyTorch's version and thread count.
    pub about: String,
}

/// Threads of Burn's CPU device: rayon's global pool.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl TorchAnchor {
    /// Starts the script once `python -c "import torch, transformers"` works; else why not.
    pub fn start(
        python: &str,
        model: &str,
        config: &ModelConfig,
        inputs: &AnchorInputs,
        warmup: usize,
    ) -> Result<std::result::Result<Self, String>> {
        let probe = Command::new(python)
            .args(["-c", "import torch, transformers"])
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            return Ok(Err(format!(
                "`{python} -c \"import torch, transformers\"` failed"
            )));
        }
        let ModelConfig::Bert(c) = config else {
            bail!("--torch-anchor: the anchor is BertModel; {model} is not a BERT");
        };
        let mut cmd = Command::new(python);
        cmd.arg(SCRIPT)
            .args(["--threads", &cpu_threads().to_string()])
            .args(["--warmup", &warmup.to_string()])
            // Idle threads sleep between requests instead of spinning on the cores ours use.
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        match inputs {
            AnchorInputs::Random { batch, seq } => {
                cmd.args(["--batch", &batch.to_string(), "--seq", &seq.to_string()])
            }
            AnchorInputs::File(path) => cmd.arg("--data").arg(path),
        };
        if Path::new(model).join("config.json").is_file() {
            cmd.args(["--model", model]);
        } else {
            let sizes = [
                c.vocab_size,
                c.hidden_size,
                c.num_hidden_layers,
                c.num_attention_heads,
                c.intermediate_size,
                c.max_position_embeddings,
            ];
            let sizes: Vec<String> = sizes.iter().map(usize::to_string).collect();
            cmd.args(["--sizes", &sizes.join(",")]);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {SCRIPT}"))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let about = read_line(&mut stdout)?;
        if !about.starts_with("ready") {
            bail!("{SCRIPT}: expected `ready`, found {about:?}");
        }
        Ok(Ok(TorchAnchor {
            child,
            stdin,
            stdout,
            about,
        }))
    }

    /// One PyTorch step, in the milliseconds the script measured.
    pub fn step(&mut self) -> Result<f64> {
        self.ask("step")
    }

    /// One forward pass over each of the batch file's `forward` batches, in milliseconds.
    pub fn forward(&mut self) -> Result<f64> {
        self.ask("forward")
    }

    fn ask(&mut self, what: &str) -> Result<f64> {
        writeln!(self.stdin, "{what}").context("the PyTorch anchor is gone")?;
        let line = read_line(&mut self.stdout)?;
        line.parse()
            .with_context(|| format!("{SCRIPT}: expected milliseconds, found {line:?}"))
    }
}

impl Drop for TorchAnchor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(stdout: &mut BufReader<ChildStdout>) -> Result<String> {
    let mut line = String::new();
    if stdout.read_line(&mut line)? == 0 {
        bail!("{SCRIPT} ended early (its error is above)");
    }
    Ok(line.trim().to_string())
}
