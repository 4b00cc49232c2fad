use hermes_core::ExitStatus;

use crate::Context;

pub fn run(_ctx: &Context) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("the TUI is not built yet")
}
