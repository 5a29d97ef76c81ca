"""Writes tests/golden/modern/variants.json: transformers' last hidden states of variants of
the tiny golden checkpoints for what the hub's tiny files do not cover: tiny-llama as `mistral`
(a sliding window of 8 on every layer, no rope scaling), tiny-qwen2 with `use_sliding_window`
(window 8 from layer 1 on, as `max_window_layers` 1 says), and tiny-llama with `linear` and
`dynamic` rope scaling (the input is longer than the dynamic one's original 32 positions).

usage: python3 scripts/golden-variants.py   (needs torch and transformers; run
scripts/fetch-golden.sh first)
"""
import json
import pathlib
import shutil
import tempfile

import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests/golden/modern"
TEXT = "The stock rose $2.11, or about 11 percent, to close Friday at $21.51 on the New York Stock Exchange."
EDITS = {
    "mistral": ("tiny-llama", {"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                               "rope_scaling": None, "sliding_window": 8}),
    "qwen2-sliding": ("tiny-qwen2", {"use_sliding_window": True, "sliding_window": 8,
                                     "max_window_layers": 1, "layer_types": None}),
    "llama-linear-rope": ("tiny-llama", {"rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
    "llama-dynamic-rope": ("tiny-llama", {"rope_scaling": {
        "rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 32}}),
}

out = {"transformers": transformers.__version__, "text": TEXT, "variants": {}}
for name, (base, edits) in EDITS.items():
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        for file in ["config.json", "model.safetensors", "tokenizer.json"]:
            shutil.copy(ROOT / base / file, folder / file)
        config = json.loads((folder / "config.json").read_text())
        for key, value in edits.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        ids = tok(TEXT)["input_ids"]
        model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    out["variants"][name] = {"base": base, "edits": edits, "input_ids": ids,
                             "first": hidden[0].tolist(), "last": hidden[-1].tolist()}
(ROOT / "variants.json").write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {ROOT / 'variants.json'}")
