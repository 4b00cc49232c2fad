//! Stage 1, the ENTRYPOINT: prepare the container as root (service user,
//! volume, run directory, a clean scandir), then go on as the container's
//! init (`init`), which starts `s6-svscan` as the service user.
//!
//! The environment is not saved to a side file: s6-svscan inherits it, and
//! every supervisor, service and logger inherits it from s6-svscan (unlike
//! s6-overlay, nothing clears it), with `HOME`/`USER` set to the service user.

use std::ffi::OsString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hermes_core::fsutil::{self, FsError};
use hermes_core::HermesHome;

use crate::init::{self, Boot};
use crate::pid1::{self, Command, Credentials, Pid1Error};
use crate::route::MainProgram;
use crate::user::{self, ServiceUser, UserError};
use hermes_core::dashboard;

use crate::{aliases, note, notes, say, scandir, volume, Layout};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Pid1(#[from] Pid1Error),
}

pub struct Stage1 {
    pub layout: Layout,
    pub home: HermesHome,
    /// s6-svscan and its arguments (the s6 backend knows the cap flag for the installed version).
    pub svscan: PathBuf,
    pub svscan_args: Vec<OsString>,
    /// Files the s6 backend wants in the fresh scandir, relative to it.
    pub extra_files: Vec<(PathBuf, String)>,
    /// The container's CMD.
    pub cmd: Vec<OsString>,
}

/// The environment of this process with `overrides` replacing or adding variables.
pub fn environment(overrides: &[(&str, &OsString)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| k == o))
        .collect();
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (OsString::from(k), (*v).clone())),
    );
    env
}

/// `HOME`, `USER` and `LOGNAME` of the service user, and its `PATH`: root's,
/// then its own alias directory (`~/.local/bin`, which root's never has).
pub fn user_environment(user: &ServiceUser) -> Vec<(OsString, OsString)> {
    let home = user.home.clone().into_os_string();
    let name = OsString::from(&user.name);
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if !path.is_empty() {
        path.push(":");
    }
    path.push(user.home.join(".local/bin"));
    environment(&[
        ("HOME", &home),
        ("USER", &name),
        ("LOGNAME", &name),
        ("PATH", &path),
    ])
}

/// One link per profile in [`aliases::ALIAS_DIR`], for root's and
/// `docker exec`'s `PATH`. Costs only the aliases when it fails; a
/// read-only /run (`--read-only` without a tmpfs) is expected, not reported.
fn publish_aliases(stage: &Stage1) {
    let names = match hermes_core::profile::list(&stage.home) {
        Ok(names) => names,
        Err(e) => {
            say!("no profile aliases for docker exec: {e}");
            return;
        }
    };
    let dir = Path::new(aliases::ALIAS_DIR);
    match aliases::publish(dir, &stage.layout.program, &names) {
        Ok(_) => {}
        Err(aliases::AliasError::Fs(e)) if e.source.raw_os_error() == Some(libc::EROFS) => {}
        Err(e) => say!("no profile aliases for docker exec: {e}"),
    }
}

/// Who the tree runs as. As root: `hermes` from /etc/passwd, remapped by the
/// environment (and the remap recorded in /etc when it is writable).
fn service_user(home: &HermesHome) -> Result<ServiceUser, UserError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    if pid1::euid() != 0 {
        // `--user`: the tree runs as whoever we already are.
        let uid = pid1::euid();
        let name = passwd
            .lines()
            .find(|l| l.split(':').nth(2) == Some(&uid.to_string()))
            .and_then(|l| l.split(':').next())
            .unwrap_or(user::NAME)
            .to_string();
        return Ok(ServiceUser {
            name,
            uid,
            gid: pid1::egid(),
            home: home.root().to_path_buf(),
        });
    }
    let (base_uid, base_gid, user_home) = user::passwd_entry(&passwd, user::NAME).unwrap_or((
        user::DEFAULT_ID,
        user::DEFAULT_ID,
        home.root().to_path_buf(),
    ));
    let (uid, gid) = user::requested_ids(|k| std::env::var(k).ok())?;
    let (uid, gid) = (uid.unwrap_or(base_uid), gid.unwrap_or(base_gid));
    if (uid, gid) != (base_uid, base_gid) {
        record_remap(uid, gid);
    }
    Ok(ServiceUser {
        name: user::NAME.to_string(),
        uid,
        gid,
        home: user_home,
    })
}

