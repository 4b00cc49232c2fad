//! Drawing: a header with the manager, supervisor, main program and
//! dashboard; the gateway table coloured by the model's tone; a detail pane
//! with the selected gateway's facts and log; the keys; and the dialogs.

use hermes_model::snapshot::Tone;
use hermes_model::{format, Gateway};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::app::{App, Mode};

/// Most used first, so a narrow terminal cuts the least useful end.
const KEYS: &str = "s start  t stop  r restart  n new  d delete  f refresh  q quit  ↑↓ select";

/// The style of a tone; without colour (`NO_COLOR`) only "bad" stands out, in bold.
fn tone(app: &App, t: Tone) -> Style {
    let bad = Style::new().add_modifier(Modifier::BOLD);
    if !app.colour {
        return if t == Tone::Bad { bad } else { Style::new() };
    }
    match t {
        Tone::Good => Style::new().fg(Color::Green),
        Tone::Busy => Style::new().fg(Color::Yellow),
        Tone::Idle => Style::new().fg(Color::DarkGray),
        Tone::Bad => bad.fg(Color::Red),
    }
}

pub fn draw(frame: &mut Frame, app: &App) {
    let [header, table, detail, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Percentage(40),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    draw_table(frame, table, app);
    draw_detail(frame, detail, app);
    draw_footer(frame, footer, app);
    match &app.mode {
        Mode::Normal => {}
        Mode::ConfirmDelete(profile) => dialog(
            frame,
            "Delete profile",
            vec![
                Line::from(format!("Delete profile '{profile}'?")),
                Line::from("Its gateway is stopped and unregistered and its directory removed."),
                Line::from(""),
                Line::from(Span::styled(
                    "y delete   any other key cancels",
                    Style::new().add_modifier(Modifier::BOLD),
                )),
            ],
        ),
        Mode::NewProfile { input, error } => {
            let mut lines = vec![
                Line::from("Name of the new profile:"),
                Line::from(Span::styled(
                    format!("> {input}_"),
                    Style::new().add_modifier(Modifier::BOLD),
                )),
                Line::from(""),
                Line::from("Enter create   Esc cancel"),
            ];
            if let Some(e) = error {
                lines.push(Line::from(Span::styled(e.clone(), tone(app, Tone::Bad))));
            }
            dialog(frame, "New profile", lines);
        }
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let lines = match &app.snapshot {
        None => vec![Line::from("hermes — collecting…")],
        Some(s) => {
            let sup = &s.supervisor;
            let main = if s.main.applicable {
                match (s.main.pid, s.main.running) {
                    (Some(pid), Some(true)) => format!("running (pid {pid})"),
                    (Some(_), _) => "not running".to_string(),
                    (None, _) => "unknown".to_string(),
                }
            } else {
                "n/a".to_string()
            };
            vec![
                Line::from(vec![
                    Span::styled("hermes ", Style::new().add_modifier(Modifier::BOLD)),
                    Span::raw(format!("{} — {}", s.manager.kind, s.manager.reason)),
                ]),
                Line::from(vec![
                    Span::raw(format!("supervisor {} ", sup.name)),
                    if sup.reachable {
                        Span::styled("reachable", tone(app, Tone::Good))
                    } else {
                        Span::styled("NOT reachable", tone(app, Tone::Bad))
                    },
                    Span::raw(format!("   main {main}   dashboard ")),
                    Span::styled(s.dashboard.label, tone(app, s.dashboard.tone)),
                    Span::raw("   ingress "),
                    Span::styled(s.ingress.label, tone(app, s.ingress.tone)),
                    Span::raw(format!(
                        "   {}/{} up, {} failing",
                        s.summary.up, s.summary.gateways, s.summary.failing
                    )),
                ]),
            ]
        }
    };
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App) {
    let header = Row::new([
        "PROFILE", "STATE", "HEALTH", "PID", "PORT", "UPTIME", "RESTARTS", "DESIRED",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = app.gateways().iter().map(|g| {
        Row::new(vec![
            Cell::from(g.profile.to_string()),
            Cell::from(g.label.as_str()).style(tone(app, g.tone)),
            Cell::from(format::health(g)),
            Cell::from(format::opt(g.pid)),
            Cell::from(format::opt(g.port)),
            Cell::from(format::uptime(g)),
            Cell::from(g.restarts.to_string()),
            Cell::from(format::opt(g.desired_state.as_deref())),
        ])
    });
    let widths = [
        Constraint::Min(10),
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(8),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::new().borders(Borders::TOP).title(" gateways "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::new().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn detail_lines(g: &Gateway) -> Vec<Line<'static>> {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut lines = vec![
        Line::from(format!(
            "service {}   slot {}   supervised {}   up {}   ready {}   want {}",
            g.service,
            yes(g.slot),
            yes(g.supervised),
            yes(g.up),
            yes(g.ready),
            g.want.map_or("-", |w| match w {
                hermes_core::service::Want::Up => "up",
                hermes_core::service::Want::Down => "down",
            })
        )),
        Line::from(format!(
            "gateway_state {}   desired {}   last exit {}",
            format::opt(g.gateway_state.as_deref()),
            format::opt(g.desired_state.as_deref()),
            format::last_exit(g)
        )),
    ];
    if !g.hooks.is_empty() {
        lines.push(Line::from(format!("webhook hooks {}", g.hooks_summary)));
    }
    lines
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App) {
    let Some(g) = app.selected_gateway() else {
        frame.render_widget(Block::new().borders(Borders::TOP).title(" detail "), area);
        return;
    };
    let mut lines = detail_lines(g);
    let room = area.height.saturating_sub(1 + lines.len() as u16) as usize;
    let log: Vec<&String> = app.log_lines().collect();
    if log.is_empty() {
        lines.push(Line::from(Span::styled(
            "(no log lines yet)",
            tone(app, Tone::Idle),
        )));
    }
    lines.extend(
        log[log.len().saturating_sub(room)..]
            .iter()
            .map(|l| Line::from(l.to_string())),
    );
    let block = Block::new()
        .borders(Borders::TOP)
        .title(format!(" {} — log ", g.profile));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let status = match (&app.busy, &app.message) {
        (Some(busy), _) => Line::from(Span::styled(format!("{busy}…"), tone(app, Tone::Busy))),
        (None, Some(m)) if m.error => {
            Line::from(Span::styled(m.text.clone(), tone(app, Tone::Bad)))
        }
        (None, Some(m)) => Line::from(m.text.clone()),
        (None, None) => Line::from(""),
    };
    let keys = Line::from(Span::styled(
        KEYS,
        Style::new().add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(Paragraph::new(vec![status, keys]), area);
}

fn dialog(frame: &mut Frame, title: &str, lines: Vec<Line<'static>>) {
    let area = frame.area();
    let width = area.width.clamp(20, 70);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" {title} ")),
        ),
        rect,
    );
}
