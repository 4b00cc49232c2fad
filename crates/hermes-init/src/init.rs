//! The init's life once stage 1 has prepared the container, all in the same
//! process (PID 1 for the container's whole life): start `s6-svscan` as a
//! child running as the service user (the root of all supervision), wait
//! until it accepts commands, reconcile the gateway slots as the service
//! user, run the main program in the terminal's foreground, and when a stop
//! signal arrives or the main program ends: stop the main program first,
//! queue the "stopping" notification (the gateways up), then stop the
//! supervision tree, then whatever is left, and exit with the main
//! program's code.
//!
//! The signals the init acts on are blocked from the first instruction of
//! `main` and read here from a signalfd. A blocked signal stays pending even
//! for PID 1 (which the kernel otherwise spares from any signal it has no
//! handler for), so a `docker stop` is never lost, whenever it arrives.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::{self, Durability, FsError};
use hermes_core::{runtime, HermesHome};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use hermes_s6::teardown::{self, DeferredFinish};

use crate::pid1::{self, Command, Credentials};
use crate::route::{self, MainProgram};
use crate::stage1::{environment, user_environment};
use crate::user::ServiceUser;
use crate::{aliases, notes, say, stopping, Layout};

/// How long s6-svscan may take to accept commands.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Between SIGTERM to the main program and SIGKILL to its process group.
/// With `TEARDOWN_GRACE` and `STRAGGLER_GRACE` the worst case stays under
/// Docker's 10 s; well-behaved programs and services take milliseconds.
const MAIN_GRACE: Duration = Duration::from_secs(3);
/// How long s6-svscan may take to bring every service down (s6 2.13 has
/// been seen never to finish a shutdown: then it is killed).
const TEARDOWN_GRACE: Duration = Duration::from_secs(4);
/// Grace for stragglers (processes outside any slot) between SIGTERM and SIGKILL.
const STRAGGLER_GRACE: Duration = Duration::from_secs(2);
/// How long queueing the "stopping" notification may take (it reads each
/// profile's state and appends a line: milliseconds); within Docker's 10 s
/// with the graces above.
const NOTIFY_GRACE: Duration = Duration::from_millis(500);
/// How long the deferred finish hooks of the gateways that did not stop
/// cleanly may take (each records one death: milliseconds), taken from
/// what is left of `TEARDOWN_GRACE`.
const FINISH_GRACE: Duration = Duration::from_millis(500);

/// How long the boot reconciler may take to end once the main program that
/// ran beside it has ended (it only publishes slots: SIGTERM ends it at once).
const RECONCILER_GRACE: Duration = Duration::from_secs(1);

/// The container's exit code when s6-svscan ended on its own: the gateways
/// were no longer supervised, so the container stops rather than go on.
pub const SUPERVISOR_LOST_CODE: u8 = 1;

/// The main program's pid, in the run directory; [`SERVER_MODE`] when there is none.
pub const MAIN_PID_FILE: &str = "main.pid";
/// What [`MAIN_PID_FILE`] says in server mode.
pub const SERVER_MODE: &str = "none";

/// What stage 1 hands over.
pub struct Boot {
    pub layout: Layout,
    pub user: ServiceUser,
    /// s6-svscan, ready to spawn: service user's credentials, `-d` on `ready_write`.
    pub svscan: Command,
    /// What `svscan` was given as its stdout, open until it is spawned.
    pub svscan_stdout: Option<File>,
    pub ready_read: OwnedFd,
    pub ready_write: OwnedFd,
    pub decision: MainProgram,
    pub tty: bool,
    pub home: HermesHome,
    /// Root's profile aliases, for once the boot's reconcile has ended.
    pub aliases: Option<aliases::Pending>,
}

/// What the CMD asks for (see `route`).
pub fn main_program(cmd: &[OsString], program: &Path, tty: bool) -> MainProgram {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let same_as_us = |p: &Path| {
        let a = std::fs::canonicalize(p).ok();
        a.is_some() && a == std::fs::canonicalize(program).ok()
    };
    route::route(cmd, tty, |name| pid1::which(name, &path_var), same_as_us)
}

