//! The one mapping between Hugging Face's tensor names and this crate's module paths, both ways.

use burn::store::{BurnToPyTorchAdapter, PyTorchToBurnAdapter, SafetensorsStore};

/// `store` read with HF's tensor names mapped onto this crate's module paths: the family's
/// prefix (`bert.`, `roberta.`, `transformer.`, `model.`) dropped, or for a whole classifier
/// made `encoder.`, with the head's HF prefixes mapped back by `head`'s (module path, HF)
/// pairs (`Head::hf_renames`); `LayerNorm` made `layer_norm` and `attention.self` made
/// `attention.self_attn`. [`hf_name`] maps back.
pub fn from_hf_names(store: SafetensorsStore, head: Option<&[(&str, &str)]>) -> SafetensorsStore {
    let mut store = store.with_from_adapter(PyTorchToBurnAdapter);
    store = match head {
        Some(renames) => {
            let mut store = store
                .skip_enum_variants(true)
                .with_key_remapping(r"^(bert|roberta|transformer|model)\.", "encoder.");
            for (ours, hf) in renames {
                store = store.with_key_remapping(&format!("^{}", escaped(hf)), *ours);
            }
            store
        }
        None => store.with_key_remapping(r"^(bert|roberta|transformer|model)\.", ""),
    };
    store
        .with_key_remapping(r"LayerNorm", "layer_norm")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attn.")
        .allow_partial(true)
        .validate(false)
}

/// `store` set to write a classifier under HF's names: `encoder.` becomes `encoder_prefix`
/// (`bert`, `roberta`, `transformer`, `model`), the head's module paths become HF's by `head`'s
/// pairs, and the inverse of [`from_hf_names`]'s renames.
pub fn to_hf_names(
    store: SafetensorsStore,
    encoder_prefix: &str,
    head: &[(&str, &str)],
) -> SafetensorsStore {
    let mut store = store
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .with_key_remapping(r"^encoder\.", format!("{encoder_prefix}."));
    for (ours, hf) in head {
        store = store.with_key_remapping(&format!("^{}", escaped(ours)), *hf);
    }
    store
        .with_key_remapping(r"layer_norm", "LayerNorm")
        .with_key_remapping(r"\.attention\.self_attn\.", ".attention.self.")
}

/// A dotted name as a regex that matches it literally.
fn escaped(name: &str) -> String {
    name.replace('.', r"\.")
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