/// Make names resolve to the remapped ids (`ls -l`, `docker exec -u hermes`).
/// A read-only /etc only costs the names, so it is a warning.
fn record_remap(uid: u32, gid: u32) {
    let edits = [
        (
            "/etc/passwd",
            user::remap_passwd as fn(&str, &str, u32, u32) -> Option<String>,
        ),
        ("/etc/group", |t: &str, n: &str, _uid: u32, gid: u32| {
            user::remap_group(t, n, gid)
        }),
    ];
    for (file, edit) in edits {
        let path = Path::new(file);
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        if let Some(new) = edit(&text, user::NAME, uid, gid) {
            match fsutil::atomic_write(path, new.as_bytes(), 0o644) {
                Ok(()) => note!(
                    "service user {} remapped to {uid}:{gid} in {file}",
                    user::NAME
                ),
                Err(e) => say!("warning: ids remapped to {uid}:{gid}, but {e}"),
            }
        }
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), FsError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| FsError::new("change the owner of", path, e))
}

fn chmod(path: &Path, mode: u32) -> Result<(), FsError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::new("change the mode of", path, e))
}

/// The volume: present, with its log directories, owned by the service user.
fn prepare_volume(home: &HermesHome, user: &ServiceUser, root: bool) -> Result<(), FsError> {
    fsutil::ensure_dir(home.root(), 0o755)?;
    fsutil::ensure_dir(&home.dashboard_log_dir(), 0o755)?;
    fsutil::ensure_dir(&home.logs_dir().join("gateways"), 0o755)?;
    if !root {
        let owner = fs::symlink_metadata(home.root())
            .map_err(|e| FsError::new("inspect", home.root(), e))?
            .uid();
        if owner != user.uid {
            say!(
                "warning: {} belongs to uid {owner}, not to uid {} that this container runs as; \
                 writes to it may fail",
                home.root().display(),
                user.uid
            );
        }
        return Ok(());
    }
    let repair = volume::chown_tree(home.root(), user.uid, user.gid)?;
    if repair.changed > 0 {
        note!(
            "gave {} entries of {} to {}:{}",
            repair.changed,
            home.root().display(),
            user.uid,
            user.gid
        );
    }
    for path in repair.skipped_links {
        say!(
            "warning: left {} alone: it has other hard links, possibly outside the volume",
            path.display()
        );
    }
    Ok(())
}

/// `/run/hermes`: root's, readable by the service group (`main.pid`).
fn prepare_run_dir(layout: &Layout, user: &ServiceUser, root: bool) -> Result<(), FsError> {
    let dir = &layout.run_dir;
    scandir::empty_dir(dir)?;
    if root {
        chown(dir, 0, user.gid)?;
        chmod(dir, 0o750)?;
    } else {
        chmod(dir, 0o700)?;
    }
    Ok(())
}

