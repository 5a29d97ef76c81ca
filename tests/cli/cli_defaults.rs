//! `pac-wgpu train --help` states the defaults of `TrainConfig::paper`, the one place they are
//! set: every flag whose field has a default shows it, and shows that value.

use crate::common;

use std::collections::BTreeMap;

use common::run_ok;
use pac_wgpu::train::TrainConfig;
use pac_wgpu::train::config::default_stage1_epochs;
use serde_json::Value;

/// Each flag of `train --help` and its description, whitespace collapsed.
fn flags() -> BTreeMap<String, String> {
    let help = run_ok(common::binary().args(["train", "--help"]));
    let mut flags = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent <= 6 && trimmed.starts_with("--") {
            flags.extend(current.take());
            let name = trimmed[2..]
                .split(|c: char| c.is_whitespace() || c == '=')
                .next()
                .unwrap()
                .to_string();
            // The description starts on this line (short help) or on the next ones.
            current = Some((name, trimmed.to_string()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    flags.extend(current);
    flags
        .into_iter()
        .map(|(k, v)| (k, v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// The text of `[default: ...]` in a flag's description.
fn stated_default(text: &str) -> Option<&str> {
    let start = text.find("[default: ")? + "[default: ".len();
    let end = start + text[start..].find(']')?;
    Some(&text[start..end])
}

/// The flag of a config field.
fn flag_of(field: &str) -> String {
    match field {
        "schedule" => "lr-schedule".into(),
        _ => field.replace('_', "-"),
    }
}

#[test]
fn train_help_states_the_config_defaults() {
    let flags = flags();
    let paper = TrainConfig::paper(pac_wgpu::glue::Task::Rte);
    let Value::Object(fields) = serde_json::to_value(&paper).unwrap() else {
        panic!("a config serialises as an object")
    };
    let mut checked = 0;
    for (field, value) in fields.iter().filter(|(field, _)| *field != "task") {
        let Some(text) = flags.get(&flag_of(field)) else {
            // Set by the data-source flags.
            assert!(
                ["columns", "data_dir", "train_file", "dev_file"].contains(&field.as_str()),
                "config field {field} has no flag --{}",
                flag_of(field)
            );
            continue;
        };
        let stated = stated_default(text);
        match (field.as_str(), value) {
            // Flags, and options without a default (their help says when they apply).
            (_, Value::Bool(false) | Value::Null) => continue,
            ("stage1_epochs", _) => {
                let stated = stated.expect("--stage1-epochs states its default");
                let expected = format!(
                    "{} of {}",
                    default_stage1_epochs(paper.epochs),
                    paper.epochs
                );
                assert!(stated.contains(&expected), "--stage1-epochs: {stated:?}");
            }
            ("lora_targets", _) => {
                // Empty: each family's own default, which the help names.
                assert_eq!(value, "", "--lora-targets");
                let stated = stated.expect("--lora-targets states its default");
                for family_default in ["query,value", "q_proj,v_proj", "Wqkv", "c_attn"] {
                    assert!(
                        stated.contains(family_default),
                        "--lora-targets: {stated:?}"
                    );
                }
            }
            ("output_dir", _) => {
                assert_eq!(stated, Some("runs/<task>-<method>-<seed>"));
                assert_eq!(value, "runs/rte-pac-42");
            }
            (_, Value::Number(n)) => {
                let stated =
                    stated.unwrap_or_else(|| panic!("--{}: no [default: ..]", flag_of(field)));
                let parsed: f64 = stated
                    .parse()
                    .unwrap_or_else(|_| panic!("--{}: default {stated:?}", flag_of(field)));
                assert_eq!(parsed, n.as_f64().unwrap(), "--{}", flag_of(field));
            }
            (_, Value::String(s)) => {
                assert_eq!(stated, Some(s.as_str()), "--{}", flag_of(field));
            }
            _ => panic!("config field {field}: unexpected value {value}"),
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} defaults checked");
}
