//! The task registry: GLUE's tasks (and `custom`), their splits, files, labels and metrics.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::util::metrics::{self, Metric};

/// One example of a split, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text_a: String,
    /// The second sentence of pair tasks (MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI, AX).
    pub text_b: Option<String>,
    pub label: Label,
}

/// A gold label or a model's prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    /// A class id in the task's [`Task::label_names`] order (the Hugging Face ids).
    Class(usize),
    /// An STS-B similarity score.
    Score(f64),
    /// No gold label (test splits).
    None,
}

/// A GLUE task, or the user's own (`custom`). `MnliMm` is MNLI evaluated on the mismatched dev
/// set; `Ax` is the diagnostic set (test only, scored with an MNLI model). Not `Copy`: a custom
/// task holds its label names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Cola,
    Sst2,
    Mrpc,
    Stsb,
    Qqp,
    Mnli,
    MnliMm,
    Qnli,
    Rte,
    Wnli,
    Ax,
    /// The user's own data (`--train-file`, `--dev-file`) with its own labels.
    Custom(CustomLabels),
}

/// The labels of a custom task, as found in its train file ([`super::custom::infer_labels`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct CustomLabels {
    /// The class names, sorted; empty for a regression task (and before they are known).
    pub names: Arc<[String]>,
    pub regression: bool,
}

impl CustomLabels {
    /// Not found yet: every label reads as [`Label::None`].
    pub fn unknown() -> CustomLabels {
        CustomLabels::default()
    }
}

/// A split of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Dev,
    Test,
}

/// Where one split lives in a `glue_data` folder and which tab-separated column holds what
/// (0-based). Files are split on tabs only, with no quote handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileFormat {
    /// Path under the data folder, e.g. `MRPC/train.tsv`.
    pub path: &'static str,
    /// Whether the first line is a header.
    pub header: bool,
    /// Number of columns on every line.
    pub columns: usize,
    pub text_a: usize,
    pub text_b: Option<usize>,
    /// `None` for splits without gold labels.
    pub label: Option<usize>,
}

/// The error for a task name that is not in the registry.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown task {0:?}{hint}: expected one of cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli, ax, or custom (your own --train-file and --dev-file)",
    hint = closest_task(.0).map_or(String::new(), |t| format!(" (did you mean {t}?)"))
)]
pub struct UnknownTask(String);

/// The task name within two edits (insert, delete, substitute or swap two neighbours) of
/// `typed`, if one is.
fn closest_task(typed: &str) -> Option<&'static str> {
    let typed = typed.to_ascii_lowercase();
    Task::ALL
        .iter()
        .map(|t| t.name())
        .chain(["custom"])
        .map(|name| (edits(&typed, name), name))
        .filter(|&(distance, _)| distance <= 2)
        .min()
        .map(|(_, name)| name)
}

/// The optimal-string-alignment distance between `a` and `b`.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The error for a split name other than train, dev (or validation) and test.
#[derive(Debug, thiserror::Error)]
#[error("unknown split {0:?}: expected train, dev or test")]
pub struct UnknownSplit(String);

/// `tsv(path, header, columns, text_a, text_b, label)`: a [`FileFormat`] in table form.
const fn tsv(
    path: &'static str,
    header: bool,
    columns: usize,
    text_a: usize,
    text_b: Option<usize>,
    label: Option<usize>,
) -> FileFormat {
    FileFormat {
        path,
        header,
        columns,
        text_a,
        text_b,
        label,
    }
}

const NLI3: &[&str] = &["entailment", "neutral", "contradiction"];
const NLI2: &[&str] = &["entailment", "not_entailment"];
const BINARY_IDS: &[&str] = &["0", "1"];

