//! `hermes dashboard`: a web page and a JSON API over the hermes model
//! (`hermes_model`), served by the binary itself. [`api`] routes and handles
//! requests independent of HTTP plumbing; [`server`] is the hyper glue;
//! [`auth`] decides who may call what; [`metrics`] serves `GET /metrics`.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod api;
mod assets;
pub mod auth;
mod limit;
pub mod metrics;
pub mod server;

pub use server::{Dashboard, DashboardError, Settings, REQUEST_TIMEOUT};
