#!/usr/bin/env bash
# Checks Lethe's systemd units without installing anything: `systemd-analyze verify` on the serve unit,
# its TLS variant (the `#tls# ` lines switched on) and an instance of the worker template, then
# `systemd-analyze security --offline` on each, which must stay at or below an exposure of 2.0.
#
#   bash deploy/systemd/verify.sh [LETHE_BINARY]     (default: target/release/lethe of this checkout)
#
# Why a temporary copy: verify refuses a unit whose ExecStart= binary does not exist, and the units
# name the installed path /usr/local/bin/lethe. The copies name LETHE_BINARY instead; nothing else
# changes. `verify` exits 0 on warnings (an unknown key, a value it cannot parse, both "ignored"), so
# any line it prints fails this script. The `lethe` user need not exist: systemd 252 (Debian 12) does
# not resolve User= here. Should a later systemd start to, its message fails the script like any other,
# and is printed, rather than being filtered out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${1:-$here/../../target/release/lethe}
if [[ ! -x $bin ]]; then
    echo "verify.sh: $bin is not an executable; build it (make build) or pass a lethe binary" >&2
    exit 1
fi
bin=$(realpath "$bin")
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in lethe-serve.service lethe-worker@.service; do
    grep -q '^ExecStart=/usr/local/bin/lethe ' "$here/$unit" ||
        { echo "verify.sh: $unit: ExecStart= no longer names /usr/local/bin/lethe" >&2; exit 1; }
    sed "s#/usr/local/bin/lethe#$bin#g" "$here/$unit" >"$tmp/$unit"
done
sed 's/^#tls# //' "$tmp/lethe-serve.service" >"$tmp/lethe-serve-tls.service"
grep -q -- '--tls-key %d/tls.key' "$tmp/lethe-serve-tls.service" ||
    { echo "verify.sh: the TLS variant of lethe-serve.service has no --tls-key line" >&2; exit 1; }

units=("$tmp/lethe-serve.service" "$tmp/lethe-serve-tls.service" "$tmp/lethe-worker@0.service")
failed=0
out=$(systemd-analyze verify --man=no --recursive-errors=no "${units[@]}" 2>&1) || failed=1
if [[ -n $out || $failed -ne 0 ]]; then
    echo "$out"
    echo "verify.sh: systemd-analyze verify reported problems (above)" >&2
    exit 1
fi
echo "systemd-analyze verify: no messages for ${units[*]##*/}"

# Exposure is 0.0 (locked down) to 10.0 (unprotected); --threshold takes it times ten.
for u in "${units[@]}"; do
    report=$(systemd-analyze security --offline=true --threshold=20 "$u" 2>&1) || {
        echo "$report"
        echo "verify.sh: ${u##*/}: exposure above 2.0, or the security check failed (above)" >&2
        exit 1
    }
    echo "systemd-analyze security: $(grep 'Overall exposure level' <<<"$report" | sed 's/^→ //')"
done
echo "verify.sh: all units pass"
