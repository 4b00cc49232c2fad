//! The process-level duties of an init, and the only module of this crate with
//! `unsafe`: starting programs (fork/exec with nothing allocated in the child),
//! dropping privileges, waiting for and reaping children, the signal mask,
//! becoming a child subreaper, and killing what is left at the end.
//!
//! Everything a child needs (paths, argv, environment, credentials) is turned
//! into C strings before `fork`, because after `fork` in a process that might
//! have had other threads only async-signal-safe calls are allowed: no malloc,
//! no locks. The child reports a failed `execve` through a close-on-exec pipe,
//! so the parent can name the program and the error.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum Pid1Error {
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul { what: &'static str, value: OsString },
    #[error("unable to start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("unable to {op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn sys(op: &'static str) -> impl FnOnce(Errno) -> Pid1Error {
    move |e| Pid1Error::Sys {
        op,
        source: io::Error::from(e),
    }
}

/// A numeric user and group to switch to (no supplementary groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

/// Switch this process to `cred` for good: supplementary groups, then group,
/// then user (in that order, because after `setuid` the others are refused).
pub fn drop_privileges(cred: Credentials) -> Result<(), Pid1Error> {
    let gid = cred.gid as libc::gid_t;
    // SAFETY: setgroups reads exactly one gid_t from a valid pointer.
    if unsafe { libc::setgroups(1, &gid) } != 0 {
        return Err(sys("drop supplementary groups")(Errno::last()));
    }
    nix::unistd::setgid(nix::unistd::Gid::from_raw(cred.gid)).map_err(sys("set the group id"))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(cred.uid)).map_err(sys("set the user id"))?;
    Ok(())
}

/// A program to start, prepared so that the child after `fork` only makes system calls.
pub struct Command {
    display: String,
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cred: Option<Credentials>,
    own_group: bool,
    foreground_tty: Option<RawFd>,
    keep_fds: Vec<RawFd>,
    stdout: Option<RawFd>,
    /// The signal mask the program starts with (empty unless asked).
    start_mask: libc::sigset_t,
}

fn cstring(what: &'static str, value: &OsStr) -> Result<CString, Pid1Error> {
    CString::new(value.as_bytes()).map_err(|_| Pid1Error::Nul {
        what,
        value: value.to_os_string(),
    })
}

