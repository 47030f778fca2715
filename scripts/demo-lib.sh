# Shared by the demo scripts (sourced, not run): the data directory's `lethe`, the demo users' one-time
# passwords (kept in the demo directory, the demo's own sandbox), and the steps from audit to a release
# request, which both demo runs take.
#
# Needs $data and $policy set by the caller.

lethe() { bin/lethe --data-dir "$data" "$@"; }
pw() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['one_time_password'])" "$data/users/$1.json"; }
# Runs lethe as user $1 (with their approver key, where they have one).
as() {
    local u="$1"; shift
    if [ -f "$data/users/$u.key" ]; then
        LETHE_PASSWORD="$(pw "$u")" LETHE_APPROVER_KEY="$data/users/$u.key" lethe "$@" --user "$u"
    else
        LETHE_PASSWORD="$(pw "$u")" lethe "$@" --user "$u"
    fi
}

# audit_gate_request RUN: audits the run under the policy, gates it and has operator olga ask for its
# release, with a waiver when the gate fails (the demo policy allows one, for one approval more).
audit_gate_request() {
    local run="$1" rc
    echo "== lethe audit --policy $policy: extraction, infilling, regurgitation, canaries, secrets, membership"
    lethe audit --run "$run" --policy "$policy"
    echo "== lethe gate: the audit against the policy's thresholds"
    set +e
    lethe gate --run "$run" --policy "$policy"
    rc=$?
    set -e
    case "$rc" in
        0) waiver=() ;;
        3) echo "   (the gate failed: this policy allows a waiver with a justification and one approval more)"
           waiver=(--waiver "Synthetic demo corpus: no real data; released only to show the workflow.") ;;
        *) return "$rc" ;;
    esac
    echo "== lethe release request (operator olga)"
    as olga release request --run "$run" --policy "$policy" "${waiver[@]}"
}

# select_gate_request RUN: audits the run's newest kept checkpoints under the policy (its [select] says
# how many), picks the most useful one that passes and has operator olga ask for its release; when none
# passes, gates the newest and asks with a waiver (the demo policy allows one, for one approval more).
select_gate_request() {
    local run="$1" rc
    echo "== lethe gate --select: audit the kept checkpoints, release the most useful one within the budget"
    set +e
    lethe gate --run "$run" --policy "$policy" --select
    rc=$?
    set -e
    case "$rc" in
        0) echo "== lethe release request (operator olga) for the selected checkpoint"
           as olga release request --run "$run" --policy "$policy" ;;
        3) echo "   (no checkpoint passes: gate the newest, and ask with a waiver, which this policy allows)"
           set +e
           lethe gate --run "$run" --policy "$policy"
           set -e
           echo "== lethe release request (operator olga)"
           as olga release request --run "$run" --policy "$policy" \
               --waiver "Synthetic demo corpus: no real data; released only to show the workflow." ;;
        *) return "$rc" ;;
    esac
}
