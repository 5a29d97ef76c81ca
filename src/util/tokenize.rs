//! Tokenization with the HF `tokenizers` crate: single sentences and pairs, longest-first
//! truncation, and batches padded to their longest member.

use std::path::Path;

use crate::util::text::escape_controls;
use anyhow::{Result, anyhow};
use burn::tensor::{Device, Int, Tensor, TensorData};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// One tokenized example, with special tokens, before padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

/// A model folder's tokenizer file, read: `tokenizer.json` or BERT's `vocab.txt`.
pub enum TokenizerFile {
    Json(Vec<u8>),
    Vocab(Vec<u8>),
}

/// A model's tokenizer, truncating to `max_length` tokens like HF's `truncation=True`.
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from a model folder, or builds a BERT WordPiece tokenizer from
    /// `vocab.txt` (lower-casing, as in uncased BERT) when there is no tokenizer.json.
    pub fn from_model_dir(dir: &Path, max_length: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| anyhow!("{}: cannot read tokenizer: {e}", path.display()))
        };
        let file = if json.is_file() {
            TokenizerFile::Json(read(&json)?)
        } else if vocab.is_file() {
            TokenizerFile::Vocab(read(&vocab)?)
        } else {
            return Err(anyhow!(
                "{}: model folder has neither tokenizer.json nor vocab.txt",
                dir.display()
            ));
        };
        Self::from_bytes(dir, file, max_length)
    }

    /// A tokenizer from a model folder's files given as bytes (the browser has no files);
    /// `dir` names the folder in errors. Whether `max_length` fits the model's positions is the
    /// model config's check (`ModelConfig::check_max_length`).
    pub fn from_bytes(dir: &Path, file: TokenizerFile, max_length: usize) -> Result<Self> {
        if max_length < 3 {
            return Err(anyhow!(
                "--max-length must be at least 3 ([CLS] x [SEP]), found {max_length}"
            ));
        }
        let mut inner = match file {
            TokenizerFile::Json(bytes) => {
                let json = dir.join("tokenizer.json");
                check_tokenizer_json(&json, &bytes)?;
                Tokenizer::from_bytes(&bytes).map_err(|e| {
                    anyhow!(
                        "{}: expected a tokenizers JSON file, found {}",
                        json.display(),
                        escape_controls(&e.to_string())
                    )
                })?
            }
            TokenizerFile::Vocab(bytes) => from_vocab(&dir.join("vocab.txt"), &bytes)?,
        };
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| anyhow!("{}: cannot set truncation: {e}", dir.display()))?;
        inner.with_padding(None);
        let pad_id = PAD_TOKENS
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .unwrap_or(0);
        Ok(TextTokenizer { inner, pad_id })
    }

    /// Tokenizes one sentence or a pair, adding \[CLS\]/\[SEP\] and token types.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>) -> Result<Encoded> {
        let encoding = match text_b {
            Some(b) => self.inner.encode((text_a, b), true),
            None => self.inner.encode(text_a, true),
        }
        .map_err(|e| anyhow!("cannot tokenize {text_a:?}: {e}"))?;
        Ok(Encoded {
            input_ids: encoding.get_ids().to_vec(),
            token_type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// The id used for padding: the model config's where it names one (see [`Self::with_pad_id`]),
    /// else `[PAD]` (BERT), `<pad>` (RoBERTa), GPT-2's end of text `<|endoftext|>` (it has no pad
    /// token), else 0.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The tokenizer padding with `pad_id` where the model's config names one
    /// (`ModelConfig::pad_id`).
    pub fn with_pad_id(mut self, pad_id: Option<u32>) -> Self {
        if let Some(id) = pad_id {
            self.pad_id = id;
        }
        self
    }
}

/// Padding tokens by family, in the order they are looked up.
const PAD_TOKENS: [&str; 3] = ["[PAD]", "<pad>", "<|endoftext|>"];

/// Checks what the tokenizers crate reads without complaint but mishandles later: a byte-level
/// BPE tokenizer needs its merges (without them every word falls apart into bytes), vocabulary
/// entries must be of a sane length ([`MAX_TOKEN_BYTES`]), and a template post-processor must
/// define the special tokens it names ([`check_template`]).
fn check_tokenizer_json(json: &Path, bytes: &[u8]) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct File {
        model: Model,
        #[serde(default)]
        post_processor: serde_json::Value,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        #[serde(rename = "type")]
        kind: Option<String>,
        merges: Option<Vec<serde_json::Value>>,
        #[serde(default)]
        vocab: serde_json::Value,
    }
    let file: File = serde_json::from_slice(bytes).map_err(|e| {
        anyhow!(
            "{}:{}: expected a tokenizers JSON file with a \"model\", found {}",
            json.display(),
            e.line(),
            escape_controls(&e.to_string())
        )
    })?;
    if file.model.kind.as_deref() == Some("BPE") && file.model.merges.is_none_or(|m| m.is_empty()) {
        return Err(anyhow!(
            "{}: expected a BPE tokenizer with merges (model.merges), found none",
            json.display()
        ));
    }
    check_token_lengths(json, &file.model.vocab)?;
    check_template(json, &file.post_processor)
}

