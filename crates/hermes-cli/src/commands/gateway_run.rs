use hermes_core::ExitStatus;
use hermes_gateway::RunOptions;

use crate::{CodedError, Context};

pub fn run(
    ctx: &Context,
    replace: bool,
    notify_fd: Option<i32>,
    no_supervise: bool,
) -> anyhow::Result<ExitStatus> {
    // In the container the gateway belongs in its supervised slot; the slot's
    // own run script sets HERMES_SUPERVISED_CHILD so it never comes back here.
    if ctx.in_container && !no_supervise && std::env::var_os("HERMES_SUPERVISED_CHILD").is_none() {
        return super::container::follow_gateway(ctx);
    }
    let options = RunOptions {
        home: ctx.home.clone(),
        profile: ctx.profile.clone(),
        replace,
        notify_fd,
    };
    match hermes_gateway::run(options) {
        Ok(()) => Ok(ExitStatus::Success),
        // The gateway's own error carries the exit code the supervisor acts on
        // (75, 78, ...); its line names the profile, as its log lines do.
        Err(err) => Err(CodedError {
            message: format!("gateway '{}': {err}", ctx.profile),
            status: err.exit_status(),
        }
        .into()),
    }
}
