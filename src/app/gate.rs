//! Policy and gate use cases: check a policy file, and evaluate a run's latest audit against a policy,
//! recording the decision. The rules themselves are in [`crate::policy`].

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::App;
use crate::audit::{AuditReport, Stage};
use crate::policy::{self, GateResult, Policy};
use crate::store::{AuditRow, GateDecision};

/// A recorded gate decision with its rows.
#[derive(Debug, Serialize)]
pub struct GateOutcome {
    pub decision: String,
    pub run: String,
    /// The checkpoint the gated audit audited.
    pub checkpoint_step: i64,
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

/// An audit row with its parsed report.
type Audited = (AuditRow, AuditReport);

/// One checkpoint as `lethe gate --select` weighed it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub step: i64,
    pub epochs: Option<f64>,
    pub audit: Option<String>,
    /// Held-out continuation-choice accuracy and bits per byte.
    pub choice_accuracy: Option<f64>,
    pub bits_per_byte: Option<f64>,
    /// Exact extraction (estimate) and the highest canary exposure of its audit.
    pub exact_extraction: Option<f64>,
    pub max_canary_exposure: Option<f64>,
    pub passed: Option<bool>,
    /// `selected`, or why it was passed over.
    pub verdict: String,
}

/// What `lethe gate --select` found and chose.
#[derive(Debug, Serialize)]
pub struct Selected {
    pub run: String,
    pub policy: String,
    pub rank_by: crate::policy::RankBy,
    /// The chosen checkpoint's step, when one passes.
    pub step: Option<i64>,
    /// The gate decision recorded for it.
    pub gate: Option<GateOutcome>,
    /// Audits this selection ran.
    pub audited: Vec<String>,
    /// Newest first.
    pub candidates: Vec<Candidate>,
}

impl App {
    /// The newest successful audit of checkpoint `step` of a run (its newest checkpoint when `None`).
    pub async fn audit_of(&self, run_id: &str, step: Option<i64>) -> anyhow::Result<Audited> {
        let run = self.run_row(run_id).await?;
        let checkpoints = self.store.runs().checkpoints(&run.id).await?;
        let target = match step {
            None => checkpoints.last(),
            Some(s) => checkpoints.iter().find(|c| c.step == s),
        }
        .ok_or_else(|| match step {
            Some(s) => anyhow::anyhow!(
                "run {} has no checkpoint at step {s} (`lethe runs show {}` lists them)",
                run.id,
                run.id
            ),
            None => anyhow::anyhow!("run {} has no checkpoint yet", run.id),
        })?;
        let audit = self
            .store
            .audits()
            .list(Some(&run.id))
            .await?
            .into_iter()
            .filter(|a| a.state == "succeeded" && a.checkpoint_sha256 == target.sha256)
            .max_by_key(|a| (a.created_at, a.id.clone()))
            .ok_or_else(|| match step {
                Some(s) => anyhow::anyhow!(
                    "checkpoint step {s} of run {} has no finished audit; run `lethe audit --run {} --step {s}`",
                    run.id,
                    run.id
                ),
                None => anyhow::anyhow!(
                    "run {} has no finished audit of its newest checkpoint (step {}); run `lethe audit --run {}`",
                    run.id,
                    target.step,
                    run.id
                ),
            })?;
        let report: AuditReport = serde_json::from_value(audit.report.clone().unwrap_or_default())
            .with_context(|| format!("the report of audit {} is not readable", audit.id))?;
        Ok((audit, report))
    }

