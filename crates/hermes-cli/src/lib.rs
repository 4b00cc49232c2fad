//! The hermes command line: `args` holds the clap types, `commands` one thin
//! adapter per command over the library crates. `run` returns the exit status;
//! `main` only prints the error line.
// The binary may call std::fs: anyhow's context names the path.
#![allow(clippy::disallowed_methods)]

pub mod args;
mod commands;
mod context;
pub mod slot_script;

use hermes_core::ExitStatus;

pub use context::Context;

/// Errors that carry their own exit code through anyhow.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    pub message: String,
    pub status: ExitStatus,
}

/// Whether this process is the container's init: PID 1 (the ENTRYPOINT),
/// or `hermes container init` under another init (`docker run --init`).
fn is_init(args: &[std::ffi::OsString]) -> bool {
    hermes_init::pid1::is_pid1() || (args.len() >= 3 && args[1] == "container" && args[2] == "init")
}

/// The init reads its signals from a signalfd; blocked from the first
/// instruction, none is ever lost (PID 1 drops a signal it has no handler
/// for, but a blocked one stays pending). Called first thing in `main`.
pub fn block_init_signals() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(3).collect();
    if is_init(&args) {
        if let Err(e) = hermes_init::pid1::block(&hermes_init::pid1::handled_signals()) {
            eprintln!("hermes: {e}");
        }
        hermes_init::pid1::note_signals_blocked();
    } else {
        hermes_init::pid1::release_entry_mask();
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

/// Called by a profile's name (a link in the container's alias directory,
/// see `hermes_init::aliases`): the same as `hermes -p NAME …`.
pub fn expand_alias(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.into_iter().collect();
    if let Some(profile) = args
        .first()
        .and_then(|argv0| hermes_init::aliases::profile_of_invocation(argv0))
    {
        args.splice(1..1, ["-p".into(), profile.as_str().into()]);
    }
    args
}

pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CodedError>()
        .map(|e| e.status.code())
        .unwrap_or(ExitStatus::Failure.code())
}

pub fn run(cli: args::Cli) -> anyhow::Result<ExitStatus> {
    // A logger's start reads no context: it runs at every slot's
    // registration, and nothing of hermes's own may keep a log from starting.
    if let Some(args::Command::LogRun { dir, logger }) = &cli.command {
        return commands::log_run::run(dir, logger);
    }
    // Root in the container (`docker exec` by default) would leave root-owned
    // files in the volume and hang on the service user's supervision tree;
    // only the init stages keep root. This happens before the context is
    // read, so HOME and the alias directory are the service user's.
    let init_stage = matches!(
        cli.command,
        Some(args::Command::Container(
            args::ContainerCommand::Init { .. }
        ))
    );
    if !init_stage && hermes_init::pid1::is_pid1() {
        // Another command as PID 1 (`--entrypoint hermes`) keeps the
        // signal behaviour any program has as PID 1.
        hermes_init::pid1::unblock(&hermes_init::pid1::handled_signals())?;
    }
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

    #[test]
    fn container_init_is_the_init_even_when_not_pid1() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        // The test runner is never PID 1, so only the arguments decide here.
        assert!(is_init(&args(&["hermes", "container", "init"])));
        assert!(!is_init(&args(&["hermes", "container", "reconcile"])));
        assert!(!is_init(&args(&["hermes", "status"])));
        assert!(!is_init(&args(&["hermes"])));
    }

    fn expand(list: &[&str]) -> Vec<String> {
        expand_alias(list.iter().map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn a_profile_alias_means_hermes_p_profile() {
        assert_eq!(
            expand(&["/run/hermes-aliases/coder", "gateway", "status"]),
            [
                "/run/hermes-aliases/coder",
                "-p",
                "coder",
                "gateway",
                "status"
            ]
        );
        assert_eq!(expand(&["coder"]), ["coder", "-p", "coder"]);
        assert_eq!(
            expand(&["/usr/local/bin/hermes", "status"]),
            ["/usr/local/bin/hermes", "status"]
        );
    }
}
