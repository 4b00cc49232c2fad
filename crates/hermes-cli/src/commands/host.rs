//! `hermes gateway install|uninstall`: put the profile's gateway under the
//! host's service manager (systemd, launchd, Task Scheduler), or, under s6,
//! register and start its slot. `--dry-run` prints the plan and touches nothing.

use std::time::Duration;

use hermes_core::lifecycle::{self, Action};
use hermes_core::service::{GatewaySpec, ManagerKind};
use hermes_core::{profile, ExitStatus};
use hermes_hostmgr::choice::{self, Flags};
use hermes_hostmgr::{HostBackend, HostEnv, HostFacts, SystemRunner};

use crate::args::ManagerArgs;
use crate::{CodedError, Context};

/// How long an s6 install waits for the slot to become ready.
const S6_START_TIMEOUT: Duration = Duration::from_secs(10);

pub fn install(ctx: &Context, args: &ManagerArgs) -> anyhow::Result<ExitStatus> {
    let (kind, reason) = chosen(ctx, args, true)?;
    profile::existing(&ctx.home, &ctx.profile)?;
    let spec = GatewaySpec::for_profile(&ctx.home, &ctx.profile, &ctx.program);
    let Some(backend) = backend(ctx, args, kind) else {
        if args.dry_run {
            println!("service manager: s6 ({reason})");
            println!(
                "would register slot {} in {} unless it exists, then start it; nothing changed (dry run)",
                ctx.profile.service_name(),
                ctx.scandir.display()
            );
            return Ok(ExitStatus::Success);
        }
        let outcome = lifecycle::apply(
            &ctx.s6(),
            &ctx.home,
            &ctx.program,
            &ctx.profile,
            Action::Start,
            S6_START_TIMEOUT,
        )?;
        let up = if outcome.status.service.ready {
            "up and ready"
        } else {
            "up, not ready yet"
        };
        let how = if outcome.registered {
            "registered and started"
        } else {
            "started"
        };
        println!("s6 slot {} {how}: {up}", outcome.status.service.name);
        return Ok(ExitStatus::Success);
    };
    let plan = backend.plan_install(&spec)?;
    if args.dry_run {
        println!("service manager: {kind} ({reason})");
        print!("{plan}");
        println!("nothing changed (dry run)");
        return Ok(ExitStatus::Success);
    }
    for warning in backend.install(&spec)? {
        eprintln!("hermes: warning: {warning}");
    }
    println!(
        "installed gateway '{}' with {kind} and started it",
        ctx.profile
    );
    Ok(ExitStatus::Success)
}

pub fn uninstall(ctx: &Context, args: &ManagerArgs) -> anyhow::Result<ExitStatus> {
    let (kind, reason) = chosen(ctx, args, false)?;
    let Some(backend) = backend(ctx, args, kind) else {
        if args.dry_run {
            println!("service manager: s6 ({reason})");
            println!(
                "would stop and unregister slot {}; nothing changed (dry run)",
                ctx.profile.service_name()
            );
            return Ok(ExitStatus::Success);
        }
        lifecycle::unregister(&ctx.s6(), &ctx.home, &ctx.profile)?;
        println!("unregistered slot {}", ctx.profile.service_name());
        return Ok(ExitStatus::Success);
    };
    let plan = backend.plan_uninstall(&ctx.profile)?;
    if args.dry_run {
        println!("service manager: {kind} ({reason})");
        print!("{plan}");
        println!("nothing changed (dry run)");
        return Ok(ExitStatus::Success);
    }
    backend.uninstall(&ctx.profile)?;
    println!("uninstalled gateway '{}' from {kind}", ctx.profile);
    Ok(ExitStatus::Success)
}

fn flags(args: &ManagerArgs) -> Flags<'_> {
    Flags {
        manager: args.manager.as_deref(),
        system: args.system,
        run_as_user: args.run_as_user.as_deref(),
    }
}

fn chosen(
    ctx: &Context,
    args: &ManagerArgs,
    installing: bool,
) -> anyhow::Result<(ManagerKind, String)> {
    let detection = choice::choose(flags(args), installing, |system| {
        hermes_hostmgr::detect_service_manager(&HostFacts::new(SystemRunner), &ctx.scandir, system)
    })
    .map_err(|e| CodedError {
        message: e.to_string(),
        status: ExitStatus::Usage,
    })?;
    Ok((detection.kind, detection.reason))
}

/// The host backend for `kind`; `None` for s6, whose slots the s6 crate manages.
fn backend(
    ctx: &Context,
    args: &ManagerArgs,
    kind: ManagerKind,
) -> Option<HostBackend<SystemRunner>> {
    let env = HostEnv::from_process();
    let systemd = choice::systemd_config(flags(args), &env);
    HostBackend::new(kind, &env, ctx.home.root(), systemd, SystemRunner)
}
