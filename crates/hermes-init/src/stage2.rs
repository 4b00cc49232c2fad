//! Stage 2, a root child of s6-svscan: wait for the supervisor, reconcile
//! the gateway slots as the service user, run the main program in the
//! terminal's foreground, and when it ends record its code and have
//! s6-svscan shut the tree down (which ends in stage 3).
//!
//! Stop requests arrive on the control FIFO from `.s6-svscan/SIGTERM`
//! (s6-svscan, as PID 1, receives `docker stop`'s signal) or as signals sent
//! to this process directly; the main program gets the signal first.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hermes_core::fsutil;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::pid1::{self, Command, Credentials};
use crate::route::{self, MainProgram};
use crate::stage1::{environment, user_environment};
use crate::user::ServiceUser;
use crate::{say, Layout};

/// How long s6-svscan may take to accept commands.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Between SIGTERM to the main program and SIGKILL to its process group.
/// With `TEARDOWN_GRACE` and stage 3's grace the worst case stays under
/// Docker's 10 s; well-behaved programs and services take milliseconds.
const MAIN_GRACE: Duration = Duration::from_secs(3);
/// How long s6-svscan may take to bring every service down.
const TEARDOWN_GRACE: Duration = Duration::from_secs(4);

pub struct Stage2 {
    pub layout: Layout,
    pub user: ServiceUser,
    pub ready_fd: RawFd,
    /// Stage 1's reader of the control FIFO, open since before s6-svscan ran.
    pub control_fd: RawFd,
    pub cmd: Vec<OsString>,
}

/// A signal to pass on, from the FIFO or from our own signalfd.
fn parse_request(word: &str) -> Option<Signal> {
    match word.trim() {
        "TERM" => Some(Signal::SIGTERM),
        "INT" => Some(Signal::SIGINT),
        "HUP" => Some(Signal::SIGHUP),
        "QUIT" => Some(Signal::SIGQUIT),
        _ => None,
    }
}

/// What the event loop saw.
enum Event {
    Signal(Signal),
    ChildExited,
    Timeout,
}

struct Events {
    sigfd: SignalFd,
    fifo: File,
    pending: Vec<Event>,
}

impl Events {
    /// `control_fd` is the FIFO opened read-write (so it never reports
    /// end-of-file between writers) and non-blocking by stage 1.
    fn new(control_fd: RawFd) -> Result<Self, String> {
        let set = pid1::handled_signals();
        pid1::block(&set).map_err(|e| e.to_string())?;
        let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("unable to create a signalfd: {e}"))?;
        let fifo = File::from(pid1::adopt_fd(control_fd));
        // Inherited without close-on-exec; the main program must not inherit it.
        nix::fcntl::fcntl(
            fifo.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| format!("unable to set close-on-exec on the control FIFO: {e}"))?;
        Ok(Events {
            sigfd,
            fifo,
            pending: Vec::new(),
        })
    }

    /// The next event, waiting at most until `deadline`.
    fn next(&mut self, deadline: Option<Instant>) -> Event {
        loop {
            if let Some(event) = self.pending.pop() {
                return event;
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Event::Timeout;
                    }
                    PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.fifo.as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            while let Ok(Some(info)) = self.sigfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => self.pending.push(Event::ChildExited),
                    Ok(sig) => self.pending.push(Event::Signal(sig)),
                    Err(_) => {}
                }
            }
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = self.fifo.read(&mut buf) {
                for word in String::from_utf8_lossy(&buf[..n]).split_whitespace() {
                    match parse_request(word) {
                        Some(sig) => self.pending.push(Event::Signal(sig)),
                        None => say!("ignoring unknown request {word:?} on the control FIFO"),
                    }
                }
            }
            // Oldest first: pending is used as a stack.
            self.pending.reverse();
        }
    }
}

/// Wait for `pid`, passing signals on; returns its code and the first stop
/// signal asked for while it ran.
fn supervise(events: &mut Events, pid: Pid, group: bool) -> (u8, Option<Signal>) {
    let mut stop_asked = None;
    let mut kill_at: Option<Instant> = None;
    loop {
        match events.next(kill_at) {
            Event::ChildExited => {
                let mut found = None;
                for (dead, code) in pid1::reap_all() {
                    if dead == pid {
                        found = Some(code);
                    }
                }
                if let Some(code) = found {
                    return (code, stop_asked);
                }
            }
            Event::Signal(sig) => {
                pid1::send(pid, sig);
                if matches!(sig, Signal::SIGTERM | Signal::SIGINT) {
                    stop_asked.get_or_insert(sig);
                    kill_at.get_or_insert(Instant::now() + MAIN_GRACE);
                }
            }
            Event::Timeout => {
                say!("main program still running {MAIN_GRACE:?} after SIGTERM: killing it");
                if group {
                    pid1::send(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                }
                pid1::send(pid, Signal::SIGKILL);
                kill_at = None;
            }
        }
    }
}

/// Wait for s6-svscan's readiness newline on `fd` (it may also just close it).
fn wait_ready(fd: RawFd) {
    let owned = pid1::adopt_fd(fd);
    let deadline = Instant::now() + READY_TIMEOUT;
    let borrowed: BorrowedFd = owned.as_fd();
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLIN)];
    let left = deadline.saturating_duration_since(Instant::now());
    let ready = matches!(
        poll(
            &mut fds,
            PollTimeout::try_from(left.as_millis() as i32).unwrap_or(PollTimeout::MAX)
        ),
        Ok(1..)
    );
    if !ready {
        say!(
            "warning: s6-svscan did not report ready within {}s; going on",
            READY_TIMEOUT.as_secs()
        );
    }
}

