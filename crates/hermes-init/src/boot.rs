//! `hermes container reconcile` end to end: the reconciler run through the s6
//! backend, every line printed and kept in the boot log, a closing summary,
//! and the same numbers saved for `/metrics` (`logs/container-boot.json`).

use std::time::Instant;

use hermes_core::boot::BootReport;
use hermes_core::fsutil::FsError;
use hermes_core::service::{GatewaySpec, ServiceError, ServiceManager};
use hermes_core::{state, HermesHome};
use hermes_s6::S6Manager;
use nix::sys::signal::Signal;

use crate::reconcile::{self, Action, ReconcileError, ReportLine};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("unable to write the boot log: {0}")]
    Log(FsError),
    #[error("unable to write the boot report: {0}")]
    Report(FsError),
}

/// The numbers of one reconcile (timing left at zero).
pub fn tally(lines: &[ReportLine]) -> BootReport {
    let mut report = BootReport::default();
    for line in lines {
        let counter = match line {
            ReportLine::Applied { kept: true, .. } => &mut report.kept,
            ReportLine::Applied { decision, .. } => match decision.action {
                Action::Start => &mut report.started,
                Action::Down => &mut report.down,
            },
            ReportLine::Failed { .. } => &mut report.failed,
            ReportLine::Skipped { .. } => &mut report.skipped,
        };
        *counter += 1;
    }
    report
}

/// The reconcile's last line.
pub fn summary_line(report: &BootReport, elapsed_ms: u128) -> String {
    format!(
        "reconcile: done in {elapsed_ms} ms: {} slots ({} started, {} kept), {} failed, {} skipped",
        report.started + report.down + report.kept,
        report.started,
        report.kept,
        report.failed,
        report.skipped,
    )
}

/// How a reconcile ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Every profile was looked at; `failed` counts the ones that failed.
    Done(BootReport),
    /// A stop signal came before the slots were published: none was, and
    /// the next boot reconciles every profile. The lines so far are logged.
    Stopped(Signal),
}

/// The report's lines: printed as they come, kept for the boot log.
struct Lines<P: FnMut(&str)> {
    kept: Vec<String>,
    print: P,
}

impl<P: FnMut(&str)> Lines<P> {
    fn push(&mut self, line: String) {
        (self.print)(&line);
        self.kept.push(line);
    }
}

/// Reconcile every profile into `manager`'s scandir. `notes` (the init's boot
/// notes) are logged before this boot's decisions, whatever happens after;
/// `print` gets every line of the report. `stop` says whether a stop signal
/// is waiting: it is looked at before anything, before each profile and
/// before the slots are published. A dry run writes nothing.
pub fn reconcile(
    home: &HermesHome,
    manager: &S6Manager,
    dry_run: bool,
    notes: Vec<String>,
    stop: impl Fn() -> Option<Signal>,
    print: impl FnMut(&str),
) -> Result<Reconciled, BootError> {
    let started = Instant::now();
    let mut lines = Lines {
        kept: notes.into_iter().map(|n| format!("init: {n}")).collect(),
        print,
    };
    let log = |lines: &[String]| match dry_run {
        true => Ok(()),
        false => reconcile::append_boot_log(&home.boot_log(), lines).map_err(BootError::Log),
    };
    if let Some(sig) = stop() {
        lines.push(format!(
            "reconcile: stopped by {sig} before it began; the next boot reconciles every profile"
        ));
        log(&lines.kept)?;
        return Ok(Reconciled::Stopped(sig));
    }
    let mut stopped = None;
    let outcomes = manager
        .list()
        .map_err(BootError::from)
        .and_then(|registered| {
            reconcile::run(
                home,
                &registered,
                dry_run,
                || stop().is_some(),
                |batch| {
                    if let Some(sig) = stop() {
                        stopped = Some(sig);
                        return batch
                            .iter()
                            .map(|_| Err(format!("not published: stopped by {sig}")))
                            .collect();
                    }
                    let specs: Vec<(GatewaySpec, bool)> = batch
                        .iter()
                        .map(|(p, start)| (manager.spec(p), *start))
                        .collect();
                    match manager.register_many(&specs) {
                        Ok(results) => results
                            .into_iter()
                            .map(|r| r.map_err(|e| e.to_string()))
                            .collect(),
                        Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
                    }
                },
                |outcome| lines.push(outcome.line(dry_run)),
            )
            .map_err(BootError::from)
        });
    let elapsed = || started.elapsed().as_millis();
    let outcomes = match outcomes {
        Ok(Some(outcomes)) => outcomes,
        Ok(None) => {
            let sig = stop().unwrap_or(Signal::SIGTERM);
            lines.push(format!(
                "reconcile: stopped by {sig} after {} ms, before any slot was published; the next boot reconciles every profile",
                elapsed()
            ));
            log(&lines.kept)?;
            return Ok(Reconciled::Stopped(sig));
        }
        Err(e) => {
            // The notes and what was decided still go to the log, with why it ended.
            lines.push(format!("reconcile: failed: {e}"));
            let _ = log(&lines.kept);
            return Err(e);
        }
    };
    let mut report = tally(&outcomes);
    if let Some(sig) = stopped {
        lines.push(format!(
            "reconcile: stopped by {sig} after {} ms: {} slots not published; the next boot publishes them",
            elapsed(),
            report.failed
        ));
        log(&lines.kept)?;
        return Ok(Reconciled::Stopped(sig));
    }
    lines.push(summary_line(&report, elapsed()));
    if !dry_run {
        log(&lines.kept)?;
        report.at_ms = state::now_ms();
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
            .save(&home.boot_report())
            .map_err(BootError::Report)?;
    }
    Ok(Reconciled::Done(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Decision;
    use hermes_core::ProfileName;

    fn applied(action: Action, kept: bool) -> ReportLine {
        ReportLine::Applied {
            profile: ProfileName::default_profile(),
            decision: Decision {
                action,
                prior: "missing".into(),
            },
            kept,
        }
    }

    #[test]
    fn tally_counts_each_kind_once() {
        let lines = [
            applied(Action::Start, false),
            applied(Action::Start, false),
            applied(Action::Down, false),
            // A kept slot counts as kept whatever its decision.
            applied(Action::Start, true),
            applied(Action::Down, true),
            ReportLine::Failed {
                profile: ProfileName::default_profile(),
                decision: Decision {
                    action: Action::Start,
                    prior: "desired=running".into(),
                },
                error: "no".into(),
            },
            ReportLine::Skipped {
                entry: "Bad Name".into(),
            },
        ];
        let report = tally(&lines);
        assert_eq!(
            report,
            BootReport {
                started: 2,
                down: 1,
                kept: 2,
                failed: 1,
                skipped: 1,
                ..BootReport::default()
            }
        );
        assert_eq!(
            summary_line(&report, 12),
            "reconcile: done in 12 ms: 5 slots (2 started, 2 kept), 1 failed, 1 skipped"
        );
    }

    #[test]
    fn nothing_to_reconcile() {
        let report = tally(&[]);
        assert_eq!(report, BootReport::default());
        assert_eq!(
            summary_line(&report, 0),
            "reconcile: done in 0 ms: 0 slots (0 started, 0 kept), 0 failed, 0 skipped"
        );
    }
}
