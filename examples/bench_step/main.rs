//! Cost of one training step for every method, through the library's own steps: vanilla AdamW,
//! PAC stage 1 (learned noise and the bound), PAC stage 2 and PGD (fixed noise); a stage-1 step
//! taken apart into its parts; the one-off K(λ) estimation; memory (peak, bytes the PAC state
//! adds per trainable parameter, growth over a long PAC run). Prints a table, writes JSON.
//!
//!     cargo run --release --example bench_step -- --model assets/models/all-MiniLM-L6-v2 \
//!         --batch 32 --seq 128 --device cpu --json out.json
//!     cargo run --release --example bench_step -- --model small --device 0 --batch 8 --seq 32 \
//!         --steps 30 --k-examples 8 --growth-batch 2 --growth-seq 16
//!
//! Models: a local HF folder, or with random weights: `bert-base` (12 layers, hidden 768),
//! `small` (2 layers, hidden 128), `qwen2.5-0.5b` and `modernbert-base` (the real shapes). Inputs are random token ids of exactly `seq` tokens
//! (full attention mask) with random binary labels, from `--seed`. One model and one AdamW are
//! shared by all methods (a step costs the same whatever the weights), and the methods' timed
//! steps are interleaved, in an order that rotates and reverses, so that machine noise hits
//! all of them alike.
//! Every timed step ends with a device sync. A method's ratio to vanilla is the median over
//! rounds of its step over that round's vanilla step, shown with the p25–p75 of those ratios
//! (the JSON adds the ratio of medians and every round's times).
//!
//! Memory: the PAC state's bytes per parameter are the live bytes before and after it exists
//! (the device allocator's bytes in use; on the CPU device the live heap, counted by this
//! program's global allocator, since RSS keeps what the allocator holds after a free); growth
//! compares the device allocator's reservation (CPU device: RSS) after step 10 and the last.
//! K(λ) with the default n = 100 is about half of a run on a small CPU, more on lavapipe:
//! `--k-examples` and `--growth-steps/--growth-batch/--growth-seq` shrink the one-off parts,
//! and the JSON records them. `--k-mrpc GLUE_DIR` times K(λ) on the paper's MRPC pairs, whose
//! lengths vary, instead of random examples of `--seq` tokens. `--mrpc GLUE_DIR` also times the
//! steps on them, in the state training reaches (see `real.rs`), beside a vanilla step of the
//! same shapes in the fresh state, and reports the processor, the matrix products' instruction
//! set, flush-to-zero and GFLOP/s against the processor's peak:
//!
//!     cargo run --release --example bench_step -- --mrpc "$GLUE_DIR" --device cpu \
//!         --torch-anchor --growth-steps 0 --json out.json

#[path = "../common/mod.rs"]
mod common;
mod real;
mod torch;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use clap::Parser;
use common::{Spread, git_revision, median, spread, sync, write_report};
use pac_wgpu::data::{Batch, Examples, Prepared, pass_cost};
use pac_wgpu::glue::sample::few_shot;
use pac_wgpu::glue::{DataSource, Label, Split, Task};
use pac_wgpu::model::trainable::{self, Scope, Trainable};
use pac_wgpu::model::{BertConfig, Classifier, Encoder, HeadKind, ModelConfig, Pretrained};
use pac_wgpu::optim::{AdamW, AdamWConfig};
use pac_wgpu::pac::noise::NoiseSource;
use pac_wgpu::pac::{self, PacTuning, PriorDraws, bound};
use pac_wgpu::pac::{KERNEL_PARTS, PARTS};
use pac_wgpu::step::{self, Lrs, Part, StepContext};
use pac_wgpu::train::{TrainConfig, TrainSet, method};
use pac_wgpu::util::device::{
    DeviceChoice, MemoryReading, is_cpu, memory, readbacks, select, uploads,
};
use pac_wgpu::util::kernel::launch::launches;
use pac_wgpu::util::kernel::watch::{LaunchCount, Pipelines};
use pac_wgpu::util::tokenize::{Encoded, TextTokenizer};
use pollster::block_on;
use serde_json::{Value, json};
use torch::{AnchorInputs, TorchAnchor, cpu_threads};

#[derive(Parser)]
struct Args {
    /// A local HF model folder, or `bert-base`, `small`, `qwen2.5-0.5b`, `modernbert-base`
    /// (random weights).
    #[arg(long, default_value = "assets/models/all-MiniLM-L6-v2")]
    model: String,
    /// auto, cpu or a wgpu adapter index (`pac-wgpu devices`).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Timed steps per method.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps per method first (kernel compilation, autotune, optimiser state).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Training examples n of the K(λ) estimation (each of `seq` tokens, unless --k-mrpc).
    #[arg(long, default_value_t = 100)]
    k_examples: usize,
    /// Batch size of the K(λ) estimation's forwards (`train --eval-batch-size`).
    #[arg(long, default_value_t = 64)]
    k_batch: usize,
    /// Estimate K(λ) on real pairs instead: the `--k-examples` MRPC training pairs that
    /// `train --task mrpc --seed <SEED>` draws from this glue_data folder, tokenized by the
    /// model's tokenizer (at most 128 tokens; needs a model folder).
    #[arg(long, value_name = "GLUE_DIR")]
    k_mrpc: Option<PathBuf>,
    /// Time every step on those pairs too (implies --k-mrpc): the paper's batch of all
    /// `--k-examples` pairs, cut by length as `train` cuts it, after --trained-steps vanilla
    /// steps on it; --batch and --seq are then unused.
    #[arg(long, value_name = "GLUE_DIR")]
    mrpc: Option<PathBuf>,
    /// Untimed vanilla steps on the --mrpc batch first: the state a run reaches (the loss falls,
    /// the logits move apart, the gradients shrink).
    #[arg(long, default_value_t = 30)]
    trained_steps: usize,
    /// PAC stage-1 steps of the memory-growth run (0 skips it; else more than 10).
    #[arg(long, default_value_t = 500)]
    growth_steps: usize,
    /// Batch size of the memory-growth run.
    #[arg(long, default_value_t = 4)]
    growth_batch: usize,
    /// Sequence length of the memory-growth run.
    #[arg(long, default_value_t = 32)]
    growth_seq: usize,
    /// Seed of the inputs, the head, the K estimation and the PAC noise.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also time PyTorch's vanilla step of the same model and shape (benches/torch_step.py),
    /// interleaved with ours; skipped, and said so, when torch or transformers is missing.
    #[arg(long)]
    torch_anchor: bool,
    /// The Python that runs the PyTorch anchor.
    #[arg(long, default_value = "python3")]
    python: String,
    /// What trains (`train --trainable`): full, bitfit, or lora (rank 8 on the family's
    /// query and value layers, as `train` defaults).
    #[arg(long, default_value = "full")]
    trainable: TrainSet,
    /// Recompute activations in the backward pass (`train --checkpoint-activations`).
    #[arg(long)]
    checkpoint_activations: bool,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The training defaults of `pac-wgpu train`.
const LRS: Lrs = Lrs {
    encoder: 5e-5,
    head: 1e-2,
    max_grad_norm: None,
};
const TRAIN_EMBEDDINGS: bool = false;

/// `train`'s config with the `--trainable` set (adapters, scope), the rest the paper's.
fn run_config(trainable: TrainSet, checkpoint_activations: bool) -> TrainConfig {
    TrainConfig {
        trainable,
        checkpoint_activations,
        train_embeddings: TRAIN_EMBEDDINGS,
        ..TrainConfig::paper(Task::Mrpc)
    }
}
/// n of the PAC state (the paper's few-shot size).
const N_TRAIN: usize = 100;
/// PGD's fixed noise std (any value costs the same).
const PGD_STD: f64 = 1e-3;
/// The growth run reads memory after this step and after its last.
const GROWTH_FROM: usize = 10;

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Vanilla,
    Stage1,
    Stage2,
    Pgd,
}

