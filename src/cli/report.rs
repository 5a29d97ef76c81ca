use std::path::PathBuf;

use anyhow::Result;
use pac_wgpu::sweep::table::{self, At};
use pac_wgpu::util::files::{write_atomic, write_json};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Sweep folders, run folders, or folders of run folders.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The dev metric to tabulate (e.g. accuracy for MRPC). [default: each task's main metric]
    #[arg(long)]
    metric: Option<String>,
    /// The evaluation to read: final (last evaluated epoch) or best (best main metric on dev).
    #[arg(long, default_value = "final")]
    at: At,
    /// Where report.md, report.json and report.png go. [default: the first folder]
    #[arg(long, visible_alias = "output-dir")]
    out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let report = table::build(&args.dirs, args.metric.as_deref(), args.at)?;
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].clone());
    std::fs::create_dir_all(&out)?;
    let markdown = report.markdown();
    write_atomic(&out.join("report.md"), markdown.as_bytes())?;
    write_json(&out.join("report.json"), &report)?;
    pac_wgpu::report::plots::write_report_plot(&out.join("report.png"), &report.panels())?;
    print!("{markdown}");
    eprintln!(
        "wrote {} (and report.json, report.png)",
        out.join("report.md").display()
    );
    Ok(())
}
