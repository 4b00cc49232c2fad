//! `hermes --tui`, `hermes tui`, and `hermes` alone: the terminal console over
//! the shared model. Without a terminal there is nothing to draw on: print the
//! help and exit 2 instead of hanging or failing oddly.

use std::io::IsTerminal;
use std::sync::Arc;

use clap::CommandFactory;
use hermes_core::ExitStatus;
use hermes_tui::Exit;

use super::status::env::CliEnv;
use crate::args::Cli;
use crate::Context;

pub fn run(ctx: &Context) -> anyhow::Result<ExitStatus> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        eprintln!("{}", Cli::command().render_help());
        eprintln!(
            "hermes: the console (--tui) needs a terminal; run one of the commands above instead"
        );
        return Ok(ExitStatus::Usage);
    }
    Ok(match hermes_tui::run(Arc::new(CliEnv::new(ctx)))? {
        Exit::Quit => ExitStatus::Success,
        Exit::Signal(signal) => ExitStatus::from_wait(None, Some(signal)),
    })
}
