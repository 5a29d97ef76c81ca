use anyhow::Result;
use pac_wgpu::device::select;
use pac_wgpu::model::{Pretrained, cls_vectors, resolve_model};
use pac_wgpu::tokenize::{PaddedBatch, TextTokenizer};

use super::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// A local HF model folder or a hub id.
    #[arg(long, default_value = "bert-base-uncased")]
    model: String,
    /// Truncate the (pair of) sentences to this many tokens, longest first.
    #[arg(long, default_value_t = 128)]
    max_length: usize,
    /// The first (or only) sentence.
    #[arg(long)]
    text_a: String,
    /// The second sentence of a pair.
    #[arg(long)]
    text_b: Option<String>,
    /// Print {"input_ids": [..], "token_type_ids": [..], "cls": [..]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EncodeArgs, global: &GlobalArgs) -> Result<()> {
    let folder = resolve_model(&args.model)?;
    let tokenizer = TextTokenizer::from_model_dir(&folder, args.max_length)?;
    let encoded = tokenizer.encode(&args.text_a, args.text_b.as_deref())?;
    let selected = select(global.device)?;
    let model = Pretrained::load(&folder, 0.0, &selected.device)?;
    let batch = PaddedBatch::new(&[&encoded], tokenizer.pad_id());
    let cls = cls_vectors(&model.bert, &batch, &selected.device)?.remove(0);
    if args.json {
        let value = serde_json::json!({
            "input_ids": encoded.input_ids,
            "token_type_ids": encoded.token_type_ids,
            "cls": cls,
        });
        println!("{value}");
    } else {
        println!("model:          {}", folder.display());
        println!("device:         {}", selected.name);
        println!("input_ids:      {:?}", encoded.input_ids);
        println!("token_type_ids: {:?}", encoded.token_type_ids);
        println!("cls ({} values): {:?}", cls.len(), cls);
    }
    Ok(())
}
