#!/usr/bin/env bash
# Puts the tiny golden checkpoints the parity tests load (tests/golden/families/tiny-{roberta,gpt2},
# tests/golden/pac-step, tests/golden/modern) into tests/golden/ from a golden folder (default
# ../shared/golden). Model
# weights stay out of git; each file is sha256-checked. Idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="${1:-$root/../shared/golden}"
while read -r sum file; do
    dest="$root/tests/golden/$file"
    if [ -f "$dest" ] && echo "$sum  $dest" | sha256sum --check --quiet --status; then
        continue
    fi
    if [ ! -f "$source_dir/$file" ]; then
        echo "error: $source_dir/$file not found; pass the golden folder: scripts/fetch-golden.sh DIR" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$dest")"
    cp "$source_dir/$file" "$dest.part"
    if ! echo "$sum  $dest.part" | sha256sum --check --quiet --status; then
        rm -f "$dest.part"
        echo "error: $source_dir/$file: sha256 differs from the expected $sum" >&2
        exit 1
    fi
    mv "$dest.part" "$dest"
done <<'LIST'
bd90c8c2eb06e4aef127c120c5c0a409dc7011c6c38925a0b76498021bb51b1d families/tiny-gpt2/model.safetensors
e41e173662f992a04db66ed37ec8226fbed9d4f473ac48e6d4cca9510c75a6fd families/tiny-roberta/model.safetensors
a74767ad45c06cc30f7d57e8862d0394a842757c8c6248cde283b282879d16cb pac-step/pac-step.safetensors
9a13c804ff39d8480f8d3f9719eb6de9580506c59fd04164e4b08b01ff8dd79d pac-step/tiny-bert/model.safetensors
4502820003c9f38ec0f98482a281c82792530402dd2184fb4f96d6a92421aa2b modern/tiny-llama/model.safetensors
8d97c9ffcce72f26e3a6bdc4407f5dbbc3fa2bba09c5b4821158ecff596ee486 modern/tiny-qwen2/model.safetensors
a9386651db0d8120b5c81b22a46348f0e4018631e57493703bebbaac9cff5781 modern/tiny-qwen3/model.safetensors
c6385afe1c66ca51fc7a06dd048a3c88f89c901ff57625e91d2285c680f36980 modern/tiny-modernbert/model.safetensors
ef2510b0819d685ece3ea9ea61975c43d646796e1727cb41677bb71146f10810 modern/llama-seqcls-head.safetensors
ef2510b0819d685ece3ea9ea61975c43d646796e1727cb41677bb71146f10810 modern/qwen2-seqcls-head.safetensors
ef2510b0819d685ece3ea9ea61975c43d646796e1727cb41677bb71146f10810 modern/qwen3-seqcls-head.safetensors
e014903f73d0e6f212cf5d616a748e6d111749d79b2bb6a2798b6917d09e3386 modern/modernbert-seqcls-head.safetensors
LIST
echo "golden checkpoints in $root/tests/golden"