impl Command {
    /// `path` is run with `argv` (argv[0] included) and exactly the environment `env`.
    pub fn new(
        path: &Path,
        argv: &[OsString],
        env: &[(OsString, OsString)],
    ) -> Result<Self, Pid1Error> {
        let c_argv = argv
            .iter()
            .map(|a| cstring("an argument", a))
            .collect::<Result<Vec<_>, _>>()?;
        let c_env = env
            .iter()
            .map(|(k, v)| {
                let mut pair = k.clone();
                pair.push("=");
                pair.push(v);
                cstring("an environment variable", &pair)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<_> = c_argv.iter().map(|c| c.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = c_env.iter().map(|c| c.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        // SAFETY: sigemptyset initialises the set it is given.
        let mut start_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `start_mask` is a live sigset_t.
        unsafe { libc::sigemptyset(&mut start_mask) };
        Ok(Command {
            display: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            path: cstring("a program path", path.as_os_str())?,
            _argv: c_argv,
            argv_ptrs,
            _envp: c_env,
            envp_ptrs,
            cred: None,
            own_group: false,
            foreground_tty: None,
            keep_fds: Vec::new(),
            stdout: None,
            start_mask,
        })
    }

    /// Start the program with the stop signals blocked, for a hermes helper
    /// that looks for them itself between its steps (`pending_stop`): one
    /// sent the instant it starts waits for it instead of killing it on its
    /// way out of `execve`, before its first instruction could block it.
    pub fn stop_signals_blocked(mut self) -> Self {
        for sig in STOP_SIGNALS {
            // SAFETY: sigaddset adds a valid signal number to a live set.
            unsafe { libc::sigaddset(&mut self.start_mask, sig as libc::c_int) };
        }
        self
    }

    /// Run the child as this user and group.
    pub fn credentials(mut self, cred: Option<Credentials>) -> Self {
        self.cred = cred;
        self
    }

    /// Put the child in a process group of its own and, when `tty` is given,
    /// make that group the terminal's foreground group (so Ctrl-C reaches it).
    pub fn own_process_group(mut self, tty: Option<RawFd>) -> Self {
        self.own_group = true;
        self.foreground_tty = tty;
        self
    }

    /// Let the child inherit `fd` (all others opened by hermes are close-on-exec).
    pub fn keep_fd(mut self, fd: RawFd) -> Self {
        self.keep_fds.push(fd);
        self
    }

    /// Give the child `fd` as its standard output instead of ours.
    pub fn stdout(mut self, fd: RawFd) -> Self {
        self.stdout = Some(fd);
        self
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// Start the program; returns once `execve` has succeeded (or says why it failed).
    pub fn spawn(&self) -> Result<Pid, Pid1Error> {
        let spawn_err = |source: io::Error| Pid1Error::Spawn {
            program: self.display.clone(),
            source,
        };
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into a two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(spawn_err(io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned only here.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child branch below only makes async-signal-safe system
        // calls on data prepared before the fork, then execs or _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(spawn_err(io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: we are the child; `child` never returns.
            unsafe { self.child(write_end.as_raw_fd()) }
        }
        drop(write_end);
        let pid = Pid::from_raw(pid);
        if self.own_group {
            // Both sides set the group so neither can run ahead of it; the
            // child may already have exec'd, which makes this fail harmlessly.
            let _ = nix::unistd::setpgid(pid, pid);
        }
        let mut errno = [0u8; 4];
        let n = loop {
            // SAFETY: reads at most 4 bytes into a 4-byte buffer.
            let n = unsafe { libc::read(read_end.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        if n == 4 {
            // The child wrote errno and exited; collect it so it is no zombie.
            let _ = waitpid(pid, None);
            return Err(spawn_err(io::Error::from_raw_os_error(i32::from_ne_bytes(
                errno,
            ))));
        }
        Ok(pid)
    }

    /// The forked child: only system calls on pre-built data, then exec.
    ///
    /// # Safety
    /// Must only be called in the child right after `fork`.
    unsafe fn child(&self, report: RawFd) -> ! {
        let fail = |report: RawFd| -> ! {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(report, bytes.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        // The parent blocks the signals it reads from a signalfd; a program
        // starts with an empty mask (unless it asked for the stop signals)
        // and default dispositions.
        libc::sigprocmask(libc::SIG_SETMASK, &self.start_mask, std::ptr::null_mut());
        if self.own_group {
            libc::setpgid(0, 0);
            if let Some(tty) = self.foreground_tty {
                // SIGTTOU is still ignored here (inherited from the init), so
                // a background group may take the terminal.
                libc::tcsetpgrp(tty, libc::getpid());
            }
        }
        for sig in [libc::SIGTTOU, libc::SIGTTIN, libc::SIGTSTP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_DFL);
        }
        for &fd in &self.keep_fds {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
        if let Some(fd) = self.stdout {
            if libc::dup2(fd, 1) < 0 {
                fail(report);
            }
        }
        if let Some(cred) = self.cred {
            let gid = cred.gid as libc::gid_t;
            if libc::setgroups(1, &gid) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(cred.uid as libc::uid_t) != 0
            {
                fail(report);
            }
        }
        libc::execve(
            self.path.as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.envp_ptrs.as_ptr(),
        );
        fail(report)
    }
}

/// How a child ended, in shell terms: its code, or 128+n for signal n.
pub fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) as u8),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32) as u8),
        _ => None,
    }
}

/// Reap every child that has ended; returns the ones that did, with their codes.
pub fn reap_all() -> Vec<(Pid, u8)> {
    let mut ended = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(status) => {
                if let (Some(pid), Some(code)) = (status.pid(), exit_code(status)) {
                    ended.push((pid, code));
                }
            }
        }
    }
}

/// Run `cmd` to its end with no supervision tree around it (a read-only
/// command against a volume another container holds): the init's signals
/// are passed on to it, orphans reaped; returns its code.
pub fn run_to_end(cmd: &Command) -> Result<u8, Pid1Error> {
    let set = handled_signals();
    block(&set)?;
    let pid = cmd.spawn()?;
    loop {
        if let Some((_, code)) = reap_all().into_iter().find(|(dead, _)| *dead == pid) {
            return Ok(code);
        }
        // Blocked, so a SIGCHLD from before this wait is still pending.
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => send(pid, sig),
        }
    }
}

/// Signals the init reads from a signalfd instead of being interrupted by.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in STOP_SIGNALS {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// The signals that ask a container to stop (`docker stop`, Ctrl-C, ...).
const STOP_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// The stop signals and SIGCHLD as a kernel signal mask (bit n-1 for signal
/// n): TERM, INT, HUP, QUIT, CHLD. Read by `hermes_entry` below.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
static ENTRY_MASK: u64 = (1 << (libc::SIGTERM - 1))
    | (1 << (libc::SIGINT - 1))
    | (1 << (libc::SIGHUP - 1))
    | (1 << (libc::SIGQUIT - 1))
    | (1 << (libc::SIGCHLD - 1));

/// What `hermes_entry` left for `block_init_signals_at_start`: whether it
/// blocked the signals, the mask it replaced, and when (a `timespec`).
#[repr(C)]
struct EntryState(std::cell::UnsafeCell<[u64; 4]>);
// SAFETY: written once by `hermes_entry` before any thread exists, then only read.
unsafe impl Sync for EntryState {}
// Exported, so no optimisation may take it for a constant: only `hermes_entry` writes it.
#[no_mangle]
static HERMES_ENTRY_STATE: EntryState = EntryState(std::cell::UnsafeCell::new([0; 4]));

// The binary's entry point (the linker's `-e hermes_entry`, set by
// hermes-cli's build script), before the C library's `_start`. A static
// glibc binary spends milliseconds between its exec and `.preinit_array`
// (self-relocation, TLS and IRELATIVE set-up, page faults): a `docker stop`
// landing there met PID 1 with no handler and was dropped (7 of 796 traced
// immediate stops). Here the first instructions block the stop signals with
// two raw system calls, no stack and no memory but `ENTRY_STATE`, then hand
// over to `_start` with the registers the kernel (or ld.so) set: %rdx holds
// the dynamic linker's finaliser, which `_start` passes on, so it is kept in
// %r12 (which `_start` does not read) across the calls. Every hermes process
// passes here; `block_init_signals_at_start` gives the mask back to those
// that are not the init.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
std::arch::global_asm!(
    ".globl hermes_entry",
    ".type hermes_entry,@function",
    "hermes_entry:",
    "mov %rdx, %r12",
    "mov $14, %eax", // rt_sigprocmask(SIG_BLOCK, &ENTRY_MASK, &saved, 8)
    "xor %edi, %edi",
    "lea {mask}(%rip), %rsi",
    "lea {state}+8(%rip), %rdx",
    "mov $8, %r10d",
    "syscall",
    "test %rax, %rax",
    "jnz 1f",
    "movq $1, {state}(%rip)",
    "mov $228, %eax", // clock_gettime(CLOCK_REALTIME, &state[2..4])
    "xor %edi, %edi",
    "lea {state}+16(%rip), %rsi",
    "syscall",
    "1:",
    "mov %r12, %rdx",
    "jmp _start",
    mask = sym ENTRY_MASK,
    state = sym HERMES_ENTRY_STATE,
    options(att_syntax)
);

/// `hermes_entry`'s record: the mask it replaced and when it blocked
/// (nanoseconds since the epoch); `None` when it did not run (another
/// architecture, or a binary linked without it).
fn entry_record() -> Option<(u64, i64)> {
    // SAFETY: `hermes_entry` wrote these before the C library started; nothing
    // writes them since. Volatile: the compiler sees no store of its own.
    let [ran, saved, sec, nsec] = unsafe { std::ptr::read_volatile(HERMES_ENTRY_STATE.0.get()) };
    (ran == 1).then(|| (saved, sec as i64 * 1_000_000_000 + nsec as i64))
}

/// For a process that is not the init: give back the signal mask
/// `hermes_entry` replaced (a stop signal that came meanwhile is delivered
/// now, as it would have been). Called from `main`, which runs after both
/// the entry and `.preinit_array` whatever their order (a dynamic binary's
/// loader runs `.preinit_array` before the entry).
pub fn release_entry_mask() {
    if let Some((saved, _)) = entry_record() {
        // SAFETY: the kernel reads 8 bytes of mask (the size `hermes_entry`
        // saved, real-time signals included) from a live local; no old set.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &saved as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

/// Block the init's signals before Rust's runtime and `main` start, when
/// this process is PID 1 or runs `container init`: the binary's
/// `.preinit_array` calls this with the process's arguments. Until then
/// PID 1 drops any stop signal (it has no handler), so the earlier the better.
///
/// # Safety
/// `argv` must hold `argc` valid C strings, as the C library passes them.
pub unsafe extern "C" fn block_init_signals_at_start(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    let arg = |i: usize| std::ffi::CStr::from_ptr(*argv.add(i)).to_bytes();
    let init_args = argc >= 3 && arg(1) == b"container" && arg(2) == b"init";
    if libc::getpid() != 1 && !init_args {
        return;
    }
    let entry = entry_record();
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    for sig in STOP_SIGNALS {
        libc::sigaddset(&mut set, sig as libc::c_int);
    }
    libc::sigaddset(&mut set, libc::SIGCHLD);
    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    if entry.is_some() {
        // Blocked since the entry, whose record `signals_blocked_at_ns` reads.
        return;
    }
    // The raw system call: in a static binary the vDSO may not be set up yet.
    let mut now: libc::timespec = std::mem::zeroed();
    if libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut now) == 0 {
        SIGNALS_BLOCKED_AT_NS.store(
            now.tv_sec as i64 * 1_000_000_000 + now.tv_nsec as i64,
            Ordering::Relaxed,
        );
    }
}

/// When a binary without `hermes_entry` blocked the stop signals
/// (nanoseconds since the epoch; 0 until then): in `.preinit_array`, or in
/// `main` where the C library runs none (musl).
static SIGNALS_BLOCKED_AT_NS: AtomicI64 = AtomicI64::new(0);

/// When the init's stop signals were first blocked: at `hermes_entry` when
/// it ran, else as noted after it. A stop signal Docker sent before this
/// instant reached a process that was not hermes yet: bench/stop-during-boot
/// compares it with Docker's `kill` event.
pub fn signals_blocked_at_ns() -> Option<i64> {
    entry_record()
        .map(|(_, at)| at)
        .or_else(|| Some(SIGNALS_BLOCKED_AT_NS.load(Ordering::Relaxed)).filter(|&ns| ns > 0))
}

/// For the init, from `main`, once its signals are blocked: note the
/// instant where neither the entry nor `.preinit_array` did.
pub fn note_signals_blocked() {
    if signals_blocked_at_ns().is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        SIGNALS_BLOCKED_AT_NS.store(now, Ordering::Relaxed);
    }
}

/// The first stop signal (TERM, INT, HUP, QUIT) waiting, blocked, for
/// this process: for one started with them blocked
/// ([`Command::stop_signals_blocked`]: the boot reconciler) to look at
/// between its steps.
pub fn pending_stop() -> Option<Signal> {
    // SAFETY: sigpending fills the set it is given; zeroed is a valid empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    if unsafe { libc::sigpending(&mut set) } != 0 {
        return None;
    }
    STOP_SIGNALS
        .into_iter()
        // SAFETY: sigismember reads the set filled above.
        .find(|&sig| unsafe { libc::sigismember(&set, sig as libc::c_int) } == 1)
}

/// Block `set` so its signals queue for a signalfd.
pub fn block(set: &SigSet) -> Result<(), Pid1Error> {
    set.thread_block().map_err(sys("block signals"))
}

/// Unblock `set` (a command that turned out not to be the init).
pub fn unblock(set: &SigSet) -> Result<(), Pid1Error> {
    set.thread_unblock().map_err(sys("unblock signals"))
}

/// Ignore job-control signals: the init hands the terminal to the main
/// program's group and must not be stopped when it is no longer in front.
pub fn ignore_job_control() -> Result<(), Pid1Error> {
    for sig in [Signal::SIGTTOU, Signal::SIGTTIN, Signal::SIGTSTP] {
        // SAFETY: installing SIG_IGN runs no handler code.
        unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }
            .map_err(sys("ignore job-control signals"))?;
    }
    Ok(())
}

pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Adopt orphaned descendants (and reap them) as PID 1 would.
pub fn become_subreaper() -> Result<(), Pid1Error> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(sys("become a child subreaper")(Errno::last()));
    }
    Ok(())
}

pub fn send(pid: Pid, sig: Signal) {
    let _ = nix::sys::signal::kill(pid, sig);
}

/// Signal what is left of the container; false when nothing is. As PID 1
/// that is every process of the namespace (`kill(-1)`). Otherwise (under
/// `--init`, a child subreaper) only our children, which orphaned
/// descendants become: `kill(-1)` there would reach every process the user
/// may signal, far outside the container's tree when run on a host.
fn signal_rest(sig: Option<Signal>) -> bool {
    if is_pid1() {
        return nix::sys::signal::kill(Pid::from_raw(-1), sig).is_ok();
    }
    let children = children_of(std::process::id());
    for &child in &children {
        let _ = nix::sys::signal::kill(child, sig);
    }
    !children.is_empty()
}

/// The processes whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<Pid> {
    let Ok(dir) = hermes_core::fsutil::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            hermes_core::fsutil::read_to_string(Path::new(&format!("/proc/{pid}/stat")))
                .ok()
                .and_then(|stat| parent_in_stat(&stat))
                == Some(parent)
        })
        .map(Pid::from_raw)
        .collect()
}