/// Every GLUE file read from a `glue_data` folder: (task, split, layout), the files of one
/// split in order of preference. MNLI dev is also read from the 3-column `dev_*.min.tsv` form
/// (sentence1, sentence2, label id; no header).
#[rustfmt::skip]
const GLUE_FILES: &[(Task, Split, FileFormat)] = &[
    (Task::Cola, Split::Train, tsv("CoLA/train.tsv", false, 4, 3, None, Some(1))),
    (Task::Cola, Split::Dev, tsv("CoLA/dev.tsv", false, 4, 3, None, Some(1))),
    (Task::Cola, Split::Test, tsv("CoLA/test.tsv", true, 2, 1, None, None)),
    (Task::Sst2, Split::Train, tsv("SST-2/train.tsv", true, 2, 0, None, Some(1))),
    (Task::Sst2, Split::Dev, tsv("SST-2/dev.tsv", true, 2, 0, None, Some(1))),
    (Task::Sst2, Split::Test, tsv("SST-2/test.tsv", true, 2, 1, None, None)),
    (Task::Mrpc, Split::Train, tsv("MRPC/train.tsv", true, 5, 3, Some(4), Some(0))),
    (Task::Mrpc, Split::Dev, tsv("MRPC/dev.tsv", true, 5, 3, Some(4), Some(0))),
    (Task::Mrpc, Split::Test, tsv("MRPC/test.tsv", true, 5, 3, Some(4), None)),
    (Task::Stsb, Split::Train, tsv("STS-B/train.tsv", true, 10, 7, Some(8), Some(9))),
    (Task::Stsb, Split::Dev, tsv("STS-B/dev.tsv", true, 10, 7, Some(8), Some(9))),
    (Task::Stsb, Split::Test, tsv("STS-B/test.tsv", true, 9, 7, Some(8), None)),
    (Task::Qqp, Split::Train, tsv("QQP/train.tsv", true, 6, 3, Some(4), Some(5))),
    (Task::Qqp, Split::Dev, tsv("QQP/dev.tsv", true, 6, 3, Some(4), Some(5))),
    (Task::Qqp, Split::Test, tsv("QQP/test.tsv", true, 3, 1, Some(2), None)),
    (Task::Mnli, Split::Train, tsv("MNLI/train.tsv", true, 12, 8, Some(9), Some(11))),
    (Task::MnliMm, Split::Train, tsv("MNLI/train.tsv", true, 12, 8, Some(9), Some(11))),
    (Task::Mnli, Split::Dev, tsv("MNLI/dev_matched.tsv", true, 16, 8, Some(9), Some(15))),
    (Task::Mnli, Split::Dev, tsv("MNLI/dev_matched.min.tsv", false, 3, 0, Some(1), Some(2))),
    (Task::MnliMm, Split::Dev, tsv("MNLI/dev_mismatched.tsv", true, 16, 8, Some(9), Some(15))),
    (Task::MnliMm, Split::Dev, tsv("MNLI/dev_mismatched.min.tsv", false, 3, 0, Some(1), Some(2))),
    (Task::Mnli, Split::Test, tsv("MNLI/test_matched.tsv", true, 10, 8, Some(9), None)),
    (Task::MnliMm, Split::Test, tsv("MNLI/test_mismatched.tsv", true, 10, 8, Some(9), None)),
    (Task::Qnli, Split::Train, tsv("QNLI/train.tsv", true, 4, 1, Some(2), Some(3))),
    (Task::Qnli, Split::Dev, tsv("QNLI/dev.tsv", true, 4, 1, Some(2), Some(3))),
    (Task::Qnli, Split::Test, tsv("QNLI/test.tsv", true, 3, 1, Some(2), None)),
    (Task::Rte, Split::Train, tsv("RTE/train.tsv", true, 4, 1, Some(2), Some(3))),
    (Task::Rte, Split::Dev, tsv("RTE/dev.tsv", true, 4, 1, Some(2), Some(3))),
    (Task::Rte, Split::Test, tsv("RTE/test.tsv", true, 3, 1, Some(2), None)),
    (Task::Wnli, Split::Train, tsv("WNLI/train.tsv", true, 4, 1, Some(2), Some(3))),
    (Task::Wnli, Split::Dev, tsv("WNLI/dev.tsv", true, 4, 1, Some(2), Some(3))),
    (Task::Wnli, Split::Test, tsv("WNLI/test.tsv", true, 3, 1, Some(2), None)),
    (Task::Ax, Split::Test, tsv("diagnostic/diagnostic.tsv", true, 3, 1, Some(2), None)),
];

