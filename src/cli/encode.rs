use anyhow::Result;
use pac_wgpu::model::{Encoder, ModelConfig, Pretrained, resolve_model, token_states};
use pac_wgpu::util::device::select;
use pac_wgpu::util::tokenize::PaddedBatch;

use super::args::DeviceArg;

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    #[command(flatten)]
    device: DeviceArg,
    /// A local HF model folder or a hub id (model_type bert, roberta or gpt2).
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
    /// Print {"input_ids", "attention_mask", "token_type_ids", "first", "last"}: the final hidden
    /// state at the first and at the last token (BERT also "cls", the same as "first").
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EncodeArgs) -> Result<()> {
    let folder = resolve_model(&args.model)?;
    let config_json = folder.join("config.json");
    let config = ModelConfig::from_file(&config_json)?;
    config.check_max_length(&config_json, args.max_length)?;
    let tokenizer = pac_wgpu::model::tokenizer(&folder, &config, args.max_length)?;
    let encoded = tokenizer.encode(&args.text_a, args.text_b.as_deref())?;
    let selected = select(args.device.choice)?;
    let model = Pretrained::from_config(&folder, config, 0.0, &selected.device)?;
    let batch = PaddedBatch::new(&[&encoded], tokenizer.pad_id());
    let states = pollster::block_on(token_states(&model.encoder, &batch, &selected.device))?;
    let (first, last) = (&states.first[0], &states.last[0]);
    if args.json {
        let mut value = serde_json::json!({
            "model_type": model.config.model_type(),
            "input_ids": encoded.input_ids,
            "attention_mask": vec![1; encoded.input_ids.len()],
            "token_type_ids": encoded.token_type_ids,
            "first": first,
            "last": last,
        });
        if matches!(model.encoder, Encoder::Bert(_)) {
            value["cls"] = serde_json::json!(first);
        }
        println!("{value}");
    } else {
        println!(
            "model:          {} ({})",
            folder.display(),
            model.config.model_type()
        );
        println!("device:         {}", selected.name);
        println!("input_ids:      {:?}", encoded.input_ids);
        println!("token_type_ids: {:?}", encoded.token_type_ids);
        println!("first ({} values): {:?}", first.len(), first);
        println!("last ({} values): {:?}", last.len(), last);
    }
    Ok(())
}
