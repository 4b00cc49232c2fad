//! `hermes dashboard [--host H] [--port P]`: serve the web dashboard over the
//! shared model until SIGTERM; `hermes dashboard url`: print its login link.
//!
//! The dashboard always wants a token: `HERMES_DASHBOARD_TOKEN` when set,
//! else the one in `$HERMES_HOME/.dashboard-token` (mode 0600, made at first
//! start). A non-loopback bind needs `HERMES_DASHBOARD_TOKEN` of at least 16
//! bytes; without one it is a fatal configuration error (exit 78).

use std::sync::Arc;
use std::time::Duration;

use hermes_core::dashboard::{self as rule, TokenFileError};
use hermes_core::ExitStatus;
use hermes_dashboard::{Dashboard, DashboardError, Settings, REQUEST_TIMEOUT};

use super::status::env::CliEnv;
use crate::args::{DashboardArgs, DashboardCommand};
use crate::{CodedError, Context};

/// How long start/stop/restart from the page wait for the outcome by default.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(ctx: &Context, args: DashboardArgs) -> anyhow::Result<ExitStatus> {
    match args.command {
        Some(DashboardCommand::Url { host, port }) => url(ctx, &host, port),
        None => serve(ctx, args.host, args.port),
    }
}

fn serve(ctx: &Context, host: String, port: u16) -> anyhow::Result<ExitStatus> {
    // Read once: the token decides the bind rule, the serving token and the line below.
    let explicit = rule::Settings::from_env().token;
    // Checked before a token is made: a public bind needs one chosen on purpose.
    if let Some(message) = rule::bind_refusal(&host, port, explicit.as_deref()) {
        return Err(config(message));
    }
    let source = if explicit.is_some() {
        "token from HERMES_DASHBOARD_TOKEN".to_string()
    } else {
        format!(
            "token in {}; `hermes dashboard url` prints the login link",
            rule::token_file(ctx.home.root()).display()
        )
    };
    let token = match explicit {
        Some(token) => token,
        None => {
            rule::read_or_create_token(&rule::token_file(ctx.home.root())).map_err(token_error)?
        }
    };
    let settings = Settings {
        host,
        port,
        token,
        action_timeout: ACTION_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
    };
    let dashboard = match Dashboard::bind(Arc::new(CliEnv::new(ctx)), &settings) {
        Ok(d) => d,
        Err(DashboardError::Insecure(message)) => return Err(config(message)),
        Err(e) => return Err(e.into()),
    };
    let addr = dashboard.local_addr()?;
    eprintln!("hermes dashboard: serving http://{addr}/ ({source})");
    dashboard.serve_until_signal()?;
    Ok(ExitStatus::Success)
}

/// The login link: the token rides in the fragment, which the browser never
/// sends to the server (so no log or proxy sees it); the page trades it for a
/// session cookie and removes it from the address bar.
fn url(ctx: &Context, host: &str, port: u16) -> anyhow::Result<ExitStatus> {
    let token = match rule::Settings::from_env().token {
        Some(token) => token,
        None => rule::read_token(&rule::token_file(ctx.home.root())).map_err(token_error)?,
    };
    println!("{}", login_link(host, port, &token));
    Ok(ExitStatus::Success)
}

fn login_link(host: &str, port: u16, token: &str) -> String {
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    // A wildcard bind is reached on loopback from here (or a published port).
    let shown = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => rule::DEFAULT_HOST.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => bare.to_string(),
    };
    let token: String = token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("http://{shown}:{port}/#token={token}")
}

fn config(message: String) -> anyhow::Error {
    CodedError {
        message,
        status: ExitStatus::Config,
    }
    .into()
}

fn token_error(e: TokenFileError) -> anyhow::Error {
    if e.is_config() {
        config(e.to_string())
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::login_link;

    #[test]
    fn login_links_put_the_escaped_token_in_the_fragment() {
        assert_eq!(
            login_link("127.0.0.1", 9119, "abc"),
            "http://127.0.0.1:9119/#token=abc"
        );
        assert_eq!(
            login_link("0.0.0.0", 80, "a b&c"),
            "http://127.0.0.1:80/#token=a%20b%26c"
        );
        assert_eq!(login_link("::1", 9119, "t"), "http://[::1]:9119/#token=t");
        assert_eq!(
            login_link("[::]", 9119, "t"),
            "http://127.0.0.1:9119/#token=t"
        );
    }
}
