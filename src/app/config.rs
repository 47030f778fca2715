//! The data directory's layout and its configuration file, `lethe.toml`, in two steps: the serde form
//! (every field optional, with the reason for its default) and the resolved [`Config`] with no options.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Name of the configuration file inside the data directory; its presence marks an initialised directory.
pub const CONFIG_FILE: &str = "lethe.toml";
/// The embedded SQLite database, relative to the data directory.
pub const SQLITE_FILE: &str = "lethe.db";

/// `lethe.toml` as written on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub keys: KeysSection,
    #[serde(default)]
    pub ledger: LedgerSection,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// Also send every signed ledger head to the host's syslog (journald), for a remote collector. The
    /// heads always go to `ledger/anchors.jsonl` in the data directory.
    #[serde(default)]
    pub syslog: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `postgres://…` for a shared server. Absent: the embedded SQLite file `lethe.db`, which needs no
    /// set-up and suits a single host.
    pub url: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Absent: `keys/master.key`. A deployment may point it at a mounted secret instead.
    pub master_key: Option<PathBuf>,
    /// Absent: `keys/signing.key` (stored wrapped by the master key).
    pub signing_key: Option<PathBuf>,
}

/// The resolved configuration: every path absolute or relative to the working directory, nothing unset.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    pub database_url: String,
    pub master_key_file: PathBuf,
    pub signing_key_file: PathBuf,
    /// Send signed ledger heads to syslog too (`[ledger] syslog`).
    pub ledger_syslog: bool,
}

impl Config {
    /// Resolves the configuration of `data_dir`. `database_url` (from `--database-url` or
    /// `LETHE_DATABASE_URL`) wins over the file. A missing config file means defaults.
    pub fn resolve(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<Config> {
        let config_file = data_dir.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&config_file) {
            Ok(text) => toml::from_str::<ConfigFile>(&text)
                .with_context(|| format!("configuration file {} is invalid", config_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read configuration file {}", config_file.display()))
            }
        };
        let in_dir = |p: Option<PathBuf>, default: &str| {
            let p = p.unwrap_or_else(|| PathBuf::from(default));
            if p.is_absolute() {
                p
            } else {
                data_dir.join(p)
            }
        };
        let database_url = database_url
            .map(str::to_string)
            .or(file.database.url)
            .unwrap_or_else(|| crate::store::sqlite_url(&data_dir.join(SQLITE_FILE)));
        Ok(Config {
            data_dir: data_dir.to_path_buf(),
            config_file,
            database_url,
            master_key_file: in_dir(file.keys.master_key, "keys/master.key"),
            signing_key_file: in_dir(file.keys.signing_key, "keys/signing.key"),
            ledger_syslog: file.ledger.syslog,
        })
    }
}

/// A path the database names that would reach outside the data directory (an absolute path, `..`, or
/// a link out): refused, so that an edited row cannot make Lethe read, write or delete elsewhere.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the database names {path:?}, which is not inside the data directory {data_dir}; refusing to use it \
     (was the row edited? `lethe ledger verify`)"
)]
pub struct OutsideDataDir {
    pub path: String,
    pub data_dir: String,
}

impl Config {
    /// `rel`, a path relative to the data directory as the database stores it (`corpora/<id>`,
    /// `runs/<id>`), resolved inside the data directory: only plain components (no root, no `..`,
    /// no `.`), and the part of it that exists must resolve (links followed) inside the data directory.
    pub fn inside(&self, rel: &str) -> Result<PathBuf, OutsideDataDir> {
        let refuse = || OutsideDataDir {
            path: rel.to_string(),
            data_dir: self.data_dir.display().to_string(),
        };
        let p = Path::new(rel);
        if rel.is_empty()
            || !p
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(refuse());
        }
        let joined = self.data_dir.join(p);
        let Ok(root) = self.data_dir.canonicalize() else {
            return Ok(joined); // nothing exists yet, so nothing can link out
        };
        // The longest part that exists, with its links resolved, must stay inside.
        let mut probe = joined.as_path();
        loop {
            match probe.canonicalize() {
                Ok(real) if real.starts_with(&root) => return Ok(joined),
                Ok(_) => return Err(refuse()),
                Err(_) => match probe.parent() {
                    Some(parent) => probe = parent,
                    None => return Err(refuse()),
                },
            }
        }
    }
}

