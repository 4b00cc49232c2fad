//! Integration tests: the real `hermes` binary against a real `s6-svscan`.
#![allow(clippy::disallowed_methods)] // tests

// /metrics from real gateways, checked by promtool and scraped by Prometheus.
mod metrics;
// Notifications: outbox, sender, a receiver on loopback.
mod notify;
// `hermes health`: the verdict against real gateways.
mod health;
// Profile files, names and aliases.
mod profiles;
// Registration at many slots: creates one after another, boot reconciliation.
mod registration;
// The webhook ingress in front of supervised gateways.
mod ingress;
// Gateway slots under a real supervisor: start, stop, crash, policy, delete.
mod supervision;
// `gateway logs`: archives, `-f` across a real rotation, `--all`.
mod logs;
