//! The release rules, once, below both faces: who may ask for a release, who may approve or reject it,
//! how many approvals it needs (one more under a waiver), and when a request has gone stale; and the
//! signed bundle a released model ships as ([`bundle`]).
//!
//! States: a run is trained, then audited, then gated (passed or failed); a release is then *requested*,
//! *approved* once enough distinct reviewers approved, and *released* when exported. Any reviewer may
//! *reject* it; a newer audit or another policy makes it *void*. The store makes each move a conditional
//! update, so two reviewers approving at once produce one approval each and one state change.

pub mod bundle;

use crate::policy::Policy;
use crate::store::{ReleaseRow, Role, User};

/// A rule a user's action broke, in the user's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Operators (and admins) ask for releases.
pub fn may_request(user: &User) -> Result<(), Refused> {
    if user.disabled {
        return Err(Refused(format!("user {} is disabled", user.username)));
    }
    match user.role {
        Role::Operator | Role::Admin => Ok(()),
        r => Err(Refused(format!(
            "asking for a release needs the operator or admin role; {} is {r}",
            user.username
        ))),
    }
}

/// Whether `user` may approve or reject `release` of a run started by `trained_by`: the policy's
/// approving role (an admin has no bypass), never the person who started the training or asked for the
/// release.
pub fn may_review(user: &User, release: &ReleaseRow, trained_by: Option<&str>) -> Result<(), Refused> {
    if user.disabled {
        return Err(Refused(format!("user {} is disabled", user.username)));
    }
    if user.role.as_str() != release.approver_role {
        return Err(Refused(format!(
            "reviewing this release needs the {} role; {} is {} (no role bypasses the policy)",
            release.approver_role, user.username, user.role
        )));
    }
    // A run trained from the shell without --user records the host login as `cli:<login>`; the account
    // of that name is its trainer too.
    let trainer = trained_by.map(|t| t.strip_prefix("cli:").unwrap_or(t));
    if trainer == Some(user.username.as_str()) {
        return Err(Refused(format!(
            "{} started the training of run {}, so may not review its release",
            user.username, release.run_id
        )));
    }
    if release.requested_by == user.username {
        return Err(Refused(format!(
            "{} asked for this release, so may not review it",
            user.username
        )));
    }
    Ok(())
}

/// What an approval needs beyond [`may_review`], from the account's history: its approving role was
/// not granted after the request was made (no reviewer made for the occasion), and it has not been an
/// admin within `admin_cooldown_days` (no admin who demotes itself to approve). `now` in ms.
pub fn may_approve(
    user: &User,
    release: &ReleaseRow,
    now: i64,
    admin_cooldown_days: u32,
) -> Result<(), Refused> {
    if user.role_since > release.created_at {
        return Err(Refused(format!(
            "{} was given the {} role, or had its password reset by an admin, after release {} was \
             requested, so may not approve it",
            user.username, user.role, release.id
        )));
    }
    let cooldown_ms = i64::from(admin_cooldown_days) * 86_400_000;
    if user.admin_until > 0 && now - user.admin_until < cooldown_ms {
        let days_left = (user.admin_until + cooldown_ms - now + 86_399_999) / 86_400_000;
        return Err(Refused(format!(
            "{} held admin rights until {}; the policy lets a former admin approve only {admin_cooldown_days} \
             days later ({days_left} more)",
            user.username,
            crate::ledger::format_time(user.admin_until)
        )));
    }
    Ok(())
}

/// The statement an approver signs: which release of which run, under which audit, gate and policy,
/// of which checkpoint (by SHA-256), the decision, the reviewer and the comment. JSON with sorted keys;
/// the exact text is stored beside its signature, so a verifier checks the bytes that were signed.
pub fn approval_statement(
    release: &ReleaseRow,
    checkpoint_sha256: &str,
    checkpoint_step: i64,
    reviewer: &str,
    comment: &str,
) -> String {
    serde_json::json!({
        "kind": APPROVAL_KIND,
        "release": release.id,
        "run": release.run_id,
        "audit": release.audit_id,
        "gate": release.gate_id,
        "policy_sha256": release.policy_sha256,
        "checkpoint_sha256": checkpoint_sha256,
        "checkpoint_step": checkpoint_step,
        "decision": "approve",
        "reviewer": reviewer,
        "comment": comment,
    })
    .to_string()
}

