#!/usr/bin/env bash
# Training throughput of Lethe against the PyTorch eager reference (bench/reference.py): the same model,
# objective, shapes, optimizer and random tokens, run in alternating rounds (Lethe, PyTorch, Lethe, ...) so
# that load from other processes falls on both alike. Prints a short table last; writes every run and the
# summary under --out.
#
#   bench/train_speed.sh                      # CPU: small preset; GPU: base preset in bf16, with MFU
#   bench/train_speed.sh --preset tiny --objective ar --rounds 2
#   bench/train_speed.sh --threads 1          # CPU threads for both (default: libtorch's, one per core)
#
# What it needs: the `train_speed` binary (`cargo build --release --example train_speed`, found at
# target/release/examples/train_speed, next to this script, or at $LETHE_BENCH_BIN) and a Python with
# torch 2.11 ($LETHE_PYTHON, else .venv/bin/python, else python3). On a GPU host, copy the stripped
# binary, this script and reference.py over; the binary finds libtorch through the Python's torch/lib
# (docs: ../shared/GPU.md), which this script puts on LD_LIBRARY_PATH.
#
# Figures: tokens/s = batch × seq / median step time over all timed steps of all rounds (the median
# shrugs off steps slowed by other load); ratio = Lethe / PyTorch; on CUDA, MFU = 6 × parameters ×
# tokens/s / peak, with peak = $LETHE_PEAK_FLOPS or 790e12 (the measured bf16 matrix peak of an H100 or
# H200), parameters being every parameter of the model (embedding and head included); "+attn" also counts
# attention's own matrix work, 12 x layers x width x seq per token (PaLM's MFU, appendix B).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

preset="" objective="diffusion" batch="" seq="" steps="" warmup="" rounds="" vocab=8192 out="" device="auto"
threads=""
while [ $# -gt 0 ]; do
    case "$1" in
        --preset) preset="$2"; shift 2 ;;
        --objective) objective="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --seq) seq="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --vocab) vocab="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

bin="${LETHE_BENCH_BIN:-}"
if [ -z "$bin" ]; then
    for c in "$here/train_speed" "$root/target/release/examples/train_speed"; do
        if [ -x "$c" ]; then bin="$c"; break; fi
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "error: no train_speed binary; build it with 'cargo build --release --example train_speed' or set LETHE_BENCH_BIN" >&2
    exit 1
fi

