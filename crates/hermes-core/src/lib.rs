//! The shared vocabulary of hermes: validated names, the `HERMES_HOME` layout,
//! profile files, the gateway state file, the exit-code table and the
//! service-manager trait. No part of hermes talks to a supervisor from here;
//! the backends live in their own crates.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod boot;
pub mod config;
pub mod ct;
pub mod dashboard;
pub mod deliveries;
pub mod dirfd;
pub mod exit;
pub mod fifo;
pub mod fsutil;
pub mod home;
pub mod http;
pub mod ingress;
pub mod lifecycle;
pub mod logs;
pub mod name;
pub mod notify;
pub mod pool;
pub mod ports;
pub mod profile;
pub mod runtime;
pub mod service;
pub mod state;
pub mod volume_lock;
pub mod wait;

pub use exit::ExitStatus;
pub use home::HermesHome;
pub use name::{NameError, ProfileName};
