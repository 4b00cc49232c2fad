//! One adapter per command: turn parsed arguments into library calls and
//! their results into lines for the user.

mod container;
mod dashboard;
mod doctor;
mod gateway_run;
mod health;
mod host;
mod lifecycle;
pub(crate) mod log_run;
mod logs;
mod profile;
mod status;
mod supervise;
mod tui;
mod webhook;

use hermes_core::ExitStatus;

use crate::args::{Cli, Command, GatewayCommand};
use crate::Context;

pub fn dispatch(ctx: &Context, cli: Cli) -> anyhow::Result<ExitStatus> {
    let Some(command) = cli.command else {
        return tui::run(ctx);
    };
    if cli.tui {
        return tui::run(ctx);
    }
    match command {
        Command::Profile(cmd) => profile::run(ctx, cmd),
        Command::Gateway(GatewayCommand::Run {
            replace,
            notify_fd,
            no_supervise,
        }) => gateway_run::run(ctx, replace, notify_fd, no_supervise),
        Command::Gateway(GatewayCommand::Install(args)) => host::install(ctx, &args),
        Command::Gateway(GatewayCommand::Uninstall(args)) => host::uninstall(ctx, &args),
        Command::Gateway(GatewayCommand::Logs(args)) => logs::run(ctx, &args),
        Command::Gateway(cmd) => lifecycle::run(ctx, cmd),
        Command::Supervise(args) => supervise::run(ctx, args),
        Command::Status(flag) => status::run(ctx, flag.json),
        Command::Doctor(flag) => doctor::run(ctx, flag.json),
        Command::Health(args) => health::run(ctx, &args),
        Command::Dashboard(args) => dashboard::run(ctx, args),
        Command::Tui => tui::run(ctx),
        Command::Webhook(cmd) => webhook::run(ctx, cmd),
        Command::Container(cmd) => container::run(ctx, cmd),
        Command::LogRun { .. } => {
            unreachable!("crate::run starts a logger before it reads any context")
        }
    }
}