/// TERM and INT stop the container; HUP and QUIT are only passed on to the main program.
fn is_stop(sig: Signal) -> bool {
    matches!(sig, Signal::SIGTERM | Signal::SIGINT)
}

/// What the event loop saw.
enum Event {
    Signal(Signal),
    ChildExited,
    /// s6-svscan wrote its readiness line (or closed the pipe).
    Ready,
    Timeout,
}

struct Events {
    sigfd: SignalFd,
    ready: Option<File>,
    pending: VecDeque<Event>,
}

impl Events {
    fn new(ready: OwnedFd) -> Result<Self, String> {
        let set = pid1::handled_signals();
        // Already blocked by `main`; again here so this never depends on it.
        pid1::block(&set).map_err(|e| e.to_string())?;
        let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("unable to create a signalfd: {e}"))?;
        Ok(Events {
            sigfd,
            ready: Some(File::from(ready)),
            pending: VecDeque::new(),
        })
    }

    /// The next event, waiting at most until `deadline`.
    fn next(&mut self, deadline: Option<Instant>) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
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
            let mut fds = vec![PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
            if let Some(ready) = &self.ready {
                fds.push(PollFd::new(ready.as_fd(), PollFlags::POLLIN));
            }
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            let ready_seen = fds
                .get(1)
                .and_then(|fd| fd.revents())
                .is_some_and(|r| !r.is_empty());
            while let Ok(Some(info)) = self.sigfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => self.pending.push_back(Event::ChildExited),
                    Ok(sig) => self.pending.push_back(Event::Signal(sig)),
                    Err(_) => {}
                }
            }
            if ready_seen {
                if let Some(mut ready) = self.ready.take() {
                    let mut line = [0u8; 16];
                    let _ = ready.read(&mut line);
                }
                self.pending.push_back(Event::Ready);
            }
        }
    }
}

/// How a child the init waited for ended.
struct Ended {
    code: u8,
    /// The first stop signal that arrived while it ran (it was passed on to
    /// it), and when.
    stop: Option<Signal>,
    stopped_at: Option<Instant>,
}

struct Init {
    layout: Layout,
    user: ServiceUser,
    home: HermesHome,
    events: Events,
    svscan: Pid,
    /// s6-svscan's exit code once it has ended.
    svscan_ended: Option<u8>,
    /// Whether the shutdown asked s6-svscan to end (so its end is expected).
    teardown_asked: bool,
    /// Published once the reconcile has ended (see `aliases::Pending`).
    aliases: Option<aliases::Pending>,
}

impl Init {
    /// Reap every child that ended (orphans included); returns the code of `pid` if it did.
    fn reap(&mut self, pid: Option<Pid>) -> Option<u8> {
        let watched: Vec<Pid> = pid.into_iter().collect();
        self.reap_watched(&watched).first().map(|(_, code)| *code)
    }

    /// Reap every child that ended (orphans included); returns those of
    /// `watched` that did, with their codes.
    fn reap_watched(&mut self, watched: &[Pid]) -> Vec<(Pid, u8)> {
        let mut found = Vec::new();
        for (dead, code) in pid1::reap_all() {
            if dead == self.svscan {
                self.svscan_ended = Some(code);
                if !self.teardown_asked {
                    say!(
                        "s6-svscan (pid {dead}) ended on its own ({}): the gateways are no longer \
                         supervised; stopping the container with exit code {SUPERVISOR_LOST_CODE}",
                        describe(code)
                    );
                }
            }
            if watched.contains(&dead) {
                found.push((dead, code));
            }
        }
        found
    }

    fn supervisor_lost(&self) -> bool {
        self.svscan_ended.is_some() && !self.teardown_asked
    }

