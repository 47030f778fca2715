#!/usr/bin/env bash
# The PostgreSQL job queue: jobs/s handed out by Lethe (`examples/queue_speed.rs`: Jobs::claim_for then
# Jobs::succeed, the two statements a worker runs per job, through sqlx) against pgbench running the
# same two statements on the same table and indexes through libpq (the database's own ceiling for this
# SQL), with the same number of concurrent clients, in the same run.
#
# Usage: bench/queue.sh [--jobs N] [--claimers "1 4 16"] [--url postgres://postgres@127.0.0.1:5432/test]
# Prints a table; writes bench/results/queue.json.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=4000
CLAIMERS="1 4 16"
ADMIN=${LETHE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS=$2; shift 2 ;;
    --claimers) CLAIMERS=$2; shift 2 ;;
    --url) ADMIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=target/release/examples/queue_speed
[ -x "$BIN" ] || { echo "build it first: cargo build --release --example queue_speed" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench (postgresql-client) is required" >&2; exit 1; }
BASE=${ADMIN%/*}
mkdir -p bench/results
OUT=bench/results/queue.json
: > "$OUT.tmp"

fresh_db() {
  local name="lethe_bench_$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  psql -q "$ADMIN" -c "CREATE DATABASE $name" >/dev/null
  echo "$name"
}
drop_db() { psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null; }

CLAIM_SQL=$(mktemp)
trap 'rm -f "$CLAIM_SQL"' EXIT
# The statements of src/store/jobs.rs (claim_for with a CPU worker's capacity, then succeed).
cat > "$CLAIM_SQL" <<'SQL'
UPDATE jobs SET state = 'running', owner = 'pg-' || :client_id, attempts = attempts + 1, claimed_at = 1, heartbeat_at = 1, updated_at = 1 WHERE state = 'queued' AND id = (SELECT j.id FROM jobs j WHERE j.state = 'queued' AND j.kind IN ('bench') AND (j.needs_gpu = 0 OR 0 > 0) AND j.needs_memory_bytes <= 17179869184 AND (j.after_group IS NULL OR NOT EXISTS (SELECT 1 FROM jobs g WHERE g.group_id = j.after_group AND g.state <> 'succeeded')) ORDER BY j.created_at, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED) RETURNING substr(id, 5)::bigint AS jn \gset
UPDATE jobs SET progress = 1, state = 'succeeded', result = '{}', error = NULL, finished_at = 2, updated_at = 2 WHERE id = 'job-' || :jn AND owner = 'pg-' || :client_id AND state = 'running';
SQL

printf '%-9s %16s %16s %8s\n' claimers "lethe jobs/s" "pgbench jobs/s" ratio
for k in $CLAIMERS; do
  per=$(( JOBS / k )); n=$(( per * k ))
  db=$(fresh_db)
  lethe_json=$("$BIN" "$BASE/$db" "$n" "$k")
  drop_db "$db"
  db=$(fresh_db)
  "$BIN" "$BASE/$db" 0 1 >/dev/null   # the same schema, migrated by Lethe
  psql -q "$BASE/$db" -c "INSERT INTO jobs (id, kind, args, state, progress, attempts, max_attempts, created_at, updated_at) SELECT 'job-' || g, 'bench', '{}', 'queued', 0, 0, 3, g, g FROM generate_series(1, $((n + k))) g; ANALYZE jobs;" >/dev/null
  pg_out=$(pgbench -n -M prepared -c "$k" -j "$k" -t "$per" -f "$CLAIM_SQL" "$BASE/$db" 2>&1)
  drop_db "$db"
  pg_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$pg_out" | head -1)
  [ -n "$pg_tps" ] || { echo "pgbench failed: $pg_out" >&2; exit 1; }
  lethe_tps=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["claim_finish_per_s"]))' "$lethe_json")
  ratio=$(python3 -c "print(f'{$lethe_tps / $pg_tps:.2f}')")
  printf '%-9s %16s %16.0f %8s\n' "$k" "$lethe_tps" "$pg_tps" "$ratio"
  echo "{\"claimers\": $k, \"jobs\": $n, \"lethe\": $lethe_json, \"pgbench_tps\": $pg_tps}" >> "$OUT.tmp"
done
mv "$OUT.tmp" "$OUT"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); PostgreSQL $(psql -tA "$ADMIN" -c 'SHOW server_version')"