impl Method {
    const ALL: [Method; 4] = [Method::Vanilla, Method::Stage1, Method::Stage2, Method::Pgd];

    fn key(self) -> &'static str {
        match self {
            Method::Vanilla => "vanilla",
            Method::Stage1 => "pac_stage1",
            Method::Stage2 => "pac_stage2",
            Method::Pgd => "pgd",
        }
    }
}

/// (this project's kernel launches, uploads, bytes uploaded, read-backs, bytes read back) so
/// far.
fn traffic_counts() -> [u64; 5] {
    let (count, up) = uploads();
    let (readbacks, down) = readbacks();
    [launches(), count, up, readbacks, down]
}

/// What one more step of each method costs the device: every kernel launch (cubecl's and this
/// project's; none on the CPU device), this project's own launches, the uploads (the batch's
/// tensors, our kernels' parameter blocks) and their bytes, and the host's read-backs (each a
/// wait for the device) and their bytes.
fn device_traffic(bench: &mut Bench) -> Result<Value> {
    println!(
        "\nper step      launches  ours  uploads  bytes up  read-backs  bytes down  launches/vanilla"
    );
    let mut out = serde_json::Map::new();
    let mut vanilla_launches = 0;
    for method in Method::ALL {
        let before = traffic_counts();
        let count = LaunchCount::start();
        bench.run(method, &mut |_| {})?;
        let all = count.total();
        let after = traffic_counts();
        let d: [u64; 5] = std::array::from_fn(|i| after[i] - before[i]);
        if method == Method::Vanilla {
            vanilla_launches = all;
        }
        // None on the CPU device, which launches no kernels.
        let ratio = Some(all as f64 / vanilla_launches as f64).filter(|r| r.is_finite());
        println!(
            "{:<12} {:>9} {:>5} {:>8} {:>9} {:>11} {:>11} {:>17}",
            method.key(),
            all,
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            ratio.map_or("n/a".into(), |r| format!("{r:.2}"))
        );
        let counts = json!({
            "launches": all, "launches_over_vanilla": ratio, "our_launches": d[0],
            "uploads": d[1], "bytes_up": d[2], "readbacks": d[3], "bytes_down": d[4],
            "launches_by_kernel": count.by_kernel(),
        });
        out.insert(method.key().into(), counts);
    }
    Ok(Value::Object(out))
}

/// Milliseconds per part of one step, the device synchronised at every boundary.
struct Laps<'a> {
    device: &'a Device,
    last: Instant,
    ms: [f64; PARTS.len()],
    error: Option<anyhow::Error>,
}

impl<'a> Laps<'a> {
    fn start(device: &'a Device) -> Result<Self> {
        sync(device)?;
        Ok(Laps {
            device,
            last: Instant::now(),
            ms: [0.0; PARTS.len()],
            error: None,
        })
    }

    /// Charges the time since the last boundary to `part`.
    fn lap(&mut self, part: Part) {
        if let Err(e) = sync(self.device) {
            self.error.get_or_insert(e);
        }
        let now = Instant::now();
        let at = PARTS
            .iter()
            .position(|p| *p == part)
            .expect("a part of pac::PARTS");
        self.ms[at] += (now - self.last).as_secs_f64() * 1000.0;
        self.last = now;
    }
}

/// A model, its optimisers and one batch: what every method's step needs.
struct Bench {
    /// The autodiff device the model trains on, and its plain twin.
    device: Device,
    plain: Device,
    /// Taken out by a step and put back after it.
    model: Option<Classifier>,
    trainable: Vec<Trainable>,
    adam: AdamW,
    pac: Option<PacTuning>,
    pgd_p: Vec<Tensor<1>>,
    batch: Batch,
    seed: u32,
    /// Noise steps drawn so far (the Philox key's step).
    noise_step: u32,
    /// Largest device allocator reservation seen after a step.
    peak_device: Option<u64>,
    /// The tensors that train.
    scope: Scope,
}

impl Bench {
    fn key(&mut self) -> NoiseSource<1> {
        self.noise_step += 1;
        NoiseSource::Philox {
            seed: self.seed,
            step: self.noise_step,
        }
    }

    /// One step of `method`, in ms until the device is idle.
    fn step(&mut self, method: Method) -> Result<f64> {
        let start = Instant::now();
        self.run(method, &mut |_| {})?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    }