    /// Wait until s6-svscan accepts commands; returns a stop signal that came first.
    fn wait_ready(&mut self) -> Option<Signal> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.events.next(Some(deadline)) {
                Event::Ready => return None,
                Event::Signal(sig) if is_stop(sig) => return Some(sig),
                Event::Signal(_) => {}
                Event::ChildExited => {
                    self.reap(None);
                    if self.supervisor_lost() {
                        return None;
                    }
                }
                Event::Timeout => {
                    say!(
                        "warning: s6-svscan did not report ready within {}s; going on",
                        READY_TIMEOUT.as_secs()
                    );
                    return None;
                }
            }
        }
    }

    /// Wait for `pid`, passing signals on (see [`Init::wait_children`]).
    fn wait_child(&mut self, pid: Pid, group: bool) -> Ended {
        self.wait_children(pid, group, Vec::new(), |_, _| {}).0
    }

    /// Wait for `main`, passing signals on to it, while the children of
    /// `beside` run too (the boot reconciler beside a program CMD): a stop
    /// signal sends them SIGTERM as well, and `ended_beside` hears of each
    /// one that ends (its code, and the stop if one came). A stop signal
    /// gives `main` `MAIN_GRACE` before SIGKILL (of its process group when
    /// `group`); so does the loss of s6-svscan, which is stopping the
    /// container too. Returns how `main` ended and what of `beside` still runs.
    fn wait_children(
        &mut self,
        main: Pid,
        group: bool,
        mut beside: Vec<Pid>,
        mut ended_beside: impl FnMut(u8, Option<Signal>),
    ) -> (Ended, Vec<Pid>) {
        let mut stop = None;
        let mut stopped_at = None;
        let mut kill_at: Option<Instant> = None;
        loop {
            match self.events.next(kill_at) {
                Event::ChildExited => {
                    let lost_before = self.supervisor_lost();
                    let watched: Vec<Pid> = std::iter::once(main).chain(beside.clone()).collect();
                    let mut main_code = None;
                    for (pid, code) in self.reap_watched(&watched) {
                        if pid == main {
                            main_code = Some(code);
                        } else {
                            beside.retain(|p| *p != pid);
                            ended_beside(code, stop);
                        }
                    }
                    if let Some(code) = main_code {
                        let ended = Ended {
                            code,
                            stop,
                            stopped_at,
                        };
                        return (ended, beside);
                    }
                    if self.supervisor_lost() && !lost_before {
                        pid1::send(main, Signal::SIGTERM);
                        kill_at.get_or_insert(Instant::now() + MAIN_GRACE);
                    }
                }
                Event::Signal(sig) => {
                    pid1::send(main, sig);
                    if is_stop(sig) {
                        for &pid in &beside {
                            pid1::send(pid, Signal::SIGTERM);
                        }
                        stop.get_or_insert(sig);
                        stopped_at.get_or_insert_with(Instant::now);
                        kill_at.get_or_insert(Instant::now() + MAIN_GRACE);
                    }
                }
                Event::Timeout => {
                    say!("pid {main} still running {MAIN_GRACE:?} after SIGTERM: killing it");
                    if group {
                        pid1::send(Pid::from_raw(-main.as_raw()), Signal::SIGKILL);
                    }
                    pid1::send(main, Signal::SIGKILL);
                    kill_at = None;
                }
                Event::Ready => {}
            }
        }
    }

    /// Server mode: wait for a stop signal (exit 0) or the loss of s6-svscan.
    fn serve(&mut self) -> u8 {
        loop {
            match self.events.next(None) {
                Event::Signal(sig) if is_stop(sig) => return 0,
                Event::ChildExited => {
                    self.reap(None);
                    if self.supervisor_lost() {
                        return SUPERVISOR_LOST_CODE;
                    }
                }
                _ => {}
            }
        }
    }

    /// The boot's reconcile is over (not stopped): the aliases' turn.
    fn reconcile_ended(&mut self) {
        if let Some(pending) = self.aliases.take() {
            pending.publish_beside();
        }
    }

    fn drop_to(&self) -> Option<Credentials> {
        (pid1::euid() == 0).then(|| self.user.credentials())
    }

    /// Run the boot reconciler as the service user and wait for it.
    fn reconcile(&mut self, program: &Path, quiet_out: &File) -> Ended {
        match self.spawn_reconciler(program, quiet_out) {
            Ok(pid) => self.wait_child(pid, false),
            Err(e) => {
                say!("{e}");
                Ended {
                    code: 127,
                    stop: None,
                    stopped_at: None,
                }
            }
        }
    }

    /// Start the boot reconciler as the service user. Its report goes to the
    /// boot log, and to stderr only when notes do (never to stdout).
    fn spawn_reconciler(&self, program: &Path, quiet_out: &File) -> Result<Pid, String> {
        let mut args: Vec<OsString> = vec!["container".into(), "reconcile".into()];
        for line in notes::take() {
            args.push("--note".into());
            args.push(line.into());
        }
        let argv = hermes_argv(program, &args);
        let stdout = if notes::is_loud() {
            libc::STDERR_FILENO
        } else {
            quiet_out.as_raw_fd()
        };
        Command::new(program, &argv, &user_environment(&self.user))
            .map(|c| {
                c.credentials(self.drop_to())
                    .stdout(stdout)
                    .stop_signals_blocked()
            })
            .and_then(|c| c.spawn())
            .map_err(|e| e.to_string())
    }

    /// Wait for the main program `main` while the boot reconciler runs
    /// beside it. Once the main program has ended, a reconciler still at
    /// work is ended too: SIGTERM, on which it logs what it did (the init's
    /// notes first) and exits, and SIGKILL if it has not within
    /// `RECONCILER_GRACE` of the first SIGTERM (a stop sent it one already).
    /// The container is stopping; the next boot publishes every slot again.
    fn wait_main_beside(&mut self, main: Pid, reconciler: Option<Pid>, boot_log: &Path) -> Ended {
        let mut aliases = self.aliases.take();
        let (ended, left) = self.wait_children(
            main,
            true,
            reconciler.into_iter().collect(),
            |code, stop| {
                if code != 0 && stop.is_none() {
                    say!(
                        "warning: boot reconciliation failed ({}; see {})",
                        describe(code),
                        boot_log.display()
                    );
                }
                if let Some(pending) = aliases.take().filter(|_| stop.is_none()) {
                    pending.publish_beside();
                }
            },
        );
        let since = ended.stopped_at.unwrap_or_else(Instant::now);
        for pid in left {
            self.end_child(pid, since + RECONCILER_GRACE);
        }
        ended
    }

    /// SIGTERM `pid`, wait for it until `deadline`, then SIGKILL it (the
    /// teardown reaps it). Signals that arrive meanwhile change nothing:
    /// the container is already stopping.
    fn end_child(&mut self, pid: Pid, deadline: Instant) {
        pid1::send(pid, Signal::SIGTERM);
        loop {
            match self.events.next(Some(deadline)) {
                Event::ChildExited => {
                    if self.reap(Some(pid)).is_some() {
                        return;
                    }
                }
                Event::Timeout => {
                    pid1::send(pid, Signal::SIGKILL);
                    return;
                }
                Event::Signal(_) | Event::Ready => {}
            }
        }
    }

    /// Queue the "stopping" notification (`hermes container
    /// notify-stopping`, as the service user) while the gateways still run;
    /// the notify slot delivers it on its way down. Here and not in the
    /// sender: only the init knows the container is stopping, not just that
    /// slot. Bounded by `NOTIFY_GRACE`; a failure is one line and no more.
    /// Not started at all when no gateway can be up (`stopping`).
    fn notify_stopping(&mut self) {
        if !stopping::maybe_gateways_up(&self.home) {
            return;
        }
        let program = self.layout.program.clone();
        let argv = hermes_argv(&program, &["container".into(), "notify-stopping".into()]);
        let spawned = Command::new(&program, &argv, &user_environment(&self.user))
            // The init never writes to stdout; neither do its helpers.
            .map(|c| c.credentials(self.drop_to()).stdout(libc::STDERR_FILENO))
            .and_then(|c| c.spawn());
        let pid = match spawned {
            Ok(pid) => pid,
            Err(e) => {
                say!("unable to queue the stopping notification: {e}");
                return;
            }
        };
        let (ended, _) = self.wait_bounded(vec![pid], NOTIFY_GRACE);
        match ended.first() {
            Some((_, 0)) => {}
            Some((_, code)) => say!(
                "queueing the stopping notification failed ({})",
                describe(*code)
            ),
            None => {
                say!("queueing the stopping notification took over {NOTIFY_GRACE:?}: killed it")
            }
        }
    }

    /// Wait for `pids` (children of ours) to end, at most `grace`; then
    /// SIGKILL the rest and wait up to `grace` again. Returns those that
    /// ended by themselves, with their codes, and whether any was killed.
    fn wait_bounded(&mut self, mut pids: Vec<Pid>, grace: Duration) -> (Vec<(Pid, u8)>, bool) {
        let mut ended = Vec::new();
        let mut deadline = Instant::now() + grace;
        let mut killed = false;
        while !pids.is_empty() {
            match self.events.next(Some(deadline)) {
                Event::ChildExited => {
                    for (pid, code) in self.reap_watched(&pids) {
                        pids.retain(|p| *p != pid);
                        if !killed {
                            ended.push((pid, code));
                        }
                    }
                }
                Event::Timeout if !killed => {
                    for &pid in &pids {
                        pid1::send(pid, Signal::SIGKILL);
                    }
                    killed = true;
                    deadline = Instant::now() + grace;
                }
                // Killed and still not reaped: the teardown reaps everyone.
                Event::Timeout => break,
                // Already stopping: further signals change nothing.
                Event::Signal(_) | Event::Ready => {}
            }
        }
        (ended, killed)
    }

    /// Run, as the service user, the finish scripts s6-supervise would have
    /// run during the stop for the gateways that did not end cleanly (see
    /// `hermes_s6::teardown`): the hook records each crash or kill. Their
    /// lines go to the init's stderr, the loggers being gone.
    fn run_deferred_finishes(&mut self, deferred: &DeferredFinish, grace: Duration) {
        let mut running = Vec::new();
        for run in deferred.unclean_deaths() {
            let mut argv = vec![run.script.clone().into_os_string()];
            argv.extend(run.args().map(OsString::from));
            let spawned = Command::new(&run.script, &argv, &user_environment(&self.user))
                .map(|c| c.credentials(self.drop_to()).stdout(libc::STDERR_FILENO))
                .and_then(|c| c.spawn());
            match spawned {
                Ok(pid) => running.push(pid),
                Err(e) => say!(
                    "unable to record how {} ended: {e}",
                    run.slot.to_string_lossy()
                ),
            }
        }
        if running.is_empty() {
            return;
        }
        let count = running.len();
        let (ended, killed) = self.wait_bounded(running, grace);
        if killed {
            say!(
                "recording how {} gateway(s) ended took over {grace:?}: killed the hooks",
                count - ended.len()
            );
        }
    }

    /// Start the main program; `None` in server mode.
    fn start_main(&self, decision: MainProgram, tty: bool) -> Result<Option<Pid>, String> {
        let program = &self.layout.program;
        let (path, argv, as_user): (PathBuf, Vec<OsString>, bool) = match decision {
            MainProgram::Server => {
                crate::note!("server mode: supervising until the container is stopped");
                return Ok(None);
            }
            MainProgram::Tui => (program.clone(), hermes_argv(program, &["tui".into()]), true),
            MainProgram::Hermes(args) => (program.clone(), hermes_argv(program, &args), true),
            MainProgram::Program { path, argv } => {
                let as_user = !safe_for_root(&path);
                if as_user && pid1::euid() == 0 {
                    crate::note!(
                        "{} is writable by the service user or not root's: running it as {}",
                        path.display(),
                        self.user.name
                    );
                }
                (path, argv, as_user)
            }
        };
        let env = if as_user {
            user_environment(&self.user)
        } else {
            environment(&[])
        };
        let cred = if as_user { self.drop_to() } else { None };
        let cmd = Command::new(&path, &argv, &env)
            .map_err(|e| e.to_string())?
            .credentials(cred)
            .own_process_group(tty.then_some(0));
        cmd.spawn().map(Some).map_err(|e| e.to_string())
    }

    /// Bring the tree down (s6-svscan's own SIGTERM shutdown: services
    /// first, loggers drained), kill it if it hangs, end whatever is left,
    /// and return `code`.
    fn shutdown(&mut self, code: u8) -> u8 {
        if self.svscan_ended.is_none() {
            self.notify_stopping();
        }
        self.teardown_asked = true;
        if self.svscan_ended.is_none() {
            // Read by each gateway's finish script: a clean exit now needs no hook.
            if let Err(e) = write_run_file(&self.layout, runtime::STOPPING_FILE, "") {
                say!("warning: {e}; every gateway's finish hook runs");
            }
            let (deferred, error) = teardown::defer_finish(&self.layout.scandir);
            if let Some(e) = error {
                say!("warning: {e}; s6 runs the finish script of some gateways");
            }
            pid1::send(self.svscan, Signal::SIGTERM);
            let deadline = Instant::now() + TEARDOWN_GRACE;
            while self.svscan_ended.is_none() {
                match self.events.next(Some(deadline)) {
                    Event::ChildExited => {
                        self.reap(None);
                    }
                    Event::Timeout => {
                        say!(
                            "s6-svscan has not finished its shutdown after {}s: killing it",
                            TEARDOWN_GRACE.as_secs()
                        );
                        pid1::send(self.svscan, Signal::SIGKILL);
                        break;
                    }
                    _ => {}
                }
            }
            // Within the teardown's own grace, so the worst case stays under Docker's 10 s.
            let left = deadline.saturating_duration_since(Instant::now());
            self.run_deferred_finishes(&deferred, left.min(FINISH_GRACE));
        }
        if pid1::terminate_everyone(STRAGGLER_GRACE) {
            say!("killed processes still running {STRAGGLER_GRACE:?} after SIGTERM");
        }
        code
    }
}

