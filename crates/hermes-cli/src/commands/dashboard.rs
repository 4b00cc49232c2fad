//! `hermes dashboard [--host H] [--port P]`: serve the web dashboard over the
//! shared model until SIGTERM. A non-loopback bind without
//! `HERMES_DASHBOARD_TOKEN` is a fatal configuration error (exit 78).

use std::sync::Arc;
use std::time::Duration;

use hermes_core::ExitStatus;
use hermes_dashboard::{Dashboard, DashboardError, Settings};

use super::status::env::{dashboard_token, CliEnv};
use crate::args::DashboardArgs;
use crate::{CodedError, Context};

/// How long start/stop/restart from the page wait for the outcome by default.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(ctx: &Context, args: DashboardArgs) -> anyhow::Result<ExitStatus> {
    let settings = Settings {
        host: args.host,
        port: args.port,
        token: dashboard_token(),
        action_timeout: ACTION_TIMEOUT,
    };
    let dashboard = match Dashboard::bind(Arc::new(CliEnv::new(ctx)), &settings) {
        Ok(d) => d,
        Err(DashboardError::Insecure(message)) => {
            return Err(CodedError {
                message,
                status: ExitStatus::Config,
            }
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    let addr = dashboard.local_addr()?;
    let auth = if settings.token.is_some() {
        "token required"
    } else {
        "no token: loopback only"
    };
    eprintln!("hermes dashboard: serving http://{addr}/ ({auth})");
    dashboard.serve_until_signal()?;
    Ok(ExitStatus::Success)
}
