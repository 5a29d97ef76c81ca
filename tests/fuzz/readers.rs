//! Every reader of outside bytes, as the command line calls it: each writes the bytes where
//! the reader looks for them, in a fresh folder, and calls the library.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use burn::tensor::Device;
use pac_wgpu::glue::custom::{infer_labels, task, text_columns};
use pac_wgpu::glue::{Columns, DataSource, Split, Task, read_predictions, read_user_file};
use pac_wgpu::model::{ModelConfig, Pretrained};
use pac_wgpu::run::RunDir;
use pac_wgpu::sweep::Plan;
use pac_wgpu::sweep::table::{At, build};
use pac_wgpu::train::read_config;
use pac_wgpu::util::device::{DeviceChoice, select};
use pac_wgpu::util::files::TensorFile;
use pac_wgpu::util::tokenize::TextTokenizer;

use crate::hub;
use crate::mutate::Rng;
use crate::seeds;

/// A reader: its name, a generator of valid inputs, and the call that reads bytes from `dir`.
pub struct Reader {
    pub name: &'static str,
    pub seed: fn(&mut Rng) -> Vec<u8>,
    pub read: fn(&Path, &[u8]) -> Result<()>,
}

const fn reader(
    name: &'static str,
    seed: fn(&mut Rng) -> Vec<u8>,
    read: fn(&Path, &[u8]) -> Result<()>,
) -> Reader {
    Reader { name, seed, read }
}

pub static READERS: [Reader; 29] = [
    reader("glue tsv sst2", seeds::sst2_tsv, |dir, b| {
        glue(dir, b, Task::Sst2, "SST-2/train.tsv")
    }),
    reader("glue tsv stsb", seeds::stsb_tsv, |dir, b| {
        glue(dir, b, Task::Stsb, "STS-B/train.tsv")
    }),
    reader("glue tsv cola", seeds::cola_tsv, |dir, b| {
        glue(dir, b, Task::Cola, "CoLA/train.tsv")
    }),
    reader("predictions tsv", seeds::predictions, predictions),
    reader("user tsv", seeds::user_tsv, |dir, b| {
        user_file(dir, b, "train.tsv")
    }),
    reader("user csv", seeds::user_csv, |dir, b| {
        user_file(dir, b, "train.csv")
    }),
    reader("user jsonl", seeds::user_jsonl, |dir, b| {
        user_file(dir, b, "train.jsonl")
    }),
    reader("user parquet", seeds::parquet, parquet),
    reader("custom jsonl", seeds::custom_jsonl, custom),
    reader("tokenizer.json", seeds::tokenizer_json, |dir, b| {
        tokenizer(dir, b, "tokenizer.json")
    }),
    reader("vocab.txt", seeds::vocab_txt, |dir, b| {
        tokenizer(dir, b, "vocab.txt")
    }),
    reader(
        "config.json bert",
        |r| seeds::config_json(r, "bert"),
        config,
    ),
    reader(
        "config.json roberta",
        |r| seeds::config_json(r, "roberta"),
        config,
    ),
    reader(
        "config.json gpt2",
        |r| seeds::config_json(r, "gpt2"),
        config,
    ),
    reader(
        "config.json llama",
        |r| seeds::config_json(r, "llama"),
        config,
    ),
    reader(
        "config.json mistral",
        |r| seeds::config_json(r, "mistral"),
        config,
    ),
    reader(
        "config.json qwen2",
        |r| seeds::config_json(r, "qwen2"),
        config,
    ),
    reader(
        "config.json qwen3",
        |r| seeds::config_json(r, "qwen3"),
        config,
    ),
    reader(
        "config.json modernbert",
        |r| seeds::config_json(r, "modernbert"),
        config,
    ),
    reader(
        "model folder config.json",
        |r| seeds::config_json(r, "bert"),
        model_config,
    ),
    reader("model.safetensors", seeds::bert_safetensors, model_weights),
    reader("tensor file", seeds::tensor_file, tensor_file),
    reader("run.json", seeds::run_json, run_json),
    reader("history.jsonl", seeds::history_jsonl, history),
    reader("plan.json", seeds::plan_json, plan),
    reader("status.json", seeds::status_json, status),
    reader("checkpoint state.json", seeds::state_json, state),
    reader("checkpoint manifest.json", seeds::manifest_json, manifest),
    reader("hub answers", hub::answers, hub::download),
];

/// Writes `bytes` to `dir/name` (making its folder) and returns the path.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A split of `task` from a `glue_data` folder, as `train --data-dir` reads it.
fn glue(dir: &Path, bytes: &[u8], task: Task, file: &str) -> Result<()> {
    put(dir, file, bytes);
    DataSource::new(Some(dir.to_path_buf())).load(&task, Split::Train)?;
    Ok(())
}

/// A predictions file, as `score` reads it.
fn predictions(dir: &Path, bytes: &[u8]) -> Result<()> {
    read_predictions(&put(dir, "predictions.tsv", bytes), &Task::Mnli)?;
    Ok(())
}

