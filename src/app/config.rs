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
