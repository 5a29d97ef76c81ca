"""Reloads a `pac-wgpu export` folder of a --head hf run with transformers and compares its logits
with the probabilities `pac-wgpu predict --probabilities` wrote for the same examples.

usage: python3 scripts/check-export-transformers.py EXPORT_DIR PREDICTIONS_TSV DEV_TSV
Exits 0 when every probability agrees within 1e-5; prints "skipped" and exits 0 when
transformers is not installed.
"""
import json
import sys

try:
    import torch
    import transformers
except ImportError:
    print("skipped: transformers/torch not installed")
    sys.exit(0)

export, predictions, dev = sys.argv[1:4]
tok = transformers.PreTrainedTokenizerFast(tokenizer_file=f"{export}/tokenizer.json")
model = transformers.AutoModelForSequenceClassification.from_pretrained(export).eval()
max_length = json.load(open(f"{export}/pac_wgpu_run.json"))["max_length"]
rows = [line.rstrip("\n").split("\t") for line in open(dev, encoding="utf-8")][1:]
want = [line.rstrip("\n").split("\t") for line in open(predictions, encoding="utf-8")][1:]
worst = 0.0
for (text, _label), (_i, _pred, *probs) in zip(rows, want):
    # tokenizer.json's post-processor adds the special tokens; truncated as the run was.
    ids = tok(text, truncation=True, max_length=max_length)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    got = torch.softmax(logits, -1).tolist()
    ref = [float(p) for p in probs]
    worst = max(worst, max(abs(a - b) for a, b in zip(got, ref)))
print(f"transformers {transformers.__version__}: {model.__class__.__name__}, "
      f"{len(rows)} examples, max |p_transformers - p_pac-wgpu| = {worst:.2e}")
sys.exit(0 if worst <= 1e-5 else 1)