/// A root caller may run a program only when the service user could not have
/// put it there: the file and its directory belong to root and are not
/// writable by group or others. Anything else runs as the service user.
fn safe_for_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let trusted =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    trusted(&real) && real.parent().is_some_and(trusted)
}

fn hermes_argv(program: &Path, args: &[OsString]) -> Vec<OsString> {
    let mut argv = vec![program.as_os_str().to_owned()];
    argv.extend(args.iter().cloned());
    argv
}

/// How a boot helper ended.
struct Helper {
    ok: bool,
    /// A stop signal that arrived while it ran (it was passed on to it).
    stop: Option<Signal>,
}

/// Run one short helper as the service user and wait for it.
fn run_as_user(stage: &Stage2, events: &mut Events, program: &Path, argv: &[OsString]) -> Helper {
    let failed = Helper {
        ok: false,
        stop: None,
    };
    let cmd = match Command::new(program, argv, &user_environment(&stage.user)) {
        Ok(cmd) => cmd.credentials(drop_to(stage)),
        Err(e) => {
            say!("{e}");
            return failed;
        }
    };
    match cmd.spawn() {
        Ok(pid) => {
            let (code, stop) = supervise(events, pid, false);
            if code != 0 && stop.is_none() {
                say!("`{}` exited with code {code}", cmd.display());
            }
            Helper {
                ok: code == 0,
                stop,
            }
        }
        Err(e) => {
            say!("{e}");
            failed
        }
    }
}

fn drop_to(stage: &Stage2) -> Option<Credentials> {
    (pid1::euid() == 0).then(|| stage.user.credentials())
}

/// What the CMD asks for (see `route`).
fn main_program(stage: &Stage2, tty: bool) -> MainProgram {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let program = &stage.layout.program;
    let same_as_us = |p: &Path| {
        let a = std::fs::canonicalize(p).ok();
        a.is_some() && a == std::fs::canonicalize(program).ok()
    };
    route::route(
        &stage.cmd,
        tty,
        |name| pid1::which(name, &path_var),
        same_as_us,
    )
}

/// Start the main program; `None` in server mode.
fn start_main(stage: &Stage2, decision: MainProgram, tty: bool) -> Result<Option<Pid>, String> {
    let program = &stage.layout.program;
    let (path, argv, as_user): (PathBuf, Vec<OsString>, bool) = match decision {
        MainProgram::Server => {
            say!("server mode: supervising until the container is stopped");
            return Ok(None);
        }
        MainProgram::Tui => (program.clone(), hermes_argv(program, &["tui".into()]), true),
        MainProgram::Hermes(args) => (program.clone(), hermes_argv(program, &args), true),
        MainProgram::Program { path, argv } => {
            let as_user = !safe_for_root(&path);
            if as_user && pid1::euid() == 0 {
                say!(
                    "{} is writable by the service user or not root's: running it as {}",
                    path.display(),
                    stage.user.name
                );
            }
            (path, argv, as_user)
        }
    };
    let env = if as_user {
        user_environment(&stage.user)
    } else {
        environment(&[])
    };
    let cred = if as_user { drop_to(stage) } else { None };
    let cmd = Command::new(&path, &argv, &env)
        .map_err(|e| e.to_string())?
        .credentials(cred)
        .own_process_group(tty.then_some(0));
    cmd.spawn().map(Some).map_err(|e| e.to_string())
}

/// The main program's pid, in the run directory.
pub const MAIN_PID_FILE: &str = "main.pid";

