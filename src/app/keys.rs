//! Master key use cases: rotation (a new version, every wrapped key re-wrapped, no payload rewritten),
//! retirement of old versions, and the listing of versions with what each still wraps.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

use super::App;
use crate::store::DataKeyRow;
use crate::vault::keys::MASTER_KEY_ENV;
use crate::vault::{MasterKeyRing, Signer, WrappedKey};

#[derive(Debug, Serialize)]
pub struct RotateReport {
    pub master_key_id: String,
    pub previous_version: u32,
    pub new_version: u32,
    pub data_keys_rewrapped: usize,
    pub signing_key_rewrapped: bool,
}

#[derive(Debug, Serialize)]
pub struct KeyVersionInfo {
    pub version: u32,
    pub created_at: i64,
    pub current: bool,
    pub retired: bool,
    /// Data keys (and the signing key) still wrapped by this version.
    pub wraps: usize,
}

#[derive(Debug, Serialize)]
pub struct KeysReport {
    pub master_key_id: String,
    pub source: String,
    pub versions: Vec<KeyVersionInfo>,
}

fn refuse_env() -> anyhow::Result<()> {
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        anyhow::bail!(
            "the master key comes from ${MASTER_KEY_ENV}; rotate it where that secret is managed, with the key file"
        );
    }
    Ok(())
}

impl App {
    pub async fn keys_rotate(&mut self) -> anyhow::Result<RotateReport> {
        self.keys_rotate_as(&super::cli_actor()).await
    }

    /// Rotates the master key on behalf of `actor` (the console's admin, or the shell's user).
    pub async fn keys_rotate_as(&mut self, actor: &str) -> anyhow::Result<RotateReport> {
        refuse_env()?;
        let path = self.config.master_key_file.clone();
        // Work on a fresh load of the file, so two rotations cannot overwrite each other's version.
        let mut ring = MasterKeyRing::load(&path)?;
        let previous = ring.current;
        let new_version = ring.add_version(crate::store::now_ms())?;
        ring.replace_file(&path)
            .with_context(|| format!("cannot save the rotated key ring to {}", path.display()))?;
        let mut rewrapped = 0;
        for row in self.store.corpora().all_data_keys().await? {
            if row.master_version == new_version {
                continue;
            }
            let new = rewrap_row(&ring, &row)?;
            if self.store.corpora().rewrap(&row, &new).await? {
                rewrapped += 1;
            }
        }
        let before = Signer::wrapped_version(&self.config.signing_key_file)?;
        Signer::rewrap_file(&self.config.signing_key_file, &ring)?;
        self.keys = std::sync::Arc::new(ring);
        let report = RotateReport {
            master_key_id: self.keys.key_id.clone(),
            previous_version: previous,
            new_version,
            data_keys_rewrapped: rewrapped,
            signing_key_rewrapped: before != new_version,
        };
        self.record(
            actor,
            crate::ledger::action::KEYS_ROTATE,
            &report.master_key_id,
            serde_json::json!({
                "previous_version": previous,
                "new_version": new_version,
                "data_keys_rewrapped": rewrapped,
            }),
        )
        .await?;
        Ok(report)
    }

    /// Retires `version`, refusing while any key is still wrapped by it.
    pub async fn keys_retire(&mut self, version: u32) -> anyhow::Result<KeysReport> {
        refuse_env()?;
        if version == self.keys.current {
            anyhow::bail!(
                "master key {} version {version} is current; rotate first, then retire it",
                self.keys.key_id
            );
        }
        let usage = self.key_usage().await?;
        if let Some(n) = usage.get(&version).filter(|&&n| n > 0) {
            anyhow::bail!(
                "master key {} version {version} still wraps {n} key(s); run `lethe keys rotate` first",
                self.keys.key_id
            );
        }
        let path = self.config.master_key_file.clone();
        let mut ring = MasterKeyRing::load(&path)?;
        ring.retire(version)?;
        ring.replace_file(&path)?;
        self.keys = std::sync::Arc::new(ring);
        self.keys_list().await
    }

    async fn key_usage(&self) -> anyhow::Result<BTreeMap<u32, usize>> {
        let mut usage: BTreeMap<u32, usize> = BTreeMap::new();
        for row in self.store.corpora().all_data_keys().await? {
            *usage.entry(row.master_version).or_default() += 1;
        }
        *usage
            .entry(Signer::wrapped_version(&self.config.signing_key_file)?)
            .or_default() += 1;
        Ok(usage)
    }

    pub async fn keys_list(&self) -> anyhow::Result<KeysReport> {
        let usage = self.key_usage().await?;
        Ok(KeysReport {
            master_key_id: self.keys.key_id.clone(),
            source: if std::env::var_os(MASTER_KEY_ENV).is_some() {
                format!("${MASTER_KEY_ENV}")
            } else {
                self.config.master_key_file.display().to_string()
            },
            versions: self
                .keys
                .versions
                .iter()
                .map(|v| KeyVersionInfo {
                    version: v.version,
                    created_at: v.created_at,
                    current: v.version == self.keys.current,
                    retired: v.retired,
                    wraps: usage.get(&v.version).copied().unwrap_or(0),
                })
                .collect(),
        })
    }
}

fn rewrap_row(ring: &MasterKeyRing, row: &DataKeyRow) -> anyhow::Result<DataKeyRow> {
    let old = WrappedKey {
        master_key_id: row.master_key_id.clone(),
        master_version: row.master_version,
        blob: row.wrapped.clone(),
    };
    let new = ring
        .rewrap(&old, &row.purpose)
        .with_context(|| format!("cannot re-wrap data key {}", row.id))?;
    Ok(DataKeyRow {
        id: row.id.clone(),
        purpose: row.purpose.clone(),
        master_key_id: new.master_key_id,
        master_version: new.master_version,
        wrapped: new.blob,
    })
}
