#!/usr/bin/env bash
# Throughput of Lethe's text-mode regurgitation scan against ripgrep and pyahocorasick.
#
# Run from the crate root: bash bench/regurgitation.sh
# Environment: CORPUS_MB (default 210), GEN_WORDS (default 1050000), MIN_CHARS (default 200),
# PEER_STRIDE (default MIN_CHARS / 2), REPEAT (Lethe scans, median reported; default 3),
# SKIP_PEERS=1 to time Lethe only.
#
# Data (deterministic, bench/gen_corpus.rs): a corpus of at least CORPUS_MB MB of English-like
# text, one document per line, and generations of at least GEN_WORDS words, one JSON line each,
# 60% of them with passages copied from the corpus (a third of those with one word changed).
# Lethe indexes the generations and scans the corpus (single thread); the peers search the corpus
# for the fewest patterns an exact filter needs: one window of MIN_CHARS - PEER_STRIDE + 1
# characters every PEER_STRIDE characters of each generation, de-duplicated, no newlines.
# Every command is timed by wall clock; Lethe also reports its in-process phases. Files live in a
# temporary directory under /tmp, removed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
CORPUS_MB=${CORPUS_MB:-210}
GEN_WORDS=${GEN_WORDS:-1050000}
MIN_CHARS=${MIN_CHARS:-200}
PEER_STRIDE=${PEER_STRIDE:-$((MIN_CHARS / 2))}
SKIP_PEERS=${SKIP_PEERS:-0}
REPEAT=${REPEAT:-3}
VENV=bench/.venv-regur

TMP=$(mktemp -d /tmp/regur-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

echo "== building" >&2
# The same environment the Makefile builds with, so cargo reuses its artifacts instead of rebuilding torch-sys.
export LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
cargo build --release --locked --example regurgitation >&2
rustc -O --edition 2021 bench/gen_corpus.rs -o "$TMP/gen_corpus"

if [[ "$SKIP_PEERS" != 1 ]]; then
  if ! command -v rg >/dev/null; then
    echo "== installing ripgrep (Debian)" >&2
    apt-get install -y ripgrep >&2 || { apt-get update >&2 && apt-get install -y ripgrep >&2; }
  fi
  if ! "$VENV/bin/python" -c 'import ahocorasick' 2>/dev/null; then
    echo "== installing pyahocorasick into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet pyahocorasick >&2
  fi
fi

echo "== generating data in $TMP" >&2
DATA=$("$TMP/gen_corpus" "$TMP" "$CORPUS_MB" "$GEN_WORDS" "$MIN_CHARS" "$PEER_STRIDE")
echo "data: $DATA"
CORPUS="$TMP/corpus.txt"
CORPUS_BYTES=$(stat -c %s "$CORPUS")
PATTERNS=$(wc -l <"$TMP/patterns.txt")
echo "peers get $PATTERNS patterns: one window of $((MIN_CHARS - PEER_STRIDE + 1)) chars every $PEER_STRIDE chars of each generation, de-duplicated, no newlines (an exact filter for matches of >= $MIN_CHARS chars)"

# Warm the page cache so no tool pays for the disk.
cat "$CORPUS" "$TMP/gens.jsonl" "$TMP/patterns.txt" >/dev/null

echo "== lethe" >&2
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# One plain run timed whole by wall clock, then one that repeats the scan (the median is reported:
# the machine may be shared) and must find the same.
t0=$(now)
LETHE_ONCE=$(./target/release/examples/regurgitation --corpus "$CORPUS" --generations "$TMP/gens.jsonl" --min-chars "$MIN_CHARS")
t1=$(now)
LETHE_WALL=$(elapsed "$t0" "$t1")
LETHE=$(./target/release/examples/regurgitation --corpus "$CORPUS" --generations "$TMP/gens.jsonl" --min-chars "$MIN_CHARS" --repeat "$REPEAT")
echo "lethe: $LETHE"
LETHE_SCAN=$(field "$LETHE" scan_seconds)
LETHE_SPANS=$(field "$LETHE" spans)
if [[ "$(field "$LETHE_ONCE" spans) $(field "$LETHE_ONCE" covered_chars)" != "$LETHE_SPANS $(field "$LETHE" covered_chars)" ]]; then
  echo "lethe runs disagree" >&2
  exit 1
fi

RG_SECS=""; RG_COUNT=""; AHO_WALL=""; AHO=""
if [[ "$SKIP_PEERS" != 1 ]]; then
  echo "== ripgrep" >&2
  t0=$(now)
  RG_COUNT=$(rg -F -j1 --count-matches -f "$TMP/patterns.txt" "$CORPUS" || true)
  t1=$(now)
  RG_SECS=$(elapsed "$t0" "$t1")
  echo "ripgrep $(rg --version | head -1): ${RG_COUNT:-0} matches (non-overlapping, per line)"

  echo "== pyahocorasick" >&2
  t0=$(now)
  AHO=$("$VENV/bin/python" bench/peer_aho.py "$TMP/patterns.txt" "$CORPUS")
  t1=$(now)
  AHO_WALL=$(elapsed "$t0" "$t1")
  echo "pyahocorasick: $AHO"
fi

python3 - "$CORPUS_BYTES" "$LETHE_SCAN" "$LETHE_WALL" "$LETHE_SPANS" "$LETHE" "$RG_SECS" "${RG_COUNT:-0}" "$AHO_WALL" "$AHO" "$LETHE_ONCE" <<'EOF'
import json, sys
corpus_bytes = int(sys.argv[1])
lethe_scan, lethe_wall, spans = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
lethe, once = json.loads(sys.argv[5]), json.loads(sys.argv[10])
rows = [
    (f"lethe scan, in-process, median of {len(lethe['scan_seconds_all'])}", lethe_scan, f"{spans} spans, {lethe['covered_chars']} chars covered"),
    ("lethe whole process, 1 scan (wall)", lethe_wall, f"read {once['read_seconds']:.3f}s, utf8 {once['utf8_seconds']:.3f}s, build {once['build_seconds']:.3f}s, scan {once['scan_seconds']:.3f}s"),
]
if sys.argv[6]:
    rows.append(("ripgrep -F -j1 --count-matches (wall)", float(sys.argv[6]), f"{int(sys.argv[7] or 0)} matching windows"))
if sys.argv[8]:
    aho = json.loads(sys.argv[9])
    rows.append(("pyahocorasick (wall)", float(sys.argv[8]), f"{aho['matches']} matching windows"))
    rows.append(("pyahocorasick scan loop only (in-process)", aho["scan_seconds"], f"build {aho['build_seconds']:.3f}s"))
print()
print(f"corpus {corpus_bytes / 1e6:.1f} MB; MB/s = corpus MB / seconds / 1 core; ratio = seconds / lethe scan seconds")
print(f"{'tool':<46} {'seconds':>9} {'MB/s/core':>10} {'ratio':>8}  work")
for name, secs, work in rows:
    mbps = corpus_bytes / 1e6 / secs if secs > 0 else float("inf")
    print(f"{name:<46} {secs:>9.3f} {mbps:>10.1f} {secs / lethe_scan:>7.1f}x  {work}")
EOF
