//! The paper-style table of a set of runs: per model × task × method, a dev metric's mean ±
//! sample std over the seeds that finished, and PAC's bound J at the end of stage 1. Runs that
//! did not finish are listed apart, never averaged in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::runner::Status;
use super::{Plan, RunState};
use crate::report::plots::Panel;
use crate::run::Summary;
use crate::train::{MethodArg, TrainSet, run_label};

/// Which evaluation of a run the table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum At {
    /// The last evaluated epoch (no selection on dev).
    Final,
    /// The epoch with the best main metric on dev.
    Best,
}

impl std::str::FromStr for At {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "final" => Ok(At::Final),
            "best" => Ok(At::Best),
            _ => Err(format!("expected final or best, found {s:?}")),
        }
    }
}

/// report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `--metric`, when given; else each task's main metric.
    pub metric: Option<String>,
    pub at: At,
    pub groups: Vec<Group>,
    pub incomplete: Vec<Incomplete>,
}

/// The finished runs of one model × task × method × trainable set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub model: String,
    pub task: String,
    pub method: String,
    /// What trained: full, bitfit or lora.
    #[serde(default = "full")]
    pub trainable: String,
    pub metric: String,
    /// Each seed and its metric value.
    pub values: Vec<(u64, f64)>,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one seed.
    pub std: f64,
    /// PAC: J at the end of stage 1, mean and std over the seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_j: Option<(f64, f64)>,
    /// Whether its mean is the best of its model × task.
    pub best: bool,
    /// Whether every run's best checkpoint predicts one class for all of dev (the
    /// majority-class rate in disguise).
    #[serde(default)]
    pub one_class: bool,
}

/// A run with no summary.json: interrupted, failed, or never started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incomplete {
    pub run: PathBuf,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A finished run read back.
struct Finished {
    summary: Summary,
    path: PathBuf,
}

/// The table of the runs under `dirs` (sweep folders, run folders, or folders of run folders).
pub fn build(dirs: &[PathBuf], metric: Option<&str>, at: At) -> Result<Report> {
    let mut finished = Vec::new();
    let mut incomplete = Vec::new();
    for dir in dirs {
        for (run, error) in run_folders(dir)? {
            match RunState::of(&run) {
                RunState::Finished => finished.push(Finished {
                    summary: read_summary(&run)?,
                    path: run,
                }),
                state => incomplete.push(Incomplete {
                    run,
                    state: format!("{state:?}").to_lowercase(),
                    error,
                }),
            }
        }
    }
    if finished.is_empty() && incomplete.is_empty() {
        bail!("no run folders under {}", display_list(dirs));
    }
    let mut groups = group(&finished, metric, at)?;
    mark_best(&mut groups);
    Ok(Report {
        metric: metric.map(str::to_string),
        at,
        groups,
        incomplete,
    })
}

/// Run folders under `dir`, with the error a sweep recorded for each (if any): a sweep folder's
/// planned runs, `dir` itself when it is a run, else its subfolders holding a run.json.
fn run_folders(dir: &Path) -> Result<Vec<(PathBuf, Option<String>)>> {
    if Plan::path(dir).is_file() {
        let plan = Plan::read(dir)?;
        let status = read_status(dir);
        return Ok(plan
            .runs
            .into_iter()
            .map(|r| {
                let error = status.as_ref().and_then(|s| {
                    s.runs
                        .iter()
                        .find(|x| x.name == r.name)
                        .and_then(|x| x.error.clone())
                });
                (r.output_dir, error)
            })
            .collect());
    }
    if dir.join("run.json").is_file() {
        return Ok(vec![(dir.to_path_buf(), None)]);
    }
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the folder", dir.display()))?;
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("run.json").is_file())
        .collect();
    runs.sort();
    Ok(runs.into_iter().map(|r| (r, None)).collect())
}

