//! Valid inputs of every reader, generated from a seeded [`Rng`]: the starting points that the
//! mutations break. Each must read back without error (the harness checks it).

use std::collections::HashMap;
use std::path::Path;

use pac_wgpu::glue::Task;
use pac_wgpu::run::EpochRecord;
use pac_wgpu::sweep::Plan;
use pac_wgpu::sweep::runner::{Outcome, RunStatus, Status};
use pac_wgpu::train::TrainConfig;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

use crate::mutate::Rng;

const WORDS: [&str; 14] = [
    "the", "a", "cat", "sat", "on", "mat", "good", "bad", "movie", "very", "not", "café", "日本",
    "it's",
];

/// One to eight words and a full stop.
pub fn sentence(rng: &mut Rng) -> String {
    let words: Vec<&str> = (0..1 + rng.below(8)).map(|_| *rng.pick(&WORDS)).collect();
    format!("{} .", words.join(" "))
}

/// One to six rows from `row`, each ending in a newline.
fn rows(rng: &mut Rng, mut row: impl FnMut(&mut Rng) -> String) -> String {
    (0..1 + rng.below(6)).map(|_| row(rng) + "\n").collect()
}

/// SST-2/train.tsv: a header, then `sentence<TAB>label`.
pub fn sst2_tsv(rng: &mut Rng) -> Vec<u8> {
    let body = rows(rng, |r| format!("{}\t{}", sentence(r), r.below(2)));
    format!("sentence\tlabel\n{body}").into_bytes()
}

/// STS-B/train.tsv: a header of ten columns, scores in [0, 5].
pub fn stsb_tsv(rng: &mut Rng) -> Vec<u8> {
    let header =
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore";
    let body = rows(rng, |r| {
        let score = r.below(5001) as f64 / 1000.0;
        let (a, b) = (sentence(r), sentence(r));
        format!("0\tmain-news\tnews\t2012\t1\tnone\tnone\t{a}\t{b}\t{score:.3}")
    });
    format!("{header}\n{body}").into_bytes()
}

/// CoLA/train.tsv: no header; source, label, original mark, sentence.
pub fn cola_tsv(rng: &mut Rng) -> Vec<u8> {
    let body = rows(rng, |r| {
        let label = r.below(2);
        let mark = if label == 0 { "*" } else { "" };
        format!("gj04\t{label}\t{mark}\t{}", sentence(r))
    });
    body.into_bytes()
}

/// A predictions file of MNLI in GLUE's submission form, rows in a random order.
pub fn predictions(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.below(6);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let labels = ["entailment", "neutral", "contradiction"];
    let body: String = order
        .iter()
        .map(|i| format!("{i}\t{}\n", rng.pick(&labels)))
        .collect();
    format!("index\tprediction\n{body}").into_bytes()
}

const RTE_LABELS: [&str; 2] = ["entailment", "not_entailment"];

/// A user's RTE pairs as TSV: sentence1, sentence2, label.
pub fn user_tsv(rng: &mut Rng) -> Vec<u8> {
    let body = rows(rng, |r| {
        let (a, b) = (sentence(r), sentence(r));
        format!("{a}\t{b}\t{}", r.pick(&RTE_LABELS))
    });
    format!("sentence1\tsentence2\tlabel\n{body}").into_bytes()
}

/// A user's RTE pairs as CSV, some fields quoted (with commas, quotes and newlines inside).
pub fn user_csv(rng: &mut Rng) -> Vec<u8> {
    let body = rows(rng, |r| {
        let a = match r.below(3) {
            0 => format!("\"{}, \"\"quoted\"\"\n{}\"", sentence(r), sentence(r)),
            _ => sentence(r),
        };
        format!("{a},{},{}", sentence(r), r.pick(&RTE_LABELS))
    });
    format!("sentence1,sentence2,label\n{body}").into_bytes()
}

/// A user's RTE pairs as JSON Lines.
pub fn user_jsonl(rng: &mut Rng) -> Vec<u8> {
    let body = rows(rng, |r| {
        let row = json!({"sentence1": sentence(r), "sentence2": sentence(r), "label": r.pick(&RTE_LABELS)});
        row.to_string()
    });
    body.into_bytes()
}

