#!/usr/bin/env bash
# Runs built fuzz targets one after another (`make fuzz`, `make fuzz-smoke`; see fuzz/README.md).
#
#   fuzz/run.sh [--smoke] SECONDS BIN_DIR TARGET...
#
# Each target starts from its seeds: `make fuzz` grows fuzz/corpus/TARGET (a copy of fuzz/seeds/TARGET
# plus whatever earlier runs found), `--smoke` uses a throwaway copy of the seeds. libFuzzer first runs
# every corpus input, then mutates for SECONDS, in fork mode: a crash, a hang (an input slower than
# 10 s) or an oversized allocation is saved in fuzz/artifacts/TARGET/ and fuzzing goes on, so one known
# crash does not hide the next. The script fails at the end if any target saved one. One summary line
# per target (CRASHES counts crashes, hangs and out-of-memory inputs); full output in
# fuzz/logs/TARGET.log.
set -euo pipefail

smoke=0
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=1
    shift
fi
seconds=$1
bin_dir=$2
shift 2
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$fuzz_dir/logs"

failed=()
printf '%-14s %8s %12s %8s %8s %8s %8s  %s\n' TARGET SECONDS RUNS COV FT CORPUS CRASHES RESULT
for target in "$@"; do
    seeds="$fuzz_dir/seeds/$target"
    if ((smoke)); then
        corpus=$(mktemp -d)
    else
        corpus="$fuzz_dir/corpus/$target"
    fi
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$target"
    cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    log="$fuzz_dir/logs/$target.log"
    marker=$(mktemp)
    start=$(date +%s)
    status=0
    "$bin_dir/$target" "$corpus" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$fuzz_dir/artifacts/$target/" >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    # The last status line: `#RUNS: cov: N ft: N corp: N exec/s: N oom/timeout/crash: N/N/N time: ...`.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
    field() { grep -oE "$1 [0-9/]+" <<<"$last" | tail -n1 | cut -d' ' -f2; }
    runs=$(grep -oE '^#[0-9]+' <<<"$last" | tr -d '#')
    cov=$(field cov:)
    ft=$(field ft:)
    corp=$(field corp:)
    IFS=/ read -r ooms hangs crashes <<<"$(field oom/timeout/crash:)"
    crashes=$((${ooms:-0} + ${hangs:-0} + ${crashes:-0}))
    mapfile -t new < <(find "$fuzz_dir/artifacts/$target" -type f -newer "$marker" | sort)
    rm -f "$marker"
    if ((status == 0 && ${#new[@]} == 0)); then
        result=ok
    elif ((status == 0)); then
        result="FAILED (${#new[@]} new reproducers)"
        failed+=("$target")
    else
        result="FAILED (exit $status)"
        failed+=("$target")
    fi
    printf '%-14s %8s %12s %8s %8s %8s %8s  %s\n' "$target" "$elapsed" "${runs:--}" "${cov:--}" "${ft:--}" \
        "${corp:--}" "${crashes:-0}" "$result"
    for f in "${new[@]}"; do
        echo "    reproducer: $f"
        "$bin_dir/$target" "$f" 2>&1 | grep -E -A1 'panicked at|lethe-fuzz:|ERROR: libFuzzer' | head -n2 | sed 's/^/      /' || true
    done
    if ((status != 0 || ${#new[@]})); then
        echo "    replay: $bin_dir/$target REPRODUCER   (full output: $log)"
    fi
    if ((smoke)); then
        rm -rf "$corpus"
    fi
done
if ((${#failed[@]})); then
    echo "fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
