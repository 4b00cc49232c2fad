//! The sender as a long-running service: passes until SIGTERM, then a short
//! last try to deliver what is owed (the init queues "stopping" before it
//! brings the tree down, so that one goes out too).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hermes_core::home::HermesHome;
use hermes_core::state;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sender::{Sender, Settings};

/// How often the outbox and the failing gateways are looked at.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the last try after SIGTERM may take (s6 kills at 3 s).
const LAST_TRY: Duration = Duration::from_secs(2);

/// Run until SIGTERM or SIGINT; `Err` only when the signals cannot be
/// taken. They are blocked and read from a signalfd, so the wait between
/// passes ends the moment one comes: with a handler and a sleep in 50 ms
/// steps, every container's teardown waited up to 50 ms for this service
/// (40 ms of a `docker run IMAGE true`). The sender starts no process, so
/// the blocked mask is inherited by nothing.
pub fn run(home: HermesHome, settings: Settings) -> Result<(), nix::Error> {
    let mut stops = SigSet::empty();
    stops.add(Signal::SIGTERM);
    stops.add(Signal::SIGINT);
    stops.thread_block()?;
    let stop = SignalFd::with_flags(&stops, SfdFlags::SFD_CLOEXEC)?;
    let mut sender = Sender::new(home, settings);
    loop {
        sender.pass(state::now_ms());
        if stop_within(&stop, POLL)? {
            break;
        }
    }
    let deadline = Instant::now() + LAST_TRY;
    // What is not delivered now stays in the outbox for the next boot.
    while sender.pass(state::now_ms()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Whether a stop signal is pending or arrives within `wait` (left pending:
/// nothing reads it, and the process ends soon after).
fn stop_within(stop: &SignalFd, wait: Duration) -> Result<bool, nix::Error> {
    let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(ready) => Ok(ready > 0),
        // A signal with a handler (none is set here): look again next pass.
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::pthread::{pthread_kill, pthread_self};

    #[test]
    fn a_stop_signal_ends_the_wait_between_passes_at_once() {
        let mut stops = SigSet::empty();
        stops.add(Signal::SIGTERM);
        // Blocked in this thread only, so the signal is sent to this thread.
        stops.thread_block().unwrap();
        let stop = SignalFd::with_flags(&stops, SfdFlags::SFD_NONBLOCK).unwrap();
        assert!(!stop_within(&stop, Duration::from_millis(20)).unwrap());

        let waiter = pthread_self();
        let signaller = std::thread::spawn(move || {
            // Sent while the wait below is (most likely) under way; sent
            // before it, the signal is pending and ends it just the same.
            std::thread::sleep(Duration::from_millis(100));
            pthread_kill(waiter, Signal::SIGTERM).unwrap();
        });
        let asked = Instant::now();
        assert!(stop_within(&stop, Duration::from_secs(60)).unwrap());
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "the wait ran its course: {:?}",
            asked.elapsed()
        );
        signaller.join().unwrap();
        assert_eq!(
            stop.read_signal().unwrap().map(|info| info.ssi_signo),
            Some(Signal::SIGTERM as u32)
        );
    }
}
