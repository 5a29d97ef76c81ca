//! The plan for schedulers this crate does not replace: a Slurm job array whose task
//! `SLURM_ARRAY_TASK_ID` runs plan entry K, or one command per line for GNU parallel or xargs.
//! Both go through `pac-wgpu sweep --out DIR --run-index K`, which skips a finished run and
//! resumes an interrupted one, so a requeued or repeated task is harmless.

use std::path::Path;

use super::Plan;

/// How to hand the plan over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Slurm,
    List,
}

impl std::str::FromStr for Emit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "slurm" => Ok(Emit::Slurm),
            "list" => Ok(Emit::List),
            _ => Err(format!("expected slurm or list, found {s:?}")),
        }
    }
}

impl Emit {
    /// The file written into the sweep folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Emit::Slurm => "sweep.slurm",
            Emit::List => "commands.txt",
        }
    }

    /// The text of the script or list for `plan` in `out`, calling `exe`; `extra` are the
    /// flags every run takes (`--device`).
    pub fn text(self, plan: &Plan, out: &Path, exe: &Path, extra: &[String]) -> String {
        let command = |index: &str| {
            let mut words = vec![
                quote(&exe.display().to_string()),
                "sweep".into(),
                "--out".into(),
                quote(&out.display().to_string()),
                "--run-index".into(),
                index.to_string(),
            ];
            words.extend(extra.iter().map(|w| quote(w)));
            words.join(" ")
        };
        match self {
            Emit::List => (0..plan.runs.len())
                .map(|i| command(&i.to_string()) + "\n")
                .collect(),
            Emit::Slurm => {
                let last = plan.runs.len().saturating_sub(1);
                format!(
                    "#!/bin/bash\n\
                     # {runs} runs of {plan}: submit with `sbatch {script}`.\n\
                     # Each array task runs one plan entry; add your partition, GPU and time limits here.\n\
                     #SBATCH --job-name=pac-wgpu-sweep\n\
                     #SBATCH --array=0-{last}\n\
                     #SBATCH --output={out}/logs/slurm-%A_%a.out\n\
                     set -euo pipefail\n\
                     exec {command}\n",
                    runs = plan.runs.len(),
                    plan = Plan::path(out).display(),
                    script = out.join(Emit::Slurm.file_name()).display(),
                    out = out.display(),
                    command = command("\"$SLURM_ARRAY_TASK_ID\""),
                )
            }
        }
    }
}

/// `word` as one shell word.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
