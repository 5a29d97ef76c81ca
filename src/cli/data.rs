//! `pac-wgpu data`: split sizes, label distribution and token lengths of a task.

use std::path::PathBuf;

use pac_wgpu::glue::custom::{self, ProblemType};
use pac_wgpu::glue::sample::few_shot;
use pac_wgpu::glue::{Columns, DataSource, Dataset, Label, Split, Task};
use pac_wgpu::model::resolve_model;
use pac_wgpu::util::tokenize::TextTokenizer;
use serde_json::{Map, Value, json};

/// Where a task's data comes from (shared by the commands that read GLUE data).
#[derive(clap::Args, Clone, Debug)]
pub struct DataSourceArgs {
    /// glue_data folder (<TASK>/train.tsv, dev.tsv, test.tsv) [default: env GLUE_DIR, else the
    /// hub dataset nyu-mll/glue]
    #[arg(long, value_name = "D")]
    pub data_dir: Option<PathBuf>,
    /// Your own train split: .tsv or .csv with a header, .jsonl or .parquet
    #[arg(long, value_name = "FILE")]
    pub train_file: Option<PathBuf>,
    /// Your own dev split: .tsv or .csv with a header, .jsonl or .parquet
    #[arg(long, value_name = "FILE")]
    pub dev_file: Option<PathBuf>,
    /// Column (or JSON key) of the first text in --train-file/--dev-file [default: sentence if
    /// the file has it, else as run_glue.py picks: the one or two columns besides the label]
    #[arg(long, value_name = "NAME")]
    pub text_a_column: Option<String>,
    /// Column (or JSON key) of the second text of pair tasks in --train-file/--dev-file
    #[arg(long, value_name = "NAME")]
    pub text_b_column: Option<String>,
    /// Column (or JSON key) of the label in --train-file/--dev-file
    #[arg(long, value_name = "NAME", default_value = "label")]
    pub label_column: String,
}

impl DataSourceArgs {
    /// The data source; with --train-file but no --text-a-column, the text columns are found in
    /// the file ([`custom::text_columns`]) and a note says which.
    pub fn source(&self) -> anyhow::Result<DataSource> {
        let label = self.label_column.clone();
        let (text_a, text_b) = match (&self.text_a_column, &self.train_file) {
            (Some(a), _) => (a.clone(), self.text_b_column.clone()),
            (None, Some(file)) if self.text_b_column.is_none() => {
                let (a, b) = custom::text_columns(file, &label)?;
                if a != "sentence" {
                    let pair = b.as_ref().map_or(String::new(), |b| format!(" and {b:?}"));
                    eprintln!(
                        "note: reading the text from column {a:?}{pair} of {} (the columns besides {label:?}); name them with --text-a-column/--text-b-column",
                        file.display()
                    );
                }
                (a, b)
            }
            (None, _) => ("sentence".to_string(), self.text_b_column.clone()),
        };
        Ok(DataSource {
            train_file: self.train_file.clone(),
            dev_file: self.dev_file.clone(),
            columns: Columns {
                text_a,
                text_b,
                label,
            },
            ..DataSource::new(self.data_dir.clone())
        })
    }
}

/// Show a task's splits: rows, label distribution and, with --model, token lengths.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  pac-wgpu data --task mrpc --data-dir glue_data
  pac-wgpu data --task CoLA --model bert-base-uncased --train-size 100 --seed 42 --json")]