/// The `kind` field of an approval statement.
pub const APPROVAL_KIND: &str = "lethe.approval.v1";

/// An approver's public key as a verifier needs it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApproverPublicKey {
    pub id: String,
    /// `ed25519` or `webauthn`.
    pub kind: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rp_id: Option<String>,
}

/// Checks a signature over `statement` by `key`: an Ed25519 signature, or a passkey assertion (with
/// its authenticator and client data).
pub fn check_approval_signature(
    key: &ApproverPublicKey,
    statement: &str,
    signature: &str,
    authenticator_data: Option<&str>,
    client_data: Option<&str>,
) -> Result<(), Refused> {
    use crate::vault::approver;
    let r = match (key.kind.as_str(), authenticator_data, client_data) {
        ("ed25519", None, None) => approver::verify_ed25519(&key.public_key, statement.as_bytes(), signature),
        ("webauthn", Some(a), Some(c)) => approver::verify_webauthn(
            &key.public_key,
            key.rp_id.as_deref().unwrap_or_default(),
            statement.as_bytes(),
            a,
            c,
            signature,
        )
        .map(|_| ()),
        (kind, ..) => {
            return Err(Refused(format!(
                "key {} is a {kind} key, and the proof is not of that kind",
                key.id
            )))
        }
    };
    r.map_err(|e| {
        Refused(format!(
            "the approval's signature by key {} does not verify: {e}",
            key.id
        ))
    })
}

/// Approvals a request needs: the policy's count, or one more with a waiver. A failed gate without a
/// waiver, a waiver the policy does not allow, or one without a written justification is refused.
pub fn required_approvals(
    policy: &Policy,
    gate_passed: bool,
    waiver: Option<&str>,
) -> Result<usize, Refused> {
    let base = policy.approvals.required;
    match (gate_passed, waiver.map(str::trim)) {
        (true, None) => Ok(base),
        (true, Some(_)) => Err(Refused("the gate passed; a waiver is not needed".into())),
        (false, None) => Err(Refused(
            "the gate failed; a failed gate cannot be released (unless the policy allows a waiver: --waiver \
             TEXT)"
                .into(),
        )),
        (false, Some(_)) if !policy.approvals.allow_waiver => Err(Refused(format!(
            "the gate failed and policy {:?} allows no waiver",
            policy.name
        ))),
        (false, Some(text)) if text.len() < 20 => Err(Refused(
            "a waiver needs a written justification of at least 20 characters".into(),
        )),
        (false, Some(_)) => Ok(base + 1),
    }
}

