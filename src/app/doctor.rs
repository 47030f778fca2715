//! `lethe doctor`: what this host and data directory look like to Lethe (libtorch, devices, database,
//! keys), each check with its outcome, so an operator sees every problem at once.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Serialize;

use super::config::Config;
use super::Globals;
use crate::model::runtime::TorchRuntime;
use crate::store::{Engine, Store};
use crate::vault::{MasterKeyRing, Signer};

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub lethe_version: &'static str,
    pub torch: TorchRuntime,
    pub data_dir: PathBuf,
    pub database: DatabaseCheck,
    pub master_key: KeyCheck,
    pub signing_key: KeyCheck,
    /// Every failed check, one line each; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DatabaseCheck {
    pub engine: Option<Engine>,
    pub url: String,
    pub answers: bool,
    pub server_version: Option<String>,
    /// How the connection is carried: "local file" (SQLite), "TLS (…)" or "in clear" (PostgreSQL).
    pub transport: Option<String>,
    pub migrations_applied: Option<usize>,
    pub migrations_known: Option<usize>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KeyCheck {
    pub path: PathBuf,
    pub present: bool,
    /// The file's permission bits, as octal text (`0600`).
    pub mode: Option<String>,
    pub owner_only: bool,
    pub key_id: Option<String>,
    pub usable: bool,
    pub error: Option<String>,
}

impl KeyCheck {
    fn of(path: PathBuf) -> KeyCheck {
        let meta = std::fs::metadata(&path).ok();
        let mode = meta.as_ref().map(|m| m.mode() & 0o7777);
        KeyCheck {
            present: meta.is_some(),
            mode: mode.map(|m| format!("{m:04o}")),
            owner_only: mode.is_some_and(|m| m & 0o077 == 0),
            key_id: None,
            usable: false,
            error: None,
            path,
        }
    }
}

/// Runs every check. Fails outright only when there is no data directory to examine.
pub async fn run(globals: &Globals) -> anyhow::Result<DoctorReport> {
    super::require_initialised(&globals.data_dir)?;
    let config = Config::resolve(&globals.data_dir, globals.database_url.as_deref())?;
    let mut problems = Vec::new();

    let torch = TorchRuntime::probe();
    if !torch.cuda_linked {
        problems.push("the CUDA part of libtorch is not loaded: this binary cannot use a GPU".to_string());
    }

    let database = check_database(&config.database_url).await;
    if let Some(e) = &database.error {
        problems.push(e.clone());
    }

    let mut master_key = KeyCheck::of(config.master_key_file.clone());
    let ring = match MasterKeyRing::load(&config.master_key_file) {
        Ok(ring) => {
            master_key.key_id = Some(ring.label());
            master_key.usable = true;
            Some(ring)
        }
        Err(e) => {
            let msg = e.to_string();
            problems.push(msg.clone());
            master_key.error = Some(msg);
            None
        }
    };
    let mut signing_key = KeyCheck::of(config.signing_key_file.clone());
    if let Some(ring) = &ring {
        match Signer::load(&config.signing_key_file, ring) {
            Ok(signer) => {
                signing_key.key_id = Some(format!("ed25519:{}", signer.public_key_hex()));
                signing_key.usable = true;
            }
            Err(e) => {
                let msg = e.to_string();
                problems.push(msg.clone());
                signing_key.error = Some(msg);
            }
        }
    }

    Ok(DoctorReport {
        lethe_version: env!("CARGO_PKG_VERSION"),
        torch,
        data_dir: globals.data_dir.clone(),
        database,
        master_key,
        signing_key,
        problems,
    })
}

/// Whether a PostgreSQL URL's server is this host (loopback or a Unix socket), where a connection in clear
/// crosses no network. The URL is read by the driver's own parser (`host`/`hostaddr` parameters and
/// sockets included); one it cannot read is not judged.
fn db_host_is_local(url: &str) -> bool {
    let Ok(opts) = url.parse::<sqlx::postgres::PgConnectOptions>() else {
        return true;
    };
    if opts.get_socket().is_some() {
        return true;
    }
    let host = opts.get_host().trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.starts_with('/'),
    }
}

