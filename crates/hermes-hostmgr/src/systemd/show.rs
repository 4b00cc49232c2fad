//! Reading a unit's state from `systemctl show -p …` properties (stable
//! `Key=Value` lines, documented in org.freedesktop.systemd1(5)) instead of
//! the human-oriented `systemctl status` text.

use std::collections::HashMap;
use std::time::Duration;

use hermes_core::name::ProfileName;
use hermes_core::service::{ServiceStatus, SlotStatus, Want};

/// The properties `status` asks for, in one `--property=` argument.
pub const PROPERTIES: &str = "LoadState,ActiveState,SubState,Result,MainPID,ExecMainCode,ExecMainStatus,ExecMainStartTimestampMonotonic,StateChangeTimestampMonotonic,NRestarts";

/// `si_code` values systemd reports in `ExecMainCode` (see waitid(2)).
const CLD_EXITED: i32 = 1;
const CLD_KILLED: i32 = 2;
const CLD_DUMPED: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub load: String,
    pub active: String,
    pub sub: String,
    pub result: String,
    pub main_pid: u32,
    pub exec_code: i32,
    pub exec_status: i32,
    /// When the current (or last) main process started, µs of CLOCK_MONOTONIC; 0 if never.
    pub exec_start_us: u64,
    pub changed_us: u64,
    pub restarts: u32,
}

impl UnitState {
    pub fn parse(text: &str) -> Self {
        let props: HashMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let text = |k: &str| props.get(k).unwrap_or(&"").to_string();
        let num = |k: &str| {
            props
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        UnitState {
            load: text("LoadState"),
            active: text("ActiveState"),
            sub: text("SubState"),
            result: text("Result"),
            main_pid: num("MainPID") as u32,
            exec_code: num("ExecMainCode") as i32,
            exec_status: num("ExecMainStatus") as i32,
            exec_start_us: num("ExecMainStartTimestampMonotonic"),
            changed_us: num("StateChangeTimestampMonotonic"),
            restarts: num("NRestarts") as u32,
        }
    }

    pub fn loaded(&self) -> bool {
        self.load != "not-found" && !self.load.is_empty()
    }

    /// For `Type=notify`, `active` is only reached after READY=1.
    pub fn ready(&self) -> bool {
        self.active == "active"
    }

    pub fn failed(&self) -> bool {
        self.active == "failed"
    }

    pub fn down(&self) -> bool {
        matches!(self.active.as_str(), "inactive" | "failed")
    }

    /// One line for an operator: why the last run ended.
    pub fn describe_exit(&self) -> String {
        let how = match self.exec_code {
            CLD_EXITED => format!("exited with code {}", self.exec_status),
            CLD_KILLED | CLD_DUMPED => format!("killed by {}", signal_name(self.exec_status)),
            _ => "has not run".to_string(),
        };
        // systemd 252 keeps the last run's result (exit-code, signal) when an
        // automatic restart hits the start limit; only a manual start over the
        // limit says start-limit-hit. Failed after restarts means it gave up.
        let result = match self.result.as_str() {
            "start-limit-hit" => {
                " and systemd gave up after repeated fast failures (start-limit-hit)".to_string()
            }
            _ if self.failed() && self.restarts > 0 => format!(
                " and systemd gave up after {} automatic restarts (crash loop)",
                self.restarts
            ),
            "" | "success" => String::new(),
            other => format!(" (result {other})"),
        };
        format!("{} ({}), main process {how}{result}", self.active, self.sub)
    }

    pub fn to_slot(&self, profile: &ProfileName, unit: &str, now: Duration) -> SlotStatus {
        let up = self.main_pid > 0;
        let exited = !up && self.exec_code == CLD_EXITED;
        let killed = !up && matches!(self.exec_code, CLD_KILLED | CLD_DUMPED);
        SlotStatus {
            profile: profile.clone(),
            service: ServiceStatus {
                name: unit.to_string(),
                supervised: self.loaded(),
                up,
                ready: up && self.ready(),
                want: if matches!(self.active.as_str(), "active" | "activating" | "reloading") {
                    Want::Up
                } else {
                    Want::Down
                },
                pid: up.then_some(self.main_pid),
                for_secs: (self.changed_us > 0)
                    .then(|| (now.as_micros() as u64).saturating_sub(self.changed_us) / 1_000_000),
                exit_code: exited.then_some(self.exec_status),
            },
            signal: killed.then(|| signal_name(self.exec_status)),
        }
    }
}

fn signal_name(number: i32) -> String {
    nix::sys::signal::Signal::try_from(number)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nMainPID=4242\nExecMainCode=0\nExecMainStatus=0\nExecMainStartTimestampMonotonic=5000000\nStateChangeTimestampMonotonic=5000000\nNRestarts=0\n";

    #[test]
    fn running_unit() {
        let p = ProfileName::parse("coder").unwrap();
        let s = UnitState::parse(RUNNING).to_slot(&p, "u.service", Duration::from_secs(65));
        assert!(s.service.supervised && s.service.up && s.service.ready);
        assert_eq!(
            (s.service.pid, s.service.for_secs, s.service.want),
            (Some(4242), Some(60), Want::Up)
        );
        assert_eq!((s.service.exit_code, s.signal), (None, None));
    }

    #[test]
    fn gave_up_after_crash_loop() {
        let text = "LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=start-limit-hit\nMainPID=0\nExecMainCode=1\nExecMainStatus=1\nStateChangeTimestampMonotonic=0\n";
        let u = UnitState::parse(text);
        let p = ProfileName::parse("coder").unwrap();
        let s = u.to_slot(&p, "u.service", Duration::ZERO);
        assert!(s.service.supervised && !s.service.up && !s.service.ready);
        assert_eq!(
            (s.service.exit_code, s.service.want, s.service.for_secs),
            (Some(1), Want::Down, None)
        );
        assert_eq!(
            u.describe_exit(),
            "failed (failed), main process exited with code 1 and systemd gave up after repeated fast failures (start-limit-hit)"
        );
    }

    #[test]
    fn gave_up_after_automatic_restarts() {
        let u = UnitState::parse("LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nMainPID=0\nExecMainCode=1\nExecMainStatus=1\nNRestarts=5\n");
        assert_eq!(
            u.describe_exit(),
            "failed (failed), main process exited with code 1 and systemd gave up after 5 automatic restarts (crash loop)"
        );
    }

    #[test]
    fn killed_and_not_found() {
        let u = UnitState::parse("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nExecMainCode=2\nExecMainStatus=9\n");
        let p = ProfileName::parse("coder").unwrap();
        let s = u.to_slot(&p, "u", Duration::ZERO);
        assert_eq!(s.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(s.service.want, Want::Up);
        assert!(!UnitState::parse("LoadState=not-found\n").loaded());
    }
}
