//! The store owns the database: one sqlx pool on SQLite (the embedded default, a file in the data
//! directory) or PostgreSQL (given a `postgres://` URL), the migrations under `migrations/`, and one
//! repository per table family. One schema serves both engines; the few statements that must differ
//! (the job claim) branch on [`Engine`].

pub mod audits;
pub mod corpora;
pub mod gates;
pub mod grants;
pub mod jobs;
pub mod ledger;
pub mod releases;
pub mod runs;
pub mod sessions;
pub mod studies;
pub mod throttle;
pub mod users;
pub mod workers;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};

pub use audits::{AuditRow, Audits};
pub use corpora::{Corpora, CorpusRow, DataKeyRow};
pub use gates::{GateDecision, Gates};
pub use grants::{ApproverKeyRow, GrantRow, Grants, NewApproverKey};
pub use jobs::Capacity;
pub use jobs::{Job, JobState, Jobs, NewJob};
pub use releases::{ReleaseRow, Releases, ReviewOutcome, ReviewProof, ReviewRow};
pub use runs::{CheckpointRow, MetricRow, RunRow, Runs};
pub use sessions::{SessionRow, Sessions};
pub use studies::{Studies, StudyRow};
pub use users::{Role, User, Users};
pub use workers::{WorkerRow, Workers};

/// The migrations, embedded at build time so the binary carries its schema.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a SQLite connection waits for another writer before giving up. Generous, because many
/// workers may claim jobs at once and a claim holds the write lock for microseconds.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;
/// How long to wait for a database server before reporting it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database URL {url}: {problem}")]
    TlsFile { url: String, problem: String },
    #[error(
        "cannot open database {url}: the file system holding {dir} has no space left (free some and run \
         the command again; nothing was changed)"
    )]
    DiskFull { url: String, dir: String },
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while {context}: {source}")]
    Query {
        context: &'static str,
        source: sqlx::Error,
    },
    #[error("a corpus named {0:?} already exists")]
    CorpusExists(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("this public key is enrolled already (key {0}); each key belongs to one approver, once")]
    KeyExists(String),
    #[error("job {id} is no longer held by worker {worker} (its lease lapsed and it was handed back)")]
    LeaseLost { id: String, worker: String },
    #[error("no job {0}")]
    JobNotFound(String),
    #[error("row in table {table} is invalid: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl StoreError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { context, source }
    }
}

/// The directory of a SQLite URL's database file when its file system has (almost) no space left.
fn full_sqlite_dir(url: &str) -> Option<String> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    let dir = Path::new(path).parent()?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    (free < 64 * 1024).then(|| dir.display().to_string())
}

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a URL names, or an error for anything else.
    pub fn of_url(url: &str) -> Result<Engine, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// The URL of the embedded SQLite database for a data directory.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// A URL with its password replaced by `***`, safe to print and log.
