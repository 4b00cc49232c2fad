//! What `hermes-bench` and the conformance suites share beyond the test kit
//! (`hermes-testkit`): the statistics of a benchmark run.
#![allow(clippy::disallowed_methods)] // dev-only

pub mod stats;
