//! Reading a slot's state through the `s6-svstat` of the running s6 (status
//! file layouts differ between s6 versions, so we never parse them ourselves).

use std::path::Path;

use hermes_core::service::{ServiceError, SlotStatus, Want};
use hermes_core::ProfileName;

use crate::cmd;

pub const FIELDS: &str = "up,wantedup,normallyup,ready,pid,exitcode,signal,updownfor";

/// The fields we ask `s6-svstat -o` for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svstat {
    pub up: bool,
    pub wanted_up: bool,
    pub normally_up: bool,
    pub ready: bool,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub for_secs: Option<u64>,
}

impl Svstat {
    /// Ready counts only while up (s6 keeps the flag of the last run).
    pub fn ready_now(&self) -> bool {
        self.up && self.ready
    }

    pub fn want(&self) -> Want {
        if self.wanted_up {
            Want::Up
        } else {
            Want::Down
        }
    }

    /// How the last run ended; meaningless while the service is up.
    pub fn last_exit_code(&self) -> Option<i32> {
        self.exit_code.filter(|_| !self.up)
    }

    pub fn last_signal(&self) -> Option<String> {
        self.signal.clone().filter(|_| !self.up)
    }
}

pub fn parse(line: &str) -> Option<Svstat> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 8 {
        return None;
    }
    let flag = |s: &str| match s {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    Some(Svstat {
        up: flag(f[0])?,
        wanted_up: flag(f[1])?,
        normally_up: flag(f[2])?,
        ready: flag(f[3])?,
        pid: f[4]
            .parse::<i64>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| p as u32),
        exit_code: f[5].parse::<i32>().ok().filter(|c| *c >= 0),
        signal: Some(f[6]).filter(|s| *s != "NA").map(str::to_string),
        for_secs: f[7].parse().ok(),
    })
}

/// `None` when no supervisor watches `dir`.
pub fn read(dir: &Path) -> Result<Option<Svstat>, ServiceError> {
    let ran = cmd::run(
        "s6-svstat",
        ["-o".as_ref(), FIELDS.as_ref(), dir.as_os_str()],
    )?;
    match ran.code() {
        Some(0) => {
            let out = ran.stdout();
            parse(out.trim())
                .map(Some)
                .ok_or_else(|| ServiceError::Command {
                    argv: ran.argv.clone(),
                    code: Some(0),
                    stderr: format!("unexpected output {out:?}"),
                })
        }
        // s6-svstat exits 1 when the service is not supervised.
        Some(1) => Ok(None),
        _ => Err(ran.into_error()),
    }
}

pub fn to_status(profile: &ProfileName, service: &str, stat: Option<&Svstat>) -> SlotStatus {
    match stat {
        Some(s) => SlotStatus {
            profile: profile.clone(),
            service: service.to_string(),
            supervised: true,
            up: s.up,
            ready: s.ready_now(),
            want: s.want(),
            pid: s.pid,
            for_secs: s.for_secs,
            exit_code: s.last_exit_code(),
            signal: s.last_signal(),
        },
        None => SlotStatus {
            profile: profile.clone(),
            service: service.to_string(),
            supervised: false,
            up: false,
            ready: false,
            want: Want::Down,
            pid: None,
            for_secs: None,
            exit_code: None,
            signal: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_up_and_down_lines_from_2_11() {
        let up = parse("true true true false 13687 -1 NA 0").unwrap();
        assert!(up.up && up.wanted_up && !up.ready);
        assert_eq!(up.pid, Some(13687));
        assert_eq!(up.signal, None);
        let down = parse("false false true false -1 -1 SIGTERM 3").unwrap();
        assert!(!down.up && !down.wanted_up);
        assert_eq!(down.pid, None);
        assert_eq!(down.signal.as_deref(), Some("SIGTERM"));
        assert_eq!(down.for_secs, Some(3));
        let exited = parse("false true true false -1 78 NA 0").unwrap();
        assert_eq!(exited.exit_code, Some(78));
        assert!(parse("up (pid 3) 4 seconds").is_none());
    }
}
