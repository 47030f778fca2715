#!/usr/bin/env bash
# Extraction-audit sampling throughput of Lethe against the PyTorch eager reference (bench/reference.py):
# the same model shape, random prompts of one length, greedy batched generation (diffusion: LLaDA low-
# confidence remasking, one block, one token per step; AR: left to right, no KV cache), run in alternating
# rounds (Lethe, PyTorch, Lethe, ...) so that load from other processes falls on both alike. Prints a short
# table last; writes every run and the summary under --out.
#
#   bench/sample_speed.sh                     # CPU: small preset, 32 prompts of 32 -> 16 tokens, batch 32
#   bench/sample_speed.sh --prompts 64 --prompt-len 50 --gen-length 50     # the quick audit's workload
#   bench/sample_speed.sh --objectives diffusion --rounds 3 --threads 1
#
# CPU defaults are cut to finish in about 5 minutes on 2 cores: there one forward of 32 rows of 100
# tokens at `small` takes 2-4 s, so the audit's 50 + 50 tokens (50 forwards per 32 prompts) would take
# 7-13 minutes per round of one chunk. GPU defaults: base preset, bf16 autocast, 1024 prompts of 50 -> 50
# tokens, batch 256 (the audit's GPU chunk), 3 rounds.
#
# What it needs: the `sample_speed` binary (`cargo build --release --example sample_speed`, found at
# target/release/examples/sample_speed, next to this script, or at $LETHE_BENCH_BIN) and a Python with
# torch 2.11 ($LETHE_PYTHON, else .venv/bin/python, else python3). On a GPU host, copy the stripped
# binary, this script and reference.py over; the binary finds libtorch through the Python's torch/lib
# (docs: ../shared/GPU.md), which this script puts on LD_LIBRARY_PATH.
#
# Figures: a chunk is one generate call on --batch prompts, timed from host prompts to host tokens.
# prefixes/s = median over all chunks of all rounds of rows / chunk time; tokens/s = prefixes/s × gen
# length; ratio = Lethe / PyTorch. "model %" = steps × the time of one bare forward of a step's shape /
# the chunk time: the share of sampling that is the model itself, the rest being the sampler's own work
# (softmax, ranking, commits) and, on a GPU, any time the device waits for the host.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

usage() { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

preset="" objectives="diffusion ar" prompts="" prompt_len="" gen_length="" steps=0 batch="" rounds=""
vocab=8192 out="" device="auto" threads="" forward_reps=1
while [ $# -gt 0 ]; do
    case "$1" in
        --preset) preset="$2"; shift 2 ;;
        --objectives) objectives="$2"; shift 2 ;;
        --prompts) prompts="$2"; shift 2 ;;
        --prompt-len) prompt_len="$2"; shift 2 ;;
        --gen-length) gen_length="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --vocab) vocab="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --forward-reps) forward_reps="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for o in $objectives; do
    case "$o" in diffusion|ar) ;; *) echo "error: --objectives takes diffusion and/or ar, not $o" >&2; exit 2 ;; esac
done

bin="${LETHE_BENCH_BIN:-}"
if [ -z "$bin" ]; then
    for c in "$here/sample_speed" "$root/target/release/examples/sample_speed"; do
        if [ -x "$c" ]; then bin="$c"; break; fi
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "error: no sample_speed binary; build it with 'cargo build --release --example sample_speed' or set LETHE_BENCH_BIN" >&2
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
    : "${preset:=base}" "${prompts:=1024}" "${prompt_len:=50}" "${gen_length:=50}" "${batch:=256}" "${rounds:=3}"
    dev_arg="cuda"
else
    card="cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(getconf _NPROCESSORS_ONLN) cores"
    : "${preset:=small}" "${prompts:=32}" "${prompt_len:=32}" "${gen_length:=16}" "${batch:=32}" "${rounds:=2}"
    dev_arg="cpu"
fi

# libtorch (both sides) takes its CPU thread count from OMP_NUM_THREADS at start-up. On a shared machine
# one thread each gives steadier figures: with two OpenMP threads on two busy cores, every parallel region
# waits at its barrier for whichever thread the scheduler parked.
if [ -n "$threads" ]; then export OMP_NUM_THREADS="$threads"; fi

out="${out:-$root/bench/results/sample_speed-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
"$bin" --print-config --preset "$preset" --vocab "$vocab" >"$out/config.json"
common=(--prompts "$prompts" --prompt-len "$prompt_len" --gen-length "$gen_length" --steps "$steps"
    --batch "$batch" --forward-reps "$forward_reps" --device "$dev_arg")
echo "bench: $preset, $prompts prompts of $prompt_len -> $gen_length tokens, batch $batch, $rounds rounds of" \
    "($objectives), on $card" >&2