/// The parent pid in a `/proc/PID/stat` line (the name may hold spaces and parentheses).
fn parent_in_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The last step of an init: SIGTERM to everything left, reaping, then SIGKILL
/// after `grace`. Returns whether anything had to be killed with SIGKILL.
pub fn terminate_everyone(grace: Duration) -> bool {
    if !signal_rest(Some(Signal::SIGTERM)) {
        return false;
    }
    signal_rest(Some(Signal::SIGCONT));
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_all();
        if !signal_rest(None) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Killing a child may orphan its own children to us: a few rounds.
    for _ in 0..5 {
        if !signal_rest(Some(Signal::SIGKILL)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        reap_all();
    }
    true
}

/// Is `fd` a terminal?
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The effective user id.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub fn egid() -> u32 {
    nix::unistd::getegid().as_raw()
}

/// A pipe whose ends are both close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Pid1Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create a pipe"))
}

/// Find `name` on `path_var` the way execvp would: the first executable regular file.
pub fn which(name: &OsStr, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads a NUL-terminated path.
    let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
    ok && path.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_name_with_spaces_and_parentheses() {
        assert_eq!(
            parent_in_stat("42 (a) b) (c) S 7 42 42 0 -1 4194560"),
            Some(7)
        );
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn our_own_children_are_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children_of(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            found.contains(&Pid::from_raw(child.id() as i32)),
            "{found:?}"
        );
    }
}
