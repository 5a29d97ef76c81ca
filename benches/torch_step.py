"""The PyTorch anchor of `bench_step --torch-anchor`: one vanilla training step of the same model at
the same shape and thread count, timed in PyTorch on the CPU.

The step is the one pac-wgpu's vanilla step takes: transformers' BertModel (dropout 0, embeddings
frozen) + a linear head on the [CLS] hidden state, cross-entropy over 2 labels, backward, AdamW
(lr 5e-5 for the encoder, 1e-2 for the head, weight decay 0.01). Inputs are random token ids of
exactly SEQ tokens with a full attention mask, as bench_step's; or, with `--data FILE`, the batch
bench_step wrote there (its `--mrpc` mode): the same micro-batches of real pairs (gradients added
up over them, one AdamW step), reached after the same `trained_steps` steps on them, and the
batches of K(λ)'s forward passes.

usage: python3 benches/torch_step.py --threads N (--batch B --seq S | --data FILE)
                                     (--model DIR | --sizes V,H,L,A,I,P)

It prints `ready` after the warm-up steps, then answers each line read on stdin with the
milliseconds it measured: `step` times one training step, `forward` one forward pass (no
gradients) over each batch of the file's `forward` list. bench_step interleaves them with its own.
"""
import json
import argparse
import sys
import time

import torch
import transformers


def build(args):
    if args.model:
        config = transformers.BertConfig.from_pretrained(args.model)
    else:
        vocab, hidden, layers, heads, inter, pos = (int(v) for v in args.sizes.split(","))
        config = transformers.BertConfig(
            vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=pos)
    config.hidden_dropout_prob = 0.0
    config.attention_probs_dropout_prob = 0.0
    encoder = (transformers.BertModel.from_pretrained(args.model, config=config, add_pooling_layer=False)
               if args.model else transformers.BertModel(config, add_pooling_layer=False))
    encoder.embeddings.requires_grad_(False)
    head = torch.nn.Linear(config.hidden_size, 2)
    return encoder.train(), head, config


def tensors(batch):
    return tuple(torch.tensor(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--seq", type=int)
    parser.add_argument("--data")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model")
    parser.add_argument("--sizes")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not args.model and not args.sizes:
        parser.error("give --model DIR or --sizes V,H,L,A,I,P")
    if not args.data and not (args.batch and args.seq):
        parser.error("give --batch B --seq S or --data FILE")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    encoder, head, config = build(args)
    if args.data:
        with open(args.data) as f:
            data = json.load(f)
        micro = [tensors(m) + (torch.tensor(m["labels"]),) for m in data["train"]]
        forwards = [tensors(m) for m in data["forward"]]
        trained_steps = data["trained_steps"]
    else:
        low = min(1000, config.vocab_size // 2)
        ids = torch.randint(low, config.vocab_size, (args.batch, args.seq))
        micro = [(ids, torch.ones_like(ids), torch.zeros_like(ids),
                  torch.randint(0, 2, (args.batch,)))]
        forwards, trained_steps = [], 0
    total = sum(len(m[3]) for m in micro)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    adam = torch.optim.AdamW([{"params": trainable, "lr": 5e-5},
                              {"params": head.parameters(), "lr": 1e-2}], weight_decay=0.01)

    def step():
        start = time.perf_counter()
        for ids, mask, types, labels in micro:
            hidden = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            loss = torch.nn.functional.cross_entropy(head(hidden[:, 0]), labels)
            (loss * (len(labels) / total)).backward()
        adam.step()
        adam.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) * 1000.0

    def forward():
        start = time.perf_counter()
        with torch.no_grad():
            for ids, mask, types in forwards:
                encoder(input_ids=ids, attention_mask=mask, token_type_ids=types)
        return (time.perf_counter() - start) * 1000.0

    for _ in range(trained_steps):
        step()
    for _ in range(args.warmup):
        step()
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        ms = forward() if line.strip() == "forward" else step()
        print(f"{ms:.3f}", flush=True)


if __name__ == "__main__":
    main()