pub struct DataArgs {
    /// cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli or ax (case-insensitive;
    /// SST-2, STS-B, CoLA accepted); or custom, your own --train-file (and --dev-file) with
    /// the labels the train file uses (the default when --train-file is given without --task)
    #[arg(long)]
    pub task: Option<Task>,
    /// --task custom: classification or regression [default: found from the labels]
    #[arg(long, value_name = "KIND")]
    pub problem_type: Option<ProblemType>,
    #[command(flatten)]
    pub source: DataSourceArgs,
    /// Model whose tokenizer measures token lengths (local folder or hub id)
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Truncation length for the token lengths; `at_max_length` counts rows that reach it
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Also show the few-shot draw of N train rows (0 = the whole split)
    #[arg(long, value_name = "N")]
    pub train_size: Option<usize>,
    /// Seed of the few-shot draw
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Token-length statistics of one split.
struct Lengths {
    p50: usize,
    p95: usize,
    max: usize,
    at_max_length: usize,
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`% of
/// the values at or below it.
fn percentile(sorted: &[usize], p: usize) -> usize {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn token_lengths(
    tokenizer: &TextTokenizer,
    dataset: &Dataset,
    max_length: usize,
) -> anyhow::Result<Option<Lengths>> {
    let mut lengths = dataset
        .examples
        .iter()
        .map(|e| {
            Ok(tokenizer
                .encode(&e.text_a, e.text_b.as_deref())?
                .input_ids
                .len())
        })
        .collect::<anyhow::Result<Vec<usize>>>()?;
    lengths.sort_unstable();
    let Some(&max) = lengths.last() else {
        return Ok(None);
    };
    Ok(Some(Lengths {
        p50: percentile(&lengths, 50),
        p95: percentile(&lengths, 95),
        max,
        at_max_length: lengths.iter().filter(|&&n| n >= max_length).count(),
    }))
}

/// The JSON key of a label summary.
fn labels_key(task: &Task) -> &'static str {
    if task.is_regression() {
        "scores"
    } else {
        "labels"
    }
}

/// Label statistics of a split, in class order: `name: count` for classes, `min, mean, max`
/// for STS-B scores.
struct LabelSummary(Vec<(String, Value)>);

impl LabelSummary {
    /// `None` for a split without labels.
    fn new(task: &Task, labels: &[Label]) -> Option<LabelSummary> {
        let mut counts = vec![0usize; task.label_names().len()];
        let mut scores = Vec::new();
        for label in labels {
            match *label {
                Label::Class(id) => counts[id] += 1,
                Label::Score(v) => scores.push(v),
                Label::None => return None,
            }
        }
        let entries = if task.is_regression() {
            let min = scores.iter().copied().fold(f64::INFINITY, f64::min);
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = scores.iter().sum::<f64>() / scores.len() as f64;
            [("min", min), ("mean", mean), ("max", max)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect()
        } else {
            task.label_names()
                .iter()
                .zip(counts)
                .map(|(name, count)| (name.to_string(), json!(count)))
                .collect()
        };
        Some(LabelSummary(entries))
    }

    fn json(&self) -> Value {
        Value::Object(self.0.iter().cloned().collect())
    }

    fn text(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| match v.as_u64() {
                Some(count) => format!("{k} {count}"),
                None => format!("{k} {:.3}", v.as_f64().unwrap_or(f64::NAN)),
            })
            .collect();
        parts.join("  ")
    }
}

/// The task of `args`: a GLUE task as named, or a custom one with its train file's labels.
fn task(args: &DataArgs) -> anyhow::Result<Task> {
    match &args.task {
        Some(Task::Custom(_)) | None => {
            let Some(train_file) = &args.source.train_file else {
                anyhow::bail!(
                    "--task is required (a GLUE task), or --train-file with your own data (--task custom)"
                );
            };
            let columns = Columns {
                label: args.source.label_column.clone(),
                ..Columns::default()
            };
            let (names, problem) = custom::infer_labels(train_file, &columns, args.problem_type)?;
            Ok(custom::task(&names, problem))
        }
        Some(task) => Ok(task.clone()),
    }
}

pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    let task = task(args)?;
    let source = args.source.source()?;
    // Given your own files and no data folder, only the splits you gave.
    let only_given = args.source.data_dir.is_none()
        && (source.train_file.is_some() || source.dev_file.is_some());
    let given = |split: Split| match split {
        Split::Train => source.train_file.is_some(),
        Split::Dev => source.dev_file.is_some(),
        Split::Test => false,
    };
    let tokenizer = match &args.model {
        Some(model) => Some(TextTokenizer::from_model_dir(
            &resolve_model(model)?,
            args.max_length,
        )?),
        None => None,
    };
    let mut splits = Map::new();
    let mut lines = Vec::new();
    let mut train = None;
    for &split in task.splits() {
        if (only_given && !given(split)) || !source.has_split(&task, split) {
            continue;
        }
        let dataset = source.load(&task, split)?;
        let labels = LabelSummary::new(&task, &dataset.labels());
        let lengths = match &tokenizer {
            Some(tokenizer) => token_lengths(tokenizer, &dataset, args.max_length)?,
            None => None,
        };
        let mut entry = Map::new();
        entry.insert("rows".into(), json!(dataset.examples.len()));
        entry.insert("source".into(), json!(dataset.source.display().to_string()));
        let mut line = format!("{:<6}{:>7} rows", split.name(), dataset.examples.len());
        match &labels {
            Some(labels) => {
                entry.insert(labels_key(&task).into(), labels.json());
                line += &format!("  {}", labels.text());
            }
            None => line += "  (no labels)",
        }
        if let Some(l) = &lengths {
            let tokens = json!({"p50": l.p50, "p95": l.p95, "max": l.max,
                                "at_max_length": l.at_max_length});
            entry.insert("tokens".into(), tokens);
            line += &format!(
                "  tokens p50 {} p95 {} max {} ({} at {})",
                l.p50, l.p95, l.max, l.at_max_length, args.max_length
            );
        }
        lines.push(format!("{line}  [{}]", dataset.source.display()));
        splits.insert(split.name().into(), Value::Object(entry));
        if split == Split::Train {
            train = Some(dataset);
        }
    }
    if splits.is_empty() {
        // No split exists: loading the first one gives the missing-file error.
        source.load(&task, task.splits()[0])?;
    }
    let mut out = json!({"task": task.name(), "splits": splits});
    if let Some(train_size) = args.train_size {
        let Some(train) = &train else {
            anyhow::bail!("--train-size needs a train split, and {task} has none here");
        };
        let rows = few_shot(train.examples.len(), train_size, args.seed);
        let labels: Vec<Label> = rows.iter().map(|&i| train.examples[i].label).collect();
        let summary = LabelSummary::new(&task, &labels).unwrap_or(LabelSummary(Vec::new()));
        lines.push(format!(
            "sample {} of {} train rows (seed {}): {}",
            rows.len(),
            train.examples.len(),
            args.seed,
            summary.text()
        ));
        out["sample"] = json!({"train_size": train_size, "seed": args.seed, "rows": rows,
                               labels_key(&task): summary.json()});
    }
    if let Some(model) = &args.model {
        out["model"] = json!(model);
        out["max_length"] = json!(args.max_length);
    }
    if args.json {
        println!("{out}");
    } else {
        println!("{task}");
        for line in lines {
            println!("  {line}");
        }
    }
    Ok(())
}
