//! Inputs the generated cases found wrong, each cut to what still shows the defect: every one
//! must now end in Ok or in the one-line error named.

use crate::harness::{Outcome, run_case};
use crate::readers::READERS;

/// The outcome of the reader named `name` on `bytes`.
fn outcome(name: &str, bytes: &[u8]) -> Outcome {
    let reader = READERS
        .iter()
        .find(|r| r.name == name)
        .expect("a reader of that name");
    run_case(reader, bytes.to_vec()).outcome
}

/// A one-line error that contains every one of `words`.
fn assert_error(outcome: Outcome, words: &[&str]) {
    let Outcome::Error(message) = outcome else {
        panic!("expected an error, found {outcome:?}");
    };
    assert!(!message.contains(['\n', '\r']), "one line: {message:?}");
    for word in words {
        assert!(message.contains(word), "{message:?} should name {word:?}");
    }
}

#[test]
fn config_json_with_2_pow_64_minus_1_layers() {
    let config = br#"{"model_type": "bert", "vocab_size": 30, "hidden_size": 8,
        "num_hidden_layers": 18446744073709551615, "num_attention_heads": 2,
        "intermediate_size": 16, "max_position_embeddings": 40}"#;
    assert_error(
        outcome("model folder config.json", config),
        &[
            "config.json",
            "num_hidden_layers 18446744073709551615",
            "model.safetensors",
        ],
    );
}

/// A WordLevel tokenizer.json whose post-processor is `template`.
fn tokenizer_with(template: &str) -> Vec<u8> {
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "decoder": null,
        "model": {{"type": "WordLevel", "vocab": {{"[UNK]": 0, "the": 1}}, "unk_token": "[UNK]"}},
        "post_processor": {{"type": "TemplateProcessing", {template}}}}}"#
    )
    .into_bytes()
}

#[test]
fn tokenizer_template_naming_an_undefined_special_token() {
    let template = r#""single": [{"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}"#;
    assert_error(
        outcome("tokenizer.json", &tokenizer_with(template)),
        &["tokenizer.json", "special_tokens to define \"A\""],
    );
}

#[test]
fn tokenizer_single_template_using_the_second_sequence() {
    let template = r#""single": [{"Sequence": {"id": "B", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}"#;
    assert_error(
        outcome("tokenizer.json", &tokenizer_with(template)),
        &["tokenizer.json", "single template"],
    );
}

/// Case 2151 of `user parquet` under seed 1: a page the parquet crate decodes with a dictionary
/// that the file does not have (the crate panics: "Decoder for dict should have been set").
const PARQUET_DICTIONARY_PAGE_WITHOUT_DICTIONARY: [&str; 15] = [
    "5041523115041580021580024c150a150012000005000000746865202e11000000636174206e6f74206e6f74206e6f74",
    "202e2500000062616420746865207665727920e697a5e69cac20e697a5e69cac2076657279206e6f74202e21000000e6",
    "97a5e69cac20636174206e6f742063617420676f6f642062616420636174202e100000006261642073617420e697a5e6",
    "9cac202e1500151615162c150a1510150615060000020000000a0103038846001504152015204c150415001200000100",
    "00000000000000000000000000001500151215122c150a1510150615060000020000000a010103161912021918106261",
    "642073617420e697a5e69cac202e191821e697a5e69cac20636174206e6f742063617420676f6f642062616420636174",
    "202e15021916002926000a001912021918080000000000000000191808010000000000000015021916002926000a0019",
    "1c16a80215381600001916d80100191c169c031534160000001502193c4804676c7565150400150c2502180873656e74",
    "656e63652500001504250218056c6162656c00160a191c192c26001c150c193500061019180873656e74656e63651500",
    "160a16d80216d80226a802a6081c36002821e697a5e69cac20636174206e6f742063617420676f6f6420626164206361",
    "74202e18106261642073617420e697a5e69cac202e111100192c15041500150200150015101502003c16d8012926000a",
    "0000169e05151e16d0031588010026001c150419350006101918056c6162656c1500160a16701670269c0326e0021c18",
    "0801000000000000001808000000000000000016002808010000000000000018080000000000000000111100192c1504",
    "1500150200150015101502003c3926000a000016bc05151616d80415460016c803160a260816c8031400002819706172",
    "717565742d72732076657273696f6e2036302e312e30192c1c00001c0000005601000050415231",
];

#[test]
fn parquet_dictionary_page_without_its_dictionary() {
    let hex = PARQUET_DICTIONARY_PAGE_WITHOUT_DICTIONARY.concat();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_error(
        outcome("user parquet", &bytes),
        &["train.parquet", "expected a parquet file"],
    );
}

#[test]
fn user_tsv_header_with_a_carriage_return() {
    let tsv = b"senten\re1\tsentence2\tlabel\na .\tb .\tentailment\n";
    assert_error(outcome("user tsv", tsv), &["train.tsv:1", "senten\\re1"]);
}

#[test]
fn user_jsonl_key_with_a_newline() {
    let jsonl = br#"{"sentence1": "a .", "se\ntence2": "b .", "label": "entailment"}"#;
    assert_error(
        outcome("user jsonl", jsonl),
        &["train.jsonl:1", "se\\ntence2"],
    );
}

#[test]
fn custom_jsonl_with_numeric_labels() {
    let jsonl = b"{\"text\": \"a .\", \"label\": 62.4}\n{\"text\": \"b .\", \"label\": 0.4}\n";
    assert_eq!(outcome("custom jsonl", jsonl), Outcome::Ok);
}

#[test]
fn tokenizer_unigram_entry_of_160_000_characters() {
    let entry = "t".repeat(160_000);
    let unigram = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "decoder": null,
        "post_processor": null, "model": {{"type": "Unigram", "unk_id": 0, "byte_fallback": false,
        "vocab": [["<unk>", 0.0], ["{entry}", -1.0]]}}}}"#
    );
    assert_error(
        outcome("tokenizer.json", unigram.as_bytes()),
        &["tokenizer.json", "at most 4096 bytes, found one of 160000"],
    );
}

#[test]
fn run_json_unknown_field_with_a_carriage_return() {
    let run = br#"{"\runs": 1}"#;
    assert_error(
        outcome("run.json", run),
        &["run.json:1", "unknown field `\\runs`"],
    );
}

/// Case 7804 of `plan.json` under seed 0: serde quotes the unknown key with its carriage return.
#[test]
fn plan_json_unknown_field_with_a_carriage_return() {
    let plan = br#"{"\runs": []}"#;
    assert_error(
        outcome("plan.json", plan),
        &["plan.json:1", "unknown field `\\runs`"],
    );
}

/// Case 5794 of `config.json roberta` under seed 1.
#[test]
fn config_json_model_type_with_a_carriage_return() {
    let config = br#"{"model_type": "\roberta", "vocab_size": 30}"#;
    assert_error(
        outcome("config.json roberta", config),
        &["config.json", "model_type \"\\roberta\""],
    );
}
