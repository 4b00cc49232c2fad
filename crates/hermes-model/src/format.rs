//! Short texts for the fields of a [`Gateway`], shared by `hermes status` and
//! the TUI so both say the same thing the same way.

use crate::env::MainProgramView;
use crate::health::HealthState;
use crate::snapshot::{Gateway, GatewayLabel, HookView, SecretSource};

/// Whether colour may be used, given the value of `NO_COLOR`: no-color.org
/// says any value but the empty string turns colour off.
pub fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `9s`; `-` when unknown.
pub fn duration(secs: Option<u64>) -> String {
    let Some(s) = secs else {
        return "-".to_string();
    };
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// Uptime while up, `down <t>` while down.
pub fn uptime(g: &Gateway) -> String {
    match (g.up, g.uptime_secs, g.down_secs) {
        (true, up, _) => duration(up),
        (false, _, Some(down)) => format!("down {}", duration(Some(down))),
        _ => "-".to_string(),
    }
}

/// What `/health` said; a gateway that is down on purpose is `stopped` (its
/// silence is no news), one the supervisor is bringing back `restarting`.
pub fn health(g: &Gateway) -> String {
    let silent = matches!(
        g.health.state,
        HealthState::Unreachable | HealthState::Unknown
    );
    if silent && !g.up {
        match g.label {
            GatewayLabel::Stopped | GatewayLabel::Failed | GatewayLabel::NoSlot => {
                return "stopped".to_string()
            }
            GatewayLabel::Crashing => return "restarting".to_string(),
            _ => {}
        }
    }
    match (g.health.state, g.health.http_status) {
        (HealthState::Ok, _) => "ok".to_string(),
        (HealthState::Unknown, _) => "-".to_string(),
        (HealthState::Unhealthy, Some(code)) => format!("http {code}"),
        (HealthState::Unhealthy, None) => "unhealthy".to_string(),
        (HealthState::Unreachable, _) => "no answer".to_string(),
        (HealthState::WrongProfile, _) => match &g.health.answered_as {
            Some(other) => format!("answered as profile {other}"),
            None => "answered as no profile".to_string(),
        },
    }
}

/// How the gateway last ended and why, or a problem reading it; `-` when
/// nothing to say. Each fact once: the exit-78 reason already quotes the
/// exit code and the config error the gateway stopped on.
pub fn last_exit(g: &Gateway) -> String {
    let reason = g.exit_reason.as_deref().unwrap_or("");
    let mut parts = Vec::new();
    if let Some(e) = &g.last_exit {
        let how = match (e.code, e.signal) {
            (Some(code), _) => Some(format!("exit {code}")),
            (None, Some(sig)) => Some(format!("signal {sig}")),
            (None, None) => None,
        };
        parts.extend(how.filter(|h| !reason.contains(h.as_str())));
    }
    parts.extend(g.exit_reason.clone());
    parts.extend(
        g.config_error
            .as_ref()
            .filter(|e| !reason.contains(e.as_str()))
            .map(|e| format!("config: {e}")),
    );
    parts.extend(g.status_error.clone());
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join("; ")
    }
}

/// The main program in one line, the same in every front end.
pub fn main_program(m: &MainProgramView) -> String {
    if !m.applicable {
        return "n/a (not in a container)".to_string();
    }
    if m.server_mode {
        return "none (server mode: the container only supervises)".to_string();
    }
    let command = m
        .command
        .as_ref()
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    match (m.pid, m.running) {
        (Some(pid), Some(true)) => format!("running (pid {pid}){command}"),
        (Some(pid), _) => format!("not running (pid {pid} ended){command}"),
        (None, _) => "not started yet".to_string(),
    }
}

/// The gateway table's columns, the same in `hermes status`, `hermes gateway
/// status` and the TUI.
pub const COLUMNS: [&str; 9] = [
    "PROFILE",
    "STATE",
    "HEALTH",
    "PID",
    "PORT",
    "UPTIME",
    "RESTARTS",
    "DESIRED",
    "LAST EXIT",
];

/// One gateway's cells under [`COLUMNS`].
pub fn cells(g: &Gateway) -> [String; 9] {
    [
        g.profile.to_string(),
        g.label.as_str().to_string(),
        g.health_text.clone(),
        opt(g.pid),
        opt(g.port),
        uptime(g),
        g.restarts.to_string(),
        opt(g.desired_state.as_deref()),
        g.reason.clone(),
    ]
}

/// One hook: `gh github: 202 accepted 5m ago`, `st stripe: NO SECRET, no delivery yet`.
pub fn hook(h: &HookView, now_ms: u64) -> String {
    let secret = match h.secret {
        SecretSource::Missing => "NO SECRET, ",
        _ => "",
    };
    let last = match &h.last_delivery {
        Some(d) => format!(
            "{} {} {} ago",
            d.status,
            d.code,
            duration(Some(now_ms.saturating_sub(d.at_ms) / 1000))
        ),
        None => "no delivery yet".to_string(),
    };
    format!("{} {}: {secret}{last}", h.hook, h.scheme)
}

/// Every hook of a gateway in one line; `-` when it has none.
pub fn hooks(hooks: &[HookView], now_ms: u64) -> String {
    if hooks.is_empty() {
        return "-".to_string();
    }
    hooks
        .iter()
        .map(|h| hook(h, now_ms))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_with_any_value_but_empty_turns_colour_off() {
        use std::ffi::OsStr;
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some(OsStr::new(""))));
        assert!(!colour_allowed(Some(OsStr::new("1"))));
        assert!(!colour_allowed(Some(OsStr::new("false"))));
    }

    #[test]
    fn hooks_say_scheme_secret_and_last_delivery() {
        use hermes_core::config::Scheme;
        use hermes_core::deliveries::LastDelivery;
        let gh = HookView {
            hook: "gh".into(),
            scheme: Scheme::Github,
            secret: SecretSource::Profile,
            last_delivery: Some(LastDelivery {
                at_ms: 1_000,
                status: 202,
                code: "accepted".into(),
            }),
        };
        let st = HookView {
            hook: "st".into(),
            scheme: Scheme::Stripe,
            secret: SecretSource::Missing,
            last_delivery: None,
        };
        assert_eq!(
            hooks(&[gh, st], 301_000),
            "gh github: 202 accepted 5m 0s ago; st stripe: NO SECRET, no delivery yet"
        );
        assert_eq!(hooks(&[], 0), "-");
    }

    #[test]
    fn the_main_program_line_says_what_there_is() {
        let mut m = MainProgramView::not_applicable();
        assert_eq!(main_program(&m), "n/a (not in a container)");
        m.applicable = true;
        assert_eq!(main_program(&m), "not started yet");
        m.server_mode = true;
        assert_eq!(
            main_program(&m),
            "none (server mode: the container only supervises)"
        );
        m.server_mode = false;
        m.pid = Some(7);
        m.running = Some(true);
        assert_eq!(main_program(&m), "running (pid 7)");
        m.running = Some(false);
        assert_eq!(main_program(&m), "not running (pid 7 ended)");
    }

    #[test]
    fn durations_keep_two_units() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(9)), "9s");
        assert_eq!(duration(Some(250)), "4m 10s");
        assert_eq!(duration(Some(7500)), "2h 5m");
        assert_eq!(duration(Some(3 * 86_400 + 4 * 3600 + 5)), "3d 4h");
    }
}
