use hermes_core::ExitStatus;

use crate::Context;

pub fn run(_ctx: &Context, _json: bool) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("status is not built yet")
}
