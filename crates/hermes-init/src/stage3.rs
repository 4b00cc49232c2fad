//! Stage 3, `.s6-svscan/finish`: s6-svscan has brought every service down
//! (SIGTERM, each slot's `timeout-kill`, loggers drained on EOF) and execs
//! this as the container's PID 1. End whatever is still running, then exit
//! with the main program's code as stage 2 recorded it.

use std::time::Duration;

use hermes_core::fsutil;

use crate::{pid1, say, Layout};

/// Grace for stragglers (processes outside any slot) between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// The recorded code; 0 when the tree was shut down by someone else
/// (`s6-svscanctl -t` by hand) and no main program ended.
pub fn recorded_code(layout: &Layout) -> u8 {
    fsutil::read_no_follow(&layout.exit_code_file())
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(0)
}

pub fn run(layout: &Layout) -> u8 {
    // kill(-1) outside an init's role would hit every process of the user.
    let init = pid1::is_pid1() || pid1::is_subreaper();
    if init && pid1::terminate_everyone(GRACE) {
        say!("killed processes still running {GRACE:?} after SIGTERM");
    }
    recorded_code(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_defaults_to_zero_and_reads_what_stage2_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = Layout::new(dir.path(), "/usr/bin/hermes".as_ref());
        layout.run_dir = dir.path().to_path_buf();
        assert_eq!(recorded_code(&layout), 0);
        std::fs::write(layout.exit_code_file(), "42\n").unwrap();
        assert_eq!(recorded_code(&layout), 42);
    }
}
