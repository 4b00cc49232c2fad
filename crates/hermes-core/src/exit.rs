//! The one exit-code table of hermes (documented in README.md).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | failure (a command failed; the message says what) |
//! | 2 | usage (bad arguments, bad names) |
//! | 75 | the profile's gateway is already running (lock held) |
//! | 78 | fatal configuration: never restarted by the supervisor |
//! | n | the container init passes on the main program's own code |
//! | 128+n | the main program died of signal n |

/// A process outcome that maps onto the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Usage,
    AlreadyRunning,
    Config,
    /// A code passed through from a program hermes ran.
    External(u8),
}

impl ExitStatus {
    pub const ALREADY_RUNNING_CODE: u8 = 75;
    pub const CONFIG_CODE: u8 = 78;

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::AlreadyRunning => Self::ALREADY_RUNNING_CODE,
            ExitStatus::Config => Self::CONFIG_CODE,
            ExitStatus::External(code) => code,
        }
    }

    /// The shell convention for a wait status: the exit code, or 128+n for signal n.
    pub fn from_wait(code: Option<i32>, signal: Option<i32>) -> Self {
        match (code, signal) {
            (Some(code), _) => ExitStatus::External((code & 0xff) as u8),
            (None, Some(sig)) => ExitStatus::External((128 + (sig & 0x7f)) as u8),
            (None, None) => ExitStatus::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_codes() {
        assert_eq!(ExitStatus::Success.code(), 0);
        assert_eq!(ExitStatus::Failure.code(), 1);
        assert_eq!(ExitStatus::Usage.code(), 2);
        assert_eq!(ExitStatus::AlreadyRunning.code(), 75);
        assert_eq!(ExitStatus::Config.code(), 78);
    }

    #[test]
    fn wait_status_maps_signals_to_128_plus_n() {
        assert_eq!(ExitStatus::from_wait(Some(42), None).code(), 42);
        assert_eq!(ExitStatus::from_wait(None, Some(15)).code(), 143);
        assert_eq!(ExitStatus::from_wait(None, Some(9)).code(), 137);
    }
}
