//! The terminal, borrowed for the console's lifetime: raw mode, the
//! alternate screen and a hidden cursor, all given back when the guard drops,
//! when the process panics, and (through the main loop) on SIGTERM/SIGHUP.

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Frame;

use crate::TuiError;

/// The last terminating signal received; 0 when none.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);
/// Whether the terminal is currently ours to give back.
static TAKEN: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

extern "C" fn on_signal(signal: std::ffi::c_int) {
    // Only an atomic store: async-signal-safe. The main loop restores the terminal.
    SIGNALLED.store(signal, Ordering::SeqCst);
}

pub fn install_signal_handlers() -> Result<(), TuiError> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for (signal, name) in [
        (Signal::SIGTERM, "SIGTERM"),
        (Signal::SIGHUP, "SIGHUP"),
        (Signal::SIGINT, "SIGINT"),
    ] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(|source| TuiError::Signal {
            signal: name,
            source,
        })?;
    }
    Ok(())
}

pub fn signalled() -> Option<i32> {
    Some(SIGNALLED.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// Give the terminal back; safe to call more than once and from the panic hook.
pub fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// Restore the terminal before the panic message is printed, so it is readable.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

pub struct Terminal {
    inner: ratatui::Terminal<CrosstermBackend<Stdout>>,
}

impl Terminal {
    pub fn enter() -> Result<Terminal, TuiError> {
        install_panic_hook();
        enable_raw_mode().map_err(TuiError::Terminal)?;
        TAKEN.store(true, Ordering::SeqCst);
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen) {
            restore();
            return Err(TuiError::Terminal(e));
        }
        let inner = ratatui::Terminal::new(CrosstermBackend::new(io::stdout())).map_err(|e| {
            restore();
            TuiError::Terminal(e)
        })?;
        Ok(Terminal { inner })
    }

    pub fn draw(&mut self, render: impl FnOnce(&mut Frame)) -> Result<(), TuiError> {
        self.inner.draw(render).map(|_| ()).map_err(TuiError::Draw)
    }

    pub fn clear(&mut self) -> Result<(), TuiError> {
        self.inner.autoresize().map_err(TuiError::Draw)?;
        self.inner.clear().map_err(TuiError::Draw)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_gives_the_terminal_back_first() {
        install_panic_hook();
        TAKEN.store(true, Ordering::SeqCst);
        let result = std::panic::catch_unwind(|| panic!("boom"));
        assert!(result.is_err());
        assert!(!TAKEN.load(Ordering::SeqCst), "the hook did not restore");
    }
}
