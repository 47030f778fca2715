#!/usr/bin/env bash
# The review console under load: the audit page (GET /audits/ID: templates rendered, the sealed evidence
# decrypted, every request) and the API (GET /api/v1/runs/RUN, JSON), driven by wrk from a second process on
# loopback, against nginx serving the very same bytes as static files, in the same run on the same machine.
# For each: requests/s and p99 at saturation (wrk -t2 -c32), and p99 at a fixed offered load of 200 requests/s
# (bench/console_pace.lua). nginx is the "how close to sending a file" reference: Lethe renders per request,
# nginx sends bytes. Prints a table last and writes the same to target/bench-console.json.
#
#   bash bench/console.sh     # binary from $LETHE_BIN (default target/release/lethe); installs wrk and nginx
#
# Environment: REPEAT (default 3; medians are reported, with the spread: 2-core machines are noisy and wrk
# shares the cores with the server), DURATION (per wrk run, default 10s), RATE (default 200), PACED_CONNS
# (connections for the paced runs, default 20), WORKERS (nginx worker_processes, default the core count).
set -euo pipefail
cd "$(dirname "$0")/.."
LETHE_BIN=${LETHE_BIN:-target/release/lethe}
REPEAT=${REPEAT:-3} DURATION=${DURATION:-10s} RATE=${RATE:-200} PACED_CONNS=${PACED_CONNS:-20}
WORKERS=${WORKERS:-$(nproc)}
PACE="$PWD/bench/console_pace.lua"
JSON_OUT=target/bench-console.json
die() { echo "bench/console.sh: $*" >&2; exit 1; }
[ -x "$LETHE_BIN" ] || die "no binary at $LETHE_BIN (cargo build --release, or set LETHE_BIN)"

apt_install() { apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }; }
command -v wrk >/dev/null || apt_install wrk
export PATH="$PATH:/usr/sbin"
command -v nginx >/dev/null || apt_install nginx-light || apt_install nginx
command -v nginx >/dev/null || die "nginx did not install"