    /// Audits the kept checkpoints of a run that lack an audit (newest first, as far as the policy's
    /// `[select]` says), and picks the most useful one that passes the policy; records the gate decision
    /// for it and the selection in the ledger.
    pub async fn gate_select(
        &self,
        run_id: &str,
        policy: &Policy,
        created_by: Option<&str>,
        progress: &mut (dyn FnMut(i64, Stage, usize, usize) + Send),
    ) -> anyhow::Result<Selected> {
        let run = self.run_row(run_id).await?;
        let checkpoints = self.store.runs().checkpoints(&run.id).await?;
        let mut history = self.history(&run.id, &checkpoints).await?;
        history.reverse();
        let sel = &policy.select;
        let mut audited = Vec::new();
        // Per candidate: its newest audit (when it has one) and that audit's gate result.
        let mut results: Vec<(Option<Audited>, Option<GateResult>)> = Vec::new();
        let mut stop = false;
        for c in &history {
            let mut found = if c.audit.is_some() {
                Some(self.audit_of(&run.id, Some(c.step)).await?)
            } else {
                None
            };
            if found.is_none() && !stop && audited.len() < sel.max_audits {
                let req = super::audit::AuditRequest {
                    run: run.id.clone(),
                    step: Some(c.step),
                    params: Some(policy.audit.clone()),
                    rules: policy.secret_packs.clone(),
                    deny_list: policy.deny_list.clone(),
                    created_by: created_by.map(str::to_string),
                    ..Default::default()
                };
                let step = c.step;
                let out = self.audit(req, &mut |s, d, t| progress(step, s, d, t)).await?;
                audited.push(out.audit.clone());
                found = Some(self.audit_of(&run.id, Some(c.step)).await?);
            }
            let gate = found.as_ref().map(|(_, r)| policy::evaluate(policy, r));
            if sel.stop_at_first_pass && gate.as_ref().is_some_and(|g| g.passed) {
                stop = true;
            }
            results.push((found, gate));
        }
        // The most useful passing checkpoint.
        let key = |u: Option<&crate::eval::Utility>| -> (f64, f64) {
            let acc = u.and_then(|u| u.choice_accuracy).map_or(-1.0, |a| a.value);
            let bpb = u.and_then(|u| u.bits_per_byte).map_or(f64::INFINITY, |b| b);
            match sel.rank_by {
                crate::policy::RankBy::ChoiceAccuracy => (acc, -bpb),
                crate::policy::RankBy::BitsPerByte => (-bpb, acc),
            }
        };
        let utility_of = |i: usize| -> Option<crate::eval::Utility> {
            results[i]
                .0
                .as_ref()
                .and_then(|(_, r)| r.utility.clone())
                .or_else(|| history[i].utility.clone())
        };
        let best = (0..history.len())
            .filter(|&i| results[i].1.as_ref().is_some_and(|g| g.passed))
            .max_by(|&a, &b| {
                key(utility_of(a).as_ref())
                    .partial_cmp(&key(utility_of(b).as_ref()))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    // On a tie, the older checkpoint (it saw its data fewer times).
                    .then(history[b].step.cmp(&history[a].step))
            });
        let describe = |u: Option<&crate::eval::Utility>| -> String {
            let acc = u
                .and_then(|u| u.choice_accuracy)
                .map_or("no choice accuracy".to_string(), |a| {
                    format!("choice accuracy {:.3}", a.value)
                });
            let bpb = u
                .and_then(|u| u.bits_per_byte)
                .map_or("no bits per byte".to_string(), |b| {
                    format!("{b:.3} bits per byte")
                });
            format!("{acc}, {bpb}")
        };
        let mut candidates = Vec::new();
        for (i, c) in history.iter().enumerate() {
            let u = utility_of(i);
            let (found, gate) = &results[i];
            let verdict = match (best, gate) {
                (Some(b), _) if b == i => "selected".to_string(),
                (_, None) if stop => {
                    "not audited: an earlier checkpoint passed (select.stop_at_first_pass)".into()
                }
                (_, None) => format!(
                    "not audited: the selection audits at most {} checkpoints (select.max_audits)",
                    sel.max_audits
                ),
                (_, Some(g)) if !g.passed => format!(
                    "fails the policy: {}",
                    g.rows
                        .iter()
                        .filter(|r| !r.passed)
                        .map(|r| r.rule.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (Some(b), Some(_)) => format!(
                    "passes, but less useful ({}) than step {} ({})",
                    describe(u.as_ref()),
                    history[b].step,
                    describe(utility_of(b).as_ref())
                ),
                (None, Some(_)) => "passes".into(),
            };
            candidates.push(Candidate {
                step: c.step,
                epochs: c.epochs,
                audit: found.as_ref().map(|(a, _)| a.id.clone()),
                choice_accuracy: u.as_ref().and_then(|u| u.choice_accuracy).map(|a| a.value),
                bits_per_byte: u.as_ref().and_then(|u| u.bits_per_byte),
                exact_extraction: found.as_ref().map(|(_, r)| r.extraction.exact.rate),
                max_canary_exposure: found.as_ref().map(|(_, r)| r.canaries.max_exposure),
                passed: gate.as_ref().map(|g| g.passed),
                verdict,
            });
        }
        let step = best.map(|b| history[b].step);
        let gate = match step {
            Some(s) => Some(self.gate_step(&run.id, policy, Some(s), created_by).await?),
            None => None,
        };
        let actor = created_by.map(str::to_string).unwrap_or_else(super::cli_actor);
        self.record(
            &actor,
            crate::ledger::action::GATE_SELECT,
            &run.id,
            serde_json::json!({
                "step": step,
                "decision": gate.as_ref().map(|g| g.decision.clone()),
                "policy": policy.name,
                "policy_sha256": policy.sha256,
                "rank_by": sel.rank_by,
                "candidates": candidates.iter().map(|c| serde_json::json!({
                    "step": c.step, "audit": c.audit, "passed": c.passed, "verdict": c.verdict,
                })).collect::<Vec<_>>(),
            }),
        )
        .await?;
        Ok(Selected {
            run: run.id,
            policy: policy.name.clone(),
            rank_by: sel.rank_by,
            step,
            gate,
            audited,
            candidates,
        })
    }

    /// Evaluates the run's latest audit against `policy` and records the decision.
    pub async fn gate(
        &self,
        run_id: &str,
        policy: &Policy,
        created_by: Option<&str>,
    ) -> anyhow::Result<GateOutcome> {
        self.gate_step(run_id, policy, None, created_by).await
    }

    /// Evaluates the newest audit of checkpoint `step` (the newest checkpoint when `None`) against
    /// `policy` and records the decision.
    pub async fn gate_step(
        &self,
        run_id: &str,
        policy: &Policy,
        step: Option<i64>,
        created_by: Option<&str>,
    ) -> anyhow::Result<GateOutcome> {
        let (audit, report) = self.audit_of(run_id, step).await?;
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
                "checkpoint_step": audit.checkpoint_step,
                "passed": result.passed,
                "policy": policy.name,
                "policy_sha256": policy.sha256,
            }),
        )
        .await?;
        Ok(GateOutcome {
            decision: id,
            run: audit.run_id,
            checkpoint_step: audit.checkpoint_step,
            audit: audit.id,
            policy_origin: policy.origin.clone(),
            result,
        })
    }
}