impl Task {
    /// Every task, in GLUE's order.
    pub const ALL: [Task; 11] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Stsb,
        Task::Qqp,
        Task::Mnli,
        Task::MnliMm,
        Task::Qnli,
        Task::Rte,
        Task::Wnli,
        Task::Ax,
    ];

    /// The canonical lower-case name (`cola`, `mnli-mm`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Task::Cola => "cola",
            Task::Sst2 => "sst2",
            Task::Mrpc => "mrpc",
            Task::Stsb => "stsb",
            Task::Qqp => "qqp",
            Task::Mnli => "mnli",
            Task::MnliMm => "mnli-mm",
            Task::Qnli => "qnli",
            Task::Rte => "rte",
            Task::Wnli => "wnli",
            Task::Ax => "ax",
            Task::Custom(_) => "custom",
        }
    }

    /// Class names in Hugging Face `glue` id order (a custom task's sorted); empty for
    /// regression.
    pub fn label_names(&self) -> Vec<&str> {
        let names: &[&str] = match self {
            Task::Cola => &["unacceptable", "acceptable"],
            Task::Sst2 => &["negative", "positive"],
            Task::Mrpc => &["not_equivalent", "equivalent"],
            Task::Qqp => &["not_duplicate", "duplicate"],
            Task::Stsb => &[],
            Task::Mnli | Task::MnliMm | Task::Ax => NLI3,
            Task::Qnli | Task::Rte => NLI2,
            Task::Wnli => &["not_entailment", "entailment"],
            Task::Custom(labels) => return labels.names.iter().map(String::as_str).collect(),
        };
        names.to_vec()
    }

    /// How GLUE's files and submissions spell each class: the id for CoLA, SST-2, MRPC, QQP and
    /// WNLI, the name for the NLI tasks. Empty for STS-B.
    pub fn glue_labels(&self) -> Vec<&str> {
        match self {
            Task::Cola | Task::Sst2 | Task::Mrpc | Task::Qqp | Task::Wnli => BINARY_IDS.to_vec(),
            _ => self.label_names(),
        }
    }

    /// Model outputs: the number of classes, 1 for STS-B.
    pub fn num_labels(&self) -> usize {
        if self.is_regression() {
            1
        } else {
            self.label_names().len()
        }
    }

    /// STS-B and custom tasks without class names are regression (one output, MSE loss).
    pub fn is_regression(&self) -> bool {
        match self {
            Task::Stsb => true,
            Task::Custom(labels) => labels.regression,
            _ => false,
        }
    }

    /// The task's GLUE metrics, main metric first.
    pub fn metrics(&self) -> &'static [Metric] {
        match self {
            Task::Cola | Task::Ax => &[Metric::Mcc],
            Task::Mrpc | Task::Qqp => &[Metric::F1, Metric::Accuracy],
            Task::Stsb => &[Metric::Pearson, Metric::Spearman],
            Task::Custom(_) if self.is_regression() => &[Metric::Pearson, Metric::Spearman],
            Task::Custom(_) => &[Metric::Accuracy, Metric::MacroF1],
            _ => &[Metric::Accuracy],
        }
    }

    /// The metric that picks the best checkpoint and that results report.
    pub fn main_metric(&self) -> Metric {
        self.metrics()[0]
    }

    /// Parses a label as written in GLUE files, user files and prediction files: a class's
    /// GLUE spelling, its name or its id; for STS-B a finite number.
    pub fn parse_label(&self, text: &str) -> Option<Label> {
        let text = text.trim();
        if *self == Task::Custom(CustomLabels::unknown()) {
            return Some(Label::None);
        }
        if self.is_regression() {
            return text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Label::Score);
        }
        let by_spelling = |names: &[&str]| names.iter().position(|name| *name == text);
        let by_id = || {
            text.parse::<usize>()
                .ok()
                .filter(|&id| id < self.num_labels() && !matches!(self, Task::Custom(_)))
        };
        by_spelling(&self.glue_labels())
            .or_else(|| by_spelling(&self.label_names()))
            .or_else(by_id)
            .map(Label::Class)
    }

    /// Splits the task has in GLUE (AX: test only).
    pub fn splits(&self) -> &'static [Split] {
        match self {
            Task::Ax => &[Split::Test],
            Task::Custom(_) => &[Split::Train, Split::Dev],
            _ => &[Split::Train, Split::Dev, Split::Test],
        }
    }

    /// Files that can hold `split` in a `glue_data` folder, in order of preference; empty if
    /// the task has no such split.
    pub fn files(&self, split: Split) -> Vec<FileFormat> {
        GLUE_FILES
            .iter()
            .filter(|(task, s, _)| task == self && *s == split)
            .map(|(_, _, format)| *format)
            .collect()
    }

    /// Scores predictions against gold labels with the task's metrics (in [`Task::metrics`]
    /// order). Classification needs [`Label::Class`] on both sides, STS-B [`Label::Score`].
    pub fn score(&self, gold: &[Label], predicted: &[Label]) -> anyhow::Result<Vec<(Metric, f64)>> {
        anyhow::ensure!(
            gold.len() == predicted.len(),
            "expected {} predictions, found {}",
            gold.len(),
            predicted.len()
        );
        anyhow::ensure!(
            !gold.is_empty(),
            "expected at least one example to score, found none"
        );
        anyhow::ensure!(
            !gold.contains(&Label::None),
            "expected gold labels, found a split without them (test splits have none)"
        );
        self.metrics()
            .iter()
            .map(|&metric| {
                let value = match metric {
                    Metric::Accuracy => metrics::accuracy(&classes(gold)?, &classes(predicted)?),
                    Metric::F1 => metrics::f1(&classes(gold)?, &classes(predicted)?),
                    Metric::MacroF1 => {
                        metrics::macro_f1(&classes(gold)?, &classes(predicted)?, self.num_labels())
                    }
                    Metric::Mcc => metrics::mcc(&classes(gold)?, &classes(predicted)?),
                    Metric::Pearson => metrics::pearson(&scores(gold)?, &scores(predicted)?),
                    Metric::Spearman => metrics::spearman(&scores(gold)?, &scores(predicted)?),
                };
                Ok((metric, value))
            })
            .collect()
    }
}