fn pair_columns() -> Columns {
    Columns {
        text_a: "sentence1".into(),
        text_b: Some("sentence2".into()),
        label: "label".into(),
    }
}

/// A user's RTE file, as `--train-file` reads it.
fn user_file(dir: &Path, bytes: &[u8], name: &str) -> Result<()> {
    read_user_file(&put(dir, name, bytes), &pair_columns(), &Task::Rte)?;
    Ok(())
}

/// A user's parquet file: its columns found as `--task custom` finds them, then its rows.
fn parquet(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = put(dir, "train.parquet", bytes);
    let (text_a, text_b) = text_columns(&path, "label")?;
    let columns = Columns {
        text_a,
        text_b,
        label: "label".into(),
    };
    read_user_file(&path, &columns, &Task::Sst2)?;
    Ok(())
}

/// `--task custom`: the text columns, the labels, then the rows with those labels.
fn custom(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = put(dir, "train.jsonl", bytes);
    let (text_a, text_b) = text_columns(&path, "label")?;
    let columns = Columns {
        text_a,
        text_b,
        label: "label".into(),
    };
    let (names, problem) = infer_labels(&path, &columns, None)?;
    read_user_file(&path, &columns, &task(&names, problem))?;
    Ok(())
}

/// A model folder's tokenizer, loaded and used on a sentence and on a pair.
fn tokenizer(dir: &Path, bytes: &[u8], name: &str) -> Result<()> {
    put(dir, name, bytes);
    let tokenizer = TextTokenizer::from_model_dir(dir, 16)?;
    tokenizer.encode("the cat sat on the mat .", None)?;
    tokenizer.encode("the cat sat on the mat .", Some("日本 café , not good"))?;
    Ok(())
}

/// config.json, read and checked against `--max-length` as `train` does.
fn config(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = put(dir, "config.json", bytes);
    ModelConfig::from_file(&path)?.check_max_length(&path, 32)
}

/// The CPU device, selected once.
fn cpu() -> &'static Device {
    static CPU: OnceLock<Device> = OnceLock::new();
    CPU.get_or_init(|| select(DeviceChoice::Cpu).unwrap().device)
}

/// A tiny BERT folder whose config.json is `bytes`, loaded onto the CPU.
fn model_config(dir: &Path, bytes: &[u8]) -> Result<()> {
    put(dir, "config.json", bytes);
    put(
        dir,
        "model.safetensors",
        &seeds::bert_safetensors(&mut Rng::new(0)),
    );
    Pretrained::load(dir, 0.0, cpu())?;
    Ok(())
}

/// A tiny BERT folder whose model.safetensors is `bytes`, loaded onto the CPU.
fn model_weights(dir: &Path, bytes: &[u8]) -> Result<()> {
    put(
        dir,
        "config.json",
        &seeds::config_json(&mut Rng::new(0), "bert"),
    );
    put(dir, "model.safetensors", bytes);
    Pretrained::load(dir, 0.0, cpu())?;
    Ok(())
}

/// A checkpoint's tensors and metadata.
fn tensor_file(dir: &Path, bytes: &[u8]) -> Result<()> {
    let file = TensorFile::read(&put(dir, "tensors.safetensors", bytes))?;
    file.meta::<u64>("step")?;
    Ok(())
}

/// `train --config run.json`: read, then checked.
fn run_json(dir: &Path, bytes: &[u8]) -> Result<()> {
    read_config(&put(dir, "run.json", bytes))?.validate()?;
    Ok(())
}

/// history.jsonl of a run folder, as `--resume` reads it.
fn history(dir: &Path, bytes: &[u8]) -> Result<()> {
    let run = dir.join("run");
    put(&run, "history.jsonl", bytes);
    RunDir::open(&run, true, false)?.read_history()?;
    Ok(())
}

/// plan.json of a sweep folder, as continuing a sweep reads it.
fn plan(dir: &Path, bytes: &[u8]) -> Result<()> {
    put(dir, "plan.json", bytes);
    Plan::read(dir)?;
    Ok(())
}

/// status.json beside a valid plan, as `report` reads a sweep folder.
fn status(dir: &Path, bytes: &[u8]) -> Result<()> {
    put(dir, "plan.json", &seeds::plan_json(&mut Rng::new(0)));
    put(dir, "status.json", bytes);
    build(&[dir.to_path_buf()], None, At::Final)?;
    Ok(())
}

/// state.json of a checkpoint, as `--resume` reads it.
fn state(dir: &Path, bytes: &[u8]) -> Result<()> {
    put(dir, "state.json", bytes);
    pac_wgpu::train::checkpoint::load_state(dir)?;
    Ok(())
}

/// manifest.json of a checkpoint holding [`seeds::MANIFEST_FILE`], as a checkpoint's reader
/// checks it.
fn manifest(dir: &Path, bytes: &[u8]) -> Result<()> {
    put(dir, seeds::MANIFEST_FILE.0, seeds::MANIFEST_FILE.1);
    put(dir, "manifest.json", bytes);
    pac_wgpu::util::manifest::verify(dir)?;
    Ok(())
}
