#!/usr/bin/env bash
# Puts the tiny golden checkpoints the parity tests load (tests/golden/families/tiny-{roberta,gpt2},
# tests/golden/pac-step) into tests/golden/ from a golden folder (default ../shared/golden). Model
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
LIST
echo "golden checkpoints in $root/tests/golden"
