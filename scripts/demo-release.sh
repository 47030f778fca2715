#!/usr/bin/env bash
# The release half of `make demo`: audit the demo run under policies/demo.toml, gate it, then walk the
# two-person release: the operator asks, reviewers other than the trainer approve, the bundle is exported
# and verified with only the public key, and the ledger is verified. Passwords come from the one-time
# passwords `lethe users add` printed (kept in the demo directory, which is the demo's own sandbox).
#
#   scripts/demo-release.sh DATA_DIR RUN_ID
set -euo pipefail

data="$1" run="$2"
lethe() { bin/lethe --data-dir "$data" "$@"; }
pw() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['one_time_password'])" "$data/users/$1.json"; }
as() { local u="$1"; shift; LETHE_PASSWORD="$(pw "$u")" lethe "$@" --user "$u"; }

echo "== lethe audit --policy policies/demo.toml: extraction, infilling, regurgitation, canaries, secrets, membership"
lethe audit --run "$run" --policy policies/demo.toml

echo "== lethe gate: the audit against the policy's thresholds"
set +e
lethe gate --run "$run" --policy policies/demo.toml
rc=$?
set -e
case "$rc" in
    0) waiver=() ;;
    3) echo "   (the gate failed: this policy allows a waiver with a justification and one approval more)"
       waiver=(--waiver "Synthetic demo corpus: no real data; released only to show the workflow.") ;;
    *) exit "$rc" ;;
esac

echo "== lethe release request (operator olga)"
as olga release request --run "$run" --policy policies/demo.toml "${waiver[@]}"
echo "== the trainer and an admin may not approve"
as olga release approve --run "$run" --policy policies/demo.toml --comment "my own run" || true
as admin release approve --run "$run" --policy policies/demo.toml --comment "admin override" || true
echo "== reviewers approve"
for r in rita remy rose; do
    stage=$(lethe --json release status --run "$run" | python3 -c "import json,sys; print(json.load(sys.stdin)['stage'])")
    [ "$stage" = "approved" ] && break
    as "$r" release approve --run "$run" --policy policies/demo.toml --comment "reviewed the audit evidence"
done

echo "== lethe release export, then verify with only the public key"
rm -rf "$data/bundle"
as rita release export --run "$run" --policy policies/demo.toml --out "$data/bundle"
lethe release verify "$data/bundle" --public-key "$(lethe keys public)"
ls -l "$data/bundle"

echo "== lethe ledger verify (every step above is an entry)"
lethe ledger verify
lethe ledger show | tail -8
