//! `hermes gateway start|stop|restart|status` and the hidden finish hook.

use std::time::Duration;

use hermes_core::{profile, ExitStatus};
use hermes_model::actions;
use hermes_model::snapshot::{Gateway, Snapshot};
use hermes_model::Action;
use hermes_model::{health, Environment};

use super::status::env::CliEnv;
use crate::args::{GatewayCommand, LifecycleArgs};
use crate::Context;

pub fn run(ctx: &Context, cmd: GatewayCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        GatewayCommand::Start(args) => act(ctx, Action::Start, &args),
        GatewayCommand::Stop(args) => act(ctx, Action::Stop, &args),
        GatewayCommand::Restart(args) => act(ctx, Action::Restart, &args),
        GatewayCommand::Status { all, json } => status(ctx, all, json),
        GatewayCommand::FinishHook { code, signal } => {
            let exit = hermes_s6::finish::run_hook(&ctx.home, &ctx.profile, code, signal)?;
            Ok(ExitStatus::External(exit as u8))
        }
        GatewayCommand::Run { .. }
        | GatewayCommand::Logs(_)
        | GatewayCommand::Install(_)
        | GatewayCommand::Uninstall(_) => {
            unreachable!("dispatched elsewhere")
        }
    }
}

fn act(ctx: &Context, verb: Action, args: &LifecycleArgs) -> anyhow::Result<ExitStatus> {
    let env = CliEnv::new(ctx);
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let targets = if args.all {
        env.manager().list()?
    } else {
        vec![ctx.profile.clone()]
    };
    if targets.is_empty() {
        println!("no gateway slots are registered");
        return Ok(ExitStatus::Success);
    }
    let results = if args.all {
        actions::lifecycle_many(&env, &targets, verb, timeout)
    } else {
        vec![actions::lifecycle(&env, &ctx.profile, verb, timeout)]
    };
    let mut failed = 0;
    for (profile, result) in targets.iter().zip(results) {
        match result {
            Ok(outcome) => {
                if outcome.registered {
                    println!("registered slot {}", profile.service_name());
                }
                println!("{}", outcome.message);
            }
            Err(err) => {
                failed += 1;
                eprintln!("hermes: {err}");
                if !err.log_tail().is_empty() {
                    let log = ctx.home.gateway_log_dir(profile).join("current");
                    eprintln!("last lines of {}:", log.display());
                    for line in err.log_tail() {
                        eprintln!("  {line}");
                    }
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

fn status(ctx: &Context, all: bool, json: bool) -> anyhow::Result<ExitStatus> {
    let env = CliEnv::new(ctx);
    let gateways = if all {
        Snapshot::collect(&env).gateways
    } else {
        profile::existing(&ctx.home, &ctx.profile)?;
        vec![Gateway::collect(
            &env,
            &ctx.profile,
            health::DEFAULT_TIMEOUT,
        )]
    };
    if json {
        let doc = if all {
            serde_json::to_string_pretty(&gateways)?
        } else {
            serde_json::to_string_pretty(&gateways[0])?
        };
        println!("{doc}");
        return Ok(ExitStatus::Success);
    }
    super::status::print_all(&super::status::table(
        &gateways,
        super::status::Paint::for_stdout(),
    ))?;
    Ok(ExitStatus::Success)
}
