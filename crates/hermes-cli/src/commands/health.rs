//! `hermes health [--live] [--json]`: the model's verdict. Exit 0 when
//! healthy; else exit 1 with one line per problem, each naming what is wrong
//! and what to do (the image's HEALTHCHECK runs this, and `docker inspect`
//! shows its output).

use hermes_core::ExitStatus;
use hermes_model::health;
use hermes_model::verdict::{self, Verdict};
use hermes_model::Environment;

use super::status::env::CliEnv;
use super::status::print_all;
use crate::args::HealthArgs;
use crate::Context;

pub fn run(ctx: &Context, args: &HealthArgs) -> anyhow::Result<ExitStatus> {
    let env = CliEnv::new(ctx);
    let v = if args.live {
        verdict::live(&env.supervisor())
    } else {
        verdict::collect(&env, health::DEFAULT_TIMEOUT)
    };
    let text = if args.json {
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        render(&v)
    };
    print_all(&text)?;
    Ok(if v.ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn render(v: &Verdict) -> String {
    if v.ok {
        return v.summary() + "\n";
    }
    v.problems.iter().map(|p| p.line() + "\n").collect()
}
