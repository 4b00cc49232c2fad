//! `hermes log-run DIR -- LOGGER...`: every slot logger's run step (see
//! `hermes_s6::logger`). Whatever it finds, the logger is started: when the
//! lock stays taken, s6-log says so and s6-supervise tries again.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::Context as _;
use hermes_core::ExitStatus;
use hermes_s6::logger::{self, ProcFs};

pub fn run(dir: &Path, logger: &[OsString]) -> anyhow::Result<ExitStatus> {
    match logger::end_unsupervised_holder(dir, &ProcFs) {
        Ok(None) => {}
        Ok(Some(ended)) => eprintln!(
            "hermes: logger of {}: ended {} (pid {}) with {}: it held the log's lock with no s6-supervise above it (its supervisor was killed, or it was started by hand)",
            dir.display(),
            ended.name,
            ended.pid,
            if ended.killed { "SIGKILL" } else { "SIGTERM" }
        ),
        Err(e) => eprintln!("hermes: logger of {}: {e}", dir.display()),
    }
    let (program, args) = logger
        .split_first()
        .context("log-run: no logger after --")?;
    let failed = std::process::Command::new(program).args(args).exec();
    Err(failed).with_context(|| format!("unable to run {}", program.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use hermes_core::service::GatewaySpec;
    use hermes_core::{HermesHome, ProfileName};
    use hermes_s6::{run_script, slot};

    use crate::args::{Cli, Command};

    #[test]
    fn a_rendered_logger_is_this_command_for_its_directory() {
        let home = HermesHome::new("/opt/data");
        let profile = ProfileName::parse("coder").unwrap();
        let spec = GatewaySpec::for_profile(&home, &profile, "/usr/local/bin/hermes".as_ref());
        let script = run_script::parse(&slot::render_log_run(&spec, true)).unwrap();
        assert!(script.steps.is_empty(), "{script:?}");
        let Some(Command::LogRun { dir, logger }) =
            Cli::try_parse_from(&script.exec).unwrap().command
        else {
            panic!("{script:?} is not log-run");
        };
        assert_eq!(dir, spec.log_dir);
        assert_eq!(logger.first().and_then(|a| a.to_str()), Some("s6-log"));
        assert_eq!(logger.last(), Some(&spec.log_dir.clone().into_os_string()));
    }
}