pub fn run(stage: Stage2) -> u8 {
    if let Err(e) = pid1::ignore_job_control() {
        say!("{e}");
    }
    let mut events = match Events::new(stage.control_fd) {
        Ok(events) => events,
        Err(e) => {
            say!("stage 2 cannot listen for stop requests: {e}");
            return shutdown(&stage, None, 1);
        }
    };
    wait_ready(stage.ready_fd);
    if let Some(sig) = pid1::stop_pending_in_pid1() {
        events.pending.push(Event::Signal(sig));
    }
    let program = stage.layout.program.clone();
    let reconcile = hermes_argv(&program, &["container".into(), "reconcile".into()]);
    let reconciled = run_as_user(&stage, &mut events, &program, &reconcile);
    let tty = pid1::is_tty(0);
    let decision = main_program(&stage, tty);
    if let Some(sig) = reconciled.stop {
        // Stopped while booting: the main program never starts. Server mode
        // stops with 0 as it always does; a CMD that never ran ends as if
        // the signal had killed it.
        say!("{sig} during boot: stopping without starting the main program");
        let code = if decision == MainProgram::Server {
            0
        } else {
            (128 + sig as i32) as u8
        };
        return shutdown(&stage, Some(&mut events), code);
    }
    if !reconciled.ok {
        say!("warning: boot reconciliation failed; starting the main program anyway");
    }
    let code = match start_main(&stage, decision, tty) {
        Ok(Some(pid)) => {
            // For `hermes status`, the dashboard and the TUI (readable by the service user).
            let pid_file = stage.layout.run_dir.join(MAIN_PID_FILE);
            if let Err(e) = fsutil::atomic_write(&pid_file, format!("{pid}\n").as_bytes(), 0o644) {
                say!("unable to record the main program's pid: {e}");
            }
            supervise(&mut events, pid, true).0
        }
        Ok(None) => loop {
            if let Event::Signal(Signal::SIGTERM | Signal::SIGINT) = events.next(None) {
                break 0;
            }
        },
        Err(e) => {
            say!("{e}");
            // The shell's "command not found"/"cannot execute" convention.
            127
        }
    };
    shutdown(&stage, Some(&mut events), code)
}

/// Record `code` for stage 3 and ask s6-svscan (as the service user) to tear down.
fn shutdown(stage: &Stage2, events: Option<&mut Events>, code: u8) -> u8 {
    let file = stage.layout.exit_code_file();
    if let Err(e) = fsutil::atomic_write(&file, format!("{code}\n").as_bytes(), 0o644) {
        say!("unable to record the exit code {code}: {e}");
    }
    let svscanctl = pid1::which(
        "s6-svscanctl".as_ref(),
        &std::env::var_os("PATH").unwrap_or_default(),
    )
    .unwrap_or_else(|| PathBuf::from("/usr/bin/s6-svscanctl"));
    let argv: Vec<OsString> = vec![
        svscanctl.clone().into(),
        "-t".into(),
        stage.layout.scandir.clone().into(),
    ];
    let ok = match events {
        Some(events) => run_as_user(stage, events, &svscanctl, &argv).ok,
        None => Command::new(&svscanctl, &argv, &user_environment(&stage.user))
            .and_then(|c| c.credentials(drop_to(stage)).spawn())
            .and_then(pid1::wait_for)
            .is_ok_and(|c| c == 0),
    };
    if !ok {
        say!("unable to ask s6-svscan to shut down; forcing stage 3");
    }
    watch_teardown(ok);
    code
}

/// s6-svscan 2.13 has been seen never to finish a shutdown (SYSTEM.md, and
/// once in this suite: a supervisor that outlived its SIGTERM). Unless it
/// has exec'd stage 3 within `TEARDOWN_GRACE`, SIGABRT makes it exec
/// `.s6-svscan/finish` at once, and stage 3 ends whatever is left.
fn watch_teardown(asked: bool) {
    let svscan = nix::unistd::getppid();
    let comm = format!("/proc/{svscan}/comm");
    let deadline = Instant::now()
        + if asked {
            TEARDOWN_GRACE
        } else {
            Duration::ZERO
        };
    loop {
        match std::fs::read_to_string(&comm) {
            // Still s6-svscan (not yet exec'd into finish, not reparented).
            Ok(name) if name.trim() == "s6-svscan" => {}
            _ => return,
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if asked {
        say!(
            "s6-svscan has not finished its shutdown after {}s: running stage 3 now",
            TEARDOWN_GRACE.as_secs()
        );
    }
    pid1::send(svscan, Signal::SIGABRT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_signal_names() {
        assert_eq!(parse_request("TERM\n"), Some(Signal::SIGTERM));
        assert_eq!(parse_request("INT"), Some(Signal::SIGINT));
        assert_eq!(parse_request("KILL"), None);
    }

    #[test]
    fn only_root_owned_unwritable_programs_run_as_root() {
        assert!(safe_for_root(Path::new("/bin/sh")) || pid1::euid() != 0);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("x");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!safe_for_root(&script));
    }
}
