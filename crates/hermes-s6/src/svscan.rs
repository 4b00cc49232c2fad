//! Starting `s6-svscan` with a service cap that fits the profiles we allow.
//! The cap flag changed between s6 versions (2.11: `-c`, services; 2.12+:
//! `-C`, loggers counted), so the installed version is probed at run time.

use std::ffi::OsString;
use std::path::Path;

use hermes_core::fsutil::{self, FsError};
use hermes_core::service::ServiceError;

use crate::cmd;

/// Gateway slots one supervisor accepts unless `HERMES_MAX_SLOTS` says otherwise.
pub const DEFAULT_MAX_SLOTS: usize = 1000;
/// Static slots (dashboard) and headroom below the s6 cap.
const MARGIN: usize = 16;
/// Written by whoever starts s6-svscan; registration refuses past it.
pub const LIMIT_FILE: &str = ".hermes-max-slots";
/// Without a limit file, stay under the smallest s6 default (500 services
/// on 2.11; 1000 including loggers on 2.12+), with margin.
pub const UNKNOWN_LIMIT: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapFlag {
    /// s6 ≤ 2.11: `-c`, counting service directories.
    LowerC,
    /// s6 ≥ 2.12: `-C`, counting services and loggers.
    UpperC,
}

/// The cap flag of the s6-svscan at `program`, read from the binary itself
/// (see [`cap_flag_in`]): a boot spawns no process to learn it, and it is
/// the binary about to run, whatever image or package put it there. A
/// binary whose options cannot be read that way is probed.
pub fn cap_flag(program: &Path) -> Result<CapFlag, ServiceError> {
    match fsutil::read(program).ok().and_then(|b| cap_flag_in(&b)) {
        Some(flag) => Ok(flag),
        None => probe_cap_flag(),
    }
}

/// The cap flag an s6-svscan binary takes, from the option string it hands
/// its option parser, kept verbatim among its constants: `c:C:L:t:d:X:`
/// since 2.12, `c:t:d:X:` before. `None` when no such string is there.
pub fn cap_flag_in(binary: &[u8]) -> Option<CapFlag> {
    let options = binary.split(|&b| b == 0).find(|s| {
        s.len() <= 32
            && s.iter().all(|b| b.is_ascii_alphabetic() || *b == b':')
            && [&b"c:"[..], b"t:", b"d:", b"X:"]
                .iter()
                .all(|o| s.windows(2).any(|w| w == *o))
    })?;
    Some(if options.windows(2).any(|w| w == b"C:") {
        CapFlag::UpperC
    } else {
        CapFlag::LowerC
    })
}

/// s6-svscan ≤ 2.11 rejects `-C` as a usage error (exit 100); newer ones
/// accept it and then fail on the missing directory (exit 111).
pub fn probe_cap_flag() -> Result<CapFlag, ServiceError> {
    let ran = cmd::run("s6-svscan", ["-C", "4", "/nonexistent/hermes-probe"])?;
    Ok(if ran.code() == Some(100) {
        CapFlag::LowerC
    } else {
        CapFlag::UpperC
    })
}

pub fn max_slots_from_env() -> usize {
    std::env::var("HERMES_MAX_SLOTS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_SLOTS)
}

/// The argv (after the program name) for s6-svscan on `scandir`.
pub fn args(flag: CapFlag, max_slots: usize, scandir: &Path) -> Vec<OsString> {
    // Each gateway slot has a logger; budget both, on either version.
    let cap = 2 * (max_slots + MARGIN);
    let flag = match flag {
        CapFlag::LowerC => "-c",
        CapFlag::UpperC => "-C",
    };
    vec![
        flag.into(),
        cap.to_string().into(),
        "-t".into(),
        "0".into(),
        scandir.as_os_str().to_owned(),
    ]
}

pub fn write_limit(scandir: &Path, max_slots: usize) -> Result<(), FsError> {
    fsutil::atomic_write(
        &scandir.join(LIMIT_FILE),
        format!("{max_slots}\n").as_bytes(),
        0o644,
    )
}

pub fn read_limit(scandir: &Path) -> usize {
    fsutil::read_no_follow(&scandir.join(LIMIT_FILE))
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(UNKNOWN_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_counts_loggers_with_margin() {
        let a = args(CapFlag::UpperC, 1000, Path::new("/run/service"));
        assert_eq!(
            a,
            ["-C", "2032", "-t", "0", "/run/service"].map(OsString::from)
        );
        let b = args(CapFlag::LowerC, 10, Path::new("/s"));
        assert_eq!(b[0], "-c");
        assert_eq!(b[1], "52");
    }

    #[test]
    fn limit_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_limit(dir.path()), UNKNOWN_LIMIT);
        write_limit(dir.path(), 7).unwrap();
        assert_eq!(read_limit(dir.path()), 7);
    }

    #[test]
    fn the_flag_is_read_from_the_option_string() {
        let with = |opts: &[u8]| {
            let mut b = b"\x7fELF\0\0s6-svscan\0".to_vec();
            b.extend_from_slice(opts);
            b.extend_from_slice(b"\0usage: s6-svscan\0");
            cap_flag_in(&b)
        };
        assert_eq!(with(b"c:C:L:t:d:X:"), Some(CapFlag::UpperC), "2.13");
        assert_eq!(with(b"c:t:d:X:"), Some(CapFlag::LowerC), "2.11");
        assert_eq!(with(b"no options here"), None);
        assert_eq!(cap_flag_in(b""), None);
    }

    #[test]
    fn the_binary_and_the_probe_agree_on_the_installed_s6() {
        let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("s6-svscan"))
            .find(|p| p.is_file())
            .expect("s6-svscan on PATH");
        let read = cap_flag_in(&std::fs::read(&path).unwrap());
        assert_eq!(read, Some(probe_cap_flag().unwrap()), "{}", path.display());
    }

    #[test]
    fn probe_matches_the_installed_s6() {
        // scripts/test installs s6: a missing one is a failure, not a pass.
        let flag = probe_cap_flag().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("installed s6-svscan takes {flag:?}");
    }
}
