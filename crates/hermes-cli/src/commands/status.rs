//! `hermes status [--json]`: the manager (and why), the supervisor, and one
//! line per service, from the shared model. `--json` prints the model itself,
//! the same document as the dashboard's `GET /api/status`.

pub(super) mod env;

use std::io::{IsTerminal, Write};

use hermes_core::service::ServiceStatus;
use hermes_core::ExitStatus;
use hermes_model::snapshot::{Snapshot, Tone};
use hermes_model::{format, Gateway};

use crate::Context;

pub fn run(ctx: &Context, json: bool) -> anyhow::Result<ExitStatus> {
    let snap = Snapshot::collect(&env::CliEnv::new(ctx));
    let text = if json {
        serde_json::to_string_pretty(&snap)? + "\n"
    } else {
        render(&snap, Paint::for_stdout())
    };
    print_all(&text)?;
    Ok(ExitStatus::Success)
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
pub(super) fn print_all(text: &str) -> std::io::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// ANSI colour, only when stdout is a terminal and `NO_COLOR` does not forbid it.
#[derive(Clone, Copy)]
pub(super) struct Paint(bool);

impl Paint {
    pub(super) fn for_stdout() -> Paint {
        Paint(
            std::io::stdout().is_terminal()
                && hermes_model::format::colour_allowed(std::env::var_os("NO_COLOR").as_deref()),
        )
    }

    pub(super) fn tone(self, tone: Tone, text: &str) -> String {
        if !self.0 {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Busy => "33",
            Tone::Idle => "2",
            Tone::Bad => "31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

fn render(snap: &Snapshot, paint: Paint) -> String {
    let mut text = String::new();
    let m = &snap.manager;
    text.push_str(&format!("Manager     {} ({})\n", m.kind, m.reason));
    let s = &snap.supervisor;
    let place = s
        .scandir
        .as_ref()
        .map(|d| format!(" on {}", d.display()))
        .unwrap_or_default();
    let reach = match (&s.reachable, &s.detail) {
        (true, _) => paint.tone(Tone::Good, "reachable"),
        (false, Some(d)) => paint.tone(Tone::Bad, &format!("NOT reachable: {d}")),
        (false, None) => paint.tone(Tone::Bad, "NOT reachable"),
    };
    text.push_str(&format!("Supervisor  {}{place}: {reach}\n", s.name));
    let main_tone = match (snap.main.applicable, snap.main.running) {
        (true, Some(true)) => Tone::Good,
        (true, Some(false)) => Tone::Bad,
        _ => Tone::Idle,
    };
    let main = paint.tone(main_tone, &snap.main.text);
    text.push_str(&format!("Main        {main}\n"));
    let d = &snap.dashboard;
    let pid = pid_suffix(d.service.as_ref());
    text.push_str(&format!(
        "Dashboard   {} ({}:{}{pid}{})\n",
        paint.tone(d.tone, d.label),
        d.host,
        d.port,
        if d.token_set { ", token required" } else { "" }
    ));
    let i = &snap.ingress;
    let pid = pid_suffix(i.service.as_ref());
    let port = i.port.map_or("?".to_string(), |p| p.to_string());
    let public = i
        .public_url
        .as_ref()
        .map(|u| format!(", public {u}"))
        .unwrap_or_default();
    text.push_str(&format!(
        "Ingress     {} ({}:{port}{pid}{public})\n",
        paint.tone(i.tone, i.label),
        i.host,
    ));
    for e in &snap.errors {
        text.push_str(&format!(
            "{}\n",
            paint.tone(Tone::Bad, &format!("error: {e}"))
        ));
    }
    text.push('\n');
    text.push_str(&table(&snap.gateways, paint));
    let with_hooks: Vec<&Gateway> = snap
        .gateways
        .iter()
        .filter(|g| !g.hooks.is_empty())
        .collect();
    if !with_hooks.is_empty() {
        text.push_str("\nWebhook hooks (scheme: last delivery)\n");
        for g in with_hooks {
            for h in &g.hooks {
                text.push_str(&format!(
                    "  {:<12} {}\n",
                    g.profile.as_str(),
                    format::hook(h, snap.taken_at)
                ));
            }
        }
    }
    let sum = &snap.summary;
    text.push_str(&format!(
        "\n{} gateways: {} up, {} stopped, {} failing, {} without a slot\n",
        sum.gateways, sum.up, sum.stopped, sum.failing, sum.without_slot
    ));
    text
}

/// The gateway table of `hermes status` and `hermes gateway status`.
pub(super) fn table(gateways: &[Gateway], paint: Paint) -> String {
    let rows: Vec<[String; 9]> = gateways.iter().map(format::cells).collect();
    let mut widths = format::COLUMNS.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String], state_tone: Option<Tone>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            // Pad before painting so escape codes do not count as width.
            let padded = if last {
                cell.clone()
            } else {
                format!("{cell:<w$}  ", w = widths[i])
            };
            match (i, state_tone) {
                (1, Some(tone)) => out.push_str(&paint.tone(tone, &padded)),
                _ => out.push_str(&padded),
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut text = line(&format::COLUMNS.map(String::from), None);
    for (g, r) in gateways.iter().zip(&rows) {
        text.push_str(&line(r, Some(g.tone)));
    }
    text
}

/// `, pid N` for a static slot's running process, or nothing.
fn pid_suffix(service: Option<&ServiceStatus>) -> String {
    service
        .and_then(|s| s.pid)
        .map(|p| format!(", pid {p}"))
        .unwrap_or_default()
}
