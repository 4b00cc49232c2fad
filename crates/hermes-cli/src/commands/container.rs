//! `hermes container …`: the init (hidden; the image's ENTRYPOINT), boot
//! reconciliation, and `follow_gateway` for `gateway run` as the CMD.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use anyhow::{anyhow, Context as _};
use hermes_core::dashboard;
use hermes_core::{profile, state, ExitStatus};
use hermes_init::boot::Reconciled;
use hermes_init::stage1::Stage1;
use hermes_init::{pid1, stage1, Layout};
use hermes_s6::svscan;

use crate::args::ContainerCommand;
use crate::{CodedError, Context};

pub fn run(ctx: &Context, cmd: ContainerCommand) -> anyhow::Result<ExitStatus> {
    let layout = Layout::new(&ctx.scandir, &ctx.program, Some(ctx.home.root()));
    match cmd {
        ContainerCommand::Reconcile { dry_run, notes } => reconcile(ctx, dry_run, notes),
        ContainerCommand::Init { cmd } => init(ctx, layout, cmd),
        ContainerCommand::DashboardRun => dashboard_run(ctx),
        ContainerCommand::NotifyRun => {
            hermes_notify::run(ctx.home.clone(), hermes_notify::Settings::default())
                .context("notify: unable to handle SIGTERM")?;
            Ok(ExitStatus::Success)
        }
        ContainerCommand::NotifyStopping => {
            hermes_notify::stopping(&ctx.home, state::now_ms())
                .context("notify: unable to queue the stopping notification")?;
            Ok(ExitStatus::Success)
        }
        ContainerCommand::IngressRun => ingress_run(ctx),
    }
}

fn init(ctx: &Context, layout: Layout, cmd: Vec<OsString>) -> anyhow::Result<ExitStatus> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let svscan_path = pid1::which("s6-svscan".as_ref(), &path_var)
        .ok_or_else(|| anyhow!("s6-svscan not found on PATH: install s6 (apt-get install s6)"))?;
    // Room for every profile on the volume, so none is left unsupervised past s6's cap.
    let profiles = profile::named_profiles(&ctx.home).map_or(0, |p| p.len());
    let max_slots = svscan::max_slots_from_env().max(profiles + 1);
    let code = stage1::run(Stage1 {
        cap_flag: svscan::cap_flag(&svscan_path)?,
        max_slots,
        layout,
        home: ctx.home.clone(),
        svscan: svscan_path,
        cmd,
    })
    .map_err(|err| CodedError {
        message: format!("container init failed: {err}"),
        status: ExitStatus::Config,
    })?;
    Ok(ExitStatus::External(code))
}

/// `notes`: the init's boot notes, logged before this boot's decisions.
/// A stop signal waiting (kept blocked, see `block_init_signals`) ends it
/// with 128+n, its lines logged.
fn reconcile(ctx: &Context, dry_run: bool, notes: Vec<String>) -> anyhow::Result<ExitStatus> {
    let reconciled = hermes_init::boot::reconcile(
        &ctx.home,
        &ctx.s6(),
        dry_run,
        notes,
        pid1::pending_stop,
        |line| println!("{line}"),
    )?;
    Ok(match reconciled {
        Reconciled::Done(report) if report.failed > 0 => ExitStatus::Failure,
        Reconciled::Done(_) => ExitStatus::Success,
        Reconciled::Stopped(sig) => ExitStatus::External(128 + sig as u8),
    })
}

fn dashboard_run(ctx: &Context) -> anyhow::Result<ExitStatus> {
    let dashboard::Settings {
        host, port, token, ..
    } = dashboard::Settings::from_env();
    if let Some(why) = dashboard::bind_refusal(&host, port, token.as_deref()) {
        return Err(CodedError {
            message: format!("dashboard: {why}"),
            status: ExitStatus::Config,
        }
        .into());
    }
    let err = std::process::Command::new(&ctx.program)
        .arg("dashboard")
        .arg("--host")
        .arg(&host)
        .exec();
    Err(err).with_context(|| format!("unable to run `{} dashboard`", ctx.program.display()))
}

/// The ingress: `HERMES_INGRESS_HOST`/`_PORT`; a port that is not one is
/// fatal configuration (exit 78, which parks the slot).
fn ingress_run(ctx: &Context) -> anyhow::Result<ExitStatus> {
    let settings = hermes_core::ingress::Settings::from_env();
    let Some(port) = settings.port else {
        return Err(CodedError {
            message: "ingress: HERMES_INGRESS_PORT must be a port number (1-65535)".to_string(),
            status: ExitStatus::Config,
        }
        .into());
    };
    hermes_ingress::run(ctx.home.clone(), &settings.host, port)?;
    Ok(ExitStatus::Success)
}

/// `gateway run` as the container's CMD: see [`hermes_init::follow`].
pub fn follow_gateway(ctx: &Context) -> anyhow::Result<ExitStatus> {
    hermes_init::follow::follow(
        &ctx.s6(),
        &ctx.home,
        &ctx.program,
        &ctx.profile,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )?;
    Ok(ExitStatus::Success)
}