/// A queued `gate --select` (the console's "select the best checkpoint"): the policy travels as its text,
/// so the worker weighs the checkpoints under exactly the policy the request named.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SelectRequest {
    pub run: String,
    pub policy_origin: String,
    pub policy_text: String,
    pub created_by: Option<String>,
}

impl SelectRequest {
    /// The request for `policy` as it is on disk (or built in); refused if the file changed since it
    /// was loaded.
    pub fn new(run: &str, policy: &Policy, created_by: Option<&str>) -> anyhow::Result<SelectRequest> {
        let text = if policy.origin == policy::DEFAULT_ORIGIN {
            policy::DEFAULT_POLICY.to_string()
        } else {
            std::fs::read_to_string(&policy.origin)
                .with_context(|| format!("cannot read policy {}", policy.origin))?
        };
        let again = Policy::parse(&text, &policy.origin, Path::new(&policy.origin).parent())?;
        if again.sha256 != policy.sha256 {
            anyhow::bail!(
                "policy {} changed on disk since it was loaded; restart with the policy you mean",
                policy.origin
            );
        }
        Ok(SelectRequest {
            run: run.to_string(),
            policy_origin: policy.origin.clone(),
            policy_text: text,
            created_by: created_by.map(str::to_string),
        })
    }

    pub fn policy(&self) -> anyhow::Result<Policy> {
        let dir = (self.policy_origin != policy::DEFAULT_ORIGIN)
            .then(|| Path::new(&self.policy_origin).parent())
            .flatten();
        Ok(Policy::parse(&self.policy_text, &self.policy_origin, dir)?)
    }
}

impl App {
    /// Queues `gate --select` for a worker.
    pub async fn enqueue_select(&self, req: &SelectRequest) -> anyhow::Result<String> {
        self.run_row(&req.run).await?;
        req.policy()?;
        let mut job = crate::store::NewJob::new("select", serde_json::to_value(req)?);
        job.created_by = req.created_by.clone();
        Ok(self.store.jobs().enqueue(&job).await?)
    }
}
