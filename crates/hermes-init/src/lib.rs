//! The container init, in three stages around s6:
//!
//! 1. `stage1` (the ENTRYPOINT, PID 1, root): service user, volume ownership,
//!    a clean scandir with the `dashboard` slot and `.s6-svscan/` scripts; forks
//!    stage 2 and execs `s6-svscan` as the service user.
//! 2. `stage2` (a root child of s6-svscan): waits for the supervisor, runs the
//!    boot reconciler as the service user, runs the main program (CMD) with the
//!    terminal, records its exit code and asks s6-svscan to shut down.
//! 3. `stage3` (`.s6-svscan/finish`, exec'd by s6-svscan as PID 1): ends what is
//!    left and exits with the recorded code.
//!
//! After stage 1 no root process executes anything the service user can write:
//! the supervision tree is the service user's, and stage 2 only runs the CMD
//! and fixed binaries.

pub mod pid1;
pub mod privilege;
pub mod reconcile;
pub mod route;
pub mod scandir;
pub mod stage1;
pub mod stage2;
pub mod stage3;
pub mod user;
pub mod volume;

use std::path::{Path, PathBuf};

pub use privilege::drop_to_home_owner_if_root;

/// The init's own runtime directory (root's; the service user may only write the control FIFO).
pub const RUN_DIR: &str = "/run/hermes";

/// Where the init keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    pub scandir: PathBuf,
    pub run_dir: PathBuf,
    /// The hermes binary (written into scripts, re-executed for stages).
    pub program: PathBuf,
}

impl Layout {
    pub fn new(scandir: &Path, program: &Path) -> Self {
        Layout {
            scandir: scandir.to_path_buf(),
            run_dir: PathBuf::from(RUN_DIR),
            program: program.to_path_buf(),
        }
    }

    /// Stop requests from `.s6-svscan/SIG*` (service user) to stage 2 (root).
    pub fn control_fifo(&self) -> PathBuf {
        self.run_dir.join("control")
    }

    /// The main program's exit code, written by stage 2, read by stage 3.
    pub fn exit_code_file(&self) -> PathBuf {
        self.run_dir.join("exit-code")
    }
}

/// Lines from the init go to stderr with one prefix, like tini's.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("hermes-init: {}", format_args!($($arg)*))
    };
}