/// `exited with code 3` / `killed by signal 9`.
fn describe(code: u8) -> String {
    match code {
        129.. => match Signal::try_from(i32::from(code) - 128) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("exit code {code}"),
        },
        _ => format!("exit code {code}"),
    }
}

/// A root caller may run a program only when the service user could not have
/// put it there: the file and every directory above it belong to root and
/// are not writable by group or others (a writable grandparent lets its
/// owner swap the whole directory). Anything else runs as the service user.
fn safe_for_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let trusted =
        |p: &Path| fsutil::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    trusted(&real)
        && real
            .parent()
            .is_some_and(|dir| crate::aliases::root_only(dir).is_ok())
}

/// Write `name` in the run directory as root. It may be on the volume,
/// below directories the service user can replace: it is reached without
/// following a link at any component. Unsynced: the run directory is
/// rebuilt at every boot.
fn write_run_file(layout: &Layout, name: &str, text: &str) -> Result<(), FsError> {
    Dir::open_no_links(&layout.run_dir)?.write_file(
        OsStr::new(name),
        text.as_bytes(),
        0o644,
        Durability::Volatile,
    )
}

fn hermes_argv(program: &Path, args: &[OsString]) -> Vec<OsString> {
    let mut argv = vec![program.as_os_str().to_owned()];
    argv.extend(args.iter().cloned());
    argv
}

