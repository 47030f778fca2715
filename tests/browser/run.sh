#!/usr/bin/env bash
# End-to-end browser test of the console: a fresh data directory with a small synthetic corpus, a
# `lethe serve` on a free loopback port, and tests/browser/console.test.mjs driving Debian's chromium
# through playwright-core. Run from the repository root:
#
#   bash tests/browser/run.sh
#
# LETHE_BIN names the binary (default target/release/lethe). Screenshots go to
# target/browser-screenshots/. On failure the data directory and the server log are kept and named.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

LETHE_BIN="${LETHE_BIN:-target/release/lethe}"
case "$LETHE_BIN" in /*) ;; *) LETHE_BIN="$ROOT/$LETHE_BIN" ;; esac
CHROMIUM=/usr/bin/chromium
SHOTS="$ROOT/target/browser-screenshots"
POLICY="$ROOT/tests/browser/policy.toml"

say() { printf '[browser-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[browser-e2e] error: %s\n' "$*" >&2; exit 1; }

[ -x "$LETHE_BIN" ] || die "no lethe binary at $LETHE_BIN (build it with cargo build --release, or set LETHE_BIN)"
command -v node >/dev/null || die "node is not installed (Node 20 or newer is needed)"
command -v npm >/dev/null || die "npm is not installed"

# 1. Chromium from Debian (never a downloaded browser) and node_modules from the lockfile.
if [ ! -x "$CHROMIUM" ]; then
    say "installing chromium with apt-get (quietly)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "$CHROMIUM is missing and installing it needs root (apt-get install chromium)"
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_log="$(mktemp)"
    if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >"$apt_log" 2>&1; then
        $SUDO apt-get update -qq >>"$apt_log" 2>&1 || true
        $SUDO apt-get install -y -qq --no-install-recommends chromium >>"$apt_log" 2>&1 \
            || { tail -n 20 "$apt_log" >&2; die "apt-get install chromium failed"; }
    fi
    rm -f "$apt_log"
    [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is not there"
fi

lock_sum="$(sha256sum package-lock.json package.json | sha256sum | cut -d' ' -f1)"
stamp=node_modules/.lethe-browser-lock.sha256
if [ ! -f node_modules/playwright-core/package.json ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    say "npm ci (node_modules missing or older than package-lock.json)"
    # playwright-core has no install script and downloads no browser.
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    echo "$lock_sum" >"$stamp"
fi

# 2. A fresh data directory with corpus kb.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lethe-browser-e2e.XXXXXX")"
DATA="$WORK/data"
SERVER_PID=""
ok=0
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$ok" = 1 ]; then
        rm -rf "$WORK"
    else
        if [ -s "$WORK/server.log" ]; then
            echo "---- last lines of the server's log ($WORK/server.log) ----" >&2
            tail -n 40 "$WORK/server.log" >&2
        fi
        echo "[browser-e2e] kept the data directory for inspection: $WORK" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
say "init, synthetic corpus and ingest in $WORK"
"$LETHE_BIN" --data-dir "$DATA" --json init >"$WORK/init.json"
json_field() { node -e 'const v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]]; if (typeof v !== "string" || !v) process.exit(1); process.stdout.write(v)' "$1" "$2"; }
ADMIN_OTP="$(json_field "$WORK/init.json" one_time_password)" || die "init printed no one_time_password"
PUBLIC_KEY="$(json_field "$WORK/init.json" signing_public_key)" || die "init printed no signing_public_key"
"$LETHE_BIN" corpus synth --out "$WORK/in" --docs 60 --seed 5 >"$WORK/synth.log"
"$LETHE_BIN" --data-dir "$DATA" corpus ingest --name kb --vocab 512 --holdout 0.2 --canaries 2 "$WORK/in" >"$WORK/ingest.log"
# A second admin, ada: admin asks, and the host's operator confirms (the appliance has one admin so
# far). From here on ada confirms what admin asks for in the console, and the other way round.
LETHE_PASSWORD="$ADMIN_OTP" "$LETHE_BIN" --data-dir "$DATA" --json users add ada --role admin --user admin >"$WORK/ada-grant.json"
GRANT="$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).grant.id)' "$WORK/ada-grant.json")" \
    || die "users add ada did not wait for a second admin"
"$LETHE_BIN" --data-dir "$DATA" --json users confirm "$GRANT" --host >"$WORK/ada.json"
ADA_OTP="$(json_field "$WORK/ada.json" one_time_password)" || die "users confirm printed no one_time_password"

# 3. The server, on a free port; it prints the address it listens on.
"$LETHE_BIN" --data-dir "$DATA" serve --bind 127.0.0.1:0 --policy "$POLICY" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
BASE_URL=""
for _ in $(seq 1 300); do
    line="$(grep -m1 -o 'lethe console listening on http://127\.0\.0\.1:[0-9]*/' "$WORK/server.out" || true)"
    # As localhost: a passkey's relying party is a host name (WebAuthn refuses an IP address).
    if [ -n "$line" ]; then BASE_URL="${line#lethe console listening on http://127.0.0.1}"; BASE_URL="http://localhost${BASE_URL%/}"; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "lethe serve exited before listening: $(tail -n 5 "$WORK/server.log")"
    sleep 0.1
done
[ -n "$BASE_URL" ] || die "lethe serve did not print its address within 30 s"
say "server $BASE_URL (pid $SERVER_PID), setup took $((SECONDS - t0)) s"

# 4. The browser test.
rm -rf "$SHOTS"
mkdir -p "$SHOTS"
t1=$SECONDS
LETHE_E2E_BASE_URL="$BASE_URL" \
LETHE_E2E_ADMIN_PASSWORD="$ADMIN_OTP" \
LETHE_E2E_ADA_PASSWORD="$ADA_OTP" \
LETHE_E2E_PUBLIC_KEY="$PUBLIC_KEY" \
LETHE_E2E_DATA_DIR="$DATA" \
LETHE_E2E_WORK_DIR="$WORK" \
LETHE_E2E_BIN="$LETHE_BIN" \
LETHE_E2E_SCREENSHOTS="$SHOTS" \
LETHE_E2E_CHROMIUM="$CHROMIUM" \
    node --test --test-reporter=spec tests/browser/console.test.mjs
say "browser test passed in $((SECONDS - t1)) s (whole run $((SECONDS - t0)) s); screenshots in $SHOTS"
ok=1