TMP=$(mktemp -d /tmp/lethe-bench-console.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    if [ "$rc" != 0 ]; then
        for f in "$TMP/setup.log" "$TMP/serve.log" "$TMP/nginx/error.log"; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
# A copy of the binary: another build replacing target/release/lethe mid-run must not change what is measured
# (it finds libtorch through an absolute rpath, so the copy runs as is).
cp "$LETHE_BIN" "$TMP/lethe"
# The bench gets its own SQLite database and master key, never one configured in the environment.
unset LETHE_DATABASE_URL LETHE_MASTER_KEY LETHE_DATA_DIR LETHE_PASSWORD
L() { "$TMP/lethe" --data-dir "$TMP/data" "$@" 2>>"$TMP/setup.log"; }   # progress lines: shown if a step fails
jget() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

echo "== a trained, audited run (micro model, lax policy) in $TMP" >&2
L --json init > "$TMP/init.json"
LETHE_PASSWORD=$(jget "$TMP/init.json" one_time_password) L --json users add rhea --role reviewer --user admin > "$TMP/user.json"
L corpus synth --out "$TMP/in" --docs 60 --seed 5 >/dev/null
L corpus ingest --name kb --vocab 512 --holdout 0.2 --canaries 2 --canary-repeats 1,8 "$TMP/in" >/dev/null
L --json train --corpus kb --epochs 1 --max-steps 6 --preset tiny --layers 2 --width 64 --heads 2 --mlp 128 \
    --context 64 --batch-size 4 --seed 11 > "$TMP/train.json"
RUN=$(jget "$TMP/train.json" run_id)
# The browser test's policy: an audit small enough to run in a second and thresholds a micro model passes, so
# the page shows a passed gate with every row, the exposure chart and the evidence.
cp tests/browser/policy.toml "$TMP/lax.toml"
L --json audit --run "$RUN" --policy "$TMP/lax.toml" > "$TMP/audit.json"
AUD=$(jget "$TMP/audit.json" audit)
L gate --run "$RUN" --policy "$TMP/lax.toml" >/dev/null

echo "== lethe serve" >&2
"$TMP/lethe" --data-dir "$TMP/data" serve --bind 127.0.0.1:0 --no-worker --policy "$TMP/lax.toml" \
    > "$TMP/serve.out" 2> "$TMP/serve.log" &
PIDS+=($!)
for _ in $(seq 300); do [ -s "$TMP/serve.out" ] && break; kill -0 "${PIDS[0]}" 2>/dev/null || die "lethe serve exited"; sleep 0.1; done
[[ "$(head -1 "$TMP/serve.out")" =~ ^lethe\ console\ listening\ on\ (http://127\.0\.0\.1:[0-9]+)/$ ]] \
    || die "unexpected first line from lethe serve: $(head -1 "$TMP/serve.out")"
LB=${BASH_REMATCH[1]}
# Sign the reviewer in over the API and spend the one-time password; the token then opens pages and API alike.
post() { curl -sS --fail-with-body -H 'Content-Type: application/json' "$@"; }
OTP=$(jget "$TMP/user.json" one_time_password)
post -d "{\"username\":\"rhea\",\"password\":\"$OTP\"}" "$LB/api/v1/session" > "$TMP/s1.json" || die "sign-in refused"
TOKEN=$(jget "$TMP/s1.json" token)
if [ "$(jget "$TMP/s1.json" must_change_password)" = True ]; then
    NEWPW="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    post -H "Authorization: Bearer $TOKEN" -d "{\"current\":\"$OTP\",\"new\":\"$NEWPW\"}" "$LB/api/v1/session/password" \
        > "$TMP/s2.json" || die "password change refused"
    TOKEN=$(jget "$TMP/s2.json" token)
fi
AUTH="Authorization: Bearer $TOKEN"

# The bytes nginx will serve: fetched once from Lethe with the token, under the same paths.
WWW="$TMP/www"
PAGE=/audits/$AUD API=/api/v1/runs/$RUN
for path in "$PAGE" "$API"; do
    mkdir -p "$WWW$(dirname "$path")"
    code=$(curl -sS -o "$WWW$path" -D "$TMP/headers$(basename "$path")" -w '%{http_code}' -H "$AUTH" "$LB$path")
    [ "$code" = 200 ] || die "GET $path with the bearer token: HTTP $code"
done
for want in max_exact_extraction max_canary_exposure '<svg' 'Discoverable extraction'; do
    grep -q "$want" "$WWW$PAGE" || die "the audit page lacks '$want': not the real content"
done
# nginx sends the headers Lethe sends (CSP, nosniff, no-store...), copied from its responses, so the bytes on
# the wire match too; access log off, keep-alive unlimited like Lethe's, $WORKERS workers like its runtime.
hdrs() { tr -d '\r' < "$1" | grep -viE '^(HTTP/|date:|content-length:|content-type:|$)' \
    | sed -E 's/^([^:]+): (.*)$/            add_header \1 "\2" always;/'; }
NPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NB=http://127.0.0.1:$NPORT
mkdir -p "$TMP/nginx"
chmod 711 "$TMP" && chmod -R a+rX "$WWW"   # nginx workers run as nobody when started by root
cat > "$TMP/nginx/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx/body; proxy_temp_path $TMP/nginx/proxy; fastcgi_temp_path $TMP/nginx/fcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi; scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $WWW;
        location /audits/ {
            default_type "text/html; charset=utf-8";
$(hdrs "$TMP/headers$(basename "$PAGE")")
        }
        location /api/ {
            default_type "application/json";
$(hdrs "$TMP/headers$(basename "$API")")
        }
    }
}
EOF
nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "$NB$PAGE" && break; sleep 0.1; done
for path in "$PAGE" "$API"; do curl -sS --fail "$NB$path" | cmp -s - "$WWW$path" || die "nginx does not serve $path as fetched"; done

# wrk, from this shell on loopback. A run fails the bench on socket errors or any status >= 400, and when the
# bytes read do not cover one full body per response: wrk counts 3xx as success, and a refused token is a
# redirect to the sign-in page.
mkdir -p "$TMP/wrk"
measure() {   # NAME BASE PATH WRK-OPTIONS... [-- SCRIPT-ARGS...]: wrk wants the URL before the script's arguments
    local out="$TMP/wrk/$1.txt" url=$2$3 size opts=(); size=$(stat -c %s "$WWW$3"); shift 3
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    wrk "${opts[@]}" --latency -H "$AUTH" "$url" "$@" > "$out" < /dev/null || die "wrk failed on $url"
    ! grep -qE 'Socket errors|Non-2xx or 3xx' "$out" || { cat "$out" >&2; die "wrk saw errors on $url"; }
    python3 - "$out" "$size" <<'PY' || { cat "$out" >&2; die "responses from $url are shorter than its $size-byte body"; }
import re, sys
n, v, u = re.search(r"(\d+) requests in [^,]+, ([\d.]+)(B|KB|MB|GB) read", open(sys.argv[1]).read()).groups()
sys.exit(float(v) * 1024 ** "B KB MB GB".split().index(u) * 1.01 < int(n) * int(sys.argv[2]))
PY
}
for s in lethe nginx; do base=$LB; [ $s = nginx ] && base=$NB
    for path in "$PAGE" "$API"; do wrk -t1 -c4 -d2s -H "$AUTH" "$base$path" >/dev/null; done   # warm-up
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)   # printed with the figures: other work on the machine shows here
for r in $(seq "$REPEAT"); do
    echo "== round $r of $REPEAT" >&2
    # The two servers alternate, so a slow patch on the shared machine hits both, not one.
    for t in page api; do path=$PAGE; [ $t = api ] && path=$API
        for s in lethe nginx; do base=$LB; [ $s = nginx ] && base=$NB
            measure "$t.$s.sat.$r" "$base" "$path" -t2 -c32 -d"$DURATION"
            measure "$t.$s.paced.$r" "$base" "$path" -t2 -c"$PACED_CONNS" -d"$DURATION" -s "$PACE" -- "$RATE" "$PACED_CONNS"
        done
    done
done
grep -iE 'error|panic' "$TMP/serve.log" && die "lethe serve logged errors (above)"

LOAD="before ${LOAD_BEFORE}, after $(cut -d' ' -f1-3 /proc/loadavg)"
MACHINE="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
VERSIONS="$("$TMP/lethe" --version); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(nginx -v 2>&1 | cut -d' ' -f3)"
mkdir -p target
python3 - "$TMP/wrk" "$WWW" "$PAGE" "$API" "$REPEAT" "$RATE" "$MACHINE" "$VERSIONS" "$WORKERS" "$LOAD" "$JSON_OUT" <<'EOF'
import json, re, statistics, sys, time
wrkdir, www, page, api, repeat, rate, machine, versions, workers, load, out = sys.argv[1:]
repeat, rate = int(repeat), float(rate)
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
def parse(name):
    t = open(f"{wrkdir}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    v, u = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", t).groups()
    return rps, float(v) * UNIT[u]
med = statistics.median
rows = []
for key, target, path in (("page", "audit page", page), ("api", "API run", api)):
    size = len(open(www + path, "rb").read())
    res = {}
    for server in ("lethe", "nginx"):
        sat = [parse(f"{key}.{server}.sat.{r}") for r in range(1, repeat + 1)]
        paced = [parse(f"{key}.{server}.paced.{r}") for r in range(1, repeat + 1)]
        res[server] = {"target": target, "path": path, "server": server, "body_bytes": size,
            "saturation_rps": med(x[0] for x in sat), "saturation_rps_runs": [x[0] for x in sat],
            "saturation_p99_ms": med(x[1] for x in sat), "saturation_p99_ms_runs": [x[1] for x in sat],
            "paced_achieved_rps": med(x[0] for x in paced), "paced_achieved_rps_runs": [x[0] for x in paced],
            "paced_p99_ms": med(x[1] for x in paced), "paced_p99_ms_runs": [x[1] for x in paced]}
    ratio = res["lethe"]["saturation_rps"] / res["nginx"]["saturation_rps"]
    for server in ("lethe", "nginx"):
        r = res[server]; r["lethe_over_nginx_saturation_rps"] = ratio; rows.append(r)
date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
print(f"\nmachine: {machine}; {date}; {versions}; nginx worker_processes {workers}")
print(f"wrk on the same machine over loopback; medians of {repeat} runs (min-max in brackets); load average {load}")
fmt = "{:<11} {:<6} {:>22} {:>20} {:>18} {:>20} {:>13}"
print(fmt.format("target", "server", "saturation rps", "saturation p99 ms", f"achieved @{rate:g}/s", f"p99 ms @{rate:g}/s", "lethe/nginx"))
span = lambda xs, f: f"{f.format(med(xs))} ({f.format(min(xs))}-{f.format(max(xs))})"
for r in rows:
    print(fmt.format(r["target"], r["server"], span(r["saturation_rps_runs"], "{:.0f}"), span(r["saturation_p99_ms_runs"], "{:.2f}"),
        f"{r['paced_achieved_rps']:.1f}", span(r["paced_p99_ms_runs"], "{:.2f}"),
        f"{r['lethe_over_nginx_saturation_rps']:.3f}" if r["server"] == "lethe" else ""))
slow = [f"{r['target']} on {r['server']} ({r['paced_achieved_rps']:.1f})" for r in rows if r["paced_achieved_rps"] < 0.95 * rate]
if slow:
    print(f"note: achieved under {0.95 * rate:.0f} requests/s: " + ", ".join(slow))
json.dump({"machine": machine, "date": date, "versions": versions, "nginx_worker_processes": int(workers), "load_average": load,
    "repeat": repeat, "rate": rate, "rows": rows}, open(out, "w"), indent=2)
print(f"written to {out}")
EOF