/// Why a request no longer stands, if it does not: a newer audit of the same checkpoint than the one it
/// was made under (`latest_audit`), or a policy other than the one it was gated with.
pub fn stale(release: &ReleaseRow, latest_audit: &str, policy: &Policy) -> Option<String> {
    if release.audit_id != latest_audit {
        return Some(format!(
            "run {} was audited again ({}) after this release was requested under audit {}",
            release.run_id, latest_audit, release.audit_id
        ));
    }
    if release.policy_sha256 != policy.sha256 {
        return Some(format!(
            "the policy in force ({:?}, sha256 {}) is not the one the request was gated under (sha256 {})",
            policy.name,
            &policy.sha256[..16],
            &release.policy_sha256[..release.policy_sha256.len().min(16)]
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> User {
        User {
            id: format!("u-{name}"),
            username: name.into(),
            role,
            password_hash: String::new(),
            must_change_password: false,
            disabled: false,
            created_at: 0,
            role_since: 0,
            admin_until: 0,
            password_issued_to: None,
        }
    }

    fn release() -> ReleaseRow {
        ReleaseRow {
            id: "rel-1".into(),
            run_id: "run-1".into(),
            audit_id: "aud-1".into(),
            gate_id: "gate-1".into(),
            gate_passed: true,
            policy_sha256: Policy::builtin().sha256,
            required_approvals: 2,
            approver_role: "reviewer".into(),
            waiver: None,
            state: "requested".into(),
            reason: None,
            requested_by: "olga".into(),
            created_at: 0,
            updated_at: 0,
            released_at: None,
        }
    }

    #[test]
    fn reviewers_other_than_the_trainer_and_requester_may_review() {
        let r = release();
        assert_eq!(may_review(&user("rita", Role::Reviewer), &r, Some("tom")), Ok(()));
        let e = may_review(&user("tom", Role::Reviewer), &r, Some("tom")).unwrap_err();
        assert!(e.0.contains("started the training"), "{e}");
        let e = may_review(&user("olga", Role::Reviewer), &r, Some("tom")).unwrap_err();
        assert!(e.0.contains("asked for this release"), "{e}");
        let e = may_review(&user("ada", Role::Admin), &r, None).unwrap_err();
        assert!(e.0.contains("needs the reviewer role; ada is admin"), "{e}");
        for role in [Role::Operator, Role::Auditor] {
            assert!(may_review(&user("x", role), &r, None).is_err());
        }
        let mut off = user("rita", Role::Reviewer);
        off.disabled = true;
        assert!(may_review(&off, &r, None).is_err());
    }

    /// The security review's high finding 1 (in part): an admin demoted itself to reviewer and
    /// approved; reviewer accounts made after a request approved it.
    #[test]
    fn former_admins_and_reviewers_made_after_the_request_may_not_approve() {
        let r = release(); // requested at 0
        let day = 86_400_000;
        let mut u = user("rita", Role::Reviewer);
        u.role_since = -5;
        assert_eq!(may_approve(&u, &r, 100 * day, 30), Ok(()));
        u.role_since = 10;
        let e = may_approve(&u, &r, 100 * day, 30).unwrap_err();
        assert!(e.0.contains("after release"), "{e}");
        u.role_since = -5;
        u.admin_until = 90 * day;
        let e = may_approve(&u, &r, 100 * day, 30).unwrap_err();
        assert!(
            e.0.contains("held admin rights") && e.0.contains("(20 more)"),
            "{e}"
        );
        assert_eq!(may_approve(&u, &r, 120 * day, 30), Ok(()));
        assert_eq!(may_approve(&u, &r, 100 * day, 0), Ok(()));
    }

    /// The security review's low finding 13: `lethe train` without `--user` recorded no trainer, so
    /// anyone could approve. The host login is recorded (`cli:<login>`) and its namesake may not.
    #[test]
    fn a_run_trained_from_the_shell_is_not_approved_by_the_logins_namesake() {
        let r = release();
        let e = may_review(&user("tom", Role::Reviewer), &r, Some("cli:tom")).unwrap_err();
        assert!(e.0.contains("started the training"), "{e}");
        assert_eq!(
            may_review(&user("rita", Role::Reviewer), &r, Some("cli:tom")),
            Ok(())
        );
    }

    #[test]
    fn only_operators_and_admins_request() {
        assert!(may_request(&user("o", Role::Operator)).is_ok());
        assert!(may_request(&user("a", Role::Admin)).is_ok());
        assert!(may_request(&user("r", Role::Reviewer)).is_err());
        assert!(may_request(&user("u", Role::Auditor)).is_err());
    }

    #[test]
    fn a_failed_gate_needs_an_allowed_justified_waiver_and_one_more_approval() {
        let strict = Policy::builtin();
        assert_eq!(required_approvals(&strict, true, None), Ok(2));
        assert!(required_approvals(&strict, false, None)
            .unwrap_err()
            .0
            .contains("cannot be released"));
        assert!(
            required_approvals(&strict, false, Some("we accept the risk because reasons"))
                .unwrap_err()
                .0
                .contains("allows no waiver")
        );
        let text = crate::policy::DEFAULT_POLICY.replace("allow_waiver = false", "allow_waiver = true");
        let lenient = Policy::parse(&text, "w.toml", None).unwrap();
        assert!(required_approvals(&lenient, false, Some("ok"))
            .unwrap_err()
            .0
            .contains("at least 20"));
        assert_eq!(
            required_approvals(
                &lenient,
                false,
                Some("exposure of canary 3 is synthetic test data")
            ),
            Ok(3)
        );
        assert!(required_approvals(&lenient, true, Some("not needed here at all really")).is_err());
    }

    #[test]
    fn a_new_audit_or_another_policy_makes_a_request_stale() {
        let r = release();
        let p = Policy::builtin();
        assert_eq!(stale(&r, "aud-1", &p), None);
        assert!(stale(&r, "aud-2", &p).unwrap().contains("audited again"));
        let other = Policy::parse(
            &format!("{}\n# edited\n", crate::policy::DEFAULT_POLICY),
            "o",
            None,
        )
        .unwrap();
        assert!(stale(&r, "aud-1", &other)
            .unwrap()
            .contains("not the one the request was gated under"));
    }
}
