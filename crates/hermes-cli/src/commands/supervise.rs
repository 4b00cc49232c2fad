//! `hermes supervise`: become the user-level s6 tree on the scandir, holding
//! the home's volume lock for the tree's life (one tree per home).

use anyhow::Context as _;
use hermes_core::dirfd::Dir;
use hermes_core::volume_lock::{self, LockError, Owner};
use hermes_core::ExitStatus;

use crate::args::SuperviseArgs;
use crate::{CodedError, Context};

pub fn run(ctx: &Context, args: SuperviseArgs) -> anyhow::Result<ExitStatus> {
    let scandir = args.scandir.unwrap_or_else(|| ctx.scandir.clone());
    let home = Dir::open_or_create(ctx.home.root(), 0o700)?;
    let lock = match volume_lock::acquire(&home, &Owner::current(), None) {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            return Err(CodedError {
                message: e.to_string(),
                status: ExitStatus::Config,
            }
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    // s6-svscan keeps it; not dropped, which would unlock it for the tree too.
    lock.keep_across_exec()
        .with_context(|| format!("unable to hand {} on", lock.path().display()))?;
    let _fd = lock.leak();
    let cfg = hermes_s6::S6Config {
        scandir,
        ..ctx.s6_config()
    };
    // Returns only when s6-svscan could not be started.
    let err = hermes_s6::supervise::exec(&cfg, hermes_s6::svscan::max_slots_from_env());
    Err(err.into())
}
