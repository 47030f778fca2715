//! The `lethe` binary: parses the command line, runs it, and turns any failure into one line on stderr
//! and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lethe::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LETHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lethe::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<lethe::cli::GateFailed>() => ExitCode::from(lethe::cli::GateFailed::EXIT_CODE),
        Err(e) => {
            // `{:#}` joins the context chain into one line: "cannot prepare the database …: connection refused".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
