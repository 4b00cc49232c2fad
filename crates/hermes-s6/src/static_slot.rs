//! Static slots: services the container starts at boot beside the gateway
//! slots (the dashboard, the webhook ingress). One renderer for all of
//! them, pure and snapshot-tested, and one writer that puts them into the
//! fresh scandir through a directory handle (a link planted at any
//! component is refused).

use std::path::{Path, PathBuf};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::{self, FsError};
use hermes_core::service::ServiceStatus;
use hermes_core::ExitStatus;

use crate::run_script;
use crate::scandir::Scandir;
use crate::slot::{logger_exec, quoted, SlotFiles};

/// The dashboard's slot (`HERMES_DASHBOARD=1`).
pub const DASHBOARD: &str = "dashboard";
/// The notification sender's slot (always up).
pub const NOTIFY: &str = "notify";

/// The webhook ingress's slot (`HERMES_INGRESS=1`).
pub const INGRESS: &str = "ingress";

/// A static slot as s6 sees it; `None` when it is not in the scandir.
/// `s6-svstat` failing means no supervisor answers for the slot.
pub fn status(scandir: &Scandir, name: &str) -> Option<ServiceStatus> {
    let dir = scandir.slot(name);
    fsutil::symlink_metadata(&dir).ok()?;
    let stat = crate::svstat::read(&dir).ok().flatten();
    Some(crate::svstat::to_service(name, stat.as_ref()))
}

/// Grace a static slot gets between SIGTERM and SIGKILL when brought down.
pub const TIMEOUT_KILL_MS: u32 = 3000;

/// One static slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSlot {
    /// Its name in the scandir (its service directory).
    pub name: &'static str,
    /// What its run script execs: hermes and its arguments. Its logger
    /// runs through the same hermes (`slot::logger_exec`).
    pub argv: Vec<String>,
    pub log_dir: PathBuf,
    /// Off: rendered with a `down` marker, so it exists but does not start.
    pub enabled: bool,
}

/// The slot's files, relative to its directory. Exit 78 (fatal
/// configuration) parks it for good: finish exits 125, which tells
/// s6-supervise never to restart it.
pub fn render(slot: &StaticSlot) -> SlotFiles {
    let name = slot.name;
    let program = Path::new(&slot.argv[0]);
    let config = ExitStatus::CONFIG_CODE;
    let mut files = vec![
        (
            PathBuf::from("run"),
            format!(
                "#!/bin/sh\n# hermes {name} slot: generated at boot.\nexec 2>&1\nexec {}\n",
                quoted(&slot.argv)
            ),
            0o755,
        ),
        (
            PathBuf::from("finish"),
            format!(
                "#!/bin/sh\n# hermes {name} slot: generated at boot.\n\
                 # {config} is a fatal configuration error: 125 tells s6-supervise never to restart.\n\
                 if [ \"$1\" = {config} ]; then exit 125; fi\nexit 0\n"
            ),
            0o755,
        ),
        (
            PathBuf::from("timeout-kill"),
            format!("{TIMEOUT_KILL_MS}\n"),
            0o644,
        ),
        (
            PathBuf::from("log/run"),
            format!(
                "{}\n# hermes {name} logger: generated at boot.\n{}",
                run_script::interpreter_lines(program),
                logger_exec(program, &slot.log_dir, true)
            ),
            0o755,
        ),
    ];
    if !slot.enabled {
        files.push((PathBuf::from("down"), String::new(), 0o644));
    }
    SlotFiles { files }
}

/// Write every slot into the scandir open as `dir`, which was just emptied
/// and has no supervisor yet (so nothing sees a slot half written). Files
/// are created, not replaced, and not synced: the scandir is rebuilt at
/// every boot, and on a fuse-overlayfs `/run` each sync costs milliseconds.
pub fn install(dir: &Dir, slots: &[StaticSlot]) -> Result<(), FsError> {
    for slot in slots {
        let base = Path::new(slot.name);
        let mut opened: Vec<(PathBuf, Dir)> = Vec::new();
        for (rel, content, mode) in render(slot).files {
            let rel = base.join(rel);
            let name = rel.file_name().unwrap_or_default();
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let at = match opened.iter().position(|(p, _)| *p == parent) {
                Some(i) => i,
                None => {
                    let d = dir.create_beneath(&parent, 0o755)?;
                    opened.push((parent, d));
                    opened.len() - 1
                }
            };
            opened[at]
                .1
                .create_new_file(name, content.as_bytes(), mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dashboard(enabled: bool) -> StaticSlot {
        StaticSlot {
            name: "dashboard",
            argv: vec![
                "/usr/local/bin/hermes".into(),
                "container".into(),
                "dashboard-run".into(),
            ],
            log_dir: "/opt/data/logs/dash'board".into(),
            enabled,
        }
    }

    fn file<'a>(files: &'a SlotFiles, name: &str) -> &'a str {
        &files
            .files
            .iter()
            .find(|(p, _, _)| p == Path::new(name))
            .unwrap_or_else(|| panic!("no {name} in {files:?}"))
            .1
    }

    #[test]
    fn snapshot() {
        let files = render(&dashboard(true));
        assert_eq!(
            file(&files, "run"),
            "#!/bin/sh\n# hermes dashboard slot: generated at boot.\nexec 2>&1\n\
             exec '/usr/local/bin/hermes' 'container' 'dashboard-run'\n"
        );
        assert_eq!(
            file(&files, "finish"),
            "#!/bin/sh\n# hermes dashboard slot: generated at boot.\n\
             # 78 is a fatal configuration error: 125 tells s6-supervise never to restart.\n\
             if [ \"$1\" = 78 ]; then exit 125; fi\nexit 0\n"
        );
        assert_eq!(file(&files, "timeout-kill"), "3000\n");
        assert_eq!(
            file(&files, "log/run"),
            "#!/usr/local/bin/hermes slot-script\n# shellcheck shell=sh\n\
             # hermes dashboard logger: generated at boot.\n\
             exec '/usr/local/bin/hermes' 'log-run' '/opt/data/logs/dash'\\''board' '--' \
             's6-log' '--' 'n10' 's1000000' 'T' '1' 'T' '/opt/data/logs/dash'\\''board'\n"
        );
        let modes: Vec<(&str, u32)> = files
            .files
            .iter()
            .map(|(p, _, m)| (p.to_str().unwrap(), *m))
            .collect();
        assert_eq!(
            modes,
            [
                ("run", 0o755),
                ("finish", 0o755),
                ("timeout-kill", 0o644),
                ("log/run", 0o755)
            ]
        );
        assert_eq!(file(&render(&dashboard(false)), "down"), "");
    }

    #[test]
    fn installed_slots_are_in_the_scandir_and_pass_shellcheck() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = dashboard(true);
        other.name = "ingress";
        install(&Dir::open(dir.path()).unwrap(), &[dashboard(false), other]).unwrap();
        let scandir = Scandir::new(dir.path());
        for name in ["dashboard", "ingress"] {
            assert!(fs::symlink_metadata(scandir.slot(name)).unwrap().is_dir());
        }
        assert!(scandir.slot("dashboard").join("down").exists());
        assert!(!scandir.slot("ingress").join("down").exists());
        for rel in ["run", "finish", "log/run"] {
            crate::slot::tests::assert_shellcheck_clean(&scandir.slot("dashboard").join(rel));
        }
    }
}
