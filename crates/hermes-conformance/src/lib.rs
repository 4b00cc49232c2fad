//! Shared harness of the conformance suites and of `hermes-bench`: a private
//! `HERMES_HOME`/scandir per test, the real `hermes` binary, a real
//! `s6-svscan` started through `hermes supervise`, and small independent
//! clients (HTTP, webhook signing, `/proc`) so that nothing here trusts the
//! code under test to check itself.

pub mod harness;
pub mod http;
pub mod procs;
pub mod stats;

pub use harness::{hermes_bin, Env};