    /// A PAC stage-1 step taken apart at its own part boundaries, in ms per part.
    fn stage1_parts(&mut self) -> Result<[f64; PARTS.len()]> {
        let plain = self.plain.clone();
        let mut laps = Laps::start(&plain)?;
        self.run(Method::Stage1, &mut |part| laps.lap(part))?;
        match laps.error {
            Some(e) => Err(e),
            None => Ok(laps.ms),
        }
    }

    /// One step of `method`, `lap` told of each part; returns once the device is idle.
    fn run(&mut self, method: Method, lap: &mut dyn FnMut(Part)) -> Result<()> {
        let key = self.key();
        let model = self.model.take().context("the model is lost")?;
        let mut ctx = StepContext {
            trainable: &self.trainable,
            scope: self.scope,
            adam: &mut self.adam,
            lrs: LRS,
            device: &self.device,
            lap,
        };
        let (batch, tau) = (&self.batch, &|_| key.clone());
        let pac = self.pac.as_mut().context("no PAC state");
        let (model, outcome) = match method {
            Method::Vanilla => block_on(step::plain(model, &mut ctx, batch))?,
            Method::Pgd => block_on(pac::perturbed_step(
                model,
                &self.pgd_p,
                &mut ctx,
                batch,
                tau,
            ))?,
            Method::Stage1 => {
                let (model, outcome) = block_on(pac?.stage1_step(model, &mut ctx, batch, tau))?;
                (model, outcome.map(|r| r.step))
            }
            Method::Stage2 => block_on(pac?.stage2_step(model, &mut ctx, batch, tau))?,
        };
        sync(&self.plain)?;
        self.model = Some(model);
        outcome.done()?;
        self.note_memory();
        Ok(())
    }

    /// The weight gradients of a step on the batch at the current weights (no update).
    fn gradients(&mut self) -> Result<Vec<Option<Tensor<1>>>> {
        let model = self.model.as_ref().context("the model is lost")?;
        let ctx = StepContext {
            trainable: &self.trainable,
            scope: self.scope,
            adam: &mut self.adam,
            lrs: LRS,
            device: &self.device,
            lap: &mut |_| {},
        };
        let (_, grads) = block_on(step::forward_backward(model, &ctx, &self.batch))?;
        Ok(grads)
    }

    /// Memory growth over `steps` PAC stage-1 steps on `data`, from step [`GROWTH_FROM`] on:
    /// the device allocator's reservation, else the RSS.
    fn growth_run(&mut self, data: &Prepared, steps: usize) -> Result<Growth> {
        self.batch = whole_batch(data, &self.device);
        let mut first = None;
        for s in 1..=steps {
            self.step(Method::Stage1)?;
            if s == GROWTH_FROM {
                first = Some(Snapshot::take(&self.plain)?);
            }
        }
        let first = first.context("the growth run ended before step 10")?;
        let last = Snapshot::take(&self.plain)?;
        let ((from_bytes, measured_with), (to_bytes, _)) = (first.held()?, last.held()?);
        Ok(Growth {
            from_step: GROWTH_FROM,
            to_step: steps,
            batch: data.len(),
            seq: data.encoded.first().map_or(0, |e| e.input_ids.len()),
            measured_with,
            from_bytes,
            to_bytes,
            growth: to_bytes as f64 / from_bytes as f64 - 1.0,
            at_from: first,
            at_to: last,
        })
    }

    /// Keeps the largest device allocator reservation seen (the pools keep their pages, so
    /// this is the peak up to the last reading).
    fn note_memory(&mut self) {
        if let Some(reserved) = memory(&self.plain).device_bytes_reserved {
            self.peak_device = Some(self.peak_device.map_or(reserved, |p| p.max(reserved)));
        }
    }
}

/// The system allocator, counting the bytes of live heap allocations: on the CPU device, where
/// tensors live on the heap, the exact analogue of a device allocator's bytes in use (RSS also
/// counts what the allocator keeps after a free).
struct CountingAlloc;

static HEAP_LIVE: AtomicU64 = AtomicU64::new(0);
static HEAP_PEAK: AtomicU64 = AtomicU64::new(0);

fn heap_grew(bytes: usize) {
    let now = HEAP_LIVE.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
    HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to `System` unchanged; only the counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            heap_grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            heap_grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HEAP_LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let out = unsafe { System.realloc(ptr, layout, new_size) };
        if !out.is_null() {
            HEAP_LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
            heap_grew(new_size);
        }
        out
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Memory once the device is idle: the project's reading and the live heap bytes.
#[derive(Clone, Copy, serde::Serialize)]
struct Snapshot {
    #[serde(flatten)]
    reading: MemoryReading,
    heap_bytes_in_use: u64,
}

impl Snapshot {
    fn take(plain: &Device) -> Result<Self> {
        sync(plain)?;
        Ok(Snapshot {
            reading: memory(plain),
            heap_bytes_in_use: HEAP_LIVE.load(Ordering::Relaxed),
        })
    }

    /// Bytes in live tensors: the device allocator's, else (CPU device) the live heap.
    fn live(&self) -> (u64, &'static str) {
        match self.reading.device_bytes_in_use {
            Some(b) => (b, "device_bytes_in_use"),
            None => (self.heap_bytes_in_use, "heap_bytes_in_use"),
        }
    }

    /// Bytes the process holds: the device allocator's reservation, else the RSS.
    fn held(&self) -> Result<(u64, &'static str)> {
        match (self.reading.device_bytes_reserved, self.reading.rss_bytes) {
            (Some(b), _) => Ok((b, "device_bytes_reserved")),
            (None, Some(b)) => Ok((b, "rss_bytes")),
            (None, None) => bail!("no memory figure on this platform (/proc/self/status)"),
        }
    }
}

/// The classifier (2 labels, embeddings frozen, no dropout) and its encoder's configuration.
fn build_model(name: &str, seed: u64, device: &Device) -> Result<(Classifier, ModelConfig)> {
    let (encoder, config) = match name {
        "bert-base" => {
            let c = ModelConfig::Bert(BertConfig::bert_base());
            (Encoder::new(&c, 0.0, device)?, c)
        }
        "small" => {
            let c = ModelConfig::Bert(BertConfig::sized(30522, 128, 2, 2, 512));
            (Encoder::new(&c, 0.0, device)?, c)
        }
        "qwen2.5-0.5b" | "modernbert-base" => {
            let c = ModelConfig::from_text(Path::new(name), real_size_config(name))?;
            (Encoder::new(&c, 0.0, device)?, c)
        }
        folder => {
            let path = Path::new(folder);
            if !path.join("config.json").is_file() {
                bail!(
                    "--model {folder:?}: not a HF model folder (no config.json), bert-base, small, qwen2.5-0.5b or modernbert-base"
                );
            }
            let m = Pretrained::load(path, 0.0, device)?;
            (m.encoder, m.config)
        }
    };
    let encoder = match TRAIN_EMBEDDINGS {
        true => encoder,
        false => encoder.freeze_embeddings(),
    };
    let model = Classifier::new(encoder, &config, HeadKind::Cls, 2, 0.0, seed, device);
    Ok((model, config))
}

/// The hub's config.json of Qwen/Qwen2.5-0.5B or answerdotai/ModernBERT-base (the keys that
/// set the shapes and the maths), for random weights of the real sizes.
fn real_size_config(name: &str) -> &'static str {
    match name {
        "qwen2.5-0.5b" => {
            r#"{"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "tie_word_embeddings": true, "use_sliding_window": false,
            "sliding_window": 32768, "max_window_layers": 24, "hidden_act": "silu",
            "bos_token_id": 151643, "eos_token_id": 151643}"#
        }
        _ => {
            r#"{"model_type": "modernbert", "hidden_size": 768, "intermediate_size": 1152,
            "num_hidden_layers": 22, "num_attention_heads": 12, "vocab_size": 50368,
            "max_position_embeddings": 8192, "global_attn_every_n_layers": 3,
            "local_attention": 128, "global_rope_theta": 160000.0, "local_rope_theta": 10000.0,
            "norm_eps": 1e-5, "norm_bias": false, "pad_token_id": 50283,
            "classifier_pooling": "mean"}"#
        }
    }
}

