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

/// As PID 1 (the container's entrypoint) the kernel drops every signal that
/// has no handler, so a `docker stop` arriving while hermes starts up would
/// be lost: catch the stop signals before anything else. `container init`
/// hands a caught one on; every other command installs its own handlers or
/// would have ignored the signal anyway.
pub fn catch_stop_signals_as_pid1() {
    if hermes_init::pid1::is_pid1() {
        if let Err(e) = hermes_init::pid1::catch_stop_signals() {
            eprintln!("hermes: {e}");
        }
    }
}

/// The error and its causes on one line, each cause once: many errors already
/// quote their cause ("unable to write X: No space left on device"), which
/// `{:#}` would then print a second time.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CodedError>()
        .map(|e| e.status.code())
        .unwrap_or(ExitStatus::Failure.code())
}

pub fn run(cli: args::Cli) -> anyhow::Result<ExitStatus> {
    // Root in the container (`docker exec` by default) would leave root-owned
    // files in the volume and hang on the service user's supervision tree;
    // only the init stages keep root. This happens before the context is
    // read, so HOME and the alias directory are the service user's.
    let init_stage = matches!(
        cli.command,
        Some(args::Command::Container(
            args::ContainerCommand::Init { .. } | args::ContainerCommand::Stage2 { .. }
        ))
    );
    let in_container = std::env::var_os("HERMES_CONTAINER").is_some_and(|v| v == "1");
    if in_container && !init_stage {
        if let Some(home) = hermes_core::HermesHome::from_env() {
            hermes_init::drop_to_home_owner_if_root(home.root())?;
        }
    }
    let ctx = Context::from_env(cli.profile.clone())?;
    commands::dispatch(&ctx, cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_cause_is_printed_once() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let err = anyhow::Error::new(hermes_core::fsutil::FsError {
            op: "write",
            path: "/data/x".into(),
            source: full,
        })
        .context("unable to save the profile");
        let line = error_line(&err);
        assert_eq!(line.matches("No space left on device").count(), 1, "{line}");
        assert!(
            line.starts_with("unable to save the profile: unable to write /data/x"),
            "{line}"
        );
    }
}