fn classes(labels: &[Label]) -> anyhow::Result<Vec<usize>> {
    labels
        .iter()
        .map(|label| match label {
            Label::Class(id) => Ok(*id),
            other => Err(anyhow::anyhow!("expected class labels, found {other:?}")),
        })
        .collect()
}

fn scores(labels: &[Label]) -> anyhow::Result<Vec<f64>> {
    labels
        .iter()
        .map(|label| match label {
            Label::Score(v) => Ok(*v),
            other => Err(anyhow::anyhow!(
                "expected similarity scores, found {other:?}"
            )),
        })
        .collect()
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// run.json's `"task"`: the name ([`Task::name`]); a custom task's labels are stored beside it.
impl serde::Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Task {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Task {
    type Err = UnknownTask;

    /// Case-insensitive; accepts the canonical names, GLUE's folder spellings (`SST-2`, `STS-B`,
    /// `CoLA`, `MNLI-MM`), the hub's config names (`mnli_mismatched`) and `diagnostic` for AX.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let task = match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "cola" => Task::Cola,
            "sst2" | "sst-2" => Task::Sst2,
            "mrpc" => Task::Mrpc,
            "stsb" | "sts-b" => Task::Stsb,
            "qqp" => Task::Qqp,
            "mnli" | "mnli-m" | "mnli-matched" => Task::Mnli,
            "mnli-mm" | "mnli-mismatched" => Task::MnliMm,
            "qnli" => Task::Qnli,
            "rte" => Task::Rte,
            "wnli" => Task::Wnli,
            "ax" | "diagnostic" => Task::Ax,
            "custom" => Task::Custom(CustomLabels::unknown()),
            _ => return Err(UnknownTask(s.to_string())),
        };
        Ok(task)
    }
}

