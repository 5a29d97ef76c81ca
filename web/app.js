// The page: gathers the model folder, the data and the options, trains in the wasm module on
// WebGPU, draws the history records as they come and offers the run folder as a .tar file.
//
// `?auto=MANIFEST` runs without clicks (tests/browser.rs): MANIFEST is a JSON object with the
// URLs of the files (`model_base`, `tokenizer`, `train`, `dev`) and `runs`, each `{options,
// report}`, where `report` is a URL prefix the run's results are POSTed to: each run file to
// `report/file/PATH`, then the events to `report/events` (or the error to `report/error`).

import init, { train } from "./pkg/pac_wgpu_web.js";

const $ = (id) => document.getElementById(id);
let runFiles = null;

function log(line) {
  $("log").textContent += line + "\n";
  console.log(line);
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const fileBytes = async (file) => new Uint8Array(await file.arrayBuffer());

// The model folder from the file picker, else from the base URL.
async function modelInputs() {
  const picked = Array.from($("model-files").files);
  if (picked.length > 0) {
    const byName = Object.fromEntries(picked.map((f) => [f.name, f]));
    const tokenizer = byName["tokenizer.json"] || byName["vocab.txt"];
    if (!byName["config.json"] || !byName["model.safetensors"] || !tokenizer) {
      throw new Error("pick config.json, model.safetensors and tokenizer.json or vocab.txt");
    }
    const folder = picked[0].webkitRelativePath.split("/")[0] || "model";
    return {
      model_name: folder,
      config: await byName["config.json"].text(),
      weights: await fileBytes(byName["model.safetensors"]),
      tokenizer: { name: tokenizer.name, bytes: await fileBytes(tokenizer) },
    };
  }
  const base = $("model-url").value.trim().replace(/\/?$/, "/");
  if (base === "/") throw new Error("pick the model folder's files or give its URL");
  return modelFromUrl(base, "tokenizer.json");
}

async function modelFromUrl(base, tokenizerName) {
  const name = base.replace(/\/$/, "").split("/").pop();
  let tokenizer;
  try {
    tokenizer = { name: tokenizerName, bytes: await fetchBytes(base + tokenizerName) };
  } catch (e) {
    tokenizer = { name: "vocab.txt", bytes: await fetchBytes(base + "vocab.txt") };
  }
  return {
    model_name: name,
    config: new TextDecoder().decode(await fetchBytes(base + "config.json")),
    weights: await fetchBytes(base + "model.safetensors"),
    tokenizer,
  };
}

async function dataFile(input) {
  const file = input.files[0];
  if (!file) throw new Error(`pick the ${input.id.replace("-file", "")} file`);
  return { name: file.name, bytes: await fileBytes(file) };
}

// Runs the training and draws its records; returns the events and the run folder's files.
async function run(inputs) {
  const records = [];
  const events = [];
  let metric = "accuracy";
  let total = 1;
  let done = 0;
  const onEvent = (text) => {
    const event = JSON.parse(text);
    events.push(event);
    if (event.kind === "start") {
      metric = event.metric;
      total = event.epochs * event.steps_per_epoch;
      log(`training on ${event.device}: ${event.train_examples} train / ${event.dev_examples} dev examples`);
    } else if (event.kind === "k_estimation") {
      $("status").textContent = `K(λ) estimation ${event.done}/${event.total}`;
    } else if (event.kind === "step") {
      done += 1;
      $("progress").value = done / total;
      $("status").textContent = `epoch ${event.epoch + 1}, step ${event.step}: loss1 ${event.loss1.toFixed(4)}`;
    } else if (event.kind === "epoch") {
      records.push(event.record);
      drawCurves(records, metric);
      const dev = event.record.dev ? ` dev ${metric} ${event.record.dev[metric].toFixed(4)}` : "";
      log(`epoch ${event.record.epoch}: loss1 ${event.record.train_loss.toFixed(4)}${dev}`);
    }
  };
  const started = performance.now();
  const files = await train(inputs, onEvent);
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  $("status").textContent = "done";
  return { events, files };
}

// A POSIX tar of the run folder (ustar headers, no compression): `tar xf run.tar`.
function tarOf(files, folder) {
  const encoder = new TextEncoder();
  const chunks = [];
  for (const [path, bytes] of Object.entries(files)) {
    const header = new Uint8Array(512);
    const put = (text, offset, length) => header.set(encoder.encode(text).slice(0, length), offset);
    put(`${folder}/${path}`, 0, 100);
    put("0000644\0", 100, 8);
    put("0000000\0", 108, 8);
    put("0000000\0", 116, 8);
    put(bytes.length.toString(8).padStart(11, "0") + "\0", 124, 12);
    put(Math.floor(Date.now() / 1000).toString(8).padStart(11, "0") + "\0", 136, 12);
    put("        ", 148, 8);
    put("0", 156, 1);
    put("ustar\x0000", 257, 8);
    const sum = header.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
    chunks.push(header, bytes, new Uint8Array((512 - (bytes.length % 512)) % 512));
  }
  chunks.push(new Uint8Array(1024));
  return new Blob(chunks, { type: "application/x-tar" });
}

async function startFromPage() {
  $("start").disabled = true;
  try {
    const inputs = {
      ...(await modelInputs()),
      train: await dataFile($("train-file")),
      dev: await dataFile($("dev-file")),
      options: {
        task: $("task").value,
        method: $("method").value,
        trainable: $("trainable").value,
        epochs: Number($("epochs").value),
        train_size: Number($("train-size").value),
        seed: Number($("seed").value),
        max_length: Number($("max-length").value),
        prior_models: Number($("prior-models").value),
      },
    };
    runFiles = (await run(inputs)).files;
    $("download").disabled = false;
  } catch (e) {
    log(`error: ${e.message || e}`);
    $("status").textContent = "failed";
  } finally {
    $("start").disabled = false;
  }
}

async function startFromManifest(url) {
  const manifest = await (await fetch(url)).json();
  const model = await modelFromUrl(manifest.model_base, manifest.tokenizer);
  const data = {
    train: { name: manifest.train.split("/").pop(), bytes: await fetchBytes(manifest.train) },
    dev: { name: manifest.dev.split("/").pop(), bytes: await fetchBytes(manifest.dev) },
  };
  for (const { options, report } of manifest.runs) {
    const post = (path, body) => fetch(`${report}/${path}`, { method: "POST", body });
    try {
      const { events, files } = await run({ ...model, ...data, options });
      for (const [path, bytes] of Object.entries(files)) await post(`file/${path}`, bytes);
      await post("events", JSON.stringify(events));
    } catch (e) {
      log(`error: ${e.message || e}`);
      await post("error", String(e.message || e));
    }
  }
}

await init();
$("start").addEventListener("click", startFromPage);
$("download").addEventListener("click", () => {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(tarOf(runFiles, "run"));
  a.download = "pac-wgpu-run.tar";
  a.click();
});
const auto = new URLSearchParams(location.search).get("auto");
if (auto) startFromManifest(auto);
