#!/usr/bin/env bash
# Everything a GPU host must show, in one go (GPU time is scarce): libtorch's CUDA part really linked and a
# device seen (`lethe doctor`), Lethe against PyTorch eager training the `base` preset in bf16 (tokens/s,
# ratio, MFU), and Lethe's own trainer end to end on CUDA (ingest, a tiny diffusion run, sampling).
#
#   bench/gpu.sh                 # binaries from $LETHE_GPU_BIN (default .device/): lethe, train_speed
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
for objective in diffusion ar; do
    LETHE_BENCH_BIN="$bins/train_speed" LETHE_PYTHON="$py" "$here/train_speed.sh" \
        --objective "$objective" --out "/tmp/speed-$objective" $([ "$objective" = ar ] && echo --rounds 1)
    cp "/tmp/speed-$objective/summary.json" "$out/speed-$objective.json" 2>/dev/null || true
done

echo "== 3. the trainer end to end on CUDA"
"$L" corpus synth --out /tmp/lethe-gpu-corpus --docs 600 --seed 3 >/dev/null
"$L" --data-dir "$D" corpus ingest --name kb --canaries 4 --vocab 4096 /tmp/lethe-gpu-corpus
"$L" --data-dir "$D" --json train --corpus kb --preset tiny --epochs 3 --batch-size 32 >"$out/train.json"
cat "$out/train.json"
run=$("$py" -c "import json; print(json.load(open('$out/train.json'))['run_id'])")
"$L" --data-dir "$D" runs show "$run"
"$L" --data-dir "$D" sample --run "$run" --prompt "Ticket: SUP-" --length 32 --num 2
"$L" --data-dir "$D" sample --run "$run" --infill "Subject: [MASK] request" --span 6
echo "== done"
