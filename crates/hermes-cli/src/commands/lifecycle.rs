//! `hermes gateway start|stop|restart|status` and the hidden finish hook.

use std::time::Duration;

use hermes_core::lifecycle::{self, Action, LifecycleError};
use hermes_core::service::{ServiceError, ServiceManager, SlotStatus};
use hermes_core::state::{self, GatewayState};
use hermes_core::{config::Config, logs, profile, ExitStatus, ProfileName};
use serde::Serialize;

use crate::args::{GatewayCommand, LifecycleArgs};
use crate::Context;

const LOG_TAIL_LINES: usize = 20;

pub fn run(ctx: &Context, cmd: GatewayCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        GatewayCommand::Start(args) => act(ctx, Action::Start, &args),
        GatewayCommand::Stop(args) => act(ctx, Action::Stop, &args),
        GatewayCommand::Restart(args) => act(ctx, Action::Restart, &args),
        GatewayCommand::Status { all, json } => status(ctx, all, json),
        GatewayCommand::FinishHook { code, signal } => {
            let paths = ctx.home.profile(&ctx.profile);
            let exit = hermes_s6::finish::run_hook(&paths, code, signal)?;
            Ok(ExitStatus::External(exit as u8))
        }
        GatewayCommand::Run { .. } | GatewayCommand::Install(_) | GatewayCommand::Uninstall(_) => {
            unreachable!("dispatched elsewhere")
        }
    }
}

fn describe(status: &SlotStatus) -> String {
    match (status.up, status.pid) {
        (true, Some(pid)) if status.ready => format!("up and ready (pid {pid})"),
        (true, Some(pid)) => format!("up (pid {pid}), not ready yet"),
        (true, None) => "up".to_string(),
        (false, _) => "down".to_string(),
    }
}

fn act(ctx: &Context, action: Action, args: &LifecycleArgs) -> anyhow::Result<ExitStatus> {
    let manager = ctx.manager();
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let targets = if args.all {
        manager.list()?
    } else {
        vec![ctx.profile.clone()]
    };
    if targets.is_empty() {
        println!("no gateway slots are registered");
        return Ok(ExitStatus::Success);
    }
    let mut failed = 0;
    for profile in &targets {
        match lifecycle::apply(
            manager.as_ref(),
            &ctx.home,
            &ctx.program,
            profile,
            action,
            timeout,
        ) {
            Ok(outcome) => {
                if outcome.registered {
                    println!("registered slot {}", profile.service_name());
                }
                println!("gateway '{profile}': {}", describe(&outcome.status));
            }
            Err(err) => {
                failed += 1;
                report_failure(ctx, profile, action, &err);
                if !args.all {
                    break;
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn report_failure(ctx: &Context, profile: &ProfileName, action: Action, err: &LifecycleError) {
    eprintln!(
        "hermes: {} of gateway '{profile}' failed: {err}",
        action.as_str()
    );
    let failed_while_running = matches!(
        err,
        LifecycleError::Service(ServiceError::StartFailed { .. } | ServiceError::Timeout { .. })
    );
    if failed_while_running {
        let log = ctx.home.gateway_log_dir(profile).join("current");
        let tail = logs::tail(&log, LOG_TAIL_LINES);
        if !tail.is_empty() {
            eprintln!("last lines of {}:", log.display());
            for line in tail {
                eprintln!("  {line}");
            }
        }
    }
}

/// One row of `gateway status`.
#[derive(Debug, Serialize)]
struct Row {
    profile: ProfileName,
    service: String,
    registered: bool,
    supervised: bool,
    up: bool,
    ready: bool,
    want: Option<hermes_core::service::Want>,
    pid: Option<u32>,
    gateway_state: Option<String>,
    desired_state: Option<String>,
    exit_reason: Option<String>,
    port: Option<u16>,
    restarts: u32,
}

fn row(ctx: &Context, manager: &dyn ServiceManager, profile: &ProfileName) -> anyhow::Result<Row> {
    let paths = ctx.home.profile(profile);
    let slot = match manager.status(profile) {
        Ok(s) => Some(s),
        Err(ServiceError::NotRegistered { .. } | ServiceError::ServiceNotInstalled { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let recorded: GatewayState = state::load(&paths.state())?.state();
    Ok(Row {
        profile: profile.clone(),
        service: slot
            .as_ref()
            .map_or_else(|| profile.service_name(), |s| s.service.clone()),
        registered: slot.is_some(),
        supervised: slot.as_ref().is_some_and(|s| s.supervised),
        up: slot.as_ref().is_some_and(|s| s.up),
        ready: slot.as_ref().is_some_and(|s| s.ready),
        want: slot.as_ref().filter(|s| s.supervised).map(|s| s.want),
        pid: slot.as_ref().and_then(|s| s.pid),
        gateway_state: recorded.gateway_state.map(|s| s.as_str().to_string()),
        desired_state: recorded.desired_state.map(|s| s.as_str().to_string()),
        exit_reason: recorded.exit_reason,
        port: Config::read_port(&paths.config()),
        restarts: recorded.restarts,
    })
}

fn status(ctx: &Context, all: bool, json: bool) -> anyhow::Result<ExitStatus> {
    let manager = ctx.manager();
    let profiles = if all {
        let mut names = profile::list(&ctx.home)?;
        for slot in manager.list().unwrap_or_default() {
            if !names.contains(&slot) {
                names.push(slot);
            }
        }
        names
    } else {
        profile::existing(&ctx.home, &ctx.profile)?;
        vec![ctx.profile.clone()]
    };
    let rows = profiles
        .iter()
        .map(|p| row(ctx, manager.as_ref(), p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if json {
        let doc = if all {
            serde_json::to_string_pretty(&rows)?
        } else {
            serde_json::to_string_pretty(&rows[0])?
        };
        println!("{doc}");
        return Ok(ExitStatus::Success);
    }
    println!(
        "{:<24} {:>5}  {:<12} {:<5} {:>7}  {:<15} {:<8} {:>8}",
        "PROFILE", "PORT", "UP", "WANT", "PID", "STATE", "DESIRED", "RESTARTS"
    );
    for r in &rows {
        let up = match (r.registered, r.supervised, r.up, r.ready) {
            (false, ..) => "no slot",
            (true, false, ..) => "unsupervised",
            (_, _, true, true) => "ready",
            (_, _, true, false) => "up",
            _ => "down",
        };
        println!(
            "{:<24} {:>5}  {:<12} {:<5} {:>7}  {:<15} {:<8} {:>8}",
            r.profile.as_str(),
            r.port.map_or("-".into(), |p| p.to_string()),
            up,
            r.want.map_or("-", |w| match w {
                hermes_core::service::Want::Up => "up",
                hermes_core::service::Want::Down => "down",
            }),
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.gateway_state.as_deref().unwrap_or("-"),
            r.desired_state.as_deref().unwrap_or("-"),
            r.restarts
        );
        if let Some(reason) = r.exit_reason.as_deref().filter(|_| !r.up) {
            println!("{:<24} last exit: {reason}", "");
        }
    }
    Ok(ExitStatus::Success)
}
