#!/usr/bin/env bash
# Everything a GPU host must show, in one go (GPU time is scarce): libtorch's CUDA part really linked and a
# device seen (`lethe doctor`), Lethe against PyTorch eager training the `base` preset in bf16 (tokens/s,
# ratio, MFU; diffusion at batch 32 and 64, AR at 32), where a training step's GPU time goes (the
# reference under torch.profiler, by kind of kernel), the reference under torch.compile (what fusion would
# buy, a peer libtorch cannot follow), the extraction sampler at `base` against PyTorch
# (prefixes/s), Lethe's own trainer end to end on CUDA (ingest, a tiny diffusion run, sampling), and the
# repetition study at `small` (docs/study.md). Meant to finish in about 13 minutes on an H100 or H200.
#
#   bench/gpu.sh                 # binaries from $LETHE_GPU_BIN (default .device/): lethe, train_speed,
#                                # sample_speed
#
# The host needs a Python with torch 2.11 ($LETHE_PYTHON, else python3); the binaries find libtorch in its
# torch/lib. Results go to $OUT (default bench/results/gpu-<time>); a short table is printed last.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
bins="${LETHE_GPU_BIN:-$root/.device}"
py="${LETHE_PYTHON:-python3}"
out="${OUT:-$root/bench/results/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
torch_lib="$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
L="$bins/lethe"
log="$out/gpu.log"
exec > >(tee -a "$log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== 1. lethe doctor"
D=/tmp/lethe-gpu-data
rm -rf "$D" /tmp/lethe-gpu-corpus
"$L" --data-dir "$D" init >/dev/null
"$L" --data-dir "$D" doctor
"$L" --data-dir "$D" doctor --json >"$out/doctor.json"

echo "== 2. training speed: Lethe vs PyTorch eager, base preset, bf16"
for run in diffusion:32 ar:32 diffusion:64; do
    objective="${run%%:*}" batch="${run##*:}"
    rounds=2
    [ "$run" != diffusion:32 ] && rounds=1
    LETHE_BENCH_BIN="$bins/train_speed" LETHE_PYTHON="$py" "$here/train_speed.sh" \
        --objective "$objective" --batch "$batch" --rounds "$rounds" --out "/tmp/speed-$objective-$batch"
    cp "/tmp/speed-$objective-$batch/summary.json" "$out/speed-$objective-$batch.json" 2>/dev/null || true
done

echo "== 3. where a training step's GPU time goes (PyTorch reference, same kernels as Lethe)"
"$bins/train_speed" --print-config --preset base --vocab 8192 --objective diffusion >"$out/config-base.json"
for objective in diffusion ar; do
    "$py" "$here/reference.py" bench --config "$out/config-base.json" --objective "$objective" --batch 32 \
        --seq 1024 --steps 10 --warmup 5 --device cuda --profile "$out/profile-$objective.json" \
        >"$out/profile-$objective.run.json" || echo "profile of $objective failed"
done

echo "== 3b. what kernel fusion buys: the reference under torch.compile (fused AdamW), diffusion, batch 32"
timeout 240 "$py" "$here/reference.py" bench --config "$out/config-base.json" --objective diffusion --batch 32 \
    --seq 1024 --steps 20 --warmup 5 --device cuda --compile >"$out/compile-diffusion-32.json" \
    || echo "torch.compile run failed or timed out"

echo "== 4. extraction sampler: Lethe vs PyTorch eager, base preset, 1024 prompts of 50 -> 50, batch 256"
LETHE_BENCH_BIN="$bins/sample_speed" LETHE_PYTHON="$py" "$here/sample_speed.sh" --out /tmp/sample-base
cp /tmp/sample-base/summary.json "$out/sample-base.json" 2>/dev/null || true

echo "== 5. the trainer end to end on CUDA"
"$L" corpus synth --out /tmp/lethe-gpu-corpus --docs 600 --seed 3 >/dev/null
"$L" --data-dir "$D" corpus ingest --name kb --canaries 4 --vocab 4096 /tmp/lethe-gpu-corpus
"$L" --data-dir "$D" --json train --corpus kb --preset tiny --epochs 3 --batch-size 32 >"$out/train.json"
cat "$out/train.json"
run=$("$py" -c "import json; print(json.load(open('$out/train.json'))['run_id'])")
"$L" --data-dir "$D" runs show "$run"
"$L" --data-dir "$D" sample --run "$run" --prompt "Ticket: SUP-" --length 32 --num 2
"$L" --data-dir "$D" sample --run "$run" --infill "Subject: [MASK] request" --span 6

echo "== 6. the repetition study on the GPU: small preset, 0.5M hash-selected unique tokens, 1 to 64 epochs"
# Each epoch budget is its own run with a full schedule (docs/study.md); sized for about 8 minutes of one
# H200 (127 epochs of 0.5M tokens per objective). Stopped after 9 minutes: what finished is kept.
"$L" corpus synth --out /tmp/lethe-gpu-study --docs 4000 --seed 11 >/dev/null
"$L" --data-dir "$D" corpus ingest --name study --vocab 8192 --holdout 0.1 --canaries 8 \
    --canary-repeats 1,4,16,64 /tmp/lethe-gpu-study >/dev/null
timeout 540 "$L" --data-dir "$D" study repetition --corpus study --preset small --context 256 \
    --unique-tokens 500000 --epochs 1,2,4,8,16,32,64 --objectives diffusion,ar --batch-size 64 \
    || echo "the study stopped (time limit or error); the points it finished are recorded"
study=$("$L" --data-dir "$D" --json study list | "$py" -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
"$L" --data-dir "$D" study show "$study" | tee "$out/study.txt"
"$L" --data-dir "$D" --json study show "$study" >"$out/study.json"

echo "== summary (details under $out)"
"$py" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None
for run in ("diffusion-32", "ar-32", "diffusion-64"):
    s = load(f"speed-{run}.json")
    if not s:
        print(f"training {run}: no result")
        continue
    l, r = s["impls"]["lethe"], s["impls"]["pytorch-eager"]
    print(f"training {run:<13} lethe {l['tokens_per_s']:>9.0f} tok/s MFU {100 * l.get('mfu', 0):.1f}% "
          f"(+attn {100 * l.get('mfu_with_attention', 0):.1f}%) | pytorch {r['tokens_per_s']:>9.0f} tok/s "
          f"MFU {100 * r.get('mfu', 0):.1f}% | ratio {s['ratio']:.3f} | {s['card']}")
c = load("compile-diffusion-32.json")
if c:
    peak = float(os.environ.get("LETHE_PEAK_FLOPS", "790e12"))
    print(f"training diffusion-32 pytorch-compile {c['tokens_per_s']:>9.0f} tok/s "
          f"MFU {100 * 6 * c['params'] * c['tokens_per_s'] / peak:.1f}% | {c['device_name']}")
else:
    print("training diffusion-32 pytorch-compile: no result")
for objective in ("diffusion", "ar"):
    p = load(f"profile-{objective}.json")
    if not p:
        print(f"profile {objective}: no result")
        continue
    kinds = ", ".join(f"{k} {100 * (v['share_of_kernel_time'] or 0):.0f}%" for k, v in p["kinds"].items())
    print(f"profile {objective}: {1000 * p['wall_s'] / p['steps']:.1f} ms/step, GPU idle "
          f"{100 * (p['gpu_idle_share'] or 0):.0f}%; {kinds}")
s = load("sample-base.json")
print("sampler base: " + (json.dumps(s)[:800] if s else "no result"))
EOF
echo "== done"