/// `count` examples of exactly `seq` random token ids and random binary labels.
fn random_examples(count: usize, seq: usize, vocab: usize, seed: u64) -> Prepared {
    random_ids((0..count).map(|_| vec![0; seq]), vocab, seed)
}

/// One example per item of `token_types`, of its length: random token ids above the special
/// tokens (as real text mostly is), these token types, and a random binary label.
fn random_ids(token_types: impl Iterator<Item = Vec<u32>>, vocab: usize, seed: u64) -> Prepared {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let low = 1000.min(vocab / 2);
    let (mut encoded, mut labels) = (Vec::new(), Vec::new());
    for token_type_ids in token_types {
        let input_ids = token_type_ids
            .iter()
            .map(|_| (low + next() % (vocab - low)) as u32)
            .collect();
        encoded.push(Encoded {
            input_ids,
            token_type_ids,
        });
        labels.push(Label::Class(next() % 2));
    }
    Prepared {
        encoded,
        labels,
        ..Prepared::default()
    }
}

/// The `n` MRPC training pairs that `train --task mrpc --seed <seed>` draws from `glue_dir`,
/// tokenized by the model folder `model`'s tokenizer, and its pad id.
fn mrpc_examples(glue_dir: &Path, model: &str, n: usize, seed: u64) -> Result<(Prepared, u32)> {
    let folder = Path::new(model);
    if !folder.is_dir() {
        bail!("--k-mrpc needs --model to be a model folder with a tokenizer, found {model:?}");
    }
    let tokenizer = TextTokenizer::from_model_dir(folder, 128)?;
    let source = DataSource::new(Some(glue_dir.to_path_buf()));
    let train = source.load(&Task::Mrpc, Split::Train)?;
    let rows = few_shot(train.examples.len(), n, seed);
    Ok((
        Prepared::new(&train, Some(&rows), &tokenizer)?,
        tokenizer.pad_id(),
    ))
}

/// One batch of one micro-batch holding all of `data`.
fn whole_batch(data: &Prepared, device: &Device) -> Batch {
    let rows: Vec<usize> = (0..data.len()).collect();
    Batch {
        micro: vec![(data.batch(&rows, 0), data.targets(&rows, device))],
        len: data.len(),
    }
}

/// Timed steps per method and stage-1 breakdowns (ms per part), one of each per round.
struct Timings {
    times: [Vec<f64>; Method::ALL.len()],
    parts: Vec<[f64; PARTS.len()]>,
}

impl Timings {
    fn median(&self, method: Method) -> f64 {
        median(&self.times[method as usize])
    }

    /// The median over rounds of `method`'s step over the same round's vanilla step. A round
    /// runs every method back to back, so a machine that slows down for a while (lavapipe's
    /// medians move by several % between runs) slows both sides of each ratio.
    fn ratio(&self, method: Method) -> f64 {
        self.ratio_spread(method).median
    }

    /// The spread of those per-round ratios: on a noisy machine a target can be missed or met
    /// by noise alone, and p25–p75 shows how far.
    fn ratio_spread(&self, method: Method) -> Spread {
        self.over_vanilla(&self.times[method as usize])
    }

    /// The spread of `times` over the same round's vanilla step.
    fn over_vanilla(&self, times: &[f64]) -> Spread {
        let vanilla = &self.times[Method::Vanilla as usize];
        let paired: Vec<f64> = times.iter().zip(vanilla).map(|(t, v)| t / v).collect();
        spread(&paired)
    }

    fn part_medians(&self) -> Vec<f64> {
        (0..PARTS.len())
            .map(|q| median(&self.parts.iter().map(|p| p[q]).collect::<Vec<_>>()))
            .collect()
    }

    /// The median over rounds of all parts together.
    fn parts_total(&self) -> f64 {
        median(
            &self
                .parts
                .iter()
                .map(|p| p.iter().sum())
                .collect::<Vec<_>>(),
        )
    }

    /// Median time of the noise and KL parts over [`Timings::parts_total`].
    fn kernels_share(&self) -> f64 {
        let kernels: Vec<f64> = self
            .parts
            .iter()
            .map(|p| {
                PARTS
                    .iter()
                    .zip(p)
                    .filter(|(q, _)| KERNEL_PARTS.contains(q))
                    .map(|(_, ms)| ms)
                    .sum()
            })
            .collect();
        median(&kernels) / self.parts_total()
    }
}