/// A `--task custom` train file: `text` and `label`, labels words or numbers (a regression
/// target when there are many distinct numbers).
pub fn custom_jsonl(rng: &mut Rng) -> Vec<u8> {
    let numeric = rng.one_in(2);
    let body: String = (0..2 + rng.below(14))
        .map(|i| {
            let label = match numeric {
                true => json!(rng.below(1000) as f64 / 10.0),
                false => json!(["pos", "neg", "neutral"][i % 3]),
            };
            json!({"text": sentence(rng), "label": label}).to_string() + "\n"
        })
        .collect();
    body.into_bytes()
}

/// A user's SST-2 file as parquet: `sentence` (UTF-8) and `label` (INT64), snappy-compressed.
pub fn parquet(rng: &mut Rng) -> Vec<u8> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let n = 1 + rng.below(6);
    let texts: Vec<ByteArray> = (0..n)
        .map(|_| ByteArray::from(sentence(rng).as_str()))
        .collect();
    let labels: Vec<i64> = (0..n).map(|_| rng.below(2) as i64).collect();
    let schema = "message glue { OPTIONAL BYTE_ARRAY sentence (UTF8); OPTIONAL INT64 label; }";
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let compression = *rng.pick(&[Compression::SNAPPY, Compression::UNCOMPRESSED]);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let defined = vec![1i16; n];
    let mut column = group.next_column().unwrap().unwrap();
    let text_writer = column.typed::<ByteArrayType>();
    text_writer
        .write_batch(&texts, Some(&defined), None)
        .unwrap();
    column.close().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    let label_writer = column.typed::<Int64Type>();
    label_writer
        .write_batch(&labels, Some(&defined), None)
        .unwrap();
    column.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
    out
}

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// BERT's vocab.txt: the special tokens, words, and `##` pieces.
pub fn vocab_txt(rng: &mut Rng) -> Vec<u8> {
    let mut lines: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    lines.extend(WORDS.iter().map(|w| w.to_string()));
    lines.extend(["##s", "##ing", "."].map(String::from));
    if rng.one_in(2) {
        lines.push("[unused0]".into());
    }
    (lines.join("\n") + "\n").into_bytes()
}

/// tokenizer.json of a WordPiece, BPE or Unigram model, in the tokenizers crate's format.
pub fn tokenizer_json(rng: &mut Rng) -> Vec<u8> {
    let tokens: Vec<&str> = SPECIALS.iter().chain(&WORDS).copied().collect();
    let (model, pre_tokenizer) = match rng.below(3) {
        0 => (wordpiece(&tokens), json!({"type": "BertPreTokenizer"})),
        1 => (bpe(), json!({"type": "Whitespace"})),
        _ => (unigram(&tokens), json!({"type": "Whitespace"})),
    };
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let file = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": pre_tokenizer,
        "post_processor": bert_template(),
        "decoder": null,
        "model": model,
    });
    serde_json::to_vec_pretty(&file).unwrap()
}

fn wordpiece(tokens: &[&str]) -> Value {
    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    json!({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
           "max_input_chars_per_word": 100, "vocab": vocab})
}

/// Letters, three merges and the special tokens (ids 0..5, as `added_tokens` says).
fn bpe() -> Value {
    let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    vocab.extend(('a'..='z').map(String::from));
    vocab.extend(["th", "the", "ca"].map(String::from));
    let vocab: HashMap<String, usize> =
        vocab.into_iter().enumerate().map(|(i, t)| (t, i)).collect();
    json!({"type": "BPE", "dropout": null, "unk_token": "[UNK]",
           "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
           "byte_fallback": false, "ignore_merges": false, "vocab": vocab,
           "merges": ["t h", "th e", "c a"]})
}

fn unigram(tokens: &[&str]) -> Value {
    let vocab: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| json!([t, -(i as f64) / 4.0]))
        .collect();
    json!({"type": "Unigram", "unk_id": 1, "vocab": vocab, "byte_fallback": false})
}

/// `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`, as BERT's tokenizer.json has them.
fn bert_template() -> Value {
    let special = |id: &str, type_id: u32| json!({"SpecialToken": {"id": id, "type_id": type_id}});
    let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    json!({
        "type": "TemplateProcessing",
        "single": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)],
        "pair": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0),
                 sequence("B", 1), special("[SEP]", 1)],
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]},
        },
    })
}

