//! `hermes doctor [--json]`: the model's checks, ✓ or ✗ with a fix for each
//! failure. Exits 1 when any check fails.

use hermes_core::ExitStatus;
use hermes_model::doctor::{self, Report};
use hermes_model::snapshot::{Snapshot, Tone};

use super::status::env::CliEnv;
use super::status::{print_all, Paint};
use crate::Context;

pub fn run(ctx: &Context, json: bool) -> anyhow::Result<ExitStatus> {
    let env = CliEnv::new(ctx);
    let report = doctor::run(&env, &Snapshot::collect(&env));
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        render(&report, Paint::for_stdout())
    };
    print_all(&text)?;
    Ok(if report.ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn render(report: &Report, paint: Paint) -> String {
    let mut text = String::new();
    for c in &report.checks {
        let mark = if c.ok {
            paint.tone(Tone::Good, "✓")
        } else {
            paint.tone(Tone::Bad, "✗")
        };
        text.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            text.push_str(&format!("    fix: {fix}\n"));
        }
        for line in &c.log_tail {
            text.push_str(&format!("    | {line}\n"));
        }
    }
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    text.push_str(&if failed == 0 {
        format!("\nall {} checks passed\n", report.checks.len())
    } else {
        format!("\n{failed} of {} checks failed\n", report.checks.len())
    });
    text
}