/// Where the scandir really is. s6 executes `run` scripts from it, so it must
/// be on a file system that allows exec, and `--read-only --tmpfs /run` gives
/// a noexec /run. Then the slots live on the volume, in a directory of this
/// container's own (never shared with another container on the same volume),
/// and the scandir path becomes a symlink to it.
fn place_scandir(stage: &Stage1, user: &ServiceUser) -> Result<PathBuf, FsError> {
    let dir = &stage.layout.scandir;
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        // Made by this container's previous boot.
        fs::remove_file(dir).map_err(|e| FsError::new("remove", dir, e))?;
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    fsutil::ensure_dir(parent, 0o755)?;
    if scandir::exec_allowed(parent) {
        return Ok(dir.clone());
    }
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/') && !h.starts_with('.'))
        .unwrap_or_else(|| "container".to_string());
    let own = stage.home.root().join(".hermes-run").join(host);
    let real = own.join("service");
    note!(
        "{} does not allow executing programs (noexec, e.g. --tmpfs /run): \
         the supervision tree runs from {} on the volume instead",
        parent.display(),
        real.display()
    );
    if fs::symlink_metadata(dir).is_ok() {
        fs::remove_dir_all(dir).map_err(|e| FsError::new("remove", dir, e))?;
    }
    fsutil::ensure_dir(&real, 0o755)?;
    volume::chown_tree(&stage.home.root().join(".hermes-run"), user.uid, user.gid)?;
    std::os::unix::fs::symlink(&real, dir).map_err(|e| FsError::new("create the link", dir, e))?;
    Ok(real)
}

fn prepare_scandir(stage: &Stage1, user: &ServiceUser) -> Result<(), FsError> {
    let dir = place_scandir(stage, user)?;
    scandir::empty_dir(&dir)?;
    let mut files = scandir::Files::new();
    let enabled = dashboard::enabled(std::env::var("HERMES_DASHBOARD").ok().as_deref());
    files.extend(scandir::dashboard_files(
        &stage.layout.program,
        &stage.home.dashboard_log_dir(),
        enabled,
    ));
    files.extend(
        stage
            .extra_files
            .iter()
            .map(|(p, c)| (p.clone(), c.clone(), 0o644)),
    );
    scandir::write(&dir, &files)?;
    // The tree runs as the service user and must create supervise/ and event/ here.
    volume::chown_tree(&dir, user.uid, user.gid)?;
    Ok(())
}

/// Prepare the container, then live as its init (see `init`); returns the
/// container's exit code, or why it could not be prepared.
pub fn run(stage: Stage1) -> Result<u8, InitError> {
    let tty = pid1::is_tty(0);
    let decision = init::main_program(&stage.cmd, &stage.layout.program, tty);
    notes::set_loud(
        decision == MainProgram::Server
            || notes::verbose_requested(std::env::var("HERMES_VERBOSE").ok().as_deref()),
    );
    if !pid1::is_pid1() {
        note!(
            "not running as PID 1 (pid {}), e.g. under `docker run --init`: \
             becoming a child subreaper so orphans are still reaped",
            std::process::id()
        );
        pid1::become_subreaper()?;
    }
    let root = pid1::euid() == 0;
    let user = service_user(&stage.home)?;
    prepare_volume(&stage.home, &user, root)?;
    prepare_run_dir(&stage.layout, &user, root)?;
    prepare_scandir(&stage, &user)?;
    if root {
        publish_aliases(&stage);
    }

    // s6-svscan writes a newline here once it accepts commands (-d).
    let (ready_read, ready_write) = pid1::pipe()?;
    let mut svscan_argv: Vec<OsString> = vec![
        stage.svscan.clone().into(),
        "-d".into(),
        ready_write.as_raw_fd().to_string().into(),
    ];
    svscan_argv.extend(stage.svscan_args.iter().cloned());
    let cred = root.then_some(Credentials {
        uid: user.uid,
        gid: user.gid,
    });
    let mut svscan = Command::new(&stage.svscan, &svscan_argv, &user_environment(&user))?
        .credentials(cred)
        .keep_fd(ready_write.as_raw_fd())
        // Its own process group: Ctrl-C on a terminal in server mode reaches
        // the init (which stops everything in order), not every service at once.
        .own_process_group(None);
    if decision != MainProgram::Server {
        // The main program owns stdout: what the tree prints (loggers echoing
        // a gateway's lines) goes to stderr, which `docker logs` shows too.
        svscan = svscan.stdout(libc::STDERR_FILENO);
    }
    Ok(init::run(Boot {
        layout: stage.layout,
        user,
        svscan,
        ready_read,
        ready_write,
        decision,
        tty,
        boot_log: stage.home.boot_log(),
    }))
}
