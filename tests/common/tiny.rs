//! A tiny random BERT in Hugging Face's on-disk format, written by the tests themselves.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

/// Sizes of the tiny model: 2 layers, hidden 32, 4 heads.
pub const HIDDEN: usize = 32;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const FFN: usize = 64;
pub const MAX_POS: usize = 128;

/// Words of the test vocabulary, after the BERT special tokens.
pub const WORDS: [&str; 24] = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "mat", "is", "was", "big", "small", "red",
    "blue", "and", "not", "it", "very", "good", "bad", "movie", "film", ".", ",",
];

/// The HF tensors of the tiny encoder: name and shape (Linear weights as `[out, in]`).
pub fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let vocab = 5 + WORDS.len();
    let mut shapes = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![vocab, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![MAX_POS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, HIDDEN],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![HIDDEN]),
        ("embeddings.LayerNorm.bias".into(), vec![HIDDEN]),
    ];
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}.");
        for (name, shape) in [
            ("attention.self.query.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.query.bias", vec![HIDDEN]),
            ("attention.self.key.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.key.bias", vec![HIDDEN]),
            ("attention.self.value.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.value.bias", vec![HIDDEN]),
            ("attention.output.dense.weight", vec![HIDDEN, HIDDEN]),
            ("attention.output.dense.bias", vec![HIDDEN]),
            ("attention.output.LayerNorm.weight", vec![HIDDEN]),
            ("attention.output.LayerNorm.bias", vec![HIDDEN]),
            ("intermediate.dense.weight", vec![FFN, HIDDEN]),
            ("intermediate.dense.bias", vec![FFN]),
            ("output.dense.weight", vec![HIDDEN, FFN]),
            ("output.dense.bias", vec![HIDDEN]),
            ("output.LayerNorm.weight", vec![HIDDEN]),
            ("output.LayerNorm.bias", vec![HIDDEN]),
        ] {
            shapes.push((format!("{p}{name}"), shape));
        }
    }
    shapes
}

/// Deterministic pseudo-random values in [-0.5, 0.5) (LayerNorm gains near 1).
fn values(name: &str, len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        ^ name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    let offset = if name.ends_with("LayerNorm.weight") {
        1.0
    } else {
        0.0
    };
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            offset + ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
        })
        .collect()
}

/// Writes config.json, vocab.txt and model.safetensors of a tiny random BERT into `dir`.
/// `edit` may change the tensors (name → (shape, values)) before they are written.
pub fn write_model(
    dir: &Path,
    seed: u64,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": 5 + WORDS.len(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "max_position_embeddings": MAX_POS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    vocab.extend(WORDS);
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();

    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let v = values(&name, shape.iter().product(), seed);
            (name, shape, v)
        })
        .collect();
    edit(&mut tensors);
    write_safetensors(&dir.join("model.safetensors"), &tensors);
}

pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

/// A toy SST-2 in glue_data layout under `dir` (20 train, 10 dev sentences of the tiny
/// vocabulary), labelled by whether the verdict is good.
pub fn write_toy_sst2(dir: &Path) {
    let sst = dir.join("SST-2");
    std::fs::create_dir_all(&sst).unwrap();
    let subjects = ["the movie", "a film", "the cat", "the dog", "it"];
    let verdicts = [
        ("is good", 1),
        ("was very good", 1),
        ("is bad", 0),
        ("was not good", 0),
        ("is very bad", 0),
        ("is good and big", 1),
    ];
    let mut rows = Vec::new();
    for s in subjects {
        for (v, label) in verdicts {
            rows.push(format!("{s} {v} .\t{label}"));
        }
    }
    let (train, dev) = rows.split_at(20);
    for (name, part) in [("train.tsv", train), ("dev.tsv", dev)] {
        std::fs::write(
            sst.join(name),
            format!("sentence\tlabel\n{}\n", part.join("\n")),
        )
        .unwrap();
    }
}

/// A toy MRPC in glue_data layout under `dir` (24 train, 12 dev and 12 test pairs of the tiny
/// vocabulary): a pair is a paraphrase when both sentences give the same verdict.
pub fn write_toy_mrpc(dir: &Path) {
    let mrpc = dir.join("MRPC");
    std::fs::create_dir_all(&mrpc).unwrap();
    let subjects = ["the movie", "a film", "the cat", "the dog"];
    let verdicts = ["is good", "was very good", "is bad", "was not good"];
    let good = |v: &str| v.contains("good") && !v.contains("not");
    let mut pairs = Vec::new();
    for (i, a) in verdicts.iter().enumerate() {
        for (j, b) in verdicts.iter().enumerate() {
            for (k, s) in subjects.iter().enumerate() {
                let t = subjects[(k + i + j) % subjects.len()];
                let label = u8::from(good(a) == good(b));
                pairs.push((label, format!("{s} {a} ."), format!("{t} {b} .")));
            }
        }
    }
    let row = |n: usize, first: String, (_, a, b): &(u8, String, String)| {
        format!("{first}\t{}\t{}\t{a}\t{b}", 1000 + 2 * n, 1001 + 2 * n)
    };
    let header = "\t#1 ID\t#2 ID\t#1 String\t#2 String";
    let splits = [
        ("train.tsv", 0..24),
        ("dev.tsv", 24..36),
        ("test.tsv", 36..48),
    ];
    for (name, range) in splits {
        let first = if name == "test.tsv" {
            "index"
        } else {
            "Quality"
        };
        let rows: Vec<String> = range
            .enumerate()
            .map(|(i, n)| {
                let key = if name == "test.tsv" {
                    i.to_string()
                } else {
                    pairs[n].0.to_string()
                };
                row(n, key, &pairs[n])
            })
            .collect();
        std::fs::write(
            mrpc.join(name),
            format!("{first}{header}\n{}\n", rows.join("\n")),
        )
        .unwrap();
    }
}
