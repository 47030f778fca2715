//! The appliance as one value, and the use cases both faces (CLI and server) call. Rules live below
//! this module; here they are put together: which config, which database, which keys.

pub mod accounts;
pub mod audit;
pub mod audit_shards;
pub mod config;
pub mod corpus;
pub mod doctor;
pub mod eval;
pub mod gate;
pub mod grants;
pub mod init;
pub mod keys;
pub mod ledger;
pub mod release;
pub mod study;
pub mod train;
pub mod worker;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use config::Config;

use crate::store::Store;
use crate::vault::MasterKeyRing;

/// What a request named does not exist (a run, a corpus, an audit, a user): the server answers 404.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// Options every command takes (`--data-dir`, `--database-url`).
#[derive(Debug, Clone)]
pub struct Globals {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
}

/// An opened appliance: configuration, database and master key ring.
pub struct App {
    pub config: Config,
    pub store: Store,
    /// The master key ring, re-read when its file changes (see [`keys::LiveKeyRing`]); shared with
    /// blocking tasks (ingest, training) that wrap and unwrap keys.
    key_ring: std::sync::Arc<keys::LiveKeyRing>,
}

impl App {
    /// Opens an initialised data directory: reads the config, loads the master key, connects to the
    /// database and applies pending migrations.
    pub async fn open(globals: &Globals) -> anyhow::Result<App> {
        require_initialised(&globals.data_dir)?;
        let config = Config::resolve(&globals.data_dir, globals.database_url.as_deref())?;
        let key_ring = keys::LiveKeyRing::load(&config.master_key_file)?;
        let store = Store::open(&config.database_url).await?;
        Ok(App {
            config,
            store,
            key_ring: std::sync::Arc::new(key_ring),
        })
    }

    /// The master key ring as it is now: a process that runs for long (a worker, the console) sees a
    /// rotation or retirement made by another process without a restart.
    pub fn keys(&self) -> std::sync::Arc<MasterKeyRing> {
        self.key_ring.get()
    }
}

impl App {
    /// Appends a security-relevant event to the ledger, signing a checkpoint of the head when one is due.
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) -> anyhow::Result<()> {
        let signer = crate::vault::signing::Signer::load(&self.config.signing_key_file, &self.keys())
            .context("cannot unlock the signing key to append to the ledger")?;
        crate::ledger::append_anchored(
            &self.store,
            &signer,
            Some(&self.anchors()),
            actor,
            action,
            subject,
            details,
        )
        .await
        .with_context(|| format!("cannot record {action} of {subject} in the ledger"))?;
        Ok(())
    }
}

impl App {
    /// The signing key's public half (hex): what `lethe release verify` and a ledger check need.
    pub fn signing_public_key(&self) -> anyhow::Result<String> {
        let signer = crate::vault::signing::Signer::load(&self.config.signing_key_file, &self.keys())
            .context("cannot unlock the signing key")?;
        Ok(signer.public_key_hex())
    }

    /// Where the ledger's signed heads are kept outside the database.
    pub fn anchors(&self) -> crate::ledger::AnchorLog {
        crate::ledger::AnchorLog::in_data_dir(&self.config.data_dir, self.config.ledger_syslog)
    }

    /// Walks the ledger's chain and signed checkpoints, and checks it against the heads anchored in the
    /// data directory: the report, or the first break. What the console and the API show, and what
    /// `lethe ledger verify` prints without `--against`.
    pub async fn ledger_verify(
        &self,
    ) -> anyhow::Result<Result<ledger::LedgerCheck, crate::ledger::LedgerBreak>> {
        self.ledger_check(&[]).await
    }
}

/// Who acts when a command is run from the shell without `--user`: `cli:<login name>`.
pub fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

/// A new one-time password and its hash, hashed off the async threads (the hash is slow on purpose).
pub(crate) async fn one_time_password() -> anyhow::Result<(String, String)> {
    let password = crate::vault::password::generate_one_time()?;
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || crate::vault::password::hash(&pw))
        .await
        .context("hashing the password was interrupted")??;
    Ok((password, hash))
}

/// A named point where the fault campaigns (`tests/faults.rs`) kill the process as `kill -9` would:
/// when `LETHE_FAULT_POINT` names this point, the process sends itself SIGKILL here, so a test can stop
/// it at the worst moment of an ingest, an export, an approval or a key rotation and check that nothing
/// is left half done and that a retry works. Unset (always, outside those tests), it does nothing.
pub fn fault_point(name: &str) {
    if std::env::var("LETHE_FAULT_POINT").is_ok_and(|p| p == name) {
        // SAFETY: kill(2) on our own pid with a signal that cannot be caught; nothing runs after it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// The host's operator as an actor, `host:<login>`: who confirms a grant while a single admin is left,
/// and who recovers an admin.
pub fn host_actor() -> String {
    format!("host:{}", cli_actor().trim_start_matches("cli:"))
}

/// Fails with a one-line explanation unless `data_dir` holds a Lethe installation.
pub fn require_initialised(data_dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(data_dir).with_context(|| {
        format!(
            "data directory {} does not exist or cannot be read (create it with `lethe init --data-dir {}`)",
            data_dir.display(),
            data_dir.display()
        )
    })?;
    if !meta.is_dir() {
        anyhow::bail!("data directory {} is not a directory", data_dir.display());
    }
    if !data_dir.join(config::CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} is not an initialised Lethe data directory (no {}); run `lethe init --data-dir {}`",
            data_dir.display(),
            config::CONFIG_FILE,
            data_dir.display()
        );
    }
    Ok(())
}
