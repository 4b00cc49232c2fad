use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hermes_cli::block_init_signals();
    let cli = hermes_cli::args::Cli::parse();
    match hermes_cli::run(cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            eprintln!("hermes: {}", hermes_cli::error_line(&err));
            ExitCode::from(hermes_cli::exit_code_for(&err))
        }
    }
}
