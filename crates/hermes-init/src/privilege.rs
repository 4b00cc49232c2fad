//! `docker exec <c> hermes …` runs as root by default. Files it created in
//! the volume would be root-owned and unreadable to the gateways, and a root
//! client talking to the service user's supervision tree hangs (s6-svc -w
//! waits on a FIFO the supervisor cannot open). So a root hermes in the
//! container becomes the owner of `HERMES_HOME` before doing anything.

use std::io;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil;

use crate::pid1::{self, Credentials, Pid1Error};
use crate::user;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("unable to inspect {path} to find the user to run as: {source}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "running as root without CAP_SETUID and CAP_SETGID (the container dropped them), so \
         hermes cannot become the owner of {0}: run it as that user (`docker exec -u hermes …`)"
    )]
    NoCapabilities(PathBuf),
    #[error("unable to switch to uid {uid} gid {gid} (owner of {path}): {source}")]
    Drop {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: Pid1Error,
    },
}

/// When running as root and `home` belongs to someone else, become that user
/// (uid and gid of `home`, no supplementary groups) and point `HOME`, `USER`
/// and `LOGNAME` at them. Returns the uid switched to, if any.
///
/// Call it before any thread is started: it changes process-wide state.
pub fn drop_to_home_owner_if_root(home: &Path) -> Result<Option<u32>, PrivilegeError> {
    if pid1::euid() != 0 {
        return Ok(None);
    }
    // metadata of the directory itself: a symlink planted as HERMES_HOME by
    // its owner would otherwise choose who we become.
    let status = fsutil::read_to_string(Path::new("/proc/self/status")).unwrap_or_default();
    if !can_switch_users(&status) {
        return Err(PrivilegeError::NoCapabilities(home.to_path_buf()));
    }
    let meta = match Dir::open(home) {
        Ok(dir) => dir.stat_self(),
        Err(e) => Err(e),
    };
    let meta = match meta {
        Ok(meta) => meta,
        // Refused as a link: one planted as HERMES_HOME by its owner would
        // choose who we become.
        Err(e) if e.source.raw_os_error().is_none() => return Ok(None),
        Err(e) => {
            return Err(PrivilegeError::Inspect {
                path: home.to_path_buf(),
                source: e.source,
            })
        }
    };
    if meta.st_uid == 0 {
        return Ok(None);
    }
    let cred = Credentials {
        uid: meta.st_uid,
        gid: meta.st_gid,
    };
    let passwd = fsutil::read_to_string(Path::new("/etc/passwd")).unwrap_or_default();
    let name = passwd_name(&passwd, cred.uid);
    pid1::drop_privileges(cred).map_err(|source| PrivilegeError::Drop {
        path: home.to_path_buf(),
        uid: cred.uid,
        gid: cred.gid,
        source,
    })?;
    let user_home = name
        .as_deref()
        .and_then(|n| user::passwd_entry(&passwd, n))
        .map(|(_, _, dir)| dir)
        .unwrap_or_else(|| home.to_path_buf());
    std::env::set_var("HOME", user_home);
    let name = name.unwrap_or_else(|| cred.uid.to_string());
    std::env::set_var("USER", &name);
    std::env::set_var("LOGNAME", &name);
    Ok(Some(cred.uid))
}

/// Whether the effective capabilities in `/proc/self/status`-format `text`
/// allow switching users (CAP_SETGID, bit 6, and CAP_SETUID, bit 7).
pub fn can_switch_users(text: &str) -> bool {
    const SETGID_SETUID: u64 = (1 << 6) | (1 << 7);
    text.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & SETGID_SETUID == SETGID_SETUID)
}

/// The login name of `uid` in passwd-format text.
fn passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_users_needs_setuid_and_setgid() {
        assert!(can_switch_users(
            "Name:\thermes\nCapEff:\t000001ffffffffff\n"
        ));
        assert!(can_switch_users("CapEff:\t00000000000000c0\n"));
        assert!(!can_switch_users("CapEff:\t0000000000000000\n"));
        assert!(!can_switch_users("CapEff:\t0000000000000080\n"));
        // Unknown: let the switch itself say what failed.
        assert!(can_switch_users(""));
    }

    #[test]
    fn names_come_from_passwd() {
        let text = "root:x:0:0:root:/root:/bin/bash\nhermes:x:10000:10000::/opt/data:/bin/sh\n";
        assert_eq!(passwd_name(text, 10000).as_deref(), Some("hermes"));
        assert_eq!(passwd_name(text, 42), None);
    }

    #[test]
    fn a_root_owned_home_or_a_non_root_caller_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // Either we are not root (nothing to do) or the temp dir is ours (root's).
        if pid1::euid() == 0 {
            assert_eq!(drop_to_home_owner_if_root(dir.path()).unwrap(), None);
        } else {
            assert_eq!(drop_to_home_owner_if_root(Path::new("/")).unwrap(), None);
        }
    }
}
