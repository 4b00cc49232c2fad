//! The one integration-test binary of hermes-hostmgr: renderers (snapshots,
//! parse-back, `systemd-analyze verify`), and each backend's exact argv
//! sequences and exit-code mapping through the recording runner.
#![allow(clippy::disallowed_methods)] // tests

mod launchd;
mod systemd;
mod util;
mod windows;
