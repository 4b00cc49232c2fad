use hermes_core::ExitStatus;

use crate::args::ManagerArgs;
use crate::Context;

pub fn install(_ctx: &Context, _args: &ManagerArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("gateway install is not built yet")
}

pub fn uninstall(_ctx: &Context, _args: &ManagerArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("gateway uninstall is not built yet")
}
