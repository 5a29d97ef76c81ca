use std::path::PathBuf;

use anyhow::Result;
use pac_wgpu::model::HeadKind;
use pac_wgpu::train::export::{Dtype, export};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A run folder written by `pac-wgpu train`.
    #[arg(long)]
    run: PathBuf,
    /// best or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// The Hugging Face folder to write (must not exist).
    #[arg(long, visible_alias = "output-dir")]
    out: PathBuf,
    /// f32, or f16/bf16 for a smaller upload (values rounded to nearest).
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let exported = export(&args.run, &args.checkpoint, &args.out, args.dtype)?;
    println!("wrote {}", exported.folder.display());
    match (exported.head, &exported.python) {
        (HeadKind::Hf, _) => println!(
            "load it with transformers.AutoModelForSequenceClassification.from_pretrained(\"{}\")",
            exported.folder.display()
        ),
        (HeadKind::Cls, Some(python)) => {
            println!(
                "a --head cls run: the encoder loads with AutoModel; these lines rebuild the logits:\n{python}"
            )
        }
        (HeadKind::Cls, None) => {}
    }
    Ok(())
}
