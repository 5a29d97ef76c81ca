"""Reloads a `pac-wgpu export` folder with transformers (a --head hf run's whole model, or a
--trainable lora run's PEFT adapter folder loaded onto its base model with peft) and compares
its probabilities with those `pac-wgpu predict --probabilities` wrote for the same examples.

usage: python3 scripts/check-export-transformers.py EXPORT_DIR PREDICTIONS_TSV DEV_TSV
Exits 0 when every probability agrees within 1e-5; prints "skipped" and exits 0 when
transformers (or, for an adapter folder, peft) is not installed.
"""
import json
import os
import sys

try:
    import torch
    import transformers
except ImportError:
    print("skipped: transformers/torch not installed")
    sys.exit(0)

export, predictions, dev = sys.argv[1:4]
run = json.load(open(f"{export}/pac_wgpu_run.json"))
rows = [line.rstrip("\n").split("\t") for line in open(dev, encoding="utf-8")][1:]
want = [line.rstrip("\n").split("\t") for line in open(predictions, encoding="utf-8")][1:]

if os.path.exists(f"{export}/tokenizer.json"):
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=f"{export}/tokenizer.json")
else:
    tok = transformers.BertTokenizerFast.from_pretrained(export)

if os.path.exists(f"{export}/adapter_config.json"):
    try:
        import peft
    except ImportError:
        print("skipped: peft not installed")
        sys.exit(0)
    adapter = json.load(open(f"{export}/adapter_config.json"))
    # One probability column per class after the row's index and prediction.
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        adapter["base_model_name_or_path"], num_labels=len(want[0]) - 2
    )
    model = peft.PeftModel.from_pretrained(base, export).eval()
    name = f"peft {peft.__version__} {adapter['peft_type']} on {base.__class__.__name__}"
else:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(export).eval()
    name = model.__class__.__name__

worst = 0.0
for (text, _label), (_i, _pred, *probs) in zip(rows, want):
    # The tokenizer adds the special tokens; truncated as the run was.
    ids = tok(text, truncation=True, max_length=run["max_length"])["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    got = torch.softmax(logits, -1).tolist()
    ref = [float(p) for p in probs]
    worst = max(worst, max(abs(a - b) for a, b in zip(got, ref)))
print(f"transformers {transformers.__version__}: {name}, "
      f"{len(rows)} examples, max |p_transformers - p_pac-wgpu| = {worst:.2e}")
sys.exit(0 if worst <= 1e-5 else 1)