impl Split {
    /// `train`, `dev` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = UnknownSplit;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "dev" | "validation" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            _ => Err(UnknownSplit(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::metrics::tests::{assert_close, cases, classes, floats, golden};
    use serde_json::Value;

    fn class_labels(ids: &[usize]) -> Vec<Label> {
        ids.iter().map(|&id| Label::Class(id)).collect()
    }

    fn score_labels(values: &[f64]) -> Vec<Label> {
        values.iter().map(|&v| Label::Score(v)).collect()
    }

    /// `Task::score` computes each task's GLUE metrics, main metric first.
    #[test]
    fn score_reports_the_task_metrics() {
        let golden = golden();
        let binary = &cases(&golden, "classification")[0];
        let three_class = cases(&golden, "classification")
            .iter()
            .find(|c| c.get("f1").is_none())
            .expect("a multi-class case");
        let regression = &cases(&golden, "regression")[0];
        let checks: [(Task, &Value, &[&str]); 4] = [
            (Task::Cola, binary, &["mcc"]),
            (Task::Mrpc, binary, &["f1", "accuracy"]),
            (Task::Mnli, three_class, &["accuracy"]),
            (Task::Stsb, regression, &["pearson", "spearman"]),
        ];
        for (task, case, names) in checks {
            let (gold, predicted) = if task.is_regression() {
                let (g, p) = (floats(case, "labels"), floats(case, "preds"));
                (score_labels(&g), score_labels(&p))
            } else {
                let (g, p) = (classes(case, "labels"), classes(case, "preds"));
                (class_labels(&g), class_labels(&p))
            };
            let scores = task.score(&gold, &predicted).expect("score");
            let got: Vec<&str> = scores.iter().map(|(m, _)| m.name()).collect();
            assert_eq!(got, names, "{task}");
            assert_eq!(scores[0].0, task.main_metric());
            for (metric, value) in scores {
                assert_close(case, metric.name(), value);
            }
        }
    }

    #[test]
    fn unknown_tasks_suggest_the_closest_name() {
        let message = |typed: &str| typed.parse::<Task>().unwrap_err().to_string();
        assert!(
            message("mrcp").contains("(did you mean mrpc?)"),
            "{}",
            message("mrcp")
        );
        assert!(message("sst").contains("(did you mean sst2?)"));
        assert!(message("costum").contains("(did you mean custom?)"));
        assert!(
            !message("imdb").contains("did you mean"),
            "{}",
            message("imdb")
        );
        assert_eq!(edits("mrcp", "mrpc"), 1);
        assert_eq!(edits("qnli", "wnli"), 1);
        assert_eq!(edits("", "rte"), 3);
    }

    #[test]
    fn score_rejects_mismatched_inputs() {
        let gold = class_labels(&[0, 1, 1]);
        assert!(Task::Rte.score(&gold, &class_labels(&[0, 1])).is_err());
        assert!(Task::Rte.score(&[], &[]).is_err());
        let unlabelled = [Label::None; 3];
        assert!(Task::Rte.score(&unlabelled, &gold).is_err());
        let scores = score_labels(&[1.0, 2.0, 3.0]);
        assert!(Task::Stsb.score(&scores, &gold).is_err());
    }
}
