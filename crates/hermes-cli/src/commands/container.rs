//! `hermes container …`: the init (hidden; the image's ENTRYPOINT), boot
//! reconciliation, and `follow_gateway` for `gateway run` as the CMD.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use hermes_core::boot::BootReport;
use hermes_core::dashboard;
use hermes_core::lifecycle::{self, Action};
use hermes_core::service::{GatewaySpec, ServiceManager};
use hermes_core::{profile, state, ExitStatus};
use hermes_init::reconcile::{self, ReportLine};
use hermes_init::stage1::Stage1;
use hermes_init::{pid1, stage1, Layout};
use hermes_s6::svscan;
use nix::sys::signal::{SigSet, Signal};

use crate::args::ContainerCommand;
use crate::{CodedError, Context};

/// How long `gateway run` as the CMD waits for the supervised gateway to be ready.
const FOLLOW_START_TIMEOUT: Duration = Duration::from_secs(30);

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
        cap_flag: svscan::probe_cap_flag()?,
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
fn reconcile(ctx: &Context, dry_run: bool, notes: Vec<String>) -> anyhow::Result<ExitStatus> {
    let started = std::time::Instant::now();
    let manager = ctx.s6();
    let registered = manager.list()?;
    let mut lines: Vec<String> = notes.into_iter().map(|n| format!("init: {n}")).collect();
    let outcomes = reconcile::run(
        &ctx.home,
        &registered,
        dry_run,
        |batch| {
            let specs: Vec<(GatewaySpec, bool)> = batch
                .iter()
                .map(|(p, start)| (GatewaySpec::for_profile(&ctx.home, p, &ctx.program), *start))
                .collect();
            match manager.register_many(&specs) {
                Ok(results) => results
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect(),
                Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
            }
        },
        |outcome| {
            let line = outcome.line(dry_run);
            println!("{line}");
            lines.push(line);
        },
    )?;
    let count = |f: fn(&ReportLine) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let summary = format!(
        "reconcile: done in {} ms: {} slots ({} started, {} kept), {} failed, {} skipped",
        started.elapsed().as_millis(),
        count(|o| matches!(o, ReportLine::Applied { .. })),
        count(|o| {
            matches!(o, ReportLine::Applied { decision, kept: false, .. }
                if decision.action == reconcile::Action::Start)
        }),
        count(|o| matches!(o, ReportLine::Applied { kept: true, .. })),
        count(|o| matches!(o, ReportLine::Failed { .. })),
        count(|o| matches!(o, ReportLine::Skipped { .. })),
    );
    println!("{summary}");
    lines.push(summary);
    if !dry_run {
        let log = ctx.home.boot_log();
        reconcile::append_boot_log(&log, &lines)
            .with_context(|| format!("unable to write the boot log {}", log.display()))?;
        let report = BootReport {
            at_ms: state::now_ms(),
            duration_ms: started.elapsed().as_millis() as u64,
            started: count(|o| {
                matches!(o, ReportLine::Applied { decision, kept: false, .. }
                    if decision.action == reconcile::Action::Start)
            }) as u64,
            down: count(|o| {
                matches!(o, ReportLine::Applied { decision, kept: false, .. }
                    if decision.action == reconcile::Action::Down)
            }) as u64,
            kept: count(|o| matches!(o, ReportLine::Applied { kept: true, .. })) as u64,
            failed: count(|o| matches!(o, ReportLine::Failed { .. })) as u64,
            skipped: count(|o| matches!(o, ReportLine::Skipped { .. })) as u64,
        };
        let path = ctx.home.boot_report();
        report
            .save(&path)
            .with_context(|| format!("unable to write {}", path.display()))?;
    }
    let failed = outcomes
        .iter()
        .any(|o| matches!(o, ReportLine::Failed { .. }));
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
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

/// `gateway run` as the container's CMD: the gateway runs in its supervised
/// slot (so s6 restarts it), not as an unsupervised second copy. Its log
/// reaches the container's stdout through the slot's logger; this process
/// stays in front until the container is stopped, which leaves the
/// gateway's desired state `running` for the next boot.
pub fn follow_gateway(ctx: &Context) -> anyhow::Result<ExitStatus> {
    let manager = ctx.s6();
    let name = &ctx.profile;
    let slot = name.service_name();
    println!(
        "gateway run: profile '{name}' runs supervised by s6 as slot {slot}; its log follows \
         (also in {}). Use `gateway run --no-supervise` to run it in this process instead.",
        ctx.home.gateway_log_dir(name).join("current").display()
    );
    // Block before starting, so a stop that arrives during the start is not lost.
    let mut stop = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(sig);
    }
    stop.thread_block()
        .context("unable to block stop signals")?;
    match lifecycle::apply(
        &manager as &dyn ServiceManager,
        &ctx.home,
        &ctx.program,
        name,
        Action::Start,
        FOLLOW_START_TIMEOUT,
    ) {
        Ok(outcome) => match outcome.status.pid {
            Some(pid) => println!("gateway run: {slot} is up (pid {pid}) and ready"),
            None => println!("gateway run: {slot} is up"),
        },
        Err(e) => eprintln!("hermes: gateway run: {e}; s6 keeps supervising {slot}"),
    }
    let sig = stop.wait().context("unable to wait for a stop signal")?;
    println!(
        "gateway run: {sig:?} received; {slot} stays wanted up and is stopped with the container"
    );
    Ok(ExitStatus::Success)
}
