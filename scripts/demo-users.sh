#!/usr/bin/env bash
# The accounts of `make demo`, under dual control: the first admin asks for a second admin, ada, and the
# host's operator confirms it (the appliance has a single admin so far); olga the operator is made at once;
# each reviewer (rita, remy, rose) waits for ada's confirmation, makes an Ed25519 approver key of their own
# and enrols it, and admin confirms the key (not ada, who received the reviewer's one-time password).
# One-time passwords and the reviewers' keys stay in DATA_DIR/users, the demo's own sandbox.
#
#   scripts/demo-users.sh DATA_DIR
set -euo pipefail

data="$1" policy=policies/demo.toml
# shellcheck source=scripts/demo-lib.sh
. scripts/demo-lib.sh
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

echo "== lethe users add ada --role admin: a second admin waits for confirmation (dual control)"
as admin --json users add ada --role admin > "$data/users/ada-grant.json"
echo "== lethe users confirm --host: with a single admin, the host's operator confirms"
lethe --json users confirm "$(field "$data/users/ada-grant.json" "['grant']['id']")" --host > "$data/users/ada.json"
echo "== lethe users add: olga (operator) at once; reviewers rita, remy and rose, each confirmed by ada"
as admin --json users add olga --role operator > "$data/users/olga.json"
for r in rita remy rose; do
    as admin --json users add "$r" --role reviewer > "$data/users/$r-grant.json"
    as ada --json users confirm "$(field "$data/users/$r-grant.json" "['grant']['id']")" > "$data/users/$r.json"
done
echo "== lethe approver keygen/enrol: each reviewer's own signing key; admin confirms each"
for r in rita remy rose; do
    bin/lethe approver keygen --out "$data/users/$r.key" > /dev/null
    as "$r" --json approver enrol --key "$data/users/$r.key" > "$data/users/$r-key-grant.json"
    as admin users confirm "$(field "$data/users/$r-key-grant.json" "['id']")"
done
lethe users list
lethe approver list
