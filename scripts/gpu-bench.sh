#!/usr/bin/env bash
# The GPU benchmark, in one command: on a machine with a real GPU it lists the devices, runs the
# MiniLM parity test on the GPU, bench_step on MiniLM and on a bert-base-size model at 32 × 128
# (step times; launches, read-backs and bytes per step; pipelines compiled), bench_adamw (the
# fused AdamW against Burn's tensor operations), a 20-epoch PAC MRPC
# run twice (the second with autotune's cache from the first), and bench_memory (memory over a
# long PAC run), then writes one JSON with the device, its driver and every figure.
#
# usage: scripts/gpu-bench.sh [--device N] [--out FILE] [--tiny] [--no-build]
#   --device N   the wgpu adapter (`pac-wgpu devices`); default: the one `--device auto` picks
#   --out FILE   the JSON (default gpu-bench.json)
#   --tiny       tiny sizes, for a software adapter such as lavapipe (how CI tests this script)
#   --no-build   use the binaries already in target/release
# Needs: the model (scripts/fetch-model.sh), GLUE in $GLUE_DIR (default ../shared/glue), python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

device="" out="gpu-bench.json" tiny=0 build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:?--device needs an adapter index}"; shift 2 ;;
        --out) out="${2:?--out needs a file}"; shift 2 ;;
        --tiny) tiny=1; shift ;;
        --no-build) build=0; shift ;;
        *) echo "error: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done
model="${PAC_WGPU_MODEL_DIR:-$root/assets/models/all-MiniLM-L6-v2}"
glue="${GLUE_DIR:-$root/../shared/glue}"
[ -f "$model/config.json" ] || { echo "error: no model at $model: run scripts/fetch-model.sh" >&2; exit 1; }
[ -f "$glue/MRPC/train.tsv" ] || { echo "error: no GLUE MRPC at $glue: set GLUE_DIR" >&2; exit 1; }

if [ "$build" = 1 ]; then
    cargo build --release --bin pac-wgpu --example bench_step --example bench_memory \
        --example bench_adamw
fi
bin="$root/target/release/pac-wgpu"
bench="$root/target/release/examples/bench_step"
memory="$root/target/release/examples/bench_memory"
adamw="$root/target/release/examples/bench_adamw"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bin" devices --json > "$work/devices.json"
"$bin" devices
if [ -z "$device" ]; then
    device="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["auto"])' "$work/devices.json")"
    if [ "$device" = cpu ]; then
        echo "error: no hardware GPU found: give --device N to use a software adapter (see above)" >&2
        exit 1
    fi
fi

echo "== MiniLM parity on device $device"
parity_log="$work/parity.log"
if [ "$build" = 1 ]; then
    PAC_WGPU_TEST_DEVICE="$device" PAC_WGPU_MODEL_DIR="$model" \
        cargo test --release --test models minilm_parity:: -- --nocapture 2>&1 | tee "$parity_log"
else
    parity="$(ls -t "$root"/target/release/deps/minilm_parity-* | grep -v '\.d$' | head -1)"
    PAC_WGPU_TEST_DEVICE="$device" PAC_WGPU_MODEL_DIR="$model" "$parity" --nocapture 2>&1 | tee "$parity_log"
fi

if [ "$tiny" = 1 ]; then
    bench_sizes=(--batch 2 --seq 16 --steps 2 --warmup 1 --k-examples 2 --k-batch 2 --growth-steps 0)
    big_model=small
    train_args=(--train-size 8 --max-length 32 --batch-size 8 --epochs 2 --stage1-epochs 1
        --eval-every-epochs 2 --prior-models 1)
    memory_steps=40
    adamw_shapes=small
else
    bench_sizes=(--batch 32 --seq 128)
    big_model=bert-base
    train_args=(--epochs 20 --stage1-epochs 16 --eval-every-epochs 5)
    memory_steps=2000
    adamw_shapes=small,bert-base
fi
for m in minilm "$big_model"; do
    echo "== bench_step, $m"
    [ "$m" = minilm ] && path="$model" || path="$m"
    "$bench" --model "$path" --device "$device" "${bench_sizes[@]}" --json "$work/bench-$m.json"
done

echo "== bench_adamw, $adamw_shapes"
"$adamw" --device "$device" --shapes "$adamw_shapes" --json "$work/adamw.json"

# Twice: the second run finds the first's autotune results in cubecl's cache.
for run in 1 2; do
    echo "== PAC on MRPC, run $run: ${train_args[*]}"
    "$bin" train --task mrpc --method pac --model "$model" --data-dir "$glue" --device "$device" \
        "${train_args[@]}" --output-dir "$work/mrpc$run" --quiet
done

echo "== bench_memory, $memory_steps steps"
"$memory" --device "$device" --steps "$memory_steps" --json "$work/memory.json"

python3 - "$work" "$device" "$big_model" "$out" <<'EOF'
import json, os, re, sys
work, device, big, out = sys.argv[1:5]
load = lambda name: json.load(open(os.path.join(work, name)))
adapter = next(a for a in load("devices.json")["adapters"] if str(a["index"]) == device)
parity = open(os.path.join(work, "parity.log"), encoding="utf-8", errors="replace").read()
# The tests name a device "<adapter> (<backend>, <type>)".
tested = f"{adapter['name']} ({adapter['backend']}, {adapter['type']})"
diffs = [float(d) for name, d in re.findall(r"^(.*): max \|cls - hf\| = (\S+) for", parity, re.M)
         if name == tested]
if not diffs:
    sys.exit(f"error: the parity test did not run on {tested}")
def mrpc(run):
    history = [json.loads(line) for line in open(os.path.join(work, run, "history.jsonl"))]
    return {"summary": load(f"{run}/summary.json"),
            "epoch_seconds": [h.get("epoch_seconds") for h in history]}
first, second = mrpc("mrpc1"), mrpc("mrpc2")
seconds = second["epoch_seconds"]
report = {
    "device": adapter["name"], "driver": adapter["driver"], "backend": adapter["backend"],
    "adapter_type": adapter["type"], "tiny": "small" == big,
    "parity": {"passed": "test result: ok" in parity, "max_cls_diff": max(diffs), "cases": len(diffs)},
    "bench_step": {"minilm": load("bench-minilm.json"), big: load(f"bench-{big}.json")},
    "mrpc_pac": first,
    "mrpc_pac_second_run": second,
    # Autotune kept between runs: the second run's first epoch over its second.
    "second_run_epoch1_over_epoch2": seconds[0] / seconds[1] if len(seconds) > 1 else None,
    "memory": load("memory.json"),
    "adamw": load("adamw.json"),
}
summary = first["summary"]
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(report, f, indent=2)
os.replace(tmp, out)
print(f"wrote {out}: {adapter['name']} ({adapter['driver']}), parity max |Δ| {max(diffs):.2e}, "
      f"MiniLM vanilla {report['bench_step']['minilm']['ms']['vanilla']:.1f} ms, "
      f"MRPC run {summary.get('wall_seconds', 0):.0f} s")
EOF
