//! One training run from bytes, as `pac-wgpu train` runs it: the same config, data sampling,
//! steps, records and run-folder files, with no file system and every read-back awaited.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

use pac_wgpu::glue::read::{read_glue_bytes, read_text_bytes};
use pac_wgpu::glue::{Dataset, Label, Split, Task};
use pac_wgpu::model::load::load_encoder_bytes;
use pac_wgpu::model::{Classifier, ModelConfig, to_host};
use pac_wgpu::run::EpochRecord;
use pac_wgpu::train::checkpoint::{LoopState, model_bytes};
use pac_wgpu::train::epochs::{self, Progress};
use pac_wgpu::train::{self, Method, Session, TrainConfig, predictions_tsv};
use pac_wgpu::util::device::DeviceChoice;
use pac_wgpu::util::files::as_written;
use pac_wgpu::util::kernel::watch::Pipelines;
use pac_wgpu::util::tokenize::{TextTokenizer, TokenizerFile};

/// A file picked or fetched by the page: its name and bytes.
pub struct NamedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a run needs: the model folder's files, the data and the options (`pac-wgpu train`'s
/// flags as run.json spells them, over the paper's defaults).
pub struct Inputs {
    /// The model folder's name, recorded as run.json's `model`.
    pub model_name: String,
    pub config_json: String,
    pub weights: Vec<u8>,
    /// tokenizer.json or vocab.txt.
    pub tokenizer: NamedFile,
    pub train: NamedFile,
    pub dev: NamedFile,
    pub options: serde_json::Value,
}

/// What the run reports as it goes, sent to the page as JSON.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event<'a> {
    Start {
        device: &'a str,
        /// The dev metric that picks the best epoch.
        metric: &'a str,
        train_examples: usize,
        dev_examples: usize,
        epochs: usize,
        steps_per_epoch: usize,
    },
    KEstimation {
        done: usize,
        total: usize,
    },
    Step {
        epoch: usize,
        step: u64,
        loss1: f64,
        kl: Option<f64>,
    },
    Epoch {
        record: &'a EpochRecord,
    },
}

/// The files of a run folder, by path inside it.
pub type RunFiles = Vec<(String, Vec<u8>)>;

/// The run as `pac-wgpu train` would write it, ready for `pac-wgpu eval --run`.
pub async fn run(
    inputs: Inputs,
    device: Device,
    device_name: &str,
    clock: &dyn Fn() -> f64,
    on_event: &mut dyn FnMut(Event),
) -> Result<RunFiles> {
    let started = clock();
    let pipelines = Pipelines::start();
    let (config, train_is_glue) = config_of(&inputs)?;
    let task = config.validate()?;
    let config_path = Path::new("config.json");
    let model_config = ModelConfig::from_text(config_path, &inputs.config_json)?;
    model_config.check_max_length(config_path, config.max_length)?;
    let tokenizer = tokenizer_of(&inputs, config.max_length)?.with_pad_id(model_config.pad_id());
    let train_set = dataset(&inputs.train, &task, Split::Train, &config, train_is_glue)?;
    let dev_set = dataset(&inputs.dev, &task, Split::Dev, &config, train_is_glue)?;

    let plain = device;
    let device = config.training_device(&plain);
    let (encoder, _) = load_encoder_bytes(
        inputs.weights,
        Path::new("model.safetensors"),
        &model_config,
        config.dropout,
        &device,
    )?;
    let config = &config;
    let splits = (&train_set, &dev_set);
    let (run, model) =
        Session::from_splits(config, plain, splits, &tokenizer, encoder, &model_config)?;
    on_event(Event::Start {
        device: device_name,
        metric: run.task.main_metric().name(),
        train_examples: run.train.len(),
        dev_examples: run.dev.len(),
        epochs: config.epochs,
        steps_per_epoch: run.steps_per_epoch(),
    });

    let trained = train_epochs(&run, model, (clock, started), on_event).await?;
    let summary = run.summary(
        &trained.history,
        &trained.state,
        clock() - started,
        device_name,
        Some(pipelines.count()),
    );
    let mut files: RunFiles = vec![
        ("run.json".into(), json(&run.written_config())?),
        ("history.jsonl".into(), jsonl(&trained.history)?),
        ("summary.json".into(), json(&summary)?),
    ];
    if let Some(best) = trained.best {
        let dir = "checkpoints/best";
        files.extend([
            (format!("{dir}/model.safetensors"), best.weights),
            (
                format!("{dir}/config.json"),
                inputs.config_json.into_bytes(),
            ),
            (
                format!("{dir}/{}", inputs.tokenizer.name),
                inputs.tokenizer.bytes,
            ),
            (format!("{dir}/state.json"), json(&best.state)?),
            (
                format!("{dir}/dev_predictions.tsv"),
                best.predictions.into_bytes(),
            ),
        ]);
    }
    Ok(files)
}

/// What a finished run leaves: its records, its loop state and the best epoch's checkpoint.
struct Trained {
    history: Vec<EpochRecord>,
    state: LoopState,
    best: Option<Best>,
}

/// Checkpoint `best`, in bytes.
struct Best {
    weights: Vec<u8>,
    predictions: String,
    state: LoopState,
}

