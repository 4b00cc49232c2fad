//! The one model of everything hermes supervises, shared by `hermes status`,
//! `hermes doctor`, the web dashboard and the TUI: a [`Snapshot`] of the main
//! program, the dashboard slot and every gateway; the actions that change them
//! ([`actions`]) and their audit lines ([`audit`]); log tails ([`logs`]); the doctor checks ([`doctor`]); and
//! the health verdict ([`verdict`]); the Prometheus metrics ([`metrics`]).
//! Where the data comes from is behind [`Environment`], so every front end and
//! every test reads and acts through the same code.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod actions;
pub mod audit;
pub mod doctor;
pub mod env;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod format;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod snapshot;
pub mod verdict;

pub use actions::{ActionError, ActionReport};
pub use env::{DashboardSettings, Environment, MainProgramView, ManagerChoice, SupervisorView};
pub use hermes_core::lifecycle::Action;
pub use snapshot::{Gateway, GatewayLabel, IngressView, Snapshot};
