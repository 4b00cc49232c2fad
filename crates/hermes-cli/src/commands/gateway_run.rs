use hermes_core::ExitStatus;

use crate::Context;

pub fn run(
    ctx: &Context,
    _replace: bool,
    _notify_fd: Option<i32>,
    no_supervise: bool,
) -> anyhow::Result<ExitStatus> {
    // In the container the gateway belongs in its supervised slot; the slot's
    // own run script sets HERMES_SUPERVISED_CHILD so it never comes back here.
    if ctx.in_container && !no_supervise && std::env::var_os("HERMES_SUPERVISED_CHILD").is_none() {
        return super::container::follow_gateway(ctx);
    }
    anyhow::bail!("gateway run is not built yet")
}
