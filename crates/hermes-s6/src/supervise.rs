//! `hermes supervise`: a user-level s6 supervision tree in the foreground.
//! Prepares the scandir, then replaces itself with `s6-svscan` (so SIGTERM
//! reaches s6-svscan directly, which brings every service down and exits 0).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hermes_core::fsutil::{self, FsError};
use hermes_core::service::ServiceError;

use crate::{cmd, slot, svscan, Refreshed, S6Config, S6Manager, Scandir};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("a supervisor is already running on {0}")]
    AlreadyRunning(PathBuf),
    #[error("{path} belongs to uid {owner}, not to you (uid {uid}): supervise your own scandir, or run as that user")]
    NotOurs { path: PathBuf, owner: u32, uid: u32 },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Where an earlier hermes kept a tree's slot directories, each published
/// in the scandir as a symlink to its directory here.
const LEGACY_SLOTS_DIR: &str = ".slots";

/// Remove what an interrupted registration or unregistration left behind
/// ([`Scandir::is_leftover`]); a staging link of the earlier layout
/// (`.gateway-<p>.link.<pid>`) too.
fn remove_leftovers(scandir: &Path) -> Result<(), FsError> {
    for entry in fsutil::read_dir(scandir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let legacy_link = name.starts_with(".gateway-") && name.contains(".link.");
        if Scandir::is_leftover(&name) || legacy_link {
            remove_entry(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_entry(path: &Path) -> Result<(), FsError> {
    match fsutil::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => slot::remove_tree(path),
        Ok(_) => fsutil::remove_file(path),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A tree an earlier hermes kept: each slot's directory replaces its link
/// in the scandir. Run while no supervisor does. A directory no link
/// published, or whose name the scandir already holds as a directory, was
/// left by an interrupted run of that hermes and is removed, as that hermes
/// would have; so is a link into `.slots/` left without its directory
/// (s6-svscan would warn of it at every scan).
fn adopt_legacy_slots(scandir: &Path) -> Result<(), FsError> {
    let legacy = scandir.join(LEGACY_SLOTS_DIR);
    let entries = match fsutil::read_dir(&legacy) {
        Ok(entries) => entries,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let published = scandir.join(&name);
        let linked = fsutil::symlink_metadata(&published).is_ok_and(|m| m.is_symlink());
        if linked && !name.to_string_lossy().starts_with('.') {
            fsutil::remove_file(&published)?;
            fsutil::rename(&entry.path(), &published)?;
        } else {
            remove_entry(&entry.path())?;
        }
    }
    fsutil::remove_dir(&legacy)?;
    for entry in fsutil::read_dir(scandir)?.flatten() {
        let path = entry.path();
        if fsutil::read_link(&path).is_ok_and(|to| to.starts_with(LEGACY_SLOTS_DIR)) {
            fsutil::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Get the scandir of `cfg` ready for an s6-svscan run by the current
/// user, the scripts of the slots it kept from its last run included
/// ([`S6Manager::refresh_scripts`]).
pub fn prepare(cfg: &S6Config, max_slots: usize) -> Result<Refreshed, SuperviseError> {
    let scandir = cfg.scandir.as_path();
    fsutil::ensure_dir(scandir, 0o755)?;
    let meta = fsutil::metadata(scandir)?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(SuperviseError::NotOurs {
            path: scandir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    if Scandir::new(scandir).has_supervisor() {
        return Err(SuperviseError::AlreadyRunning(scandir.to_path_buf()));
    }
    adopt_legacy_slots(scandir)?;
    remove_leftovers(scandir)?;
    let refreshed = S6Manager::new(cfg.clone()).refresh_scripts()?;
    svscan::write_limit(scandir, max_slots)?;
    Ok(refreshed)
}

/// Prepare and exec s6-svscan; returns only on failure.
pub fn exec(cfg: &S6Config, max_slots: usize) -> SuperviseError {
    let scandir = cfg.scandir.as_path();
    let refreshed = match prepare(cfg, max_slots) {
        Ok(refreshed) => refreshed,
        Err(e) => return e,
    };
    if !refreshed.changed.is_empty() {
        let names: Vec<&str> = refreshed.changed.iter().map(|p| p.as_str()).collect();
        eprintln!(
            "hermes: slot scripts rewritten by this hermes for {}",
            names.join(", ")
        );
    }
    for (profile, e) in &refreshed.failed {
        eprintln!(
            "hermes: slot of '{profile}' keeps its older scripts: {e}; `hermes -p {profile} gateway uninstall`, then `install`, writes it anew"
        );
    }
    let flag = match svscan::probe_cap_flag() {
        Ok(flag) => flag,
        Err(e) => return e.into(),
    };
    let err = Command::new("s6-svscan")
        .args(svscan::args(flag, max_slots, scandir))
        .exec();
    cmd::spawn_error("s6-svscan", err).into()
}