/// The longest vocabulary entry read. The tokenizers crate keeps a Unigram vocabulary in a trie
/// of one level per character and frees it recursively: a 160 000-character entry overflows
/// an 8 MiB stack. Real entries are at most a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// The entries of `model.vocab` (an object of WordPiece or BPE, or Unigram's `[piece, score]`
/// list) are at most [`MAX_TOKEN_BYTES`] long.
fn check_token_lengths(json: &Path, vocab: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    let longest = match vocab {
        Value::Object(entries) => entries.keys().map(String::len).max(),
        Value::Array(pieces) => (pieces.iter())
            .filter_map(|p| Some(p.get(0)?.as_str()?.len()))
            .max(),
        _ => None,
    };
    match longest {
        Some(len) if len > MAX_TOKEN_BYTES => Err(anyhow!(
            "{}: expected model.vocab entries of at most {MAX_TOKEN_BYTES} bytes, found one of {len}",
            json.display()
        )),
        _ => Ok(()),
    }
}

/// A `TemplateProcessing` post-processor (alone or in a `Sequence`): each special token its
/// templates name is in its `special_tokens`, and the single template uses no second sequence. The tokenizers crate panics on the first encode otherwise.
fn check_template(json: &Path, processor: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    if let Some(processors) = processor.get("processors").and_then(Value::as_array) {
        return processors.iter().try_for_each(|p| check_template(json, p));
    }
    if processor.get("type").and_then(Value::as_str) != Some("TemplateProcessing") {
        return Ok(());
    }
    let bad = |what: String| anyhow!("{}: expected post_processor {what}", json.display());
    let tokens = processor.get("special_tokens").and_then(Value::as_object);
    for template in ["single", "pair"] {
        let pieces = processor.get(template).and_then(Value::as_array);
        for piece in pieces.into_iter().flatten() {
            if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str)
                && !tokens.is_some_and(|t| t.contains_key(id))
            {
                return Err(bad(format!(
                    "special_tokens to define {id:?}, which its {template} template names"
                )));
            }
            if template == "single" && piece.pointer("/Sequence/id") == Some(&Value::from("B")) {
                return Err(bad("single template to use sequence A only, found B".into()));
            }
        }
    }
    Ok(())
}

fn from_vocab(vocab: &Path, bytes: &[u8]) -> Result<Tokenizer> {
    let model = WordPiece::read_bytes(bytes)
        .and_then(|words| WordPiece::builder().vocab(words).build())
        .map_err(|e| {
            anyhow!(
                "{}: expected a WordPiece vocabulary, found {}",
                vocab.display(),
                escape_controls(&e.to_string())
            )
        })?;
    let mut tokenizer = Tokenizer::new(model);
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| anyhow!("{}: vocabulary has no {t} token", vocab.display()))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
    Ok(tokenizer)
}

/// Examples padded on the right to the longest member, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<f32>,
}

impl PaddedBatch {
    pub fn new(examples: &[&Encoded], pad_id: u32) -> Self {
        let seq = examples
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0);
        Self::with_length(examples, pad_id, seq)
    }

    /// `examples` padded to `seq` tokens (at least the longest's).
    pub fn with_length(examples: &[&Encoded], pad_id: u32, seq: usize) -> Self {
        let batch = examples.len();
        let mut out = PaddedBatch {
            batch,
            seq,
            input_ids: vec![pad_id as i64; batch * seq],
            token_type_ids: vec![0; batch * seq],
            attention_mask: vec![0.0; batch * seq],
        };
        for (row, e) in examples.iter().enumerate() {
            let start = row * seq;
            for (i, (&id, &ty)) in e.input_ids.iter().zip(&e.token_type_ids).enumerate() {
                out.input_ids[start + i] = id as i64;
                out.token_type_ids[start + i] = ty as i64;
                out.attention_mask[start + i] = 1.0;
            }
        }
        out
    }

    /// `(input_ids, token_type_ids, attention_mask)` on `device`.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
        let shape = [self.batch, self.seq];
        for bytes in [
            std::mem::size_of_val(self.input_ids.as_slice()),
            std::mem::size_of_val(self.token_type_ids.as_slice()),
            std::mem::size_of_val(self.attention_mask.as_slice()),
        ] {
            crate::util::device::count_upload(bytes);
        }
        (
            Tensor::from_data(TensorData::new(self.input_ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.token_type_ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.attention_mask.clone(), shape), device),
        )
    }
}
