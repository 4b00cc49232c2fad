//! `hermes [-p P] gateway logs [-f] [-n N] [--all]`: a profile's s6-log
//! output, or every profile's interleaved by time (`hermes_model::logs`).

use std::io::Write;
use std::time::Duration;

use hermes_core::{profile, ExitStatus, ProfileName};
use hermes_model::logs::{interleave, Follower};

use crate::args::LogsArgs;
use crate::Context;

/// How often a follower looks for new lines.
const POLL: Duration = Duration::from_millis(200);

pub fn run(ctx: &Context, args: &LogsArgs) -> anyhow::Result<ExitStatus> {
    let profiles = if args.all {
        // Only gateways that ever ran under s6 (the names' width is theirs).
        profile::list(&ctx.home)?
            .into_iter()
            .filter(|p| ctx.home.gateway_log_dir(p).is_dir())
            .collect()
    } else {
        profile::existing(&ctx.home, &ctx.profile)?;
        vec![ctx.profile.clone()]
    };
    let mut followers: Vec<(ProfileName, Follower)> = profiles
        .into_iter()
        .map(|p| {
            let f = Follower::new(&ctx.home.gateway_log_dir(&p));
            (p, f)
        })
        .collect();
    if !args.all && !args.follow {
        let dir = ctx.home.gateway_log_dir(&ctx.profile);
        if !dir.join("current").exists() {
            eprintln!(
                "hermes: no log yet: {} does not exist (the gateway has not run under s6)",
                dir.join("current").display()
            );
        }
    }
    let backlog: Vec<(String, Vec<String>)> = followers
        .iter_mut()
        .map(|(p, f)| (p.to_string(), f.backlog(args.lines)))
        .collect();
    if !emit(&backlog, args.all, args.lines) || !args.follow {
        return Ok(ExitStatus::Success);
    }
    loop {
        std::thread::sleep(POLL);
        let fresh: Vec<(String, Vec<String>)> = followers
            .iter_mut()
            .map(|(p, f)| (p.to_string(), f.poll()))
            .collect();
        if !emit(&fresh, args.all, usize::MAX) {
            return Ok(ExitStatus::Success);
        }
    }
}

/// Print the lines (the last `max` of them with `--all`); false once the
/// reader has gone away (`| head`).
fn emit(sources: &[(String, Vec<String>)], all: bool, max: usize) -> bool {
    let lines = if all {
        let mut lines = interleave(sources);
        lines.drain(..lines.len().saturating_sub(max));
        lines
    } else {
        sources.iter().flat_map(|(_, l)| l.clone()).collect()
    };
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}