/// A small config.json of `family`, optional keys present one time in two.
pub fn config_json(rng: &mut Rng, family: &str) -> Vec<u8> {
    let mut config = match family {
        "bert" | "roberta" => json!({"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 40,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
            "pad_token_id": 1}),
        "gpt2" => json!({"vocab_size": 30, "n_embd": 8, "n_layer": 1, "n_head": 2,
            "n_positions": 40, "n_inner": null, "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5}),
        "modernbert" => json!({"vocab_size": 30, "hidden_size": 8, "intermediate_size": 12,
            "num_hidden_layers": 3, "num_attention_heads": 2, "max_position_embeddings": 64,
            "global_attn_every_n_layers": 3, "local_attention": 8, "pad_token_id": 0,
            "global_rope_theta": 160000.0, "local_rope_theta": 10000.0}),
        _ => json!({"vocab_size": 30, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 4, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "tie_word_embeddings": rng.one_in(2), "eos_token_id": 1,
            "layer_types": ["full_attention", "full_attention"]}),
    };
    config["model_type"] = json!(family);
    if rng.one_in(2) {
        config["initializer_range"] = json!(0.02);
        config["torch_dtype"] = json!("float32");
    }
    serde_json::to_vec_pretty(&config).unwrap()
}

/// The tiny BERT of [`config_json`]`("bert")`: its HF tensors and their shapes.
fn bert_shapes() -> Vec<(String, Vec<usize>)> {
    let (vocab, hidden, ffn, positions) = (30, 8, 16, 40);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![vocab, hidden],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![positions, hidden],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, hidden],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![hidden]),
        ("embeddings.LayerNorm.bias".into(), vec![hidden]),
    ];
    let square = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ];
    for name in square {
        shapes.push((format!("{name}.weight"), vec![hidden, hidden]));
        shapes.push((format!("{name}.bias"), vec![hidden]));
    }
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        shapes.push((format!("{norm}.weight"), vec![hidden]));
        shapes.push((format!("{norm}.bias"), vec![hidden]));
    }
    shapes.push(("intermediate.dense.weight".into(), vec![ffn, hidden]));
    shapes.push(("intermediate.dense.bias".into(), vec![ffn]));
    shapes.push(("output.dense.weight".into(), vec![hidden, ffn]));
    shapes.push(("output.dense.bias".into(), vec![hidden]));
    shapes
        .into_iter()
        .map(|(name, shape)| match name.starts_with("embeddings.") {
            true => (name, shape),
            false => (format!("encoder.layer.0.{name}"), shape),
        })
        .collect()
}

/// model.safetensors of the tiny BERT: f32 or f16, names with or without the `bert.` prefix.
pub fn bert_safetensors(rng: &mut Rng) -> Vec<u8> {
    let (dtype, width) = match rng.one_in(4) {
        true => (Dtype::F16, 2),
        false => (Dtype::F32, 4),
    };
    let prefix = if rng.one_in(2) { "bert." } else { "" };
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = bert_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let len = shape.iter().product::<usize>() * width;
            let bytes = (0..len)
                .map(|i| if i % width == width - 1 { 0x3c } else { 0 })
                .collect();
            (format!("{prefix}{name}"), shape, bytes)
        })
        .collect();
    serialize(&tensors, dtype, None)
}

/// A checkpoint's tensors file: named 1-D f32 tensors and string metadata.
pub fn tensor_file(rng: &mut Rng) -> Vec<u8> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = (0..1 + rng.below(4))
        .map(|i| {
            let len = 1 + rng.below(16);
            let bytes = (0..len)
                .flat_map(|k| (k as f32 / 3.0).to_le_bytes())
                .collect();
            (format!("tensor.{i}"), vec![len], bytes)
        })
        .collect();
    let meta = HashMap::from([("step".to_string(), rng.below(1000).to_string())]);
    serialize(&tensors, Dtype::F32, Some(meta))
}

fn serialize(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    dtype: Dtype,
    meta: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let views = tensors.iter().map(|(name, shape, bytes)| {
        (
            name.clone(),
            TensorView::new(dtype, shape.clone(), bytes).unwrap(),
        )
    });
    safetensors::serialize(views, meta).unwrap()
}

