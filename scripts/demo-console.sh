#!/usr/bin/env bash
# The console half of `make demo`: a run (the autoregressive baseline, which at equal epochs has learned
# more of the demo corpus than the diffusion model, and memorized more) is audited, gated and its release
# requested from the command line, then left for the reviewers, and the console is served on 127.0.0.1 for them to read the
# evidence (extracted text, regurgitated secrets, canary exposure) and approve or reject.
#
#   scripts/demo-console.sh DATA_DIR RUN_ID PORT
set -euo pipefail

data="$1" run="$2" port="$3" policy=policies/demo.toml
# shellcheck source=scripts/demo-lib.sh
. scripts/demo-lib.sh

audit_gate_request "$run"
echo "== what the audit found (figures; the evidence, with the text beside its corpus source, is in the console)"
lethe audit show "$(lethe --json audit list --run "$run" | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['id'])")" | head -40

cat <<MSG

== The console: http://localhost:$port/ (localhost rather than 127.0.0.1: passkeys need a host name)
   Run $run waits for review. Sign in as a reviewer with a one-time password (the console asks you
   to choose your own first):
     rita   $(pw rita)
     remy   $(pw remy)
     rose   $(pw rose)
   The admin is "admin" with $(pw admin); the operator who trained the run is "olga" with $(pw olga)
   (she may ask for releases but never approve her own run). Read what each checkpoint learned beside
   the audit's evidence: what the model extracted and regurgitated, beside its corpus source, and the
   planted secrets it repeats; the run page's frontier chart compares its checkpoints with the diffusion
   run's. Reject it,
   or approve it as three reviewers under the demo policy's waiver, then export and download the bundle.
   An approval in the console is signed with the reviewer's passkey: enrol one on the Account page
   (a browser with a platform authenticator or a security key), and have admin confirm it on the Admin
   page (not ada, who confirmed the reviewers and received their passwords); ada's one-time password is
   $(pw ada). From the shell a reviewer approves with the key in $data/users/NAME.key instead.
   Ctrl-C stops the server.

MSG
exec bin/lethe --data-dir "$data" serve --bind "127.0.0.1:$port" --policy "$policy"