/// For `hermes status`, the dashboard and the TUI (readable by the service user).
fn record_main_pid(layout: &Layout, pid: Pid) {
    if let Err(e) = write_run_file(layout, MAIN_PID_FILE, &format!("{pid}\n")) {
        say!("unable to record the main program's pid: {e}");
    }
}

/// A main program that is not hermes starts as soon as the supervisor
/// accepts commands, with the boot reconciler beside it: it needs the
/// volume, not the gateways (which come up beside it, as the dashboard
/// does). Returns the container's exit code.
fn run_beside_reconciler(
    mut init: Init,
    decision: MainProgram,
    tty: bool,
    program: &Path,
    quiet_out: &File,
    boot_log: &Path,
) -> u8 {
    let reconciler = match init.spawn_reconciler(program, quiet_out) {
        Ok(pid) => Some(pid),
        Err(e) => {
            say!("{e}");
            init.reconcile_ended();
            None
        }
    };
    let code = match init.start_main(decision, tty) {
        Ok(Some(pid)) => {
            record_main_pid(&init.layout, pid);
            let ended = init.wait_main_beside(pid, reconciler, boot_log);
            if init.supervisor_lost() {
                SUPERVISOR_LOST_CODE
            } else {
                ended.code
            }
        }
        // Server mode waits for the reconciler (`reads_reconciled_slots`).
        Ok(None) => init.serve(),
        Err(e) => {
            say!("{e}");
            if let Some(pid) = reconciler {
                init.end_child(pid, Instant::now() + RECONCILER_GRACE);
            }
            127
        }
    };
    init.shutdown(code)
}

