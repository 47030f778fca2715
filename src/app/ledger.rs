//! The ledger's use cases beyond appending: verifying it against heads kept outside the database (the
//! data directory's anchor file, another file, a release bundle), proving to a witness that the head now
//! extends an older one, and the ledger part of a release bundle.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::App;
use crate::ledger::{self, AnchorReport, Checkpoint, Consistency, EntryProof, LedgerBreak, VerifyReport};

/// What `lethe ledger verify` proved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerCheck {
    #[serde(flatten)]
    pub report: VerifyReport,
    /// The heads outside the database the ledger was checked against, each with what it proved.
    pub anchored: Vec<AnchoredBy>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchoredBy {
    /// The file or bundle the heads came from.
    pub source: String,
    #[serde(flatten)]
    pub report: AnchorReport,
}

/// The ledger part of a release bundle's manifest (`extra.ledger`): a signed head taken at export, and
/// each approval's ledger entry with its inclusion proof under that head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleLedger {
    pub checkpoint: Checkpoint,
    pub approvals: Vec<EntryProof>,
}

impl BundleLedger {
    /// Checks offline: the head is signed by the trusted key and every approval entry is in its tree.
    pub fn verify(&self, trusted_public_key_hex: &str) -> anyhow::Result<()> {
        self.checkpoint
            .verify_signature(trusted_public_key_hex)
            .map_err(|e| anyhow::anyhow!("the bundle's ledger head is not valid: {e}"))?;
        for p in &self.approvals {
            p.verify(&self.checkpoint).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }

    /// The `extra.ledger` of a bundle's manifest, if it has one.
    pub fn of_manifest(extra: &serde_json::Value) -> anyhow::Result<Option<BundleLedger>> {
        match extra.get("ledger") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => Ok(Some(
                serde_json::from_value(v.clone()).context("the bundle's ledger section is malformed")?,
            )),
        }
    }
}

/// The signed heads in `path`: a release bundle (a directory with `manifest.json`), or a file of JSON
/// checkpoints (the anchor file, or one checkpoint).
pub fn heads_in(path: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    if path.is_dir() {
        let manifest = path.join(crate::release::bundle::MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest).with_context(|| {
            format!(
                "{} is a directory but not a release bundle (no readable {})",
                path.display(),
                manifest.display()
            )
        })?;
        let m: crate::release::bundle::Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a release manifest", manifest.display()))?;
        let l = BundleLedger::of_manifest(&m.extra)?.ok_or_else(|| {
            anyhow::anyhow!(
                "the bundle {} carries no ledger head (exported before bundles carried one)",
                path.display()
            )
        })?;
        return Ok(vec![l.checkpoint]);
    }
    Ok(ledger::read_anchor_file(path)?)
}

impl App {
    /// Verifies the ledger (chain, checkpoints, cadence, tree roots) and that it extends every head in
    /// the data directory's anchor file and in each of `against`. The first break fails.
    pub async fn ledger_check(
        &self,
        against: &[PathBuf],
    ) -> anyhow::Result<Result<LedgerCheck, LedgerBreak>> {
        let public = self.signing_public_key()?;
        let (entries, checkpoints) = self.store.ledger().snapshot().await?;
        let report = match ledger::verify_with(
            &entries,
            &checkpoints,
            &public,
            Some(ledger::DEFAULT_CHECKPOINT_EVERY),
        ) {
            Ok(r) => r,
            Err(b) => return Ok(Err(b)),
        };
        let mut sources: Vec<(String, Vec<Checkpoint>)> = Vec::new();
        let own = self.anchors();
        if own.path().exists() {
            sources.push((
                own.path().display().to_string(),
                ledger::read_anchor_file(own.path())?,
            ));
        }
        for p in against {
            sources.push((p.display().to_string(), heads_in(p)?));
        }
        let mut anchored = Vec::new();
        for (source, heads) in sources {
            match ledger::check_extends(&entries, &heads, &public) {
                Ok(r) => anchored.push(AnchoredBy { source, report: r }),
                Err(mut b) => {
                    b.detail = format!("against {source}: {}", b.detail);
                    return Ok(Err(b));
                }
            }
        }
        Ok(Ok(LedgerCheck { report, anchored }))
    }

    /// A signed head now and the consistency proof from the newest head in `from` (an anchor file or a
    /// bundle) to it: what a witness holding the old head checks with `lethe ledger witness`.
    pub async fn ledger_prove(&self, from: &Path) -> anyhow::Result<Consistency> {
        let old = heads_in(from)?
            .into_iter()
            .max_by_key(|c| c.seq)
            .ok_or_else(|| anyhow::anyhow!("{} holds no head", from.display()))?;
        let signer = crate::vault::signing::Signer::load(&self.config.signing_key_file, &self.keys())?;
        let (new, entries) = ledger::anchor_head(&self.store, &signer, Some(&self.anchors())).await?;
        if let Err(b) = ledger::check_extends(&entries, std::slice::from_ref(&old), &signer.public_key_hex())
        {
            anyhow::bail!("the ledger does not extend the head in {}: {b}", from.display());
        }
        Consistency::prove(&entries, &old, &new).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The ledger part of a release's bundle: a signed head now, and the approvals of `release_id`
    /// with their inclusion proofs.
    pub async fn bundle_ledger(&self, release_id: &str) -> anyhow::Result<BundleLedger> {
        let signer = crate::vault::signing::Signer::load(&self.config.signing_key_file, &self.keys())?;
        let (checkpoint, entries) = ledger::anchor_head(&self.store, &signer, Some(&self.anchors()))
            .await
            .context("the ledger must be intact to export a release")?;
        let approvals = entries
            .iter()
            .filter(|e| {
                e.action == ledger::action::RELEASE_APPROVE
                    && e.details.get("release").and_then(|v| v.as_str()) == Some(release_id)
            })
            .map(|e| {
                EntryProof::of(&entries, e.seq)
                    .ok_or_else(|| anyhow::anyhow!("no inclusion proof for ledger entry {}", e.seq))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(BundleLedger {
            checkpoint,
            approvals,
        })
    }
}
