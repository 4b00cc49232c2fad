//! The sender as a long-running service: passes until SIGTERM, then a short
//! last try to deliver what is owed (the init queues "stopping" before it
//! brings the tree down, so that one goes out too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hermes_core::home::HermesHome;
use hermes_core::state;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::sender::{Sender, Settings};

/// How often the outbox and the failing gateways are looked at.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the last try after SIGTERM may take (s6 kills at 3 s).
const LAST_TRY: Duration = Duration::from_secs(2);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: std::os::raw::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Run until SIGTERM or SIGINT; `Err` only when the handlers cannot be set.
pub fn run(home: HermesHome, settings: Settings) -> Result<(), nix::Error> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }?;
    }
    let mut sender = Sender::new(home, settings);
    while !STOP.load(Ordering::SeqCst) {
        sender.pass(state::now_ms());
        let until = Instant::now() + POLL;
        while Instant::now() < until && !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let deadline = Instant::now() + LAST_TRY;
    // What is not delivered now stays in the outbox for the next boot.
    while sender.pass(state::now_ms()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
