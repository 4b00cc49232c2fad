use hermes_core::ExitStatus;

use crate::args::WebhookCommand;
use crate::Context;

pub fn run(_ctx: &Context, _cmd: WebhookCommand) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("webhook commands are not built yet")
}