async fn check_database(url: &str) -> DatabaseCheck {
    let mut check = DatabaseCheck {
        engine: Engine::of_url(url).ok(),
        url: crate::store::redact_url(url),
        answers: false,
        server_version: None,
        transport: None,
        migrations_applied: None,
        migrations_known: None,
        error: None,
    };
    // Doctor only looks: it connects without migrating, so it never changes a database it diagnoses.
    let store = match Store::connect(url).await {
        Ok(s) => s,
        Err(e) => {
            check.error = Some(e.to_string());
            return check;
        }
    };
    match store.ping().await {
        Ok(v) => {
            check.answers = true;
            check.server_version = Some(v);
        }
        Err(e) => check.error = Some(e.to_string()),
    }
    if check.answers {
        match store.transport().await {
            Ok(t) => check.transport = Some(t),
            Err(e) => check.error = Some(e.to_string()),
        }
    }
    if let Ok((known, applied)) = store.migration_status().await {
        check.migrations_known = Some(known);
        check.migrations_applied = Some(applied);
        if check.error.is_none() && applied < known {
            check.error = Some(format!(
                "database {} has {applied} of {known} migrations applied (any other command applies them)",
                check.url
            ));
        }
    }
    store.close().await;
    check
}

impl DoctorReport {
    /// The report as the lines a person reads.
    pub fn to_text(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let t = &self.torch;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<18} {v}\n"));
        line("lethe", self.lethe_version.to_string());
        line(
            "libtorch",
            format!(
                "{} ({})",
                t.libtorch_version,
                t.libtorch_path.as_deref().unwrap_or("path unknown")
            ),
        );
        line(
            "cuda",
            format!(
                "available: {}, devices: {}, cudnn: {}, libtorch_cuda linked: {}",
                yes(t.cuda_available),
                t.cuda_devices,
                yes(t.cudnn_available),
                yes(t.cuda_linked)
            ),
        );
        line("device", t.device.clone());
        line("cpu threads", t.cpu_threads.to_string());
        line("data directory", self.data_dir.display().to_string());
        let db = &self.database;
        line(
            "database",
            match (&db.server_version, &db.error) {
                (Some(v), None) => format!(
                    "{} answers ({v}); migrations {}/{}",
                    db.url,
                    db.migrations_applied.unwrap_or(0),
                    db.migrations_known.unwrap_or(0)
                ),
                (_, Some(e)) => format!("{} FAILS: {e}", db.url),
                (None, None) => format!("{} did not answer", db.url),
            },
        );
        if let Some(t) = &db.transport {
            let advice = if t == "in clear" && !db_host_is_local(&db.url) {
                " (across a network: add sslmode=verify-full&sslrootcert=CA.pem to the URL)"
            } else {
                ""
            };
            line("db connection", format!("{t}{advice}"));
        }
        for (name, k) in [
            ("master key", &self.master_key),
            ("signing key", &self.signing_key),
        ] {
            line(
                name,
                match &k.error {
                    None if k.usable => format!(
                        "{} {} (mode {}, owner only: {})",
                        k.key_id.as_deref().unwrap_or(""),
                        k.path.display(),
                        k.mode.as_deref().unwrap_or("?"),
                        yes(k.owner_only)
                    ),
                    None => format!("{} not checked", k.path.display()),
                    Some(e) => format!("FAILS: {e}"),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_host_is_local_on_loopback_or_a_socket_only() {
        for url in [
            "postgres://lethe:***@127.0.0.1:5432/lethe",
            "postgres://localhost/lethe",
            "postgres://[::1]:5432/lethe",
            "postgres:///lethe?host=/run/postgresql",
            "postgres://u@127.0.1.1/x?sslmode=disable",
        ] {
            assert!(db_host_is_local(url), "{url}");
        }
        for url in [
            "postgres://lethe:***@db.internal:5432/lethe",
            "postgres://10.0.0.5/lethe",
            "postgres://[fd00::5]:5432/lethe",
            "postgres://u@pg/x?application_name=localhost",
        ] {
            assert!(!db_host_is_local(url), "{url}");
        }
    }
}