echo "bench: writing $out" >&2
: >"$out/runs.jsonl"
uptime >"$out/load.txt"
check=(--check)
for ((r = 1; r <= rounds; r++)); do
    for o in $objectives; do
        echo "bench: round $r/$rounds: $o: lethe" >&2
        "$bin" --preset "$preset" --vocab "$vocab" --objective "$o" "${common[@]}" 2>>"$out/lethe.log" \
            | tail -n1 >>"$out/runs.jsonl"
        echo "bench: round $r/$rounds: $o: pytorch" >&2
        "$py" "$here/reference.py" sample-bench --config "$out/config.json" --objective "$o" "${common[@]}" \
            "${check[@]}" 2>>"$out/pytorch.log" | tail -n1 >>"$out/runs.jsonl"
    done
    check=() # the reference's self-check (CPU, diffusion) runs once
done
uptime >>"$out/load.txt"

"$py" - "$out" "$card" "$preset" "$rounds" <<'EOF'
import json, statistics, sys
out, card, preset, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl") if l.strip()]
gpu = not card.startswith("cpu")
summary = {"card": card, "preset": preset, "rounds": rounds, "objectives": {}}
for obj in dict.fromkeys(r["objective"] for r in runs):
    s_obj = {}
    for impl in ("lethe", "pytorch-eager"):
        rs = [r for r in runs if r["impl"] == impl and r["objective"] == obj]
        if not rs:
            sys.exit(f"error: no {obj} result from {impl}; see {out}/*.log")
        rates = [n / (t / 1000) for r in rs for n, t in zip(r["chunk_rows"], r["chunk_times_ms"])]
        times = [t for r in rs for t in r["chunk_times_ms"]]
        fwd = [r["forward_ms"] for r in rs if r["forward_ms"] is not None]
        r0 = rs[0]
        s = {"device": r0["device"], "threads": r0["threads"], "params": r0["params"], "torch": r0["torch"],
             "chunks": len(rates), "prefixes_per_s": statistics.median(rates), "best_prefixes_per_s": max(rates),
             "median_chunk_ms": statistics.median(times),
             "forward_ms": statistics.median(fwd) if fwd else None,
             "per_round_prefixes_per_s": [r["prefixes_per_s"] for r in rs],
             "checks": [r["check"] for r in rs if r["check"]]}
        s["tokens_per_s"] = s["prefixes_per_s"] * r0["gen_length"]
        s["model_share"] = r0["steps"] * s["forward_ms"] / s["median_chunk_ms"] if fwd else None
        s_obj[impl] = s
    lethe, ref = s_obj["lethe"], s_obj["pytorch-eager"]
    if gpu and not lethe["device"].startswith("cuda"):
        sys.exit("error: PyTorch sees a GPU but Lethe ran on the CPU: libtorch_cuda is not linked or not found "
                 "(see GPU.md)")
    if "MISMATCH" in ref["checks"]:
        sys.exit("error: the reference's batched sampler disagrees with its generate(); figures withheld")
    s_obj["ratio"] = lethe["prefixes_per_s"] / ref["prefixes_per_s"]
    s_obj["best_ratio"] = lethe["best_prefixes_per_s"] / ref["best_prefixes_per_s"]
    s_obj["per_round_ratio"] = [a / b for a, b in zip(lethe["per_round_prefixes_per_s"],
                                                      ref["per_round_prefixes_per_s"])]
    summary["objectives"][obj] = s_obj
r0 = runs[0]
summary.update({k: r0[k] for k in ("prompts", "prompt_len", "gen_length", "batch")})
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)

first = next(iter(summary["objectives"].values()))["lethe"]
steps = {r["objective"]: r["steps"] for r in runs}
print(f"\nsampling ({preset}, {first['params']/1e6:.1f}M params): {r0['prompts']} prompts of {r0['prompt_len']}"
      f" -> {r0['gen_length']} tokens, batch {r0['batch']}, {rounds} rounds, {first['threads']} threads, "
      f"{'bf16 autocast, ' if gpu else ''}on {card}")
print(f"{'objective':<11}{'impl':<15}{'prefixes/s':>11}{'tokens/s':>10}{'best pfx/s':>11}{'chunk ms':>10}"
      f"{'fwd ms':>9}{'model %':>8}")
for obj, s_obj in summary["objectives"].items():
    for name in ("lethe", "pytorch-eager"):
        s = s_obj[name]
        share = f"{100 * s['model_share']:>7.0f}%" if s["model_share"] is not None else f"{'-':>8}"
        fwd = f"{s['forward_ms']:>9.1f}" if s["forward_ms"] is not None else f"{'-':>9}"
        print(f"{obj:<11}{name:<15}{s['prefixes_per_s']:>11.3g}{s['tokens_per_s']:>10.4g}"
              f"{s['best_prefixes_per_s']:>11.3g}{s['median_chunk_ms']:>10.0f}{fwd}{share}")
    print(f"{obj:<11}{'ratio':<15}{s_obj['ratio']:>11.3f}{s_obj['ratio']:>10.3f}{s_obj['best_ratio']:>11.3f}"
          f"   (Lethe / PyTorch; >= 1 is the goal; {steps[obj]} forwards per chunk)")
EOF
