#!/usr/bin/env bash
# Ingest throughput on a corpus of at least 200 MB, against `zstd -3` alone and `zstd -3 | age` on the same
# bytes, in the same run. Prints a table last; details go to bench/results/ingest-<date>.txt.
#
#   bench/ingest.sh [MB]        (default 210; needs `make build`; installs zstd and age from Debian if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-210}
WORK=${BENCH_WORK:-$(mktemp -d /tmp/lethe-bench-ingest.XXXXXX)}
OUT=bench/results
mkdir -p "$OUT"
LOG="$OUT/ingest-$(date -u +%Y%m%dT%H%M%SZ).txt"
for tool in zstd age; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done
make -s build >/dev/null
# The same environment the Makefile builds with, so cargo reuses its artifacts instead of rebuilding torch-sys.
export LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
cargo build --release --locked --example seal -q
LETHE=bin/lethe
SEAL=target/release/examples/seal

# The synthetic corpus averages about 1.5 KB a document; several seeds give the size asked for.
DOCS_PER_SEED=70000
SEEDS=$(( (MB * 1000 * 1000 / 1500 + DOCS_PER_SEED - 1) / DOCS_PER_SEED ))
for s in $(seq 1 "$SEEDS"); do
    [ -d "$WORK/in/s$s" ] || $LETHE corpus synth --out "$WORK/in/s$s" --docs $DOCS_PER_SEED --seed "$s" >/dev/null
done
find "$WORK/in" -type f -not -path '*/.synth/*' -print0 | sort -z > "$WORK/files"
xargs -0 cat < "$WORK/files" > "$WORK/all.txt"
BYTES=$(stat -c %s "$WORK/all.txt")
age-keygen -o "$WORK/age.key" 2>/dev/null
RECIPIENT=$(age-keygen -y "$WORK/age.key")

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$BYTES / 1e6 / ($2 - $1):.1f}')"; }
# Each pipeline reads the same concatenated bytes from the page cache (warmed first).
cat "$WORK/all.txt" > /dev/null
# zstd in one thread (`--single-thread`: -T1 would add an I/O thread), then piped into age (two processes),
# then Lethe's sealing, which reports its own time (its process start-up loads libtorch, about 0.4 s, which
# is not sealing). Best of three runs each.
ZSTD=$(for _ in 1 2 3; do t0=$(now); zstd -3 --single-thread -q -c < "$WORK/all.txt" > "$WORK/z.zst"; t1=$(now); rate "$t0" "$t1"; done | sort -gr | head -1)
ZAGE=$(for _ in 1 2 3; do t0=$(now); zstd -3 --single-thread -q -c < "$WORK/all.txt" | age -r "$RECIPIENT" > "$WORK/z.age"; t1=$(now); rate "$t0" "$t1"; done | sort -gr | head -1)
SEALR=$(for _ in 1 2 3; do $SEAL < "$WORK/all.txt" 2>&1 > "$WORK/all.sealed" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"{r['bytes']/1e6/r['seconds']:.1f}\")"; done | sort -gr | head -1)

rm -rf "$WORK/data"
$LETHE --data-dir "$WORK/data" init >/dev/null
t0=$(now)
$LETHE --data-dir "$WORK/data" --json corpus ingest --name bench "$WORK/in" > "$WORK/ingest.json"
t1=$(now)
INGEST=$(rate "$t0" "$t1")
read -r TOKS TOKTRAIN ENC SEALS TOTAL <<<"$(python3 -c "
import json; r = json.load(open('$WORK/ingest.json')); t = r['timings']
print(r['stats']['tokens'], t['tokenizer_training_s'], t['tokenization_s'], t['sealing_s'], t['total_s'])")"
per() { python3 -c "print(f'{$BYTES / 1e6 / $1:.1f}')"; }

{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "input: $BYTES bytes in $(tr -cd '\0' < "$WORK/files" | wc -c) files, $TOKS tokens after ingest"
    echo "zstd: $(zstd --version | head -1); age: $(age --version)"
    echo
    printf '%-44s %10s\n' "pipeline (same input, same run)" "MB/s"
    printf '%-44s %10s\n' "zstd -3 --single-thread" "$ZSTD"
    printf '%-44s %10s\n' "zstd -3 | age" "$ZAGE"
    printf '%-44s %10s\n' "lethe seal (zstd -3 + AES-256-GCM segments)" "$SEALR"
    printf '%-44s %10s\n' "lethe corpus ingest, end to end" "$INGEST"
    printf '%-44s %10s\n' "  of which tokenizer training" "$(per "$TOKTRAIN")"
    printf '%-44s %10s\n' "  of which tokenization" "$(per "$ENC")"
    printf '%-44s %10s\n' "  of which sealing shards and manifest" "$(per "$SEALS")"
    echo
    python3 -c "print(f'lethe seal / zstd -3       = {$SEALR / $ZSTD:.2f}')"
    python3 -c "print(f'lethe seal / zstd -3 | age = {$SEALR / $ZAGE:.2f}')"
} | tee "$LOG"
[ -n "${BENCH_WORK:-}" ] || rm -rf "$WORK"
