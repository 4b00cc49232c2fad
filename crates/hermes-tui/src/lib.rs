//! `hermes --tui`: a full-screen console over the shared model. [`app`] holds
//! the state and turns keys into requests (no terminal needed, so it is
//! unit-tested); [`worker`] collects snapshots and runs actions off the UI
//! thread; [`view`] draws; [`term`] owns the terminal and gives it back on
//! exit, panic and SIGTERM.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod app;
mod term;
mod view;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hermes_model::{logs, Environment};
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use app::{App, Step};
use worker::{Update, Worker};

/// How often the model is collected again.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How often the selected gateway's log is read for new lines.
const LOG_EVERY: Duration = Duration::from_millis(500);
/// Longest wait for a key before looking at the worker and signals again.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("unable to set up the terminal: {0}")]
    Terminal(std::io::Error),
    #[error("unable to draw: {0}")]
    Draw(std::io::Error),
    #[error("unable to read terminal input: {0}")]
    Input(std::io::Error),
    #[error("unable to handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        source: nix::Error,
    },
}

/// How the console ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit.
    Quit,
    /// A terminating signal arrived (its number).
    Signal(i32),
}

/// Run the console until the user quits or a terminating signal arrives.
pub fn run(env: Arc<dyn Environment>) -> Result<Exit, TuiError> {
    term::install_signal_handlers()?;
    let mut terminal = term::Terminal::enter()?;
    let worker = Worker::spawn(env.clone(), REFRESH);
    let mut app = App::new();
    app.colour = hermes_model::format::colour_allowed(std::env::var_os("NO_COLOR").as_deref());
    let mut last_log = Instant::now() - LOG_EVERY;
    loop {
        if let Some(signal) = term::signalled() {
            return Ok(Exit::Signal(signal));
        }
        while let Some(update) = worker.poll() {
            match update {
                Update::Snapshot(snap) => app.on_snapshot(*snap),
                Update::Done(result) => app.on_done(result),
            }
        }
        if last_log.elapsed() >= LOG_EVERY {
            if let Some((profile, cursor)) = app.log_request() {
                let path = logs::gateway_log(env.home(), &profile);
                let chunk = logs::read_since(&path, cursor.as_deref(), app::LOG_LINES);
                app.on_log(&profile, chunk);
            }
            last_log = Instant::now();
        }
        terminal.draw(|frame| view::draw(frame, &app))?;
        match term::wait_input(TICK)? {
            // A terminal that went away does not always send SIGHUP (hermes
            // under a shell in tmux got none): end as if it had.
            term::Input::HungUp => return Ok(Exit::Signal(nix::libc::SIGHUP)),
            term::Input::Idle => {
                terminal.fit()?;
                continue;
            }
            term::Input::Ready => {}
        }
        // One read of the terminal can hold several keys (typed text, a
        // paste): take every one crossterm has parsed, not only the first.
        while event::poll(Duration::ZERO).map_err(TuiError::Input)? {
            match event::read().map_err(TuiError::Input)? {
                Event::Key(key) if key.kind != KeyEventKind::Release => match app.on_key(key) {
                    Step::Continue => {}
                    Step::Quit => return Ok(Exit::Quit),
                    Step::Send(request) => worker.send(request),
                },
                // The next draw resizes to the new size.
                Event::Resize(..) => terminal.clear()?,
                _ => {}
            }
        }
    }
}