/// K(λ) and PAC's init (or the other methods' start), then the epochs: the loop of
/// `pac-wgpu train` ([`epochs`]), keeping the best epoch's checkpoint in memory.
/// `started`: the clock's reading when the run began.
async fn train_epochs(
    run: &Session<'_>,
    model: Classifier,
    (clock, started): (&dyn Fn() -> f64, f64),
    on_event: &mut dyn FnMut(Event),
) -> Result<Trained> {
    let mut p = Progress::new(run, model);
    let k_start = clock();
    let on_k = &mut |done, total| on_event(Event::KEstimation { done, total });
    p.method = run.start_method(&p.model, on_k).await?;
    if run.config.method == Method::Pac {
        p.state.k_seconds = Some(clock() - k_start);
    }
    let steps_per_epoch = run.steps_per_epoch() as u64;
    let mut best = None;
    while p.state.epoch < run.config.epochs {
        let on_step = &mut |event: train::Event| {
            if let train::Event::Step {
                epoch,
                step_in_epoch,
                loss,
                kl,
            } = event
            {
                let step = epoch as u64 * steps_per_epoch + step_in_epoch as u64 + 1;
                on_event(Event::Step {
                    epoch,
                    step,
                    loss1: loss,
                    kl,
                });
            }
        };
        let train_seconds = epochs::run_epoch(run, &mut p, clock, on_step, &mut |_| Ok(())).await?;
        let ended = epochs::end_epoch(run, &mut p, train_seconds, clock, &mut |_| {}).await?;
        if let Some(predictions) = ended.best_predictions {
            p.state.wall_seconds = clock() - started;
            let host = to_host(p.model.valid().materialize(), &Device::flex()).await?;
            best = Some(Best {
                weights: model_bytes(&host)?,
                predictions: predictions_tsv(&run.task, &predictions),
                state: as_written(&p.state)?,
            });
        }
        on_event(Event::Epoch {
            record: p.history.last().expect("end_epoch keeps the record"),
        });
        if run.stop_early(&p.state) {
            break;
        }
    }
    Ok(Trained {
        history: p.history,
        state: p.state,
        best,
    })
}

/// The run's config: the paper's for the task, with the page's options over it; and whether
/// the data files are GLUE's own TSV files (else users' files read by column name).
fn config_of(inputs: &Inputs) -> Result<(TrainConfig, bool)> {
    let task = inputs.options["task"]
        .as_str()
        .ok_or_else(|| anyhow!("options: expected \"task\", a GLUE task name"))?;
    if task.eq_ignore_ascii_case("custom") {
        bail!("options: --task custom is not available in the browser; use a GLUE task");
    }
    let task: Task = task.parse()?;
    let mut merged = serde_json::to_value(TrainConfig::paper(task))?;
    let serde_json::Value::Object(options) = &inputs.options else {
        bail!("options: expected a JSON object");
    };
    let by_columns = options.contains_key("columns");
    for (key, value) in options {
        if merged.get(key).is_none() {
            bail!("options: unknown option {key:?} (options are run.json's keys)");
        }
        merged[key] = value.clone();
    }
    let mut config: TrainConfig =
        serde_json::from_value(merged).map_err(|e| anyhow!("options: {e}"))?;
    if !options.contains_key("stage1_epochs") {
        config.stage1_epochs = pac_wgpu::train::config::default_stage1_epochs(config.epochs);
    }
    let glue = !by_columns
        && [&inputs.train, &inputs.dev]
            .iter()
            .all(|f| f.name.ends_with(".tsv"));
    config.model = inputs.model_name.clone();
    config.data_dir = None;
    (config.train_file, config.dev_file) = match glue {
        true => (None, None),
        false => (
            Some(PathBuf::from(&inputs.train.name)),
            Some(PathBuf::from(&inputs.dev.name)),
        ),
    };
    config.output_dir = PathBuf::from("run");
    config.device = DeviceChoice::Auto;
    Ok((config, glue))
}

fn tokenizer_of(inputs: &Inputs, max_length: usize) -> Result<TextTokenizer> {
    let bytes = inputs.tokenizer.bytes.clone();
    let file = match inputs.tokenizer.name.as_str() {
        "tokenizer.json" => TokenizerFile::Json(bytes),
        "vocab.txt" => TokenizerFile::Vocab(bytes),
        other => bail!("{other}: expected tokenizer.json or vocab.txt"),
    };
    let dir = Path::new(&inputs.model_name);
    TextTokenizer::from_bytes(dir, file, max_length)
}

/// One split from the page's file: a GLUE TSV file of `task`, or a user's TSV/CSV/JSONL read by
/// the config's column names.
fn dataset(
    file: &NamedFile,
    task: &Task,
    split: Split,
    config: &TrainConfig,
    glue: bool,
) -> Result<Dataset> {
    let path = PathBuf::from(&file.name);
    let examples = if glue {
        let format = task
            .files(split)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{task} has no {} split", split.name()))?;
        read_glue_bytes(&path, file.bytes.clone(), &format, task)?
    } else {
        read_text_bytes(&path, file.bytes.clone(), &config.columns, task)?
    };
    if examples.iter().any(|e| e.label == Label::None) {
        bail!("{}: every row needs a label", file.name);
    }
    Ok(Dataset {
        task: task.clone(),
        split,
        source: path,
        examples,
    })
}

fn json(value: &impl Serialize) -> Result<Vec<u8>> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text.into_bytes())
}

fn jsonl(records: &[EpochRecord]) -> Result<Vec<u8>> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    Ok(text.into_bytes())
}
