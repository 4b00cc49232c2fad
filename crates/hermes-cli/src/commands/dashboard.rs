use hermes_core::ExitStatus;

use crate::args::DashboardArgs;
use crate::Context;

pub fn run(_ctx: &Context, _args: DashboardArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("the dashboard is not built yet")
}
