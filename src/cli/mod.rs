//! The command line: clap definitions and the printing of results. Each command parses, calls `app`, and
//! prints either human text or one JSON document (`--json`); nothing here decides anything.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::app::{self, Globals};

#[derive(Debug, Parser)]
#[command(
    name = "lethe",
    version,
    about = "Train a language model on a private corpus, audit it for memorization, and gate its release.",
    propagate_version = true
)]
pub struct Cli {
    /// Data directory holding the config, keys, sealed data and the embedded database.
    #[arg(
        long,
        global = true,
        env = "LETHE_DATA_DIR",
        default_value = "./lethe-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Database URL: postgres://USER@HOST/DB for a shared server (default: SQLite in the data directory).
    #[arg(long, global = true, env = "LETHE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: config, master key, signing key, database and the first admin.
    Init {
        /// Name of the first admin account.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Check libtorch, devices, the database and the keys.
    Doctor,
}

impl Cli {
    fn globals(&self) -> Globals {
        Globals {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().filter(|u| !u.is_empty()),
        }
    }
}

/// Runs the parsed command. `Err` is printed by `main` as one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let globals = cli.globals();
    match &cli.command {
        Command::Init { admin } => {
            let report = app::init::run(
                &globals,
                &app::init::InitOptions {
                    admin_username: admin.clone(),
                },
            )
            .await?;
            emit(cli.json, &report, || {
                format!(
                    "Initialised Lethe in {dir}\n\
                     \x20 config        {config}\n\
                     \x20 database      {db}\n\
                     \x20 master key    {mk} ({mkf}, mode 0600)\n\
                     \x20 signing key   ed25519:{pk}\n\
                     \n\
                     First admin account: {user}\n\
                     One-time password:   {pw}\n\
                     It is shown only now and must be changed at first sign-in.\n",
                    dir = report.data_dir.display(),
                    config = report.config_file.display(),
                    db = report.database,
                    mk = report.master_key_id,
                    mkf = report.master_key_file.display(),
                    pk = report.signing_public_key,
                    user = report.admin_username,
                    pw = report.one_time_password,
                )
            })
        }
        Command::Doctor => {
            let report = app::doctor::run(&globals).await?;
            emit(cli.json, &report, || report.to_text())?;
            match report.problems.as_slice() {
                [] => Ok(()),
                [one] => anyhow::bail!("doctor found a problem: {one}"),
                [first, rest @ ..] => {
                    anyhow::bail!("doctor found {} problems; first: {first}", rest.len() + 1)
                }
            }
        }
    }
}

/// Prints `value` as JSON or `text()` as text.
fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}
