//! The hermes command line: `args` holds the clap types, `commands` one thin
//! adapter per command over the library crates. `run` returns the exit status;
//! `main` only prints the error line.

pub mod args;
mod commands;
mod context;

use hermes_core::ExitStatus;

pub use context::Context;

/// Errors that carry their own exit code through anyhow.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    pub message: String,
    pub status: ExitStatus,
}

pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CodedError>()
        .map(|e| e.status.code())
        .unwrap_or(ExitStatus::Failure.code())
}

pub fn run(cli: args::Cli) -> anyhow::Result<ExitStatus> {
    let ctx = Context::from_env(cli.profile.clone())?;
    commands::dispatch(&ctx, cli)
}
