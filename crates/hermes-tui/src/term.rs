//! The terminal, borrowed for the console's lifetime: raw mode, the
//! alternate screen and a hidden cursor, all given back when the guard drops,
//! when the process panics, and (through the main loop) on SIGTERM/SIGHUP.

use std::io::{self, Stdout};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
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

/// What the terminal's input did while we waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Bytes to read: crossterm can parse a key without blocking.
    Ready,
    /// Nothing within the wait, or a signal came.
    Idle,
    /// The terminal is gone (its tmux or ssh session killed).
    HungUp,
}

/// Wait up to `timeout` for input on stdin, the terminal crossterm reads.
///
/// crossterm's own poll must not see a hung-up terminal: it then reads
/// end-of-file in a loop that never returns (crossterm 0.29, `try_read`),
/// which kept a console whose tmux had gone at half a core for an hour.
pub fn wait_input(timeout: Duration) -> Result<Input, TuiError> {
    let stdin = io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let wait = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, wait) {
        Ok(0) | Err(Errno::EINTR) => Ok(Input::Idle),
        Err(e) => Err(TuiError::Input(e.into())),
        Ok(_) => {
            let got = fds[0].revents().unwrap_or(PollFlags::empty());
            if got.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                Ok(Input::HungUp)
            } else {
                Ok(Input::Ready)
            }
        }
    }
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

    /// Lay the screen out again when the terminal's size changed: crossterm
    /// reports a resize only from its own poll, which runs only on input.
    pub fn fit(&mut self) -> Result<(), TuiError> {
        let size = self.inner.size().map_err(TuiError::Draw)?;
        if size != self.inner.get_frame().area().as_size() {
            self.clear()?;
        }
        Ok(())
    }

    pub fn clear(&mut self) -> Result<(), TuiError> {
        self.inner.autoresize().map_err(TuiError::Draw)?;
        // ratatui's clear first asks the terminal where the cursor is and
        // fails when the answer takes over 2 s (a loaded machine): that is no
        // reason to end the console, which autoresize has already laid out
        // for the new size. A terminal that is gone fails the next draw.
        let _ = self.inner.clear();
        Ok(())
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
