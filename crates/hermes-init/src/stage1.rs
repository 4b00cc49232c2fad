//! Stage 1, the ENTRYPOINT: prepare the container as root (service user,
//! volume, run directory, a clean scandir), then go on as the container's
//! init (`init`), which starts `s6-svscan` as the service user.
//!
//! The environment is not saved to a side file: s6-svscan inherits it, and
//! every supervisor, service and logger inherits it from s6-svscan (unlike
//! s6-overlay, nothing clears it), with `HOME`/`USER` set to the service user.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::{self, FsError};
use hermes_core::runtime;
use hermes_core::volume_lock::{self, LockError, VolumeLock};
use hermes_core::HermesHome;

use crate::init::{self, Boot};
use crate::pid1::{self, Command, Credentials, Pid1Error};
use crate::route::MainProgram;
use crate::user::{self, ServiceUser, UserError};
use hermes_s6::static_slot;
use hermes_s6::svscan::{self, CapFlag};

use crate::{aliases, note, notes, place, rootdir, route, say, scandir, volume, Layout};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Repair(String),
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
    /// s6-svscan, the cap flag of the installed version, and the gateway
    /// slots it must take.
    pub svscan: PathBuf,
    pub cap_flag: CapFlag,
    pub max_slots: usize,
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

/// Who the tree runs as. As root: `hermes` from /etc/passwd, remapped by the
/// environment (and the remap recorded in /etc when it is writable).
fn service_user(home: &HermesHome) -> Result<ServiceUser, UserError> {
    let passwd = fsutil::read_to_string(Path::new("/etc/passwd")).unwrap_or_default();
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
        let Ok(text) = fsutil::read_to_string(path) else {
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

/// The volume: present, with its log directories, owned by the service user.
fn prepare_volume(
    home_dir: &Dir,
    home: &HermesHome,
    user: &ServiceUser,
    root: bool,
) -> Result<(), InitError> {
    for dir in [
        home.dashboard_log_dir(),
        home.notify_log_dir(),
        home.ingress_log_dir(),
        home.logs_dir().join("gateways"),
    ] {
        let rel = dir.strip_prefix(home.root()).unwrap_or(&dir);
        let created = home_dir.create_beneath(rel, 0o755).map_err(|e| {
            let logs = home.logs_dir();
            if fsutil::symlink_metadata(&logs).is_ok_and(|m| m.file_type().is_symlink()) {
                InitError::Repair(format!(
                    "{e}. {} must be a directory of the volume: remove the link (for example \
                     `docker run --rm --volumes-from <this container> --entrypoint rm <image> {}`) \
                     and start the container again",
                    logs.display(),
                    logs.display()
                ))
            } else {
                InitError::Fs(e)
            }
        })?;
        if root {
            give(&created, user)?;
        }
    }
    if root {
        let logs = home.logs_dir();
        give(
            &home_dir.open_beneath(logs.strip_prefix(home.root()).unwrap_or(&logs))?,
            user,
        )?;
    }
    remove_stale_temp_files(home_dir, home);
    if !root {
        let owner = home_dir.stat_self()?.st_uid;
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
    let repair = volume::repair_volume(home_dir, user.uid, user.gid, pid1::euid())?;
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
    for path in repair.skipped_mounts {
        note!(
            "left {} as it is: it is mounted from elsewhere, not part of the volume",
            path.display()
        );
    }
    for path in repair.read_only {
        note!("left {} as it is: read-only file system", path.display());
    }
    Ok(())
}

/// Give a directory stage 1 made to the service user at once: on a fresh
/// volume the repair then finds nothing to change, and its marker needs no
/// sync (`volume::repair_volume`).
fn give(dir: &Dir, user: &ServiceUser) -> Result<(), FsError> {
    let st = dir.stat_self()?;
    if (st.st_uid, st.st_gid) == (user.uid, user.gid) {
        return Ok(());
    }
    dir.chown(user.uid, user.gid)
}

/// See `rootdir`. What fails only costs speed, and none of it is news for
/// the operator (the README says what is done): boot log lines, not notes.
fn prepare_root_dir(user: &ServiceUser) {
    let groups_in_use = || {
        let mut groups = vec![user.gid, nix::unistd::getgid().as_raw()];
        groups.extend(
            nix::unistd::getgroups()
                .unwrap_or_default()
                .iter()
                .map(|g| g.as_raw()),
        );
        match fsutil::read_to_string(Path::new("/etc/group")) {
            Ok(text) => groups.extend(rootdir::group_file_ids(&text)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        Ok(groups)
    };
    match rootdir::prepare(groups_in_use) {
        Ok(Some(line)) => notes::record_for_boot_log(line),
        Ok(None) => {}
        Err(e) => notes::record_for_boot_log(format!("/ left as it is: {e}")),
    }
}

/// `.<file>.tmp.<pid>` files that a write killed mid-way left in the home
/// and in every profile directory (never through a link).
fn remove_stale_temp_files(home_dir: &Dir, home: &HermesHome) {
    let mut dirs = vec![home_dir.reopen()];
    let profiles = home.profiles_dir();
    let rel = profiles.strip_prefix(home.root()).unwrap_or(&profiles);
    if let Ok(profiles) = home_dir.open_beneath(rel) {
        for name in profiles.names().unwrap_or_default() {
            dirs.push(profiles.open_dir(&name));
        }
    }
    for dir in dirs.into_iter().flatten() {
        match volume::remove_stale_temp_files(&dir) {
            Ok(removed) => {
                for path in removed {
                    note!(
                        "removed {}, left by a write that was killed",
                        path.display()
                    );
                }
            }
            Err(e) => say!("warning: {e}"),
        }
    }
}

/// The run directory (`main.pid`). In `/run` it is root's, readable by the
/// service group; on the volume, whose directories the service user can
/// replace anyway, it is the user's.
fn prepare_run_dir(
    dir: &Dir,
    user: &ServiceUser,
    root: bool,
    on_volume: bool,
) -> Result<(), FsError> {
    dir.empty()?;
    if root && !on_volume {
        dir.chown(0, user.gid)?;
        dir.chmod(0o750)?;
    } else {
        if root {
            dir.chown(user.uid, user.gid)?;
        }
        dir.chmod(0o700)?;
    }
    Ok(())
}

/// The scandir, emptied, with `.s6-svscan/` and the dashboard slot, owned by
/// the service user (the tree creates `supervise/` and `event/` there). s6
/// executes `run` scripts from it, so it must allow exec.
fn prepare_scandir(stage: &Stage1, dir: &Dir, user: &ServiceUser) -> Result<(), FsError> {
    if !place::exec_allowed(dir) {
        return Err(FsError::new(
            "use",
            dir.path(),
            io::Error::other("its file system does not allow executing programs (noexec)"),
        ));
    }
    dir.empty()?;
    let slots = scandir::static_slots(&stage.layout.program, &stage.home, |k| {
        std::env::var(k).ok()
    });
    static_slot::install(dir, &slots)?;
    dir.create_new_file(
        OsStr::new(svscan::LIMIT_FILE),
        format!("{}\n", stage.max_slots).as_bytes(),
        0o644,
    )?;
    if pid1::euid() == 0 {
        volume::chown_tree(dir, user.uid, user.gid)?;
    }
    Ok(())
}

/// Put the run directory and the scandir where they work (see `place`),
/// record them in the volume for `docker exec` clients and in the
/// environment for everything this init starts.
fn place_runtime(
    stage: &mut Stage1,
    home_dir: &Dir,
    user: &ServiceUser,
    root: bool,
) -> Result<(), InitError> {
    let host = runtime::host_name();
    let owner = root.then_some((user.uid, user.gid));
    let run_path = stage.layout.run_dir.clone();
    let scan_path = stage.layout.scandir.clone();
    let in_run = place::open_in_run(&run_path)
        .and_then(|d| prepare_run_dir(&d, user, root, false).map(|()| d));
    let (run_dir, moved) = place::first_or_volume("run directory", in_run, || {
        let own = place::volume_dir(home_dir, &host, owner)?;
        let d = place::own_dir(&own, OsStr::new("run"), 0o700)?;
        prepare_run_dir(&d, user, root, true)?;
        Ok(d)
    })?;
    if moved.is_some() {
        stage.layout.run_dir = run_dir.path().to_path_buf();
    }
    let in_run = place::open_in_run(&scan_path).and_then(|d| {
        place::refuse_fuse(&d, home_dir)?;
        prepare_scandir(stage, &d, user).map(|()| d)
    });
    let (scan_dir, moved) = place::first_or_volume("supervision tree", in_run, || {
        let own = place::volume_dir(home_dir, &host, owner)?;
        let d = place::own_dir(&own, OsStr::new("service"), 0o755)?;
        prepare_scandir(stage, &d, user)?;
        Ok(d)
    })?;
    if moved.is_some() {
        place::link_from_run(&scan_path, scan_dir.path());
        stage.layout.scandir = scan_dir.path().to_path_buf();
    }
    runtime::record(
        home_dir,
        &runtime::Places {
            host,
            scandir: stage.layout.scandir.clone(),
            run_dir: stage.layout.run_dir.clone(),
        },
    )?;
    if root {
        home_dir.chown_entry(OsStr::new(runtime::POINTER_FILE), user.uid, user.gid)?;
    }
    // Stage 1 is single-threaded: nothing reads the environment concurrently.
    std::env::set_var("HERMES_SCANDIR", &stage.layout.scandir);
    std::env::set_var("HERMES_RUN_DIR", &stage.layout.run_dir);
    Ok(())
}

/// Take the volume, or say who has it. A read-only one-shot command
/// (`status`, `profile list`, `gateway status`) still runs against a volume
/// another container holds: without a tree of its own, writing nothing
/// (`Err(Ok(code))` is how it ended).
fn claim_volume(
    stage: &Stage1,
    home_dir: &Dir,
    user: &ServiceUser,
    root: bool,
) -> Result<VolumeLock, Result<u8, InitError>> {
    let owner = root.then_some((user.uid, user.gid));
    match volume_lock::acquire(home_dir, &volume_lock::Owner::current(), owner) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held { .. }) if route::read_only_hermes(&stage.cmd) => {
            let args = route::hermes_args(&stage.cmd);
            let mut argv: Vec<OsString> = vec![stage.layout.program.clone().into()];
            argv.extend(args);
            let ran = Command::new(&stage.layout.program, &argv, &user_environment(user)).and_then(
                |cmd| pid1::run_to_end(&cmd.credentials(root.then_some(user.credentials()))),
            );
            Err(ran.map_err(InitError::from))
        }
        Err(e) => Err(Err(e.into())),
    }
}

/// Prepare the container, then live as its init (see `init`); returns the
/// container's exit code, or why it could not be prepared.
pub fn run(mut stage: Stage1) -> Result<u8, InitError> {
    let tty = pid1::is_tty(0);
    let decision = init::main_program(&stage.cmd, &stage.layout.program, tty);
    notes::set_loud(
        decision == MainProgram::Server
            || notes::verbose_requested(std::env::var("HERMES_VERBOSE").ok().as_deref()),
    );
    if let Some(ns) = pid1::signals_blocked_at_ns() {
        notes::record_for_boot_log(format!("stop signals blocked at {ns} ns after the epoch"));
    }
    if !pid1::is_pid1() {
        note!(
            "not running as PID 1 (pid {}), e.g. under `docker run --init`: \
             becoming a child subreaper so orphans are still reaped",
            std::process::id()
        );
        pid1::become_subreaper()?;
    }
    let root = pid1::euid() == 0;
    let status = fsutil::read_to_string(Path::new("/proc/self/status")).unwrap_or_default();
    if root && !crate::privilege::can_switch_users(&status) {
        return Err(InitError::Repair(
            "running as root without CAP_SETUID and CAP_SETGID (--cap-drop ALL?), so the \
             supervision tree cannot be handed to the service user: run the container as the \
             service user instead (--user 10000:10000 works with --cap-drop ALL), or keep \
             those capabilities"
                .to_string(),
        ));
    }
    let user = service_user(&stage.home)?;
    let home_dir = Dir::open_or_create(stage.home.root(), 0o755)?;
    // Before anything is written to the volume. Held by this process (PID 1)
    // until it returns; the descriptor is close-on-exec and a record lock is
    // never inherited, so no child holds the volume.
    let lock = match claim_volume(&stage, &home_dir, &user, root) {
        Ok(lock) => lock,
        Err(ran) => return ran,
    };
    if root {
        prepare_root_dir(&user);
    }
    prepare_volume(&home_dir, &stage.home, &user, root)?;
    place_runtime(&mut stage, &home_dir, &user, root)?;

    // s6-svscan writes a newline here once it accepts commands (-d).
    let (ready_read, ready_write) = pid1::pipe()?;
    let mut svscan_argv: Vec<OsString> = vec![
        stage.svscan.clone().into(),
        "-d".into(),
        ready_write.as_raw_fd().to_string().into(),
    ];
    svscan_argv.extend(svscan::args(
        stage.cap_flag,
        stage.max_slots,
        &stage.layout.scandir,
    ));
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
    // The TUI draws the whole terminal: the loggers' echo of every gateway
    // line would land on its screen. Those lines stay in each gateway's
    // log, which the TUI shows.
    let svscan_stdout = if decision.draws_the_terminal() {
        let null = Path::new("/dev/null");
        let file = File::options()
            .write(true)
            .open(null)
            .map_err(|e| FsError::new("open", null, e))?;
        svscan = svscan.stdout(file.as_raw_fd());
        Some(file)
    } else {
        if decision != MainProgram::Server {
            // The main program owns stdout: what the tree prints (loggers
            // echoing a gateway's lines) goes to stderr, which `docker
            // logs` shows too.
            svscan = svscan.stdout(libc::STDERR_FILENO);
        }
        None
    };
    let aliases =
        root.then(|| aliases::Pending::new(stage.home.clone(), stage.layout.program.clone()));
    let code = init::run(Boot {
        layout: stage.layout,
        user,
        svscan,
        svscan_stdout,
        ready_read,
        ready_write,
        decision,
        tty,
        home: stage.home.clone(),
        aliases,
    });
    // Only now, with the tree and everything else ended, is the volume free.
    drop(lock);
    Ok(code)
}
