//! The scandir stage 1 hands to s6-svscan: emptied on every boot (Docker
//! keeps `/run` across `docker restart`), with the static `dashboard` slot.
//! Everything here is executed by the supervision tree, which runs as the
//! service user.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hermes_core::fsutil::{self, FsError};
use hermes_core::profile::sh_quote;

/// Where slot directories live (the s6 backend's layout: published as symlinks).
pub const SLOTS_DIR: &str = ".slots";
pub const DASHBOARD: &str = "dashboard";
/// Grace the dashboard gets between SIGTERM and SIGKILL when brought down.
const DASHBOARD_TIMEOUT_KILL_MS: u32 = 3000;

/// Remove everything inside `dir` (not `dir` itself, whose parent may not be
/// ours), creating it when missing. Symlinks are removed, never followed.
pub fn empty_dir(dir: &Path) -> Result<(), FsError> {
    fsutil::ensure_dir(dir, 0o755)?;
    let entries = fs::read_dir(dir).map_err(|e| FsError::new("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("list", dir, e))?;
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new("remove", &path, e)),
        }
    }
    Ok(())
}

fn quoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether programs on the file system holding `dir` may be executed.
pub fn exec_allowed(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir)
        .map(|v| !v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
        .unwrap_or(true)
}

/// Files of the scandir as (path relative to the scandir, content, mode).
pub type Files = Vec<(PathBuf, String, u32)>;

/// The `dashboard` slot: `hermes container dashboard-run` checks the bind
/// and execs the dashboard; exit 78 (fatal configuration) parks it for good.
pub fn dashboard_files(program: &Path, log_dir: &Path, enabled: bool) -> Files {
    let dir = Path::new(SLOTS_DIR).join(DASHBOARD);
    let prog = program.to_string_lossy();
    let log = log_dir.to_string_lossy();
    let mut files = vec![
        (
            dir.join("run"),
            format!(
                "#!/bin/sh\n# hermes dashboard slot: generated at boot.\nexec 2>&1\nexec {}\n",
                quoted(&[prog.as_ref(), "container", "dashboard-run"])
            ),
            0o755,
        ),
        (
            dir.join("finish"),
            "#!/bin/sh\n# hermes dashboard slot: generated at boot.\n\
             # 78 is a fatal configuration error: 125 tells s6-supervise never to restart.\n\
             if [ \"$1\" = 78 ]; then exit 125; fi\nexit 0\n"
                .to_string(),
            0o755,
        ),
        (
            dir.join("timeout-kill"),
            format!("{DASHBOARD_TIMEOUT_KILL_MS}\n"),
            0o644,
        ),
        (
            dir.join("log/run"),
            format!(
                "#!/bin/sh\n# hermes dashboard logger: generated at boot.\nexec {}\n",
                quoted(&["s6-log", "--", "n10", "s1000000", "1", "T", log.as_ref()])
            ),
            0o755,
        ),
    ];
    if !enabled {
        files.push((dir.join("down"), String::new(), 0o644));
    }
    files
}

/// Write `files` under `scandir` and publish the dashboard slot as a symlink.
pub fn write(scandir: &Path, files: &Files) -> Result<(), FsError> {
    for (rel, content, mode) in files {
        let path = scandir.join(rel);
        if let Some(parent) = path.parent() {
            fsutil::ensure_dir(parent, 0o755)?;
        }
        fsutil::atomic_write(&path, content.as_bytes(), *mode)?;
    }
    let link = scandir.join(DASHBOARD);
    std::os::unix::fs::symlink(Path::new(SLOTS_DIR).join(DASHBOARD), &link)
        .map_err(|e| FsError::new("publish", &link, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dir_removes_everything_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let scan = dir.path().join("service");
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("keep")).unwrap();
        fs::create_dir_all(scan.join(".slots/gateway-a/supervise")).unwrap();
        fs::write(scan.join(".hermes-max-slots"), "1").unwrap();
        std::os::unix::fs::symlink(&outside, scan.join("gateway-a")).unwrap();
        empty_dir(&scan).unwrap();
        assert_eq!(fs::read_dir(&scan).unwrap().count(), 0);
        assert!(outside.join("keep").is_dir());
        empty_dir(&dir.path().join("new")).unwrap();
        assert!(dir.path().join("new").is_dir());
    }

    #[test]
    fn scripts_pass_shellcheck_and_the_slot_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let files = dashboard_files(
            Path::new("/usr/local/bin/hermes"),
            Path::new("/opt/data/logs/dashboard"),
            false,
        );
        write(dir.path(), &files).unwrap();
        let slot = dir.path().join("dashboard");
        assert!(slot.join("down").exists());
        assert!(fs::read_to_string(slot.join("run"))
            .unwrap()
            .contains("exec '/usr/local/bin/hermes' 'container' 'dashboard-run'"));
        let Ok(out) = std::process::Command::new("shellcheck")
            .arg("--version")
            .output()
        else {
            eprintln!("skipped shellcheck: not installed");
            return;
        };
        assert!(out.status.success());
        for (rel, text, mode) in &files {
            if mode & 0o111 == 0 {
                continue;
            }
            let out = std::process::Command::new("shellcheck")
                .arg(dir.path().join(rel))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck {}:\n{text}\n{}",
                rel.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
