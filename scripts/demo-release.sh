#!/usr/bin/env bash
# The release half of `make demo`, from the command line: audit the run's newest kept checkpoints under
# policies/demo.toml and select the most useful one within the budget (`gate --select`), then walk the
# two-person release of that checkpoint: the operator asks, the trainer and an admin are refused, reviewers
# approve, the bundle is exported and verified with only the public key, and the ledger is verified.
#
#   scripts/demo-release.sh DATA_DIR RUN_ID
set -euo pipefail

data="$1" run="$2" policy=policies/demo.toml
# shellcheck source=scripts/demo-lib.sh
. scripts/demo-lib.sh

select_gate_request "$run"
echo "== the trainer and an admin may not approve"
as olga release approve --run "$run" --policy "$policy" --comment "my own run" || true
as admin release approve --run "$run" --policy "$policy" --comment "admin override" || true
echo "== reviewers approve"
for r in rita remy rose; do
    stage=$(lethe --json release status --run "$run" | python3 -c "import json,sys; print(json.load(sys.stdin)['stage'])")
    [ "$stage" = "approved" ] && break
    as "$r" release approve --run "$run" --policy "$policy" --comment "reviewed the audit evidence"
done

echo "== lethe release export, then verify with only the public key"
rm -rf "$data/bundle"
as rita release export --run "$run" --policy "$policy" --out "$data/bundle"
lethe release verify "$data/bundle" --public-key "$(lethe keys public)"
ls -l "$data/bundle"

echo "== lethe ledger verify (every step above is an entry), also against the head the bundle carries"
lethe ledger verify --against "$data/bundle"
lethe ledger show | tail -8
