// The binary may call std::fs: anyhow's context names the path.
#![allow(clippy::disallowed_methods)]
use std::process::ExitCode;

use clap::Parser;

/// The C library runs `.preinit_array` before Rust's runtime start-up: the
/// earliest point a program can block the init's signals (see
/// `block_init_signals_at_start`). `main` blocks them again, for a libc
/// that has no `.preinit_array`.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".preinit_array"]
static BLOCK_INIT_SIGNALS_AT_START: unsafe extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = hermes_init::pid1::block_init_signals_at_start;

fn main() -> ExitCode {
    hermes_cli::block_init_signals();
    let args = match hermes_cli::slot_script::enter(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("hermes: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    let cli = hermes_cli::args::Cli::parse_from(hermes_cli::expand_alias(args));
    match hermes_cli::run(cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            eprintln!("hermes: {}", hermes_cli::error_line(&err));
            ExitCode::from(hermes_cli::exit_code_for(&err))
        }
    }
}
