//! Boot lines that inform rather than warn ("gave 3 entries of /opt/data to
//! 10000:10000", "server mode: …"). The main program owns the container's
//! output: with a CMD they are only kept for `logs/container-boot.log`; in
//! server mode, or with `HERMES_VERBOSE=1`, they also go to stderr. Problems
//! go to stderr always (`say!`), and nothing of the init goes to stdout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static LOUD: AtomicBool = AtomicBool::new(false);
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether notes also go to stderr (set once, before the first note).
pub fn set_loud(loud: bool) {
    LOUD.store(loud, Ordering::SeqCst);
}

pub fn is_loud() -> bool {
    LOUD.load(Ordering::SeqCst)
}

/// `HERMES_VERBOSE=1` asks for the notes on stderr whatever the mode.
pub fn verbose_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim() == "1")
}

pub fn record(line: String) {
    if is_loud() {
        eprintln!("hermes-init: {line}");
    }
    record_for_boot_log(line);
}

/// A note for the boot log alone, even in server mode: figures for tools,
/// not news for the operator.
pub fn record_for_boot_log(line: String) {
    LINES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(line);
}

/// The notes so far, for the boot log; later ones start a new batch.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *LINES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// A boot note (see the module documentation).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::notes::record(format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_kept_for_the_boot_log_and_verbose_means_1() {
        record("a".into());
        record("b".into());
        let taken = take();
        assert!(taken.ends_with(&["a".to_string(), "b".to_string()]));
        assert!(take().is_empty());
        assert!(verbose_requested(Some("1")));
        assert!(!verbose_requested(Some("0")));
        assert!(!verbose_requested(None));
    }
}