/// run.json of a GLUE task's run, some settings changed from the paper's.
pub fn run_json(rng: &mut Rng) -> Vec<u8> {
    let task = rng
        .pick(&[Task::Sst2, Task::Mrpc, Task::Stsb, Task::Cola])
        .clone();
    let mut config = TrainConfig::paper(task);
    config.seed = rng.next() % 1000;
    config.epochs = 1 + rng.below(300);
    config.stage1_epochs = config.epochs * 4 / 5;
    config.batch_size = 1 + rng.below(64);
    config.output_dir = Path::new("runs").join(format!("r{}", rng.below(100)));
    serde_json::to_vec_pretty(&config).unwrap()
}

/// history.jsonl: one record per epoch, PAC's keys and dev metrics on some.
pub fn history_jsonl(rng: &mut Rng) -> Vec<u8> {
    let lines: String = (1..=1 + rng.below(5))
        .map(|epoch| {
            let mut record = EpochRecord {
                epoch,
                step: epoch as u64 * 10,
                train_loss: 0.7 / epoch as f64,
                lr_encoder: 5e-5,
                lr_head: 1e-2,
                epoch_seconds: 1.5,
                examples_per_s: 60.0,
                ..EpochRecord::default()
            };
            if rng.one_in(2) {
                record.stage = Some(1);
                record.kl = Some(3.5);
                record.bound = Some(0.9);
                record.dev = Some([("accuracy".to_string(), 0.5)].into());
            }
            serde_json::to_string(&record).unwrap() + "\n"
        })
        .collect();
    lines.into_bytes()
}

/// A sweep's plan.json over one or two tasks, variants and seeds.
pub fn plan(rng: &mut Rng) -> Plan {
    let tasks: Vec<String> = ["sst2", "mrpc"][..1 + rng.below(2)]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let variants = vec![
        (
            "pac".to_string(),
            vec!["--method".to_string(), "pac".to_string()],
        ),
        (
            "vanilla".to_string(),
            vec!["--method".to_string(), "vanilla".to_string()],
        ),
    ];
    let seeds: Vec<u64> = (0..1 + rng.below(3) as u64).collect();
    Plan::new(
        Path::new("sweep"),
        &tasks,
        &variants[..1 + rng.below(2)],
        &seeds,
        &[],
    )
}

pub fn plan_json(rng: &mut Rng) -> Vec<u8> {
    serde_json::to_vec_pretty(&plan(rng)).unwrap()
}

/// status.json of [`plan`]'s runs, some failed with an error.
pub fn status_json(rng: &mut Rng) -> Vec<u8> {
    let runs = plan(rng)
        .runs
        .into_iter()
        .map(|run| {
            let failed = rng.one_in(3);
            RunStatus {
                outcome: if failed {
                    Outcome::Failed
                } else {
                    Outcome::Pending
                },
                error: failed.then(|| "error: out of memory".to_string()),
                seconds: Some(1.5),
                log: Path::new("logs").join(format!("{}.log", run.name)),
                device: None,
                name: run.name,
            }
        })
        .collect();
    serde_json::to_vec_pretty(&Status { runs }).unwrap()
}

/// A checkpoint's loop state.
pub fn state_json(rng: &mut Rng) -> Vec<u8> {
    let epoch = rng.below(50);
    let state = serde_json::json!({
        "epoch": epoch,
        "step": epoch * 10 + rng.below(10),
        "best": [rng.below(epoch + 1), 0.75],
        "stale_evals": rng.below(3),
        "wall_seconds": 12.5,
        "epoch_losses": [0.69, 0.68],
        "epoch_skipped": 0,
    });
    serde_json::to_vec_pretty(&state).unwrap()
}

/// The file beside [`manifest_json`]'s manifest: its name and contents.
pub const MANIFEST_FILE: (&str, &[u8]) = ("model.safetensors", b"sixteen bytes ok");

/// A manifest that [`MANIFEST_FILE`] matches.
pub fn manifest_json(rng: &mut Rng) -> Vec<u8> {
    let (name, bytes) = MANIFEST_FILE;
    let mut files = vec![serde_json::json!({
        "name": name,
        "bytes": bytes.len(),
        "xxh3": format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes)),
    })];
    if rng.one_in(2) {
        files.clear();
    }
    serde_json::to_vec_pretty(&serde_json::json!({ "files": files })).unwrap()
}
