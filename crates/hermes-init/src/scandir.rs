//! The scandir stage 1 hands to s6-svscan: emptied on every boot (Docker
//! keeps `/run` across `docker restart`), with the static `dashboard` slot.
//! Everything here is executed by the supervision tree, which runs as the
//! service user.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::FsError;
use hermes_core::profile::sh_quote;

/// Where slot directories live (the s6 backend's layout: published as symlinks).
pub const SLOTS_DIR: &str = ".slots";
pub const DASHBOARD: &str = "dashboard";
/// Grace the dashboard gets between SIGTERM and SIGKILL when brought down.
const DASHBOARD_TIMEOUT_KILL_MS: u32 = 3000;

fn quoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
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

/// Write `files` under the scandir `dir` (through its handle: a link
/// planted at any component is refused) and publish the dashboard slot.
pub fn write(dir: &Dir, files: &Files) -> Result<(), FsError> {
    for (rel, content, mode) in files {
        let name = rel.file_name().unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new(""));
        dir.create_beneath(parent, 0o755)?
            .write_file(name, content.as_bytes(), *mode)?;
    }
    dir.symlink(&Path::new(SLOTS_DIR).join(DASHBOARD), OsStr::new(DASHBOARD))
        .map_err(|e| FsError::new("publish", &dir.path().join(DASHBOARD), e.source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn scripts_pass_shellcheck_and_the_slot_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let files = dashboard_files(
            Path::new("/usr/local/bin/hermes"),
            Path::new("/opt/data/logs/dashboard"),
            false,
        );
        write(&Dir::open(dir.path()).unwrap(), &files).unwrap();
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