pub fn redact_url(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return format!("sqlite://{}", path.trim_end_matches("?mode=rwc"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Checks the files a PostgreSQL URL names for TLS (`sslrootcert`, `sslcert`, `sslkey`) before the driver
/// sees them: its own errors do not say which file is missing, and it silently ignores a root
/// certificate file that holds no certificate (verifying against the system's roots alone).
fn check_tls_files(url: &str) -> Result<(), StoreError> {
    // A URL that does not parse is the driver's to report.
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let problem = |problem: String| StoreError::TlsFile {
        url: redact_url(url),
        problem,
    };
    // The query decoded and the parameter names (aliases included) read as the driver reads them.
    for (key, path) in parsed.query_pairs() {
        let (wanted, what) = match &*key {
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" | "sslcert" | "ssl-cert" => {
                ("-----BEGIN CERTIFICATE-----", "certificate")
            }
            "sslkey" | "ssl-key" => ("PRIVATE KEY-----", "private key"),
            _ => continue,
        };
        let bytes =
            std::fs::read(&*path).map_err(|e| problem(format!("{key} {path}: cannot be read: {e}")))?;
        if !String::from_utf8_lossy(&bytes).contains(wanted) {
            return Err(problem(format!("{key} {path} holds no PEM {what}")));
        }
    }
    Ok(())
}

/// A handle on the database: cheap to clone (the pool is reference counted).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    url: String,
}

impl Store {
    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let engine = Engine::of_url(url)?;
        if engine == Engine::Postgres {
            check_tls_files(url)?;
        }
        // One direct connection first: a pool that cannot connect reports only "timed out", while the
        // driver's own error says why (refused, unknown host, bad password, unknown database).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(url))
            .await
            .map_err(|_| StoreError::Connect {
                url: redact_url(url),
                source: sqlx::Error::PoolTimedOut,
            })?
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        let _ = probe.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(match engine {
                Engine::Sqlite => 8,
                Engine::Postgres => 16,
            })
            // Fail fast on an unreachable server: a CLI should not hang for half a minute.
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers (the console) proceed while a worker writes.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str())
                            .await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| match full_sqlite_dir(url) {
                // SQLite needs room for its write-ahead log even to read; its own error is "disk I/O
                // error", which the pool reports as a time-out.
                Some(dir) => StoreError::DiskFull {
                    url: redact_url(url),
                    dir,
                },
                None => StoreError::Connect {
                    url: redact_url(url),
                    source,
                },
            })?;
        Ok(Store {
            pool,
            engine,
            url: url.to_string(),
        })
    }

    /// Connects and applies every migration that has not run yet.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The number of migrations this binary carries and how many the database has applied.
    pub async fn migration_status(&self) -> Result<(usize, usize), StoreError> {
        let known = MIGRATOR.iter().count();
        let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(&self.pool)
            .await
            .and_then(|row: AnyRow| row.try_get("n"))
            .unwrap_or(0);
        Ok((known, usize::try_from(applied).unwrap_or(0)))
    }

    /// Round-trips a trivial query; the server's version string on success.
    pub async fn ping(&self) -> Result<String, StoreError> {
        let sql = match self.engine {
            Engine::Sqlite => "SELECT 'SQLite ' || sqlite_version() AS v",
            Engine::Postgres => "SELECT version() AS v",
        };
        let row = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("checking the connection"))?;
        row.try_get::<String, _>("v")
            .map_err(StoreError::query("reading the server version"))
    }

    /// How this store's connections reach the database: `"local file"` for SQLite; for PostgreSQL
    /// `"TLS (<version>, <cipher>)"` or `"in clear"`, as the server sees the connection that answers
    /// (`pg_stat_ssl`). The URL chooses, as with libpq: `sslmode=disable|prefer|require|verify-ca|
    /// verify-full`, the default `prefer` taking TLS when the server offers it, and `sslrootcert=FILE`
    /// naming the CA that must have signed the server's certificate (else the system's roots).
    pub async fn transport(&self) -> Result<String, StoreError> {
        if self.engine == Engine::Sqlite {
            return Ok("local file".into());
        }
        let row = sqlx::query(
            "SELECT CASE WHEN ssl THEN 'TLS (' || COALESCE(version, '?') || ', ' || COALESCE(cipher, '?') || ')' \
             ELSE 'in clear' END AS t FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("asking how the connection is carried"))?;
        match row {
            Some(row) => row
                .try_get::<String, _>("t")
                .map_err(StoreError::query("reading how the connection is carried")),
            None => Ok("unknown (the server does not list this connection in pg_stat_ssl)".into()),
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URL with any password hidden.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn users(&self) -> Users<'_> {
        Users::new(self)
    }

    pub fn corpora(&self) -> Corpora<'_> {
        Corpora::new(self)
    }

    pub fn runs(&self) -> Runs<'_> {
        Runs::new(self)
    }

    pub fn jobs(&self) -> Jobs<'_> {
        Jobs::new(self)
    }

    pub fn audits(&self) -> Audits<'_> {
        Audits::new(self)
    }

    pub fn gates(&self) -> Gates<'_> {
        Gates::new(self)
    }

    pub fn throttle(&self) -> throttle::Throttle<'_> {
        throttle::Throttle::new(self)
    }

    pub fn grants(&self) -> Grants<'_> {
        Grants::new(self)
    }

    pub fn releases(&self) -> Releases<'_> {
        Releases::new(self)
    }

    pub fn studies(&self) -> Studies<'_> {
        Studies::new(self)
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions::new(self)
    }

    pub fn workers(&self) -> Workers<'_> {
        Workers::new(self)
    }

    pub fn ledger(&self) -> ledger::Ledger<'_> {
        ledger::Ledger::new(self)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch: the time format of every column.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A new id: `prefix` followed by 32 hex digits. Ids are unique, not secret (they appear in URLs and
/// logs), so they need no CSPRNG: the clock, the process id, a counter and std's per-process random hash
/// keys make collisions between processes and hosts practically impossible while keeping this module free
/// of any dependency on the vault.
pub(crate) fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u32(std::process::id());
    h.write_i64(now_ms());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    h.write_u32(nanos);
    let hi = h.finish();
    h.write_u64(hi);
    format!("{prefix}-{hi:016x}{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///a/b.db"), "sqlite:///a/b.db");
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id("x")).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn tls_files_in_a_postgres_url_must_exist_and_hold_pem() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca cert.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let base = "postgres://u:pw@db.internal/lethe?sslmode=verify-full";
        let encoded = cert.display().to_string().replace(' ', "%20");
        assert!(check_tls_files(&format!("{base}&sslrootcert={encoded}")).is_ok());
        let plus = cert.display().to_string().replace(' ', "+");
        assert!(check_tls_files(&format!("{base}&sslrootcert={plus}&sslkey={}", key.display())).is_ok());
        assert!(check_tls_files("postgres://u@h/db").is_ok());

        let err = check_tls_files(&format!("{base}&sslrootcert=/no/such/ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslrootcert /no/such/ca.pem: cannot be read"),
            "{err}"
        );
        assert!(
            err.contains("u:***@db.internal"),
            "the password stays hidden: {err}"
        );
        let err = check_tls_files(&format!("{base}&sslrootcert={}", garbage.display()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = check_tls_files(&format!("{base}&sslkey={}", cert.display()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM private key"), "{err}");
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(matches!(
            Engine::of_url("mysql://x"),
            Err(StoreError::UnsupportedUrl(_))
        ));
        assert_eq!(Engine::of_url("postgresql://x").unwrap(), Engine::Postgres);
        assert_eq!(Engine::of_url("sqlite://x").unwrap(), Engine::Sqlite);
    }
}
