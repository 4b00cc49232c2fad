//! Drawing: a header with the manager, supervisor, main program and
//! dashboard; the gateway table coloured by the model's tone; a detail pane
//! with the selected gateway's facts and log; the keys; and the dialogs.

use hermes_model::format::{self, cells, COLUMNS};
use hermes_model::snapshot::Tone;
use hermes_model::Gateway;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::app::{App, Mode, Sort, KEYS};

/// Most used first, so a narrow terminal cuts the least useful end; `?` lists all.
const FOOTER_KEYS: [&str; 14] = [
    "? help",
    "s start",
    "t stop",
    "r restart",
    "/ filter",
    "o sort",
    "z log",
    "w wrap",
    "PgUp/PgDn scroll",
    "S/T all",
    "n new",
    "d delete",
    "f refresh",
    "q quit",
];

/// The footer's keys packed into lines of `width`, never splitting one.
fn footer_keys(width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for key in FOOTER_KEYS {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.chars().count() + 2 + key.chars().count() > width {
            lines.push(key.to_string());
        } else {
            if !line.is_empty() {
                line.push_str("  ");
            }
            line.push_str(key);
        }
    }
    lines
}

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
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        // The status line, and the keys over up to two lines.
        Constraint::Length(3),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    if app.log_full {
        draw_detail(frame, body, app);
    } else {
        let [table, detail] =
            Layout::vertical([Constraint::Min(5), Constraint::Percentage(40)]).areas(body);
        draw_table(frame, table, app);
        draw_detail(frame, detail, app);
    }
    draw_footer(frame, footer, app);
    match &app.mode {
        Mode::Normal | Mode::Filter => {}
        Mode::Help => dialog(
            frame,
            "Keys (any key closes)",
            KEYS.iter()
                .map(|(k, what)| {
                    Line::from(vec![
                        Span::styled(
                            format!("{k:>13}  "),
                            Style::new().add_modifier(Modifier::BOLD),
                        ),
                        Span::raw(*what),
                    ])
                })
                .collect(),
        ),
        Mode::ConfirmStopAll => dialog(
            frame,
            "Stop every gateway",
            vec![
                Line::from(format!("Stop all {} gateways?", app.gateways().len())),
                Line::from(""),
                Line::from(Span::styled(
                    "y stop all   any other key cancels",
                    Style::new().add_modifier(Modifier::BOLD),
                )),
            ],
        ),
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
            let main = &s.main.text;
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

/// Each column as wide as its widest cell; the last (the reason) takes the rest.
fn widths(rows: &[[String; 9]]) -> Vec<Constraint> {
    (0..COLUMNS.len())
        .map(|i| {
            if i == COLUMNS.len() - 1 {
                return Constraint::Fill(1);
            }
            let widest = rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([COLUMNS[i].len()])
                .max()
                .unwrap_or(0);
            Constraint::Length(widest as u16)
        })
        .collect()
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App) {
    let visible = app.visible();
    let texts: Vec<[String; 9]> = visible.iter().map(|g| cells(g)).collect();
    let header = Row::new(COLUMNS).style(Style::new().add_modifier(Modifier::BOLD));
    let rows = visible.iter().zip(&texts).map(|(g, t)| {
        Row::new(t.iter().enumerate().map(|(i, text)| {
            let cell = Cell::from(text.clone());
            if i == 1 {
                cell.style(tone(app, g.tone))
            } else {
                cell
            }
        }))
    });
    let mut title = format!(" gateways {}/{} ", visible.len(), app.gateways().len());
    if app.mode == Mode::Filter || !app.filter.is_empty() {
        let cursor = if app.mode == Mode::Filter { "_" } else { "" };
        title.push_str(&format!("— filter: {}{cursor} ", app.filter));
    }
    if app.sort != Sort::Model {
        title.push_str(&format!("— sorted by {} ", app.sort.name()));
    }
    let table = Table::new(rows, widths(&texts))
        .header(header)
        .column_spacing(2)
        .block(Block::new().borders(Borders::TOP).title(title))
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

/// Cut `line` into pieces of `width` characters, so a long line is read in full.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() || width == 0 {
        return vec![line.to_string()];
    }
    chars.chunks(width).map(|c| c.iter().collect()).collect()
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App) {
    let Some(g) = app.selected_gateway() else {
        frame.render_widget(Block::new().borders(Borders::TOP).title(" detail "), area);
        return;
    };
    let mut lines = detail_lines(g);
    let room = area.height.saturating_sub(1 + lines.len() as u16) as usize;
    let width = area.width as usize;
    let log: Vec<String> = if app.log_wrap {
        app.log_lines().flat_map(|l| wrap(l, width)).collect()
    } else {
        app.log_lines().cloned().collect()
    };
    if log.is_empty() {
        lines.push(Line::from(Span::styled(
            "(no log lines yet)",
            tone(app, Tone::Idle),
        )));
    }
    // Scrolled back at most to the first line.
    let scroll = app.log_scroll.min(log.len().saturating_sub(room));
    let end = log.len() - scroll;
    lines.extend(
        log[end.saturating_sub(room)..end]
            .iter()
            .map(|l| Line::from(l.clone())),
    );
    let mut title = format!(" {} — log ", g.profile);
    if scroll > 0 {
        title.push_str(&format!("— {scroll} lines back (PgDn) "));
    }
    if !app.log_wrap {
        title.push_str("— not wrapped (w) ");
    }
    let block = Block::new().borders(Borders::TOP).title(title);
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
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let keys: Vec<Line> = footer_keys(area.width as usize)
        .into_iter()
        .map(|l| Line::from(Span::styled(l, bold)))
        .collect();
    let [status_area, keys_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(status), status_area);
    // The end that matters most (quit) stays on screen when two lines are not enough.
    let skip = keys.len().saturating_sub(keys_area.height as usize);
    frame.render_widget(Paragraph::new(keys[skip..].to_vec()), keys_area);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_keys_fill_lines_without_splitting_a_key() {
        let lines = footer_keys(72);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 72), "{lines:?}");
        assert_eq!(lines.join("  "), FOOTER_KEYS.join("  "));
        assert_eq!(wrap("abcdef", 4), ["abcd", "ef"]);
    }
}
