use hermes_core::ExitStatus;

use crate::Context;

pub fn run(
    _ctx: &Context,
    _replace: bool,
    _notify_fd: Option<i32>,
    _no_supervise: bool,
) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("gateway run is not built yet")
}