fn read_status(dir: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(dir.join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn read_summary(run: &Path) -> Result<Summary> {
    let path = run.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a pac-wgpu summary.json", path.display()))
}

fn full() -> String {
    "full".into()
}

/// A summary's method and trainable set; summaries written before the set had its own field
/// name `bitfit` or `lora` as their method (vanilla steps on that set).
fn method_and_set(s: &Summary) -> (String, String) {
    match (s.method.as_str(), &s.trainable) {
        (_, Some(set)) => (s.method.clone(), set.clone()),
        (set @ ("bitfit" | "lora"), None) => ("vanilla".into(), set.into()),
        (method, None) => (method.into(), full()),
    }
}

type GroupKey = (String, String, String, String);

/// Groups the finished runs by model × task × method × trainable set (in first-seen order)
/// with their stats.
fn group(finished: &[Finished], metric: Option<&str>, at: At) -> Result<Vec<Group>> {
    let mut order: Vec<GroupKey> = Vec::new();
    let mut members: BTreeMap<GroupKey, Vec<&Finished>> = BTreeMap::new();
    for f in finished {
        let s = &f.summary;
        let (method, set) = method_and_set(s);
        let key = (model_name(&s.model), s.task.clone(), method, set);
        if !members.contains_key(&key) {
            order.push(key.clone());
        }
        members.entry(key).or_default().push(f);
    }
    order
        .into_iter()
        .map(|key| {
            let runs = &members[&key];
            let metric = metric.unwrap_or(&runs[0].summary.metric).to_string();
            let values = runs
                .iter()
                .map(|f| Ok((f.summary.seed, value(f, &metric, at)?)))
                .collect::<Result<Vec<_>>>()?;
            let (mean, std) = mean_std(values.iter().map(|(_, v)| *v));
            let bounds: Vec<f64> = runs
                .iter()
                .filter_map(|f| f.summary.bound.as_ref().map(|b| b.j))
                .collect();
            let bound_j = (!bounds.is_empty()).then(|| mean_std(bounds.into_iter()));
            let one_class = runs.iter().all(|f| predicts_one_class(&f.path));
            let (model, task, method, trainable) = key;
            Ok(Group {
                model,
                task,
                method,
                trainable,
                metric,
                values,
                mean,
                std,
                bound_j,
                best: false,
                one_class,
            })
        })
        .collect()
}

/// Whether the run's best checkpoint predicted one class for every dev example (false when
/// there are no predictions, or they are scores).
fn predicts_one_class(run: &Path) -> bool {
    let path = run.join("checkpoints/best/dev_predictions.tsv");
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let mut predictions = text
        .lines()
        .skip(1)
        .filter_map(|row| row.split('\t').nth(1));
    let Some(first) = predictions.next() else {
        return false;
    };
    // STS-B's scores are written with decimals; class ids and names without.
    let is_class = !(first.contains('.') && first.parse::<f64>().is_ok());
    is_class && predictions.all(|p| p == first)
}

/// A model named by its folder's last component (a hub id stays whole).
fn model_name(model: &str) -> String {
    let path = Path::new(model);
    if path.is_absolute() || model.starts_with('.') {
        path.file_name()
            .map_or(model.to_string(), |n| n.to_string_lossy().into_owned())
    } else {
        model.to_string()
    }
}

fn value(f: &Finished, metric: &str, at: At) -> Result<f64> {
    let point = match at {
        At::Final => Some(&f.summary.last),
        At::Best => f.summary.best.as_ref(),
    };
    point
        .and_then(|p| p.metrics.get(metric).copied())
        .with_context(|| {
            format!(
                "{}: no {metric} at the {} evaluation (--metric names one of the task's metrics)",
                f.path.join("summary.json").display(),
                format!("{at:?}").to_lowercase()
            )
        })
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let values: Vec<f64> = values.collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Marks the best mean of each model × task (every GLUE metric is higher-is-better).
fn mark_best(groups: &mut [Group]) {
    let mut best: BTreeMap<(String, String), f64> = BTreeMap::new();
    for g in groups.iter() {
        let entry = best
            .entry((g.model.clone(), g.task.clone()))
            .or_insert(f64::NEG_INFINITY);
        *entry = entry.max(g.mean);
    }
    for g in groups.iter_mut() {
        g.best = best[&(g.model.clone(), g.task.clone())] == g.mean;
    }
}

impl Group {
    /// The run label of its method and trainable set (`pac`, `pac-lora`, `lora`, ...).
    pub fn label(&self) -> String {
        let method = self.method.parse::<MethodArg>().map(|m| m.method);
        match (method, self.trainable.parse::<TrainSet>()) {
            (Ok(method), Ok(set)) => run_label(method, set),
            _ => format!("{}-{}", self.method, self.trainable),
        }
    }
}

fn display_list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// report.png's panels: one per model × task, its methods' values over seeds.
    pub fn panels(&self) -> Vec<Panel> {
        let models = unique(self.groups.iter().map(|g| g.model.clone()));
        let mut panels = Vec::new();
        for model in &models {
            let groups: Vec<&Group> = self.groups.iter().filter(|g| &g.model == model).collect();
            for task in unique(groups.iter().map(|g| g.task.clone())) {
                let of_task: Vec<&&Group> = groups.iter().filter(|g| g.task == task).collect();
                let title = match models.len() {
                    1 => task.clone(),
                    _ => format!("{task} ({model})"),
                };
                panels.push(Panel {
                    title,
                    y_desc: format!("dev {}", of_task[0].metric),
                    methods: of_task
                        .iter()
                        .map(|g| (g.label(), g.values.iter().map(|(_, v)| *v).collect()))
                        .collect(),
                });
            }
        }
        panels
    }

    /// report.md: per model, methods down, tasks across, `mean ± std (n)` in percent, the best
    /// of each column in bold; PAC's J below; the incomplete runs listed.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# pac-wgpu report\n\n");
        md.push_str(&format!(
            "Dev {} at the {} evaluation, mean ± sample std over seeds ×100 (n = finished seeds); best of each column in bold.\n",
            self.metric.as_deref().unwrap_or("main metric of each task"),
            format!("{:?}", self.at).to_lowercase()
        ));
        let models = unique(self.groups.iter().map(|g| g.model.clone()));
        for model in &models {
            md.push_str(&self.model_table(model));
        }
        if !self.incomplete.is_empty() {
            md.push_str("\n## Incomplete runs (not averaged in)\n\n");
            for i in &self.incomplete {
                let error = i
                    .error
                    .as_deref()
                    .map_or(String::new(), |e| format!(": {e}"));
                md.push_str(&format!("- {} ({}){error}\n", i.run.display(), i.state));
            }
        }
        md
    }

    fn model_table(&self, model: &str) -> String {
        let groups: Vec<&Group> = self.groups.iter().filter(|g| g.model == model).collect();
        let tasks = unique(groups.iter().map(|g| g.task.clone()));
        let variants = unique(groups.iter().map(|g| g.label()));
        let find = |t: &str, v: &str| groups.iter().find(|g| g.task == t && g.label() == v);
        let mut md = format!("\n## {model}\n\n| method | trains |");
        for t in &tasks {
            let metric = groups
                .iter()
                .find(|g| &g.task == t)
                .map_or(String::new(), |g| format!(" ({})", g.metric));
            md.push_str(&format!(" {t}{metric} |"));
        }
        md.push_str(&format!("\n|---|---|{}\n", "---|".repeat(tasks.len())));
        for v in &variants {
            let first = groups
                .iter()
                .find(|g| &g.label() == v)
                .expect("a group per variant");
            md.push_str(&format!("| {} | {} |", first.method, first.trainable));
            for t in &tasks {
                let cell = find(t, v).map_or("—".into(), |g| {
                    let (mean, std, n) = (g.mean * 100.0, g.std * 100.0, g.values.len());
                    let text = match n {
                        1 => format!("{mean:.1} (n = 1)"),
                        _ => format!("{mean:.1} ± {std:.1} ({n})"),
                    };
                    let text = if g.best { format!("**{text}**") } else { text };
                    match g.one_class {
                        true => format!("{text} ⚠ predicts one class"),
                        false => text,
                    }
                });
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
        }
        for v in &variants {
            let of_variant = |t: &String| find(t, v).and_then(|g| g.bound_j);
            if let Some(first) = groups
                .iter()
                .find(|g| &g.label() == v && g.bound_j.is_some())
            {
                let row = format!("| PAC bound J (end of stage 1) | {} |", first.trainable);
                md.push_str(&row);
                for t in &tasks {
                    let cell = of_variant(t)
                        .map_or("—".into(), |(mean, std)| format!("{mean:.3} ± {std:.3}"));
                    md.push_str(&format!(" {cell} |"));
                }
                md.push('\n');
            }
        }
        md
    }
}

/// The distinct items in first-seen order.
fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(method: &str, values: &[f64], one_class: bool) -> Group {
        let (mean, std) = mean_std(values.iter().copied());
        Group {
            model: "m".into(),
            task: "mrpc".into(),
            method: method.into(),
            trainable: full(),
            metric: "f1".into(),
            values: values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as u64, v))
                .collect(),
            mean,
            std,
            bound_j: None,
            best: false,
            one_class,
        }
    }

    /// One seed has no spread to show; several show mean ± std (n); a group whose runs all
    /// predict one class says so.
    #[test]
    fn cells_show_n_and_flag_one_class_runs() {
        let report = Report {
            metric: None,
            at: At::Final,
            groups: vec![
                group("vanilla", &[0.538], false),
                group("pac", &[0.80, 0.82], false),
                group("pgd", &[0.812, 0.812], true),
                Group {
                    trainable: "lora".into(),
                    ..group("pac", &[0.70], false)
                },
            ],
            incomplete: Vec::new(),
        };
        let md = report.markdown();
        assert!(md.contains("| vanilla | full | 53.8 (n = 1) |"), "{md}");
        assert!(md.contains("| pac | full | 81.0 ± 1.4 (2) |"), "{md}");
        assert!(md.contains("| pac | lora | 70.0 (n = 1) |"), "{md}");
        assert!(
            md.contains("| pgd | full | 81.2 ± 0.0 (2) ⚠ predicts one class |"),
            "{md}"
        );
    }

    /// A summary written before `trainable` existed names BitFit or LoRA as its method: it is
    /// vanilla on that set, and its group's label is the old name.
    #[test]
    fn old_summaries_read_as_vanilla_on_their_set() {
        let text = r#"{"task": "rte", "method": "lora", "model": "m", "seed": 1,
            "train_size": 10, "dev_size": 5, "metric": "accuracy", "best": null,
            "final": {"epoch": 1, "accuracy": 0.5}, "epochs_run": 1, "bound": null,
            "k_estimation_seconds": null, "wall_seconds": 1.0, "device": "cpu"}"#;
        let summary: Summary = serde_json::from_str(text).unwrap();
        assert_eq!(method_and_set(&summary), ("vanilla".into(), "lora".into()));
        let pac_lora = Summary {
            method: "pac".into(),
            trainable: Some("lora".into()),
            ..summary.clone()
        };
        assert_eq!(method_and_set(&pac_lora), ("pac".into(), "lora".into()));
        let lora = Group {
            trainable: "lora".into(),
            ..group("vanilla", &[0.5], false)
        };
        assert_eq!(lora.label(), "lora");
    }

    #[test]
    fn one_class_is_read_from_the_best_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let best = dir.path().join("checkpoints/best");
        std::fs::create_dir_all(&best).unwrap();
        let write = |rows: &[&str]| {
            let text = format!(
                "index\tprediction\n{}",
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| format!("{i}\t{r}\n"))
                    .collect::<String>()
            );
            std::fs::write(best.join("dev_predictions.tsv"), text).unwrap();
        };
        write(&["1", "1", "1"]);
        assert!(predicts_one_class(dir.path()));
        write(&["1", "0", "1"]);
        assert!(!predicts_one_class(dir.path()));
        write(&["2.500", "2.500"]);
        assert!(!predicts_one_class(dir.path()), "scores are not classes");
        write(&["entailment", "entailment"]);
        assert!(predicts_one_class(dir.path()));
    }
}
