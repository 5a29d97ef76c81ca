//! pac-wgpu in a browser tab: the library's PAC-tuning (and vanilla, PGD, BitFit, LoRA) on the
//! browser's WebGPU, built to wasm32. The page (index.html, app.js) hands the model folder's
//! files and the data over as bytes; [`train`] returns the run folder's files.

pub mod session;

use std::cell::RefCell;

use burn::tensor::Device;
use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use session::{Inputs, NamedFile};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

thread_local! {
    /// Burn's wgpu runtime, initialised once per page.
    static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The browser's WebGPU device, asked for on first use.
async fn webgpu() -> Result<Device, JsError> {
    if let Some(device) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
    DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// Trains as `pac-wgpu train` does and returns the run folder as an object of path →
/// Uint8Array (run.json, history.jsonl, summary.json, checkpoints/best/...).
///
/// `inputs`: `{model_name, config (text of config.json), weights (Uint8Array),
/// tokenizer: {name, bytes}, train: {name, bytes}, dev: {name, bytes}, options}`, where
/// `options` holds run.json's keys (`task`, `method`, `epochs`, `seed`, ...) over the paper's
/// defaults. `on_event` hears each event as a JSON string (`kind`: start, k_estimation, step,
/// epoch with the history record).
#[wasm_bindgen]
pub async fn train(inputs: JsValue, on_event: Function) -> Result<JsValue, JsError> {
    let inputs = read_inputs(&inputs)?;
    let device = webgpu().await?;
    let clock = || js_sys::Date::now() / 1000.0;
    let mut emit = |event: session::Event| {
        if let Ok(text) = serde_json::to_string(&event) {
            let _ = on_event.call1(&JsValue::NULL, &JsValue::from_str(&text));
        }
    };
    let files = session::run(inputs, device, "webgpu (browser)", &clock, &mut emit)
        .await
        .map_err(|e| JsError::new(&format!("{e:#}")))?;
    let out = js_sys::Object::new();
    for (path, bytes) in files {
        Reflect::set(&out, &path.into(), &Uint8Array::from(bytes.as_slice()))
            .map_err(|_| JsError::new("cannot hand the run folder over"))?;
    }
    Ok(out.into())
}

fn read_inputs(inputs: &JsValue) -> Result<Inputs, JsError> {
    let field = |object: &JsValue, key: &str| {
        Reflect::get(object, &key.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
            .ok_or_else(|| JsError::new(&format!("inputs: missing {key:?}")))
    };
    let text = |object: &JsValue, key: &str| {
        field(object, key)?
            .as_string()
            .ok_or_else(|| JsError::new(&format!("inputs: {key:?} must be text")))
    };
    let bytes = |object: &JsValue, key: &str| {
        field(object, key)?
            .dyn_into::<Uint8Array>()
            .map(|a| a.to_vec())
            .map_err(|_| JsError::new(&format!("inputs: {key:?} must be a Uint8Array")))
    };
    let file = |key: &str| -> Result<NamedFile, JsError> {
        let object = field(inputs, key)?;
        Ok(NamedFile {
            name: text(&object, "name")?,
            bytes: bytes(&object, "bytes")?,
        })
    };
    let options = js_sys::JSON::stringify(&field(inputs, "options")?)
        .map_err(|_| JsError::new("inputs: \"options\" must be a JSON object"))?;
    let options = serde_json::from_str(&String::from(options))
        .map_err(|e| JsError::new(&format!("inputs: options: {e}")))?;
    Ok(Inputs {
        model_name: text(inputs, "model_name")?,
        config_json: text(inputs, "config")?,
        weights: bytes(inputs, "weights")?,
        tokenizer: file("tokenizer")?,
        train: file("train")?,
        dev: file("dev")?,
        options,
    })
}