py="${LETHE_PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py="$(command -v python3 || true)"; fi
fi
if [ -z "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
    echo "error: no Python with torch (set LETHE_PYTHON)" >&2
    exit 1
fi

torch_lib="$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cuda="$("$py" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)"
if [ "$device" = "cpu" ]; then cuda=0; fi
if [ "$cuda" = 1 ]; then
    card="$("$py" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null)"
    : "${preset:=base}" "${batch:=32}" "${seq:=1024}" "${steps:=20}" "${warmup:=5}" "${rounds:=2}"
    dev_arg="cuda"
else
    card="cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
    : "${preset:=small}" "${batch:=8}" "${seq:=256}" "${steps:=3}" "${warmup:=1}" "${rounds:=3}"
    dev_arg="cpu"
fi

# libtorch (both sides) takes its CPU thread count from OMP_NUM_THREADS at start-up. On a shared machine
# one thread each gives steadier figures: with two OpenMP threads on two busy cores, every parallel region
# waits at its barrier for whichever thread the scheduler parked.
if [ -n "$threads" ]; then export OMP_NUM_THREADS="$threads"; fi

out="${out:-$root/bench/results/train_speed-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
"$bin" --print-config --preset "$preset" --vocab "$vocab" --objective "$objective" >"$out/config.json"
common=(--objective "$objective" --batch "$batch" --seq "$seq" --steps "$steps" --warmup "$warmup" --device "$dev_arg")
echo "bench: $preset $objective batch $batch seq $seq, $steps timed steps x $rounds rounds each, on $card" >&2
echo "bench: writing $out" >&2
: >"$out/runs.jsonl"
uptime >"$out/load.txt"
for ((r = 1; r <= rounds; r++)); do
    echo "bench: round $r/$rounds: lethe" >&2
    "$bin" --preset "$preset" --vocab "$vocab" "${common[@]}" 2>>"$out/lethe.log" | tail -n1 >>"$out/runs.jsonl"
    echo "bench: round $r/$rounds: pytorch" >&2
    "$py" "$here/reference.py" bench --config "$out/config.json" "${common[@]}" 2>>"$out/pytorch.log" \
        | tail -n1 >>"$out/runs.jsonl"
done
uptime >>"$out/load.txt"

"$py" - "$out" "$card" "${LETHE_PEAK_FLOPS:-790e12}" <<'EOF'
import json, statistics, sys
out, card, peak = sys.argv[1], sys.argv[2], float(sys.argv[3])
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl") if l.strip()]
summary = {"card": card, "peak_flops": peak, "impls": {}}
for impl in ("lethe", "pytorch-eager"):
    rs = [r for r in runs if r["impl"] == impl]
    if not rs:
        sys.exit(f"error: no result from {impl}; see {out}/*.log")
    times = [t for r in rs for t in r["step_times_ms"]]
    tokens = rs[0]["batch"] * rs[0]["seq"]
    med = statistics.median(times)
    s = {"device": rs[0]["device"], "threads": rs[0]["threads"], "params": rs[0]["params"], "steps": len(times),
         "median_step_ms": med, "best_step_ms": min(times), "tokens_per_s": tokens / (med / 1000),
         "best_tokens_per_s": tokens / (min(times) / 1000), "loss_last": rs[-1]["loss_last"]}
    if rs[0]["device"].startswith("cuda"):
        s["mfu"] = 6 * s["params"] * s["tokens_per_s"] / peak
        # PaLM's accounting (appendix B) adds attention's own matrix work: 12 x layers x width x seq per
        # token (forward and backward, the whole T x T square even for the causal model).
        cfg = json.load(open(f"{out}/config.json"))
        attn = 12 * cfg["layers"] * cfg["width"] * rs[0]["seq"]
        s["mfu_with_attention"] = (6 * s["params"] + attn) * s["tokens_per_s"] / peak
    summary["impls"][impl] = s
lethe, ref = summary["impls"]["lethe"], summary["impls"]["pytorch-eager"]
if card != "cpu" and not card.startswith("cpu:") and not lethe["device"].startswith("cuda"):
    sys.exit("error: PyTorch sees a GPU but Lethe ran on the CPU: libtorch_cuda is not linked or not found "
             "(see GPU.md)")
summary["ratio"] = lethe["tokens_per_s"] / ref["tokens_per_s"]
summary["best_ratio"] = lethe["best_tokens_per_s"] / ref["best_tokens_per_s"]
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
gpu = "mfu" in lethe
r0 = runs[0]
print(f"\n{r0['objective']} training, batch {r0['batch']} x seq {r0['seq']}, {lethe['params']/1e6:.1f}M params, "
      f"{lethe['threads']} threads, on {card}")
print(f"{'impl':<15}{'tokens/s':>12}{'best tok/s':>12}{'step ms':>10}" + (f"{'MFU':>8}{'+attn':>8}" if gpu else ""))
for name, s in (("lethe", lethe), ("pytorch-eager", ref)):
    print(f"{name:<15}{s['tokens_per_s']:>12.0f}{s['best_tokens_per_s']:>12.0f}{s['median_step_ms']:>10.0f}"
          + (f"{100 * s['mfu']:>7.1f}%{100 * s['mfu_with_attention']:>7.1f}%" if gpu else ""))
print(f"{'ratio':<15}{summary['ratio']:>12.3f}{summary['best_ratio']:>12.3f}   (Lethe / PyTorch; >= 1 is the goal)")
EOF
