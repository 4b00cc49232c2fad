use hermes_core::ExitStatus;

use crate::args::ContainerCommand;
use crate::Context;

pub fn run(_ctx: &Context, _cmd: ContainerCommand) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("container commands are not built yet")
}
