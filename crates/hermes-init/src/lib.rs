//! The container init. `hermes container init` is the ENTRYPOINT and stays
//! PID 1 for the container's whole life:
//!
//! 1. `stage1` (root, or the `--user`): service user, volume ownership, the
//!    run directory and a clean scandir with the static slots (see `scandir`).
//! 2. `init`: starts `s6-svscan` as its child, running as the service user
//!    (the root of all supervision); runs the boot reconciler as the service
//!    user and the main program (CMD) with the terminal; on a stop signal or
//!    when the main program ends, stops the main program, then the tree, then
//!    whatever is left, and exits with the main program's code.
//!
//! No root process executes anything the service user can write: the
//! supervision tree is the service user's, and the init only runs the CMD
//! and fixed binaries.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod aliases;
pub mod boot;
pub mod follow;
pub mod init;
pub mod notes;
pub mod pid1;
pub mod place;
pub mod privilege;
pub mod reconcile;
pub mod rootdir;
pub mod route;
pub mod scandir;
pub mod stage1;
pub mod stopping;
pub mod user;
pub mod volume;

use std::path::{Path, PathBuf};

pub use privilege::drop_to_home_owner_if_root;

/// The init's own runtime directory (root's; the service group may read it).
pub const RUN_DIR: &str = "/run/hermes";

/// Where the init keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    pub scandir: PathBuf,
    pub run_dir: PathBuf,
    /// The hermes binary (written into scripts, run for the reconciler and hermes CMDs).
    pub program: PathBuf,
}

impl Layout {
    /// `run_dir`: `$HERMES_RUN_DIR` (set by stage 1 for everything it
    /// starts), else the one recorded in `home`, else `/run/hermes`.
    pub fn new(scandir: &Path, program: &Path, home: Option<&Path>) -> Self {
        Layout {
            scandir: scandir.to_path_buf(),
            run_dir: hermes_core::runtime::run_dir(home, PathBuf::from(RUN_DIR)),
            program: program.to_path_buf(),
        }
    }
}

/// Lines from the init go to stderr with one prefix, like tini's.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("hermes-init: {}", format_args!($($arg)*))
    };
}
