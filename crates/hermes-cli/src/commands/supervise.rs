//! `hermes supervise`: become the user-level s6 tree on the scandir.

use hermes_core::ExitStatus;

use crate::args::SuperviseArgs;
use crate::Context;

pub fn run(ctx: &Context, args: SuperviseArgs) -> anyhow::Result<ExitStatus> {
    let scandir = args.scandir.unwrap_or_else(|| ctx.scandir.clone());
    // Returns only when s6-svscan could not be started.
    let err = hermes_s6::supervise::exec(&scandir, hermes_s6::svscan::max_slots_from_env());
    Err(err.into())
}
