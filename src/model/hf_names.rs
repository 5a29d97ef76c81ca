//! The one mapping between Hugging Face's tensor names and this crate's module paths, both ways.

use burn::store::{BurnToPyTorchAdapter, PyTorchToBurnAdapter, SafetensorsStore};

/// `store` read with HF's tensor names mapped onto this crate's module paths: the family's
/// prefix (`bert.`, `roberta.`, `transformer.`, `model.`) dropped, or for a whole classifier
/// whose head's HF prefix is `Some(head_prefix)` (`out`, `classifier`, `score`; "" for heads
/// whose tensors are top-level names) made `encoder.`, with the head's made `head.`;
/// `LayerNorm` made `layer_norm` and `attention.self` made `attention.self_attn`.
/// [`hf_name`] maps back.
pub fn from_hf_names(store: SafetensorsStore, head_prefix: Option<&str>) -> SafetensorsStore {
    let store = store.with_from_adapter(PyTorchToBurnAdapter);
    let store = if let Some(head_prefix) = head_prefix {
        let head = match head_prefix {
            "" => (
                r"^(head|classifier)\.".to_string(),
                "head.${1}.".to_string(),
            ),
            prefix => (format!(r"^{prefix}\."), "head.".to_string()),
        };
        store
            .skip_enum_variants(true)
            .with_key_remapping(r"^(bert|roberta|transformer|model)\.", "encoder.")
            .with_key_remapping(&head.0, head.1)
    } else {
        store.with_key_remapping(r"^(bert|roberta|transformer|model)\.", "")
    };
    store
        .with_key_remapping(r"LayerNorm", "layer_norm")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attn.")
        .allow_partial(true)
        .validate(false)
}

/// `store` set to write a classifier under HF's names: `encoder.` becomes `encoder_prefix`
/// (`bert`, `roberta`, `transformer`, `model`), `head.` becomes `head_prefix` (dropped when
/// ""), and the inverse of [`from_hf_names`]'s renames.
pub fn to_hf_names(
    store: SafetensorsStore,
    encoder_prefix: &str,
    head_prefix: &str,
) -> SafetensorsStore {
    store
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .with_key_remapping(r"^encoder\.", format!("{encoder_prefix}."))
        .with_key_remapping(
            r"^head\.",
            match head_prefix {
                "" => String::new(),
                prefix => format!("{prefix}."),
            },
        )
        .with_key_remapping(r"layer_norm", "LayerNorm")
        .with_key_remapping(r"\.attention\.self_attn\.", ".attention.self.")
}

/// The HF spelling of a module path (after the family prefix; inverse of [`from_hf_names`]).
pub fn hf_name(path: &str) -> String {
    let path = path
        .replace("self_attn", "self")
        .replace("layer_norm", "LayerNorm");
    if let Some(stem) = path.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = path.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        path
    }
}