/// Run the container's life; returns its exit code.
pub fn run(boot: Boot) -> u8 {
    let Boot {
        layout,
        user,
        svscan,
        svscan_stdout,
        ready_read,
        ready_write,
        decision,
        tty,
        home,
        aliases,
    } = boot;
    let boot_log = home.boot_log();
    if let Err(e) = pid1::ignore_job_control() {
        say!("{e}");
    }
    let events = match Events::new(ready_read) {
        Ok(events) => events,
        Err(e) => {
            say!("the init cannot listen for signals: {e}");
            return SUPERVISOR_LOST_CODE;
        }
    };
    let svscan_pid = match svscan.spawn() {
        Ok(pid) => pid,
        Err(e) => {
            say!("{e}");
            return SUPERVISOR_LOST_CODE;
        }
    };
    drop(ready_write);
    drop(svscan_stdout);
    let mut init = Init {
        layout,
        user,
        home,
        events,
        svscan: svscan_pid,
        svscan_ended: None,
        teardown_asked: false,
        aliases,
    };
    let boot_stop = |sig: Signal, decision: &MainProgram| {
        // Stopped while booting: the main program never starts. Server mode
        // stops with 0 as it always does; a CMD that never ran ends as if
        // the signal had killed it.
        crate::note!("{sig} during boot: stopping without starting the main program");
        if *decision == MainProgram::Server {
            0
        } else {
            (128 + sig as i32) as u8
        }
    };
    if let Some(sig) = init.wait_ready() {
        let code = boot_stop(sig, &decision);
        return init.shutdown(code);
    }
    if init.supervisor_lost() {
        return init.shutdown(SUPERVISOR_LOST_CODE);
    }
    let quiet_out = match File::options().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            say!("unable to open /dev/null: {e}");
            return init.shutdown(1);
        }
    };
    let program = init.layout.program.clone();
    if !decision.reads_reconciled_slots() {
        return run_beside_reconciler(init, decision, tty, &program, &quiet_out, &boot_log);
    }
    let reconciled = init.reconcile(&program, &quiet_out);
    if let Some(sig) = reconciled.stop {
        let code = boot_stop(sig, &decision);
        return init.shutdown(code);
    }
    init.reconcile_ended();
    if init.supervisor_lost() {
        return init.shutdown(SUPERVISOR_LOST_CODE);
    }
    if reconciled.code != 0 {
        say!(
            "warning: boot reconciliation failed ({}; see {}); starting the main program anyway",
            describe(reconciled.code),
            boot_log.display()
        );
    }
    let code = match init.start_main(decision, tty) {
        Ok(Some(pid)) => {
            record_main_pid(&init.layout, pid);
            let ended = init.wait_child(pid, true);
            if init.supervisor_lost() {
                SUPERVISOR_LOST_CODE
            } else {
                ended.code
            }
        }
        Ok(None) => {
            if let Err(e) = write_run_file(&init.layout, MAIN_PID_FILE, &format!("{SERVER_MODE}\n"))
            {
                say!("unable to record server mode: {e}");
            }
            init.serve()
        }
        Err(e) => {
            say!("{e}");
            // The shell's "command not found"/"cannot execute" convention.
            127
        }
    };
    init.shutdown(code)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_program_below_a_directory_others_can_write_is_not_for_root() {
        use std::os::unix::fs::PermissionsExt;
        if pid1::euid() != 0 {
            return;
        }
        // root's 0755 file in root's 0755 directory, under a 0777 one.
        let top = tempfile::Builder::new()
            .prefix("hermes-init-")
            .tempdir_in("/run")
            .unwrap();
        let dir = top.path().join("bin");
        std::fs::create_dir(&dir).unwrap();
        let prog = dir.join("prog");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        for (p, mode) in [
            (top.path(), 0o755),
            (dir.as_path(), 0o755),
            (prog.as_path(), 0o755),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        assert!(safe_for_root(&prog), "all root's from / down");
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!safe_for_root(&prog), "a writable grandparent");
    }

    #[test]
    fn codes_are_described_in_shell_terms() {
        assert_eq!(describe(3), "exit code 3");
        assert_eq!(describe(137), "killed by SIGKILL");
        assert_eq!(describe(255), "exit code 255");
    }
}
