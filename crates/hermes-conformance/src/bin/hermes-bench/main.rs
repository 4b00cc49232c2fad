//! `hermes-bench`: the benchmark and chaos driver behind `bench/run` and
//! `bench/chaos`. Every figure is measured against the real `hermes` binary
//! and a real s6 tree, and where a baseline exists (supervisord, raw s6) it is
//! measured in the same invocation, on the same gateways, so the comparison
//! does not depend on what else the machine was doing another day.
#![allow(clippy::disallowed_methods)] // dev-only

mod chaos;
mod control;
mod figure;
mod fleet;
mod raw_register;
mod report;
mod scale;
mod status;
mod supervisord;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hermes-bench", about = "hermes benchmarks and chaos suite")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every benchmark and write bench/results/<date>.{md,json}.
    Report(report::Options),
    /// `gateway start|stop --all` at N profiles against raw s6 and supervisord.
    Fleet(fleet::Options),
    /// `hermes status` and `GET /api/status` at N profiles against `s6-svstat` on every slot and supervisord.
    Status(status::Options),
    /// Kill gateways, s6-supervise and s6-log at random under webhook load, then check invariants.
    Chaos(chaos::Options),
    /// Add services to a running s6-svscan as bare s6 does, until supervised: a registration's floor.
    RegisterRaw(raw_register::Options),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Report(opts) => report::run(opts),
        Cmd::Chaos(opts) => chaos::run(opts),
        Cmd::Fleet(opts) => fleet::run(opts),
        Cmd::Status(opts) => status::run(opts),
        Cmd::RegisterRaw(opts) => raw_register::run(opts),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hermes-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Where temp environments go: `$HERMES_BENCH_TMP`, else the system temp dir.
fn work_parent() -> PathBuf {
    std::env::var_os("HERMES_BENCH_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}
