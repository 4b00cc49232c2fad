//! Host service managers behind hermes' one `ServiceManager` trait: systemd,
//! launchd, Windows Scheduled Tasks, and `none` (which only says what to do
//! instead), plus `detect_service_manager` which picks one from facts.
//!
//! Each backend renders its files with a pure function, computes install and
//! uninstall as a `Plan` (printed by `--dry-run`, applied otherwise), and runs
//! every command through a `CommandRunner` so tests see the exact argv.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod choice;
mod commands;
pub mod detect;
pub mod host;
pub mod launchd;
mod listing;
pub mod none;
pub mod plan;
pub mod runner;
mod select;
mod spec;
pub mod systemd;
mod wait;
pub mod windows;
mod xml;

pub use detect::{detect_service_manager, Detection, Facts, HostFacts};
pub use host::HostEnv;
pub use plan::{Plan, Step};
pub use runner::{CommandRunner, Output, RecordingRunner, SystemRunner};
pub use select::HostBackend;
