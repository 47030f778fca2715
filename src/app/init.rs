//! `lethe init`: a new data directory with its config, master key ring, signing key, migrated database
//! and first admin. All or nothing: on any failure, everything this run created is removed again, and
//! an existing installation is never touched.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::config::{self, Config};
use super::Globals;
use crate::store::{now_ms, Engine, Role, Store};
use crate::vault::{MasterKeyRing, Signer};

pub struct InitOptions {
    pub admin_username: String,
}

#[derive(Debug, Serialize)]
pub struct InitReport {
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    pub database_engine: Engine,
    pub database: String,
    pub master_key_id: String,
    pub master_key_file: PathBuf,
    pub signing_public_key: String,
    pub admin_username: String,
    /// Shown once; the account must change it at first sign-in.
    pub one_time_password: String,
}

/// Files and directories this run created, removed again if it fails.
#[derive(Default)]
struct Undo {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Undo {
    fn roll_back(&self) {
        for f in self.files.iter().rev() {
            let _ = fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

pub async fn run(globals: &Globals, opts: &InitOptions) -> anyhow::Result<InitReport> {
    let dir = &globals.data_dir;
    refuse_existing(dir)?;
    if opts.admin_username.trim().is_empty() || opts.admin_username.chars().any(char::is_whitespace) {
        anyhow::bail!(
            "admin user name {:?} must be non-empty and contain no spaces",
            opts.admin_username
        );
    }
    if let Some(url) = &globals.database_url {
        Engine::of_url(url)?;
    }
    let mut undo = Undo::default();
    let result = create(globals, opts, &mut undo).await;
    if result.is_err() {
        undo.roll_back();
    }
    result
}

fn refuse_existing(dir: &Path) -> anyhow::Result<()> {
    if dir.join(config::CONFIG_FILE).exists() || dir.join("keys/master.key").exists() {
        anyhow::bail!(
            "data directory {} is already initialised; nothing was changed",
            dir.display()
        );
    }
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty and is not a Lethe data directory; refusing to initialise it",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            anyhow::bail!("{} exists and is not a directory", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Creates `path` (and missing parents) with mode 0700, recording the top-most directory it created.
fn make_private_dir(path: &Path, undo: &mut Undo) -> anyhow::Result<()> {
    let mut top_missing = None;
    let mut p = Some(path);
    while let Some(cur) = p {
        if cur.as_os_str().is_empty() || cur.exists() {
            break;
        }
        top_missing = Some(cur.to_path_buf());
        p = cur.parent();
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create directory {}", path.display()))?;
    if let Some(top) = top_missing {
        undo.dirs.push(top);
    }
    Ok(())
}

async fn create(globals: &Globals, opts: &InitOptions, undo: &mut Undo) -> anyhow::Result<InitReport> {
    let dir = &globals.data_dir;
    make_private_dir(dir, undo)?;
    // Resolve with no file present yet: the defaults, plus the URL given on the command line.
    let cfg = Config::resolve(dir, globals.database_url.as_deref())?;

    let engine = Engine::of_url(&cfg.database_url)?;
    let store = Store::open(&cfg.database_url).await.with_context(|| {
        format!(
            "cannot prepare the database {}",
            crate::store::redact_url(&cfg.database_url)
        )
    })?;
    if engine == Engine::Sqlite {
        undo.files.push(dir.join(config::SQLITE_FILE));
        undo.files.push(dir.join(format!("{}-wal", config::SQLITE_FILE)));
        undo.files.push(dir.join(format!("{}-shm", config::SQLITE_FILE)));
    }
    let existing = store.users().count().await?;
    if existing > 0 {
        store.close().await;
        anyhow::bail!(
            "database {} already has {existing} user(s): it belongs to another Lethe installation",
            store.display_url()
        );
    }

    if let Some(parent) = cfg.master_key_file.parent() {
        make_private_dir(parent, undo)?;
    }
    let ring = MasterKeyRing::generate(now_ms())?;
    ring.create_file(&cfg.master_key_file)?;
    undo.files.push(cfg.master_key_file.clone());
    let signing_public_key = Signer::create(&cfg.signing_key_file, &ring)?;
    undo.files.push(cfg.signing_key_file.clone());
    let public_file = cfg.signing_key_file.with_extension("pub");
    fs::write(&public_file, format!("{signing_public_key}\n"))
        .with_context(|| format!("cannot write {}", public_file.display()))?;
    undo.files.push(public_file);

    let (one_time_password, hash) = super::one_time_password().await?;
    store
        .users()
        .create(&opts.admin_username, Role::Admin, &hash, true)
        .await?;
    store.close().await;

    // Written last: its presence is what marks the directory as initialised.
    write_new_file(
        &cfg.config_file,
        &config::initial_config_text(globals.database_url.as_deref()),
    )?;
    undo.files.push(cfg.config_file.clone());

    Ok(InitReport {
        data_dir: dir.clone(),
        config_file: cfg.config_file,
        database_engine: engine,
        database: crate::store::redact_url(&cfg.database_url),
        master_key_id: ring.key_id.clone(),
        master_key_file: cfg.master_key_file,
        signing_public_key,
        admin_username: opts.admin_username.clone(),
        one_time_password,
    })
}

/// The config may carry a database password, so it is created 0600 like the keys.
fn write_new_file(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::vault::keys::write_secret_file(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