/// Memory over a long PAC stage-1 run.
#[derive(serde::Serialize)]
struct Growth {
    from_step: usize,
    to_step: usize,
    batch: usize,
    seq: usize,
    /// The figure compared: the device allocator's reservation, else the RSS.
    measured_with: &'static str,
    from_bytes: u64,
    to_bytes: u64,
    /// to_bytes / from_bytes − 1.
    growth: f64,
    at_from: Snapshot,
    at_to: Snapshot,
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

fn main() -> Result<()> {
    // K(λ)'s prior models per std: the paper's, as `train` uses them.
    let prior_models = pac_wgpu::train::TrainConfig::paper(pac_wgpu::glue::Task::Mrpc).prior_models;
    let gamma = pac_wgpu::train::TrainConfig::paper_gamma(&Task::Mrpc);
    let args = Args::parse();
    pac_wgpu::util::device::keep_freed_memory();
    for (flag, value) in [
        ("--batch", args.batch),
        ("--seq", args.seq),
        ("--steps", args.steps),
        ("--warmup", args.warmup),
        ("--k-examples", args.k_examples),
        ("--k-batch", args.k_batch),
        ("--growth-batch", args.growth_batch),
        ("--growth-seq", args.growth_seq),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if args.growth_steps != 0 && args.growth_steps <= GROWTH_FROM {
        bail!("--growth-steps must be 0 (skip) or more than {GROWTH_FROM}");
    }
    let started = Instant::now();
    let pipelines = Pipelines::start();
    let selected = select(args.device)?;
    let plain = selected.device.clone();
    let run_config = run_config(args.trainable, args.checkpoint_activations);
    let device = run_config.training_device(&plain);
    let scope = method::scope(&run_config);
    let (model, config) = build_model(&args.model, args.seed, &device)?;
    let model = method::prepare_model(model, &run_config, &device)?;
    let longest = args.seq.max(args.growth_seq);
    if longest > config.max_tokens() {
        bail!(
            "sequences of {longest} tokens exceed the model's {} positions",
            config.max_tokens()
        );
    }
    let tensors = trainable::list(&model, scope);
    let model_params = model.num_params();
    let trainable: usize = tensors.iter().map(Trainable::numel).sum();
    let vocab = config.vocab_size();
    eprintln!(
        "{} on {}: {} trainable tensors, {} trainable parameters",
        args.model,
        selected.name,
        tensors.len(),
        trainable
    );

    eprintln!(
        "K(λ) estimation: {} examples × {} prior stds × {prior_models} models…",
        args.k_examples,
        bound::PRIOR_GRID_POINTS
    );
    let (k_data, pad) = match args.mrpc.as_ref().or(args.k_mrpc.as_ref()) {
        Some(glue_dir) => mrpc_examples(glue_dir, &args.model, args.k_examples, args.seed)?,
        None => (
            random_examples(args.k_examples, args.seq, vocab, args.seed ^ 0x4b),
            0,
        ),
    };
    let k_start = Instant::now();
    let k_examples = Examples {
        data: &k_data,
        pad,
        batch_size: args.k_batch,
    };
    let (k_hat, _) = block_on(pac::estimate_k(
        &model.valid(),
        scope,
        &k_examples,
        bound::fixed_gamma(gamma),
        PriorDraws {
            models: prior_models,
            seed: args.seed,
        },
        &plain,
        &mut |_, _| {},
    ))?;
    let k_ms = k_start.elapsed().as_secs_f64() * 1000.0;
    let length = |i: usize| k_data.encoded[i].input_ids.len();
    let k_batches = k_data
        .length_order()
        .batches(args.k_batch, pass_cost(&plain))
        .iter()
        .map(|b| b.len() * length(b[0]))
        .collect::<Vec<_>>();
    let k_forwards = bound::PRIOR_GRID_POINTS * prior_models * k_batches.len();
    let k_tokens: usize = (0..k_data.len()).map(length).sum();
    let k_slots: usize = k_batches.iter().sum();

    let batch = match args.mrpc {
        Some(_) => real::training_batch(&k_data, pad, &device),
        None => whole_batch(
            &random_examples(args.batch, args.seq, vocab, args.seed),
            &device,
        ),
    };
    let step_flop = real::step_flop(&config, &batch);
    let k_cuts = real::cuts(&k_data, args.k_batch, &plain);
    let k_pass_flop = real::forward_batches_flop(&config, &k_data, &k_cuts.1);
    let mut bench = Bench {
        device,
        plain: plain.clone(),
        model: Some(model),
        pgd_p: pac::isotropic_p(&tensors, PGD_STD, &plain),
        adam: AdamW::new(AdamWConfig::default(), tensors.len()),
        trainable: tensors,
        pac: None,
        batch,
        seed: args.seed as u32,
        noise_step: 0,
        peak_device: None,
        scope,
    };

    // --mrpc: the trained state, what its gradients hold, and a fresh model on random inputs of
    // the same lengths beside it.
    let mut fresh = None;
    let mut subnormals = None;
    if args.mrpc.is_some() {
        eprintln!("{} vanilla steps on the MRPC batch…", args.trained_steps);
        for _ in 0..args.trained_steps {
            bench.step(Method::Vanilla)?;
        }
        let grads = bench.gradients()?;
        let model = bench.model.as_ref().context("the model is lost")?;
        let names: Vec<String> = bench.trainable.iter().map(|t| t.name.clone()).collect();
        let held = real::subnormals(model, &plain, &bench.batch, &grads, &names);
        subnormals = Some(block_on(held)?);
        let (model, _) = build_model(&args.model, args.seed ^ 0xf4e5, &bench.device)?;
        let model = method::prepare_model(model, &run_config, &bench.device)?;
        let data = real::random_like(&k_data, vocab, args.seed ^ 0x72);
        fresh = Some(Bench {
            device: bench.device.clone(),
            plain: plain.clone(),
            adam: AdamW::new(AdamWConfig::default(), bench.trainable.len()),
            trainable: trainable::list(&model, scope),
            model: Some(model),
            pac: None,
            pgd_p: Vec::new(),
            batch: real::training_batch(&data, pad, &bench.device),
            seed: args.seed as u32,
            noise_step: 0,
            peak_device: None,
            scope,
        });
    }

    // Warm-up; the PAC state is created between two readings once the rest is in place.
    eprintln!("warm-up: {} step(s) per method…", args.warmup);
    for _ in 0..args.warmup {
        bench.step(Method::Vanilla)?;
        bench.step(Method::Pgd)?;
        if let Some(fresh) = fresh.as_mut() {
            fresh.step(Method::Vanilla)?;
        }
    }
    let without_pac = Snapshot::take(&plain)?;
    let heap_peak_without_pac = HEAP_PEAK.load(Ordering::Relaxed);
    let model = bench.model.as_ref().context("the model is lost")?;
    bench.pac = Some(block_on(PacTuning::init(
        model,
        &bench.trainable,
        scope,
        N_TRAIN,
        gamma,
        k_hat,
        usize::MAX,
    ))?);
    for _ in 0..args.warmup {
        bench.step(Method::Stage1)?;
        bench.step(Method::Stage2)?;
        bench.stage1_parts()?;
    }
    let with_pac = Snapshot::take(&plain)?;
    let (before, measured_with) = without_pac.live();
    let (after, _) = with_pac.live();
    let pac_bytes_per_param = (after as f64 - before as f64) / trainable as f64;

    let mut anchor = match args.torch_anchor {
        true => {
            eprintln!("starting the PyTorch anchor…");
            let inputs = match args.mrpc {
                Some(_) => {
                    let path = real::anchor_file(args.json.as_deref())?;
                    real::write_anchor_file(&path, &k_data, pad, &k_cuts, args.trained_steps)?;
                    AnchorInputs::File(path)
                }
                None => AnchorInputs::Random {
                    batch: args.batch,
                    seq: args.seq,
                },
            };
            let started =
                TorchAnchor::start(&args.python, &args.model, &config, &inputs, args.warmup)?;
            if let AnchorInputs::File(path) = &inputs {
                let _ = std::fs::remove_file(path);
            }
            if let Err(why) = &started {
                eprintln!("PyTorch anchor skipped: {why}");
            }
            started
        }
        false => Err("not asked for (--torch-anchor)".to_string()),
    };

    // Timed: the four methods, the breakdown and the PyTorch anchor, in an order that rotates
    // every round and runs backwards every other round, so that no method always follows the
    // same one (a step can leave the allocator and caches in a state the next one pays for).
    let timed_start = Instant::now();
    let mut times: [Vec<f64>; Method::ALL.len()] = Default::default();
    let mut parts: Vec<[f64; PARTS.len()]> = Vec::new();
    let mut torch_times = Vec::new();
    let (mut fresh_times, mut torch_forward_times) = (Vec::new(), Vec::new());
    let n = Method::ALL.len();
    let jobs = n + 4;
    for round in 0..args.steps {
        for k in 0..jobs {
            let k = if round % 2 == 0 { k } else { jobs - 1 - k };
            match ((round + k) % jobs, anchor.as_mut(), fresh.as_mut()) {
                (m, _, _) if m < n => times[m].push(bench.step(Method::ALL[m])?),
                (m, _, _) if m == n => parts.push(bench.stage1_parts()?),
                (m, Ok(torch), _) if m == n + 1 => torch_times.push(torch.step()?),
                (m, _, Some(fresh)) if m == n + 2 => fresh_times.push(fresh.step(Method::Vanilla)?),
                (m, Ok(torch), _) if m == n + 3 && args.mrpc.is_some() => {
                    torch_forward_times.push(torch.forward()?)
                }
                _ => {}
            }
        }
        eprintln!("timed round {}/{}", round + 1, args.steps);
    }
    let timed_s = timed_start.elapsed().as_secs_f64();
    let traffic = device_traffic(&mut bench)?;

    let growth_start = Instant::now();
    let growth = if args.growth_steps > 0 {
        eprintln!(
            "growth run: {} stage-1 steps at {} × {}…",
            args.growth_steps, args.growth_batch, args.growth_seq
        );
        let data = random_examples(args.growth_batch, args.growth_seq, vocab, args.seed ^ 0x67);
        Some(bench.growth_run(&data, args.growth_steps)?)
    } else {
        None
    };
    let growth_s = growth_start.elapsed().as_secs_f64();
    let end = memory(&plain);

    let t = Timings { times, parts };
    let ms: BTreeMap<&str, f64> = Method::ALL
        .iter()
        .map(|&m| (m.key(), t.median(m)))
        .collect();
    let part_ms = t.part_medians();
    let parts_total = t.parts_total();
    let kernels_share = t.kernels_share();
    let ratio = |m: Method| t.ratio(m);
    let ratio_of_medians = |m: Method| t.median(m) / t.median(Method::Vanilla);
    let quartiles = |m: Method| {
        let r = t.ratio_spread(m);
        [r.p25, r.p75]
    };
    let growth_value = growth.as_ref().map(|g| g.growth);

    // Table.
    let shape = match args.mrpc {
        Some(_) => format!("the MRPC batch of {} pairs", k_data.len()),
        None => format!("batch {} × seq {}", args.batch, args.seq),
    };
    println!(
        "\n{} on {} — {shape}, {} trainable tensors, {:.2} M trainable parameters, {} timed steps per method after {} warm-up",
        args.model,
        selected.name,
        bench.trainable.len(),
        trainable as f64 / 1e6,
        args.steps,
        args.warmup
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>15}",
        "step (ms)", "median", "min", "p25", "p75", "max", "×vanilla", "p25–p75"
    );
    for m in Method::ALL {
        let s = spread(&t.times[m as usize]);
        let r = t.ratio_spread(m);
        println!(
            "{:<22} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9.3} {:>7.3}–{:<7.3}",
            m.key(),
            s.median,
            s.min,
            s.p25,
            s.p75,
            s.max,
            r.median,
            r.p25,
            r.p75
        );
    }
    let torch = match &anchor {
        Ok(torch) if !torch_times.is_empty() => {
            let (s, r) = (spread(&torch_times), t.over_vanilla(&torch_times));
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9.3} {:>7.3}–{:<7.3}",
                "pytorch vanilla", s.median, s.min, s.p25, s.p75, s.max, r.median, r.p25, r.p75
            );
            json!({"about": torch.about, "torch_vanilla_ms": s.median, "ms_spread": s,
                   "torch_over_vanilla": r.median, "torch_over_vanilla_p25_p75": [r.p25, r.p75]})
        }
        Ok(_) => json!({"skipped": "no timed steps"}),
        Err(why) => json!({"skipped": why}),
    };
    println!("(×vanilla: the median over rounds of the step over that round's vanilla step)");
    println!("\nPAC stage-1 step taken apart (device synchronised around each part), median ms:");
    for (q, v) in PARTS.iter().zip(&part_ms) {
        let mark = if KERNEL_PARTS.contains(q) {
            "  [noise/KL kernel]"
        } else {
            ""
        };
        println!(
            "  {:<22} {:>10.1} {:>6.1} %{mark}",
            q,
            v,
            100.0 * v / parts_total
        );
    }
    println!(
        "  {:<22} {:>10.1}   (unsynchronised step: {:.1})",
        "all parts (median total)", parts_total, ms["pac_stage1"]
    );
    println!(
        "  noise + KL kernels: {:.2} % of a stage-1 step",
        100.0 * kernels_share
    );
    println!(
        "\nK(λ) estimation: n = {} {} ({} tokens in {} padded slots), {} prior stds × {prior_models} prior models, batch ≤ {} ({} forwards): {:.0} ms",
        args.k_examples,
        if args.k_mrpc.is_some() || args.mrpc.is_some() {
            "MRPC training pairs"
        } else {
            "random examples"
        },
        k_tokens,
        k_slots,
        bound::PRIOR_GRID_POINTS,
        args.k_batch,
        k_forwards,
        k_ms
    );
    let heap_peak = HEAP_PEAK.load(Ordering::Relaxed);
    let pac_adds_to_peak = heap_peak as f64 / heap_peak_without_pac as f64 - 1.0;
    println!(
        "memory ({} trainable): peak RSS {}, peak live heap {} ({:+.1} % over the {} before the PAC state existed), peak device reservation {}; {} model parameters",
        args.trainable.name(),
        mib(end.peak_rss_bytes),
        mib(Some(heap_peak)),
        100.0 * pac_adds_to_peak,
        mib(Some(heap_peak_without_pac)),
        mib(bench.peak_device),
        model_params
    );
    println!(
        "PAC state: {:.2} bytes ({:.2} f32) per trainable parameter measured ({measured_with} {} → {}), 16 bytes (4 f32: θ0, p, m_p, v_p) by arithmetic",
        pac_bytes_per_param,
        pac_bytes_per_param / 4.0,
        mib(Some(before)),
        mib(Some(after))
    );
    if let Some(g) = &growth {
        println!(
            "growth over a PAC run, step {} → {} at {} × {}: {} {} → {} ({:+.2} %)",
            g.from_step,
            g.to_step,
            g.batch,
            g.seq,
            g.measured_with,
            mib(Some(g.from_bytes)),
            mib(Some(g.to_bytes)),
            100.0 * g.growth
        );
    }
    let cpu = real::cpu_about(cpu_threads());
    let torch_ms = torch["torch_vanilla_ms"].as_f64();
    let torch_forward_ms = (!torch_forward_times.is_empty()).then(|| median(&torch_forward_times));
    let fresh_ms = (!fresh_times.is_empty()).then(|| median(&fresh_times));
    let k_passes = (bound::PRIOR_GRID_POINTS * prior_models) as f64;
    let rate = |ms: Option<f64>, flop: Option<f64>| ms.and_then(|ms| real::gflops(flop, ms));
    let real_data = args.mrpc.as_ref().map(|_| {
        json!({
            "trained_steps": args.trained_steps,
            "micro_batches": bench.batch.micro.iter().map(|(b, _)| [b.batch, b.seq]).collect::<Vec<_>>(),
            "fresh_vanilla_ms": fresh_ms,
            "vanilla_over_fresh": fresh_ms.map(|f| ms["vanilla"] / f),
            "torch_forward_ms": torch_forward_ms,
            "k_over_torch_forwards": torch_forward_ms.map(|f| k_ms / (k_passes * f)),
            "stage1_over_torch_step": torch_ms.map(|t| ms["pac_stage1"] / t),
            "trained_state": subnormals,
        })
    });
    let achieved = json!({
        "step_gflop": step_flop.map(|f| f / 1e9),
        "vanilla": rate(Some(ms["vanilla"]), step_flop),
        "pac_stage1": rate(Some(ms["pac_stage1"]), step_flop),
        "fresh_vanilla": rate(fresh_ms, step_flop),
        "pytorch_vanilla": rate(torch_ms, step_flop),
        "k_estimation": rate(Some(k_ms), k_pass_flop.map(|f| f * k_passes)),
        "pytorch_k_forwards": rate(torch_forward_ms, k_pass_flop),
    });
    let peak = cpu["peak_gflops"].as_f64();
    println!(
        "\nCPU: {}, {} threads, matrix products {}, subnormals flushed: {}, peak {} GFLOP/s (threads × 2 FMA units × {} lanes × 2 × {} MHz)",
        cpu["model"].as_str().unwrap_or("?"),
        cpu["threads"],
        cpu["gemm_isa"].as_str().unwrap_or("?"),
        cpu["flush_subnormals"],
        peak.map_or("?".into(), |p| format!("{p:.0}")),
        cpu["fma_lanes"],
        cpu["mhz"],
    );
    for key in [
        "vanilla",
        "pac_stage1",
        "fresh_vanilla",
        "pytorch_vanilla",
        "k_estimation",
        "pytorch_k_forwards",
    ] {
        if let Some(g) = achieved[key].as_f64() {
            let share = peak.map_or(String::new(), |p| {
                format!(" ({:.1} % of peak)", 100.0 * g / p)
            });
            println!("  {key:<22} {g:>8.1} GFLOP/s{share}");
        }
    }
    if let Some(real) = &real_data {
        println!(
            "MRPC batch after {} vanilla steps: {real}",
            args.trained_steps
        );
    }
    let targets = [
        ("stage1_le_1.10x_vanilla", Some(ratio(Method::Stage1)), 1.10),
        ("stage2_le_1.05x_vanilla", Some(ratio(Method::Stage2)), 1.05),
        ("pgd_le_1.05x_vanilla", Some(ratio(Method::Pgd)), 1.05),
        ("kernels_le_5pct_of_stage1", Some(kernels_share), 0.05),
        (
            "stage1_launches_le_1.3x_vanilla",
            traffic["pac_stage1"]["launches_over_vanilla"].as_f64(),
            1.3,
        ),
        (
            "readbacks_per_step_le_2",
            Method::ALL
                .iter()
                .filter_map(|m| traffic[m.key()]["readbacks"].as_f64())
                .reduce(f64::max),
            2.0,
        ),
        (
            "pac_state_le_5_f32_per_param",
            Some(pac_bytes_per_param / 4.0),
            5.0,
        ),
        ("device_growth_le_5pct", growth_value, 0.05),
        (
            "vanilla_le_1.0x_pytorch",
            torch["torch_over_vanilla"].as_f64().map(|r| 1.0 / r),
            1.0,
        ),
        (
            "mrpc_vanilla_le_1.2x_fresh",
            fresh_ms.map(|f| ms["vanilla"] / f),
            1.2,
        ),
        (
            "mrpc_stage1_le_0.8x_pytorch_step",
            torch_ms
                .filter(|_| args.mrpc.is_some())
                .map(|t| ms["pac_stage1"] / t),
            0.8,
        ),
        (
            "mrpc_k_le_0.5x_pytorch_forwards",
            torch_forward_ms.map(|f| k_ms / (k_passes * f)),
            0.5,
        ),
    ];
    println!("\ntargets:");
    for (name, value, limit) in targets {
        let met = match value.map(|v| v <= limit) {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let value = value.map_or("n/a".into(), |v| format!("{v:.4}"));
        println!("  {name:<30} {value:>10} (limit {limit}) {met}");
    }
    let targets: BTreeMap<&str, _> = targets
        .iter()
        .map(|&(name, value, limit)| {
            let met = value.map(|v| v <= limit);
            (name, json!({"value": value, "limit": limit, "met": met}))
        })
        .collect();

    let pipelines = Some(pipelines.count()).filter(|_| !is_cpu(&plain));
    if let Some(n) = pipelines {
        println!("pipelines this run compiled (distinct kernels launched): {n}");
    }
    let report = json!({
        "device": selected.name,
        "model": args.model,
        "git_revision": git_revision(),
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": args.seed,
        "trainable": args.trainable.name(),
        "checkpoint_activations": args.checkpoint_activations,
        "trainable_tensors": bench.trainable.len(),
        "trainable_params": trainable,
        "model_params": model_params,
        "ms": {
            "vanilla": ms["vanilla"],
            "pac_stage1": ms["pac_stage1"],
            "pac_stage2": ms["pac_stage2"],
            "pgd": ms["pgd"],
            "k_estimation": k_ms,
        },
        "ms_spread": Method::ALL.iter().map(|&m| (m.key(), json!(spread(&t.times[m as usize])))).collect::<BTreeMap<_, _>>(),
        "ms_per_round": Method::ALL.iter().map(|&m| (m.key(), &t.times[m as usize])).collect::<BTreeMap<_, _>>(),
        "stage1_breakdown_ms": {
            "parts": PARTS.iter().zip(&part_ms).map(|(q, v)| (*q, *v)).collect::<BTreeMap<_, _>>(),
            "kernel_parts": KERNEL_PARTS,
            "total_of_parts": parts_total,
            "unsynchronised_step": ms["pac_stage1"],
        },
        "threads": cpu_threads(),
        "cpu": cpu,
        "gflops": achieved,
        "mrpc": real_data,
        "anchors": torch,
        "ratios": {
            "torch_over_vanilla": torch["torch_over_vanilla"],
            "stage1_over_vanilla": ratio(Method::Stage1),
            "stage2_over_vanilla": ratio(Method::Stage2),
            "pgd_over_vanilla": ratio(Method::Pgd),
            "kernels_share_of_stage1": kernels_share,
        },
        "ratios_p25_p75": {
            "stage1_over_vanilla": quartiles(Method::Stage1),
            "stage2_over_vanilla": quartiles(Method::Stage2),
            "pgd_over_vanilla": quartiles(Method::Pgd),
        },
        "ratios_of_medians": {
            "stage1_over_vanilla": ratio_of_medians(Method::Stage1),
            "stage2_over_vanilla": ratio_of_medians(Method::Stage2),
            "pgd_over_vanilla": ratio_of_medians(Method::Pgd),
        },
        "k_estimation": {
            "examples": args.k_examples,
            "data": if args.k_mrpc.is_some() || args.mrpc.is_some() { "mrpc" } else { "random" },
            "tokens": k_tokens,
            "padded_slots": k_slots,
            "batch": args.k_batch,
            "prior_stds": bound::PRIOR_GRID_POINTS,
            "prior_models": prior_models,
            "forwards": k_forwards,
        },
        "device_traffic": traffic,
        "pipelines_per_run": pipelines,
        "memory": {
            "peak_rss_bytes": end.peak_rss_bytes,
            "peak_device_bytes": bench.peak_device,
            "peak_heap_bytes": heap_peak,
            "peak_heap_bytes_before_pac_state": heap_peak_without_pac,
            "pac_adds_to_peak_heap": pac_adds_to_peak,
            "peak_rss_bytes_per_model_param": end.peak_rss_bytes.map(|b| b as f64 / model_params as f64),
            "pac_state_bytes_per_param": pac_bytes_per_param,
            "pac_state_bytes_per_param_arithmetic": 16,
            "pac_state_measured_with": measured_with,
            "device_growth_10_to_500": growth_value,
            "growth": growth,
        },
        "targets": targets,
        "wall_s": {
            "k_estimation": k_ms / 1000.0,
            "timed": timed_s,
            "growth": growth_s,
            "total": started.elapsed().as_secs_f64(),
        },
    });
    write_report(args.json.as_deref(), &report)
}
