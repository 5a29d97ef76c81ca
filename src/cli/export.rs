use std::path::PathBuf;

use anyhow::Result;
use pac_wgpu::model::HeadKind;
use pac_wgpu::train::export::{Adapters, Dtype, export};

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
    /// A --trainable lora run: write the whole model with the adapters merged into its weights
    /// instead of a PEFT adapter folder.
    #[arg(long)]
    merge: bool,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let adapters = match args.merge {
        true => Adapters::Merge,
        false => Adapters::Peft,
    };
    let exported = export(&args.run, &args.checkpoint, &args.out, args.dtype, adapters)?;
    println!("wrote {}", exported.folder.display());
    if exported.peft {
        let python = exported.python.as_deref().unwrap_or_default();
        println!("a PEFT adapter folder (pass --merge for a whole model); load it with:\n{python}");
        return Ok(());
    }
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
