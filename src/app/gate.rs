//! Policy and gate use cases: check a policy file, and evaluate a run's latest audit against a policy,
//! recording the decision. The rules themselves are in [`crate::policy`].

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::App;
use crate::audit::AuditReport;
use crate::policy::{self, GateResult, Policy};
use crate::store::{AuditRow, GateDecision};

/// A recorded gate decision with its rows.
#[derive(Debug, Serialize)]
pub struct GateOutcome {
    pub decision: String,
    pub run: String,
    pub audit: String,
    pub policy_origin: String,
    #[serde(flatten)]
    pub result: GateResult,
}

/// The policy at `path`, or the built-in one.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    Ok(match path {
        Some(p) => Policy::load(p)?,
        None => Policy::builtin(),
    })
}

impl App {
    /// The run's newest successful audit, which must be of the run's newest checkpoint.
    pub async fn latest_audit(&self, run_id: &str) -> anyhow::Result<(AuditRow, AuditReport)> {
        let run = self.run_row(run_id).await?;
        let audit = self
            .store
            .audits()
            .latest_succeeded(&run.id)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "run {} has no finished audit; run `lethe audit --run {}`",
                    run.id,
                    run.id
                )
            })?;
        let latest = self.store.runs().checkpoints(&run.id).await?.pop();
        if latest.as_ref().map(|c| c.sha256.as_str()) != Some(audit.checkpoint_sha256.as_str()) {
            anyhow::bail!(
                "audit {} is of checkpoint step {}, but run {} has a newer checkpoint (step {}); audit it again",
                audit.id,
                audit.checkpoint_step,
                run.id,
                latest.map_or(0, |c| c.step)
            );
        }
        let report: AuditReport = serde_json::from_value(audit.report.clone().unwrap_or_default())
            .with_context(|| format!("the report of audit {} is not readable", audit.id))?;
        Ok((audit, report))
    }

    /// Evaluates the run's latest audit against `policy` and records the decision.
    pub async fn gate(
        &self,
        run_id: &str,
        policy: &Policy,
        created_by: Option<&str>,
    ) -> anyhow::Result<GateOutcome> {
        let (audit, report) = self.latest_audit(run_id).await?;
        let result = policy::evaluate(policy, &report);
        let id = format!("gate-{}", crate::vault::random_hex(6)?);
        self.store
            .gates()
            .record(&GateDecision {
                id: id.clone(),
                run_id: audit.run_id.clone(),
                audit_id: audit.id.clone(),
                policy_name: policy.name.clone(),
                policy_sha256: policy.sha256.clone(),
                passed: result.passed,
                rows: serde_json::to_value(&result.rows)?,
                created_by: created_by.map(str::to_string),
                created_at: crate::store::now_ms(),
            })
            .await?;
        let actor = created_by.map(str::to_string).unwrap_or_else(super::cli_actor);
        self.record(
            &actor,
            crate::ledger::action::GATE_EVALUATE,
            &audit.run_id,
            serde_json::json!({
                "decision": id,
                "audit": audit.id,
                "passed": result.passed,
                "policy": policy.name,
                "policy_sha256": policy.sha256,
            }),
        )
        .await?;
        Ok(GateOutcome {
            decision: id,
            run: audit.run_id,
            audit: audit.id,
            policy_origin: policy.origin.clone(),
            result,
        })
    }
}
