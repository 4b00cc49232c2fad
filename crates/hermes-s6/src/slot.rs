//! Service directories for gateway slots, rendered by pure functions and
//! written into a dot-named staging directory that s6-svscan never looks at.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hermes_core::fsutil::{self, Durability, FsError};
use hermes_core::profile::sh_quote;
use hermes_core::runtime;
use hermes_core::service::GatewaySpec;

use crate::run_script;

/// File descriptor the gateway writes its readiness newline to.
pub const NOTIFICATION_FD: u32 = 3;
/// Long enough for the finish hook's longest back-off sleep (see `finish`).
pub const TIMEOUT_FINISH_MS: u32 = 10_000;
/// s6-log rotation: 10 archives of 1 MB, ISO 8601 timestamps.
const LOG_DIRECTIVES: [&str; 3] = ["n10", "s1000000", "T"];

/// The files of one service directory, as (relative path, content, mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFiles {
    pub files: Vec<(PathBuf, String, u32)>,
}

fn env_lines(env: &BTreeMap<String, String>) -> String {
    env.iter()
        .map(|(k, v)| format!("export {k}={}\n", sh_quote(v)))
        .collect()
}

pub(crate) fn quoted(words: &[String]) -> String {
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `first`: the `#!` line (and what goes with it), then the note.
fn header(first: &str, spec: &GatewaySpec, what: &str) -> String {
    format!(
        "{first}\n# hermes: {what} of the gateway slot for profile '{}'. Generated; edits are overwritten.\n",
        spec.profile
    )
}

/// Whether every environment key is a plain shell identifier; others are refused.
pub fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Run by hermes itself where a `#!` line can name it (see `run_script`),
/// else by `/bin/sh`; the same commands either way.
pub fn render_run(spec: &GatewaySpec) -> String {
    let mut argv = vec![spec.program.to_string_lossy().into_owned()];
    argv.extend(spec.args());
    argv.extend(["--notify-fd".to_string(), NOTIFICATION_FD.to_string()]);
    format!(
        "{}exec 2>&1\ncd {} || exit 111\n{}exec {}\n",
        header(
            &run_script::interpreter_lines(&spec.program),
            spec,
            "run script"
        ),
        sh_quote(&spec.workdir.to_string_lossy()),
        env_lines(&spec.env),
        quoted(&argv)
    )
}

/// s6 calls finish with the exit code (256 if killed) and the signal number;
/// the Rust hook records them and applies the crash-loop policy. Its line
/// about the exit goes to the logger like the gateway's own (s6-supervise
/// gives finish the same stdout as run), so it is timestamped and kept.
///
/// An exit 0 while the slot is wanted down (its `down` file: `gateway stop`,
/// `stop --all`) or while the container's init brings the tree down
/// (`STOPPING_FILE` in `$HERMES_RUN_DIR`) is the gateway's answer to s6's
/// SIGTERM, and the gateway recorded that stop, its exit and the cleared
/// failure count itself (`finish::already_recorded`); s6 does not restart
/// it either way. The script says so and ends without starting hermes: one
/// process start fewer per gateway in every stop. Any other exit, and an
/// exit 0 of a slot wanted up, goes to the hook.
pub fn render_finish(spec: &GatewaySpec) -> String {
    let mut argv = vec![spec.program.to_string_lossy().into_owned()];
    if !spec.profile.is_default() {
        argv.extend(["-p".to_string(), spec.profile.to_string()]);
    }
    argv.extend(["gateway".to_string(), "finish-hook".to_string()]);
    let line = |why: &str| {
        sh_quote(&format!(
            "hermes: gateway '{}' ended with exit code 0: {why}",
            spec.profile
        ))
    };
    format!(
        "{}exec 2>&1\n\
         if [ \"$1\" = 0 ]; then\n\
         \x20   if [ -n \"${{HERMES_RUN_DIR:-}}\" ] && [ -e \"$HERMES_RUN_DIR/{}\" ]; then\n\
         \x20       echo {}\n\
         \x20       exit 0\n\
         \x20   fi\n\
         \x20   if [ -e down ]; then\n\
         \x20       echo {}\n\
         \x20       exit 0\n\
         \x20   fi\n\
         fi\n\
         {}exec {} \"$1\" \"$2\"\n",
        header("#!/bin/sh", spec, "finish script"),
        runtime::STOPPING_FILE,
        line("the container is stopping"),
        line("stopped on request"),
        env_lines(&spec.env),
        quoted(&argv)
    )
}

/// The logger's argv for every slot, gateway or static.
pub(crate) fn log_argv(log_dir: &Path, echo_to_stdout: bool) -> Vec<String> {
    let mut argv = vec!["s6-log".to_string(), "--".to_string()];
    argv.extend(LOG_DIRECTIVES[..2].iter().map(|d| d.to_string()));
    if echo_to_stdout {
        // Copy each line, timestamped, to s6-svscan's stdout (docker logs).
        // A timestamp applies to the next action only: the file needs its own.
        argv.extend(["T".to_string(), "1".to_string()]);
    }
    argv.push(LOG_DIRECTIVES[2].to_string());
    argv.push(log_dir.to_string_lossy().into_owned());
    argv
}

/// The hidden command a logger's run execs: `hermes log-run DIR -- s6-log
/// ...` ends an s6-log that a killed supervisor left holding DIR (see
/// `logger`), then execs the rest.
pub const LOG_RUN: &str = "log-run";

/// The final `exec` of every logger's run, gateway or static: through
/// hermes, which the `#!` line names where it can, so this costs no second
/// process start (`run_script`).
pub(crate) fn logger_exec(program: &Path, log_dir: &Path, echo_to_stdout: bool) -> String {
    let mut argv = vec![
        program.to_string_lossy().into_owned(),
        LOG_RUN.to_string(),
        log_dir.to_string_lossy().into_owned(),
        "--".to_string(),
    ];
    argv.extend(log_argv(log_dir, echo_to_stdout));
    format!("exec {}\n", quoted(&argv))
}

pub fn render_log_run(spec: &GatewaySpec, echo_to_stdout: bool) -> String {
    format!(
        "{}{}",
        header(
            &run_script::interpreter_lines(&spec.program),
            spec,
            "logger"
        ),
        logger_exec(&spec.program, &spec.log_dir, echo_to_stdout)
    )
}

pub fn render(spec: &GatewaySpec, start_now: bool, echo_to_stdout: bool) -> SlotFiles {
    let mut files = vec![
        (PathBuf::from("run"), render_run(spec), 0o755),
        (PathBuf::from("finish"), render_finish(spec), 0o755),
        (
            PathBuf::from("notification-fd"),
            format!("{NOTIFICATION_FD}\n"),
            0o644,
        ),
        (
            PathBuf::from("timeout-finish"),
            format!("{TIMEOUT_FINISH_MS}\n"),
            0o644,
        ),
        (
            PathBuf::from("log/run"),
            render_log_run(spec, echo_to_stdout),
            0o755,
        ),
    ];
    if !start_now {
        files.push((PathBuf::from("down"), String::new(), 0o644));
    }
    SlotFiles { files }
}

/// `spec` as a slot runs it: marked supervised, so the gateway never
/// redirects itself into a slot again.
pub(crate) fn supervised(spec: &GatewaySpec) -> GatewaySpec {
    let mut spec = spec.clone();
    spec.env
        .insert("HERMES_SUPERVISED_CHILD".to_string(), "1".to_string());
    spec
}

/// The files of a slot that a new hermes may write differently: the
/// scripts. The rest are settings every version writes alike, and state
/// (`down`).
const SCRIPTS: [&str; 3] = ["run", "finish", "log/run"];

/// Bring the scripts of the slot in `slot_dir` to what this hermes renders
/// for `spec`; whether any changed. Only while no supervisor runs on the
/// slot: a `finish` an interrupted stop left aside is put back first, and
/// a script is replaced by a rename (readers see the old file or the new).
pub fn refresh_scripts(
    slot_dir: &Path,
    spec: &GatewaySpec,
    echo_to_stdout: bool,
) -> Result<bool, FsError> {
    crate::finish_aside::restore(slot_dir)?;
    let mut changed = false;
    for (rel, content, mode) in render(&supervised(spec), false, echo_to_stdout).files {
        if !SCRIPTS.iter().any(|script| rel == Path::new(script)) {
            continue;
        }
        let path = slot_dir.join(&rel);
        if fsutil::read_to_string(&path).is_ok_and(|now| now == content) {
            continue;
        }
        // The scandir is rebuilt after a power loss: nothing to sync.
        fsutil::replace(&path, content.as_bytes(), mode, Durability::Volatile)?;
        changed = true;
    }
    Ok(changed)
}

/// Where a scandir keeps [`SharedFiles`]: a dot name, which s6-svscan skips.
pub const SHARED_DIR: &str = ".hermes-shared";

/// The files every gateway slot has with the same content and mode (the
/// settings s6-supervise reads, and the `down` marker), as (name, content,
/// mode).
pub fn shared_files() -> Vec<(&'static str, String, u32)> {
    vec![
        ("notification-fd", format!("{NOTIFICATION_FD}\n"), 0o644),
        ("timeout-finish", format!("{TIMEOUT_FINISH_MS}\n"), 0o644),
        (
            "timeout-kill",
            format!("{}\n", crate::TIMEOUT_KILL_MS),
            0o644,
        ),
        ("down", String::new(), 0o644),
    ]
}

/// One copy of each [`shared_files`] file in the scandir, which slots get
/// as hard links instead of files of their own: a link is a directory entry
/// where a file is an inode and a data block. On this project's ext4 test
/// disk, creating 3000 small files took 0.7-3.2 s and linking them 0.2-0.8 s;
/// each slot has four such files. Nothing ever writes into a slot's copy
/// (the `down` marker is created when missing and removed, never written
/// through), so sharing the inode changes nothing a reader sees.
#[derive(Debug, Clone)]
pub struct SharedFiles {
    dir: PathBuf,
    files: Vec<(&'static str, String, u32)>,
}

impl SharedFiles {
    /// Make sure `scandir`'s shared directory holds exactly [`shared_files`]:
    /// a copy with other content or mode (an older version's, or edited) is
    /// replaced by a new inode, which leaves the slots linked to the old
    /// one as they were. `None` when that cannot be done: slots then get
    /// files of their own, as before.
    pub fn prepare(scandir: &Path) -> Option<SharedFiles> {
        use std::os::unix::fs::PermissionsExt;
        let dir = scandir.join(SHARED_DIR);
        fsutil::ensure_dir(&dir, 0o755).ok()?;
        let files = shared_files();
        for (name, content, mode) in &files {
            let path = dir.join(name);
            let current = fsutil::read_no_follow(&path).ok();
            let mode_now = fsutil::symlink_metadata(&path)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777);
            if current.as_deref() != Some(content.as_bytes()) || mode_now != Some(*mode) {
                fsutil::replace(
                    &path,
                    content.as_bytes(),
                    *mode,
                    fsutil::Durability::Volatile,
                )
                .ok()?;
            }
        }
        Some(SharedFiles { dir, files })
    }

    /// The shared copy of `rel` if it has exactly `content` and `mode`.
    fn source(&self, rel: &Path, content: &str, mode: u32) -> Option<PathBuf> {
        self.files
            .iter()
            .find(|(name, c, m)| Path::new(name) == rel && c == content && *m == mode)
            .map(|(name, _, _)| self.dir.join(name))
    }
}

/// Write `files` into `dir`, a staging directory that must not exist yet;
/// a file `shared` has a copy of is linked to it, or written if the link
/// fails (another file system, a link limit).
///
/// No fsync: the slot only has to appear whole, which the rename of the
/// staging directory guarantees, and the scandir is rebuilt from the volume
/// at every boot anyway. (fsync per file made boot reconciliation of 1000
/// profiles take minutes on a fuse-overlayfs container layer.)
pub fn write_dir(
    dir: &Path,
    files: &SlotFiles,
    shared: Option<&SharedFiles>,
) -> Result<(), FsError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    fsutil::ensure_dir(dir, 0o755)?;
    for (rel, content, mode) in &files.files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fsutil::ensure_dir(parent, 0o755)?;
        }
        let linked = shared
            .and_then(|s| s.source(rel, content, *mode))
            .is_some_and(|source| fsutil::hard_link(&source, &path).is_ok());
        if linked {
            continue;
        }
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(*mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)?;
            file.write_all(content.as_bytes())?;
            // The mode given at creation is filtered by the umask.
            file.set_permissions(fs::Permissions::from_mode(*mode))
        };
        write().map_err(|e| FsError::new("write", &path, e))?;
    }
    Ok(())
}