/// A file name the database stores (a checkpoint's file): one plain component, nothing else.
pub fn plain_file_name(name: &str) -> Result<&str, OutsideDataDir> {
    let mut c = Path::new(name).components();
    match (c.next(), c.next()) {
        (Some(std::path::Component::Normal(_)), None) if !name.contains('/') => Ok(name),
        _ => Err(OutsideDataDir {
            path: name.to_string(),
            data_dir: "(a file name, not a path)".into(),
        }),
    }
}

/// The text `lethe init` writes: the defaults spelled out as comments, so an admin sees what can be set.
pub fn initial_config_text(database_url: Option<&str>) -> String {
    let database = match database_url {
        Some(url) => format!("url = {}\n", toml::Value::String(url.to_string())),
        None => {
            "# url = \"postgres://lethe@db.internal/lethe\"   # default: the embedded SQLite file lethe.db\n"
                .to_string()
        }
    };
    format!(
        "# Lethe appliance configuration, written by `lethe init`.\n\
         # Relative paths are relative to this directory.\n\
         \n\
         [database]\n\
         {database}\
         \n\
         [keys]\n\
         # master_key = \"keys/master.key\"    # or set LETHE_MASTER_KEY to the key ring document\n\
         # signing_key = \"keys/signing.key\"  # wrapped by the master key\n\
         \n\
         [ledger]\n\
         # syslog = false   # also send each signed ledger head to syslog / journald (always: ledger/anchors.jsonl)\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The security review's medium finding 5: a database edit made `corpus rm` delete any directory.
    /// Paths from the database resolve inside the data directory or are refused.
    #[test]
    fn paths_from_the_database_stay_inside_the_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("corpora/c-1")).unwrap();
        let outside = tmp.path().join("victim");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("corpora/link")).unwrap();
        let cfg = Config::resolve(&data, None).unwrap();
        assert_eq!(cfg.inside("corpora/c-1").unwrap(), data.join("corpora/c-1"));
        assert_eq!(cfg.inside("runs/r-new").unwrap(), data.join("runs/r-new"));
        for bad in [
            "",
            "/etc",
            outside.to_str().unwrap(),
            "../victim",
            "corpora/../../victim",
            "./corpora/c-1",
            "corpora/link",
            "corpora/link/inner",
        ] {
            assert!(cfg.inside(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            plain_file_name("checkpoint-000000010.sealed").unwrap(),
            "checkpoint-000000010.sealed"
        );
        for bad in ["", "../x", "/x", "a/b", ".", ".."] {
            assert!(plain_file_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn initial_config_parses_back() {
        for url in [None, Some("postgres://u:p@h/db")] {
            let text = initial_config_text(url);
            let file: ConfigFile = toml::from_str(&text).unwrap();
            assert_eq!(file.database.url.as_deref(), url);
        }
    }

    #[test]
    fn flag_overrides_file_and_paths_resolve_in_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            initial_config_text(Some("postgres://a@b/c")),
        )
        .unwrap();
        let c = Config::resolve(dir.path(), None).unwrap();
        assert_eq!(c.database_url, "postgres://a@b/c");
        assert_eq!(c.master_key_file, dir.path().join("keys/master.key"));
        let c = Config::resolve(dir.path(), Some("postgres://x@y/z")).unwrap();
        assert_eq!(c.database_url, "postgres://x@y/z");
    }

    #[test]
    fn unknown_keys_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "[database]\nurll = \"x\"\n").unwrap();
        let err = format!("{:#}", Config::resolve(dir.path(), None).unwrap_err());
        assert!(err.contains("lethe.toml") && err.contains("urll"), "{err}");
    }
}