/// Remove a directory tree if present.
pub fn remove_tree(dir: &Path) -> Result<(), FsError> {
    match fsutil::remove_dir_all(dir) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hermes_core::ProfileName;
    use std::os::unix::fs::PermissionsExt;

    fn spec(name: &str, program: &str) -> GatewaySpec {
        GatewaySpec {
            profile: ProfileName::parse(name).unwrap(),
            program: program.into(),
            home: "/data".into(),
            workdir: "/data/profiles/x y".into(),
            log_dir: "/data/logs/gateways/x".into(),
            env: BTreeMap::from([
                ("HERMES_HOME".to_string(), "/da'ta".to_string()),
                ("HERMES_SUPERVISED_CHILD".to_string(), "1".to_string()),
            ]),
        }
    }

    #[test]
    fn run_script_snapshot() {
        assert_eq!(
            render_run(&spec("coder", "/usr/local/bin/hermes")),
            "#!/usr/local/bin/hermes slot-script\n\
# shellcheck shell=sh\n\
# hermes: run script of the gateway slot for profile 'coder'. Generated; edits are overwritten.\n\
exec 2>&1\n\
cd '/data/profiles/x y' || exit 111\n\
export HERMES_HOME='/da'\\''ta'\n\
export HERMES_SUPERVISED_CHILD='1'\n\
exec '/usr/local/bin/hermes' '-p' 'coder' 'gateway' 'run' '--replace' '--notify-fd' '3'\n"
        );
        // A path a `#!` line cannot hold: the same commands, run by sh.
        assert!(render_run(&spec("coder", "/opt/my bin/hermes"))
            .starts_with("#!/bin/sh\n# hermes: run script"));
    }

    #[test]
    fn finish_and_log_snapshots() {
        let s = spec("default", "/opt/my bin/hermes");
        assert_eq!(
            render_finish(&s),
            "#!/bin/sh\n\
# hermes: finish script of the gateway slot for profile 'default'. Generated; edits are overwritten.\n\
exec 2>&1\n\
if [ \"$1\" = 0 ]; then\n    \
if [ -n \"${HERMES_RUN_DIR:-}\" ] && [ -e \"$HERMES_RUN_DIR/stopping\" ]; then\n        \
echo 'hermes: gateway '\\''default'\\'' ended with exit code 0: the container is stopping'\n        \
exit 0\n    \
fi\n    \
if [ -e down ]; then\n        \
echo 'hermes: gateway '\\''default'\\'' ended with exit code 0: stopped on request'\n        \
exit 0\n    \
fi\n\
fi\n\
export HERMES_HOME='/da'\\''ta'\n\
export HERMES_SUPERVISED_CHILD='1'\n\
exec '/opt/my bin/hermes' 'gateway' 'finish-hook' \"$1\" \"$2\"\n"
        );
        // The logger goes through hermes (`log-run`), run by sh where a `#!`
        // line cannot name hermes, by hermes itself where it can.
        assert_eq!(
            render_log_run(&s, true),
            "#!/bin/sh\n\
# hermes: logger of the gateway slot for profile 'default'. Generated; edits are overwritten.\n\
exec '/opt/my bin/hermes' 'log-run' '/data/logs/gateways/x' '--' \
's6-log' '--' 'n10' 's1000000' 'T' '1' 'T' '/data/logs/gateways/x'\n"
        );
        assert!(render_log_run(&s, false).ends_with("'s1000000' 'T' '/data/logs/gateways/x'\n"));
        assert!(
            render_log_run(&spec("default", "/usr/local/bin/hermes"), false).starts_with(
                "#!/usr/local/bin/hermes slot-script\n# shellcheck shell=sh\n# hermes: logger"
            )
        );
    }

    #[test]
    fn finish_leaves_hermes_out_only_for_a_clean_exit_in_a_container_stop() {
        let run_dir = tempfile::tempdir().unwrap();
        let slot = tempfile::tempdir().unwrap();
        let script = render_finish(&spec("web", "/nonexistent/hermes"));
        let finish = |code: &str, run_dir: Option<&Path>| {
            let mut cmd = std::process::Command::new("sh");
            // s6-supervise runs finish in the service directory.
            cmd.current_dir(slot.path());
            cmd.arg("-c").arg(&script).arg("finish").arg(code).arg("0");
            match run_dir {
                Some(d) => cmd.env("HERMES_RUN_DIR", d),
                None => cmd.env_remove("HERMES_RUN_DIR"),
            };
            let out = cmd.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        // The hook (a program that is not there: 127) while nothing is stopping.
        assert_eq!(finish("0", Some(run_dir.path())).0, Some(127));
        assert_eq!(finish("0", None).0, Some(127));
        fs::write(run_dir.path().join(runtime::STOPPING_FILE), "").unwrap();
        let (code, out) = finish("0", Some(run_dir.path()));
        assert_eq!(code, Some(0));
        assert_eq!(
            out,
            "hermes: gateway 'web' ended with exit code 0: the container is stopping\n"
        );
        // Any other exit is the hook's, stopping or not.
        assert_eq!(finish("1", Some(run_dir.path())).0, Some(127));
        assert_eq!(finish("256", Some(run_dir.path())).0, Some(127));
    }

    #[test]
    fn finish_leaves_hermes_out_for_a_clean_exit_of_a_slot_wanted_down() {
        let slot = tempfile::tempdir().unwrap();
        let script = render_finish(&spec("web", "/nonexistent/hermes"));
        let finish = |code: &str| {
            let out = std::process::Command::new("sh")
                .current_dir(slot.path())
                .env_remove("HERMES_RUN_DIR")
                .arg("-c")
                .arg(&script)
                .arg("finish")
                .arg(code)
                .arg("0")
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        // Wanted up: an exit 0 nobody asked for is the hook's to judge.
        assert_eq!(finish("0").0, Some(127));
        fs::write(slot.path().join("down"), "").unwrap();
        assert_eq!(
            finish("0"),
            (
                Some(0),
                "hermes: gateway 'web' ended with exit code 0: stopped on request\n".to_string()
            )
        );
        assert_eq!(finish("1").0, Some(127));
        assert_eq!(finish("256").0, Some(127));
    }

    /// Fails when `shellcheck` finds anything in `path`, or is not installed
    /// (scripts/test installs it: a missing one is a failure, not a pass).
    pub(crate) fn assert_shellcheck_clean(path: &Path) {
        let out = std::process::Command::new("shellcheck")
            .arg(path)
            .output()
            .expect("run shellcheck (Debian: apt-get install shellcheck)");
        assert!(
            out.status.success(),
            "shellcheck {}:\n{}\n{}",
            path.display(),
            fs::read_to_string(path).unwrap_or_default(),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn scripts_pass_shellcheck() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec("coder", "/usr/bin/hermes");
        for (name, text) in [
            ("run", render_run(&s)),
            ("finish", render_finish(&s)),
            ("log", render_log_run(&s, true)),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, &text).unwrap();
            assert_shellcheck_clean(&path);
        }
    }

    #[test]
    fn down_marker_only_when_not_starting() {
        let s = spec("coder", "/h");
        let has_down = |f: &SlotFiles| f.files.iter().any(|(p, _, _)| p == Path::new("down"));
        assert!(has_down(&render(&s, false, false)));
        assert!(!has_down(&render(&s, true, false)));
    }

    #[test]
    fn constant_files_are_links_to_one_shared_copy() {
        use std::os::unix::fs::MetadataExt;
        let scandir = tempfile::tempdir().unwrap();
        let shared = SharedFiles::prepare(scandir.path()).expect("shared files");
        let s = spec("coder", "/h");
        let (a, b) = (scandir.path().join("a"), scandir.path().join("b"));
        write_dir(&a, &render(&s, false, false), Some(&shared)).unwrap();
        write_dir(&b, &render(&s, false, false), Some(&shared)).unwrap();
        let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
        for name in ["notification-fd", "timeout-finish", "down"] {
            let copy = scandir.path().join(SHARED_DIR).join(name);
            assert_eq!(ino(&a.join(name)), ino(&copy), "{name}");
            assert_eq!(ino(&b.join(name)), ino(&copy), "{name}");
        }
        assert_eq!(
            fs::read_to_string(a.join("notification-fd")).unwrap(),
            "3\n"
        );
        // Scripts name their profile: each slot has its own.
        assert_ne!(ino(&a.join("run")), ino(&b.join("run")));
        assert_eq!(fs::metadata(a.join("run")).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_changed_shared_copy_is_replaced_without_touching_linked_slots() {
        let scandir = tempfile::tempdir().unwrap();
        let write = |dir: &Path, shared: &SharedFiles| {
            write_dir(
                dir,
                &render(&spec("coder", "/h"), true, false),
                Some(shared),
            )
            .unwrap()
        };
        let old = scandir.path().join("old");
        write(&old, &SharedFiles::prepare(scandir.path()).unwrap());
        let copy = scandir.path().join(SHARED_DIR).join("timeout-finish");
        // An older version's value, written in place (as an edit would be).
        fs::write(&copy, "1\n").unwrap();
        let new = scandir.path().join("new");
        write(&new, &SharedFiles::prepare(scandir.path()).unwrap());
        let expected = format!("{TIMEOUT_FINISH_MS}\n");
        assert_eq!(fs::read_to_string(&copy).unwrap(), expected);
        assert_eq!(
            fs::read_to_string(new.join("timeout-finish")).unwrap(),
            expected
        );
        // The edit reached the slot linked before it; the repair did not.
        assert_eq!(
            fs::read_to_string(old.join("timeout-finish")).unwrap(),
            "1\n"
        );
        // A planted link is never followed: it is replaced by a real file.
        let elsewhere = scandir.path().join("elsewhere");
        fs::write(&elsewhere, "7\n").unwrap();
        fs::remove_file(&copy).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &copy).unwrap();
        SharedFiles::prepare(scandir.path()).unwrap();
        assert!(fs::symlink_metadata(&copy).unwrap().is_file());
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "7\n");
    }

    #[test]
    fn without_shared_copies_every_file_is_written() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("s");
        write_dir(&slot, &render(&spec("coder", "/h"), false, false), None).unwrap();
        assert_eq!(
            fs::metadata(slot.join("notification-fd")).unwrap().nlink(),
            1
        );
        assert_eq!(
            fs::read_to_string(slot.join("notification-fd")).unwrap(),
            "3\n"
        );
    }

    #[test]
    fn env_keys_must_be_identifiers() {
        assert!(valid_env_key("HERMES_HOME"));
        assert!(!valid_env_key("A B"));
        assert!(!valid_env_key("1A"));
        assert!(!valid_env_key("A;rm"));
    }

    #[test]
    fn refresh_brings_older_scripts_back_and_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("gateway-x");
        let s = spec("x", "/usr/local/bin/hermes");
        write_dir(&slot, &render(&s, false, false), None).unwrap();
        assert!(
            !refresh_scripts(&slot, &s, false).unwrap(),
            "already current"
        );

        // What an older hermes wrote, and a stop interrupted with `finish` aside.
        let old_logger = "#!/bin/sh\nexec 's6-log' '--' 'T' '/data/logs/gateways/x'\n";
        fs::write(slot.join("log/run"), old_logger).unwrap();
        fs::rename(slot.join("finish"), slot.join("finish.deferred")).unwrap();
        fs::write(slot.join("notification-fd"), "7\n").unwrap();
        assert!(refresh_scripts(&slot, &s, false).unwrap());
        for (rel, content, mode) in render(&s, false, false).files {
            let path = slot.join(&rel);
            if rel == Path::new("notification-fd") {
                // Settings and state are not the refresh's.
                assert_eq!(fs::read_to_string(&path).unwrap(), "7\n");
                continue;
            }
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                content,
                "{}",
                rel.display()
            );
            let now = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(now, mode, "{}", rel.display());
        }
        assert!(!slot.join("finish.deferred").exists());
        assert!(slot.join("down").exists(), "the wish stays");
    }
}
