//! Reading a slot's state: straight from `supervise/status` when its
//! layout is one we know (s6 2.11 to 2.13 write 35 bytes, 2.14 adds the
//! pgid: 43), exactly as `s6-svstat` reads it; through the running s6's own
//! `s6-svstat` otherwise. Reading the file costs a few syscalls where
//! spawning `s6-svstat` costs a process per slot, and `hermes health` (a
//! container's HEALTHCHECK, every few seconds) and `status` read every slot.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil;
use hermes_core::service::{ServiceError, ServiceStatus, SlotStatus, Want};
use hermes_core::ProfileName;
use nix::fcntl::OFlag;

use crate::cmd;

pub const FIELDS: &str = "up,wantedup,normallyup,ready,pid,exitcode,signal,updownfor";

/// The fields we ask `s6-svstat -o` for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svstat {
    pub up: bool,
    pub wanted_up: bool,
    pub normally_up: bool,
    pub ready: bool,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub for_secs: Option<u64>,
}

impl Svstat {
    /// Ready counts only while up (s6 keeps the flag of the last run).
    pub fn ready_now(&self) -> bool {
        self.up && self.ready
    }

    pub fn want(&self) -> Want {
        if self.wanted_up {
            Want::Up
        } else {
            Want::Down
        }
    }

    /// How the last run ended; meaningless while the service is up.
    pub fn last_exit_code(&self) -> Option<i32> {
        self.exit_code.filter(|_| !self.up)
    }

    pub fn last_signal(&self) -> Option<String> {
        self.signal.clone().filter(|_| !self.up)
    }
}

pub fn parse(line: &str) -> Option<Svstat> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 8 {
        return None;
    }
    let flag = |s: &str| match s {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    Some(Svstat {
        up: flag(f[0])?,
        wanted_up: flag(f[1])?,
        normally_up: flag(f[2])?,
        ready: flag(f[3])?,
        pid: f[4]
            .parse::<i64>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| p as u32),
        exit_code: f[5].parse::<i32>().ok().filter(|c| *c >= 0),
        signal: Some(f[6]).filter(|s| *s != "NA").map(str::to_string),
        for_secs: f[7].parse().ok(),
    })
}

/// `None` when no supervisor watches `dir`.
pub fn read(dir: &Path) -> Result<Option<Svstat>, ServiceError> {
    match read_direct(dir, SystemTime::now()) {
        Direct::Read(stat) => Ok(stat),
        Direct::Unknown => read_svstat(dir),
    }
}

/// What reading `supervise/status` ourselves gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// As `s6-svstat` would say it (`None`: no supervisor watches the slot).
    Read(Option<Svstat>),
    /// A layout we do not know, or a file we cannot read: ask `s6-svstat`,
    /// which says what is wrong.
    Unknown,
}

/// skalibs stamps are TAI64N: 2^62 + TAI seconds, and Debian's skalibs
/// reads the system clock as UTC, adding 10 s + the 27 leap seconds since
/// 1972 (none since 2017); `s6-svstat` subtracts a stamp from that clock.
const TAI64_UTC_OFFSET: u64 = (1 << 62) + 37;

/// One slot's state from its `supervise/` files, by `s6-svstat`'s rules:
/// supervised when `supervise/control` has a reader (`s6_svc_ok`); up when
/// there is a pid and the finish script is not running; normally up
/// without a `down` file; exit code and signal only while down.
pub fn read_direct(dir: &Path, now: SystemTime) -> Direct {
    match fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.join("supervise/control"))
    {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENOENT)) => {
            return Direct::Read(None)
        }
        Err(_) => return Direct::Unknown,
    }
    let Some(status) = StatusFile::read(dir) else {
        return Direct::Unknown;
    };
    let normally_up = match fsutil::symlink_metadata(&dir.join("down")) {
        Ok(_) => false,
        Err(e) if e.is_not_found() => true,
        Err(_) => return Direct::Unknown,
    };
    let StatusFile {
        stamp,
        pid,
        wstat,
        flags,
    } = status;
    let up = pid != 0 && !status.finishing();
    let termsig = wstat & 0x7f;
    let exited = termsig == 0;
    let signalled = termsig != 0 && termsig != 0x7f;
    // A stamp in the future counts as now, as in s6-svstat.
    let now_tai = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_add(TAI64_UTC_OFFSET);
    Direct::Read(Some(Svstat {
        up,
        wanted_up: flags & 4 != 0,
        normally_up,
        ready: pid != 0 && flags & 8 != 0,
        pid: u32::try_from(pid).ok().filter(|p| up && *p > 0),
        exit_code: (!up && exited).then_some((wstat >> 8) & 0xff),
        signal: (!up && signalled).then(|| signal_name(termsig)),
        for_secs: Some(now_tai.saturating_sub(stamp.0)),
    }))
}

/// The fields of `supervise/status` we use, in either layout (35 bytes up
/// to s6 2.13, 43 from 2.14). s6-supervise writes it on every change and
/// leaves it behind when it exits: the last death stays readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFile {
    /// When the state last changed: TAI64N seconds and nanoseconds.
    pub stamp: (u64, u32),
    /// The service's pid, 0 while down.
    pub pid: u64,
    /// The last death's wait status.
    pub wstat: i32,
    /// 2: finish running; 4: wanted up; 8: ready.
    pub flags: u8,
}

impl StatusFile {
    pub fn parse(pack: &[u8]) -> Option<StatusFile> {
        let (wstat_at, flags_at) = match pack.len() {
            35 => (32, 34),
            43 => (40, 42),
            _ => return None,
        };
        let be = |at: usize, n: usize| {
            pack[at..at + n]
                .iter()
                .fold(0u64, |a, b| a << 8 | u64::from(*b))
        };
        Some(StatusFile {
            stamp: (be(0, 8), be(8, 4) as u32),
            pid: be(24, 8),
            wstat: be(wstat_at, 2) as i32,
            flags: pack[flags_at],
        })
    }

    /// `dir`'s `supervise/status`; `None` if missing, unreadable or of a
    /// layout we do not know.
    pub fn read(dir: &Path) -> Option<StatusFile> {
        StatusFile::read_from(fsutil::open(&dir.join("supervise/status")).ok()?)
    }

    /// The same, from the slot directory `slot`, without following a link
    /// (for root reading a slot the service user can write).
    pub fn read_in(slot: &Dir) -> Option<StatusFile> {
        let supervise = slot.open_dir(OsStr::new("supervise")).ok()?;
        StatusFile::read_from(
            supervise
                .open_file(OsStr::new("status"), OFlag::O_RDONLY, 0)
                .ok()?,
        )
    }

    fn read_from(file: File) -> Option<StatusFile> {
        let mut pack = Vec::with_capacity(64);
        file.take(64).read_to_end(&mut pack).ok()?;
        StatusFile::parse(&pack)
    }

    /// s6-supervise is running the slot's `finish` (`pid` is the script's).
    pub fn finishing(&self) -> bool {
        self.flags & 2 != 0
    }

    /// The last death as s6 passes it to `finish`: the exit code and 0, or
    /// 256 and the signal.
    pub fn finish_args(&self) -> (i32, i32) {
        let termsig = self.wstat & 0x7f;
        if termsig == 0 {
            ((self.wstat >> 8) & 0xff, 0)
        } else {
            (256, termsig)
        }
    }
}

/// `SIGTERM` for 15, as `s6-svstat` names them.
fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{n}"))
}

/// Through `s6-svstat` itself.
pub fn read_svstat(dir: &Path) -> Result<Option<Svstat>, ServiceError> {
    let ran = cmd::run(
        "s6-svstat",
        ["-o".as_ref(), FIELDS.as_ref(), dir.as_os_str()],
    )?;
    match ran.code() {
        Some(0) => {
            let out = ran.stdout();
            parse(out.trim())
                .map(Some)
                .ok_or_else(|| ServiceError::Command {
                    argv: ran.argv.clone(),
                    code: Some(0),
                    stderr: format!("unexpected output {out:?}"),
                })
        }
        // s6-svstat exits 1 when the service is not supervised.
        Some(1) => Ok(None),
        _ => Err(ran.into_error()),
    }
}

/// A gateway slot's status from what `s6-svstat` said (`None`: unsupervised).
pub fn to_status(profile: &ProfileName, service: &str, stat: Option<&Svstat>) -> SlotStatus {
    SlotStatus {
        profile: profile.clone(),
        service: to_service(service, stat),
        signal: stat.and_then(Svstat::last_signal),
    }
}

/// Any slot's status (a gateway's or a static one) from what `s6-svstat` said.
pub fn to_service(name: &str, stat: Option<&Svstat>) -> ServiceStatus {
    match stat {
        Some(s) => ServiceStatus {
            name: name.to_string(),
            supervised: true,
            up: s.up,
            ready: s.ready_now(),
            want: s.want(),
            pid: s.pid,
            for_secs: s.for_secs,
            exit_code: s.last_exit_code(),
        },
        None => ServiceStatus::unsupervised(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot dir whose control fifo has a reader (as under s6-supervise)
    /// and whose status file is `pack`; the reader lives as long as the result.
    fn slot(pack: &[u8]) -> (tempfile::TempDir, fs::File) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("supervise")).unwrap();
        let control = dir.path().join("supervise/control");
        nix::unistd::mkfifo(&control, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&control)
            .unwrap();
        fs::write(dir.path().join("supervise/status"), pack).unwrap();
        (dir, reader)
    }

    /// A status file: stamp `secs` ago (TAI64 label), pid, optional pgid
    /// (s6 2.14's layout), wait status, flags.
    fn pack(
        secs: u64,
        now: SystemTime,
        pid: u64,
        pgid: Option<u64>,
        wstat: u16,
        flags: u8,
    ) -> Vec<u8> {
        let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut p = (unix + TAI64_UTC_OFFSET - secs).to_be_bytes().to_vec();
        p.extend([0; 4]);
        p.extend([0; 12]);
        p.extend(pid.to_be_bytes());
        if let Some(g) = pgid {
            p.extend(g.to_be_bytes());
        }
        p.extend(wstat.to_be_bytes());
        p.push(flags);
        p
    }

    #[test]
    fn reads_both_status_layouts_and_refuses_others() {
        let now = SystemTime::now();
        // Up, wanted up, ready, for 7 s: 35 bytes (s6 2.11 to 2.13).
        let (d, _r) = slot(&pack(7, now, 4242, None, 0, 4 | 8));
        let Direct::Read(Some(s)) = read_direct(d.path(), now) else {
            panic!()
        };
        assert_eq!(s, parse("true true true true 4242 -1 NA 7").unwrap());
        // Down after exit 78, wanted up, normally down: 43 bytes (2.14).
        let (d, _r) = slot(&pack(2, now, 0, Some(0), 78 << 8, 4));
        fs::write(d.path().join("down"), "").unwrap();
        let Direct::Read(Some(s)) = read_direct(d.path(), now) else {
            panic!()
        };
        assert_eq!(s, parse("false true false false -1 78 NA 2").unwrap());
        // Killed by SIGTERM; the finish script running counts as down.
        let (d, _r) = slot(&pack(0, now, 99, None, 15, 2));
        let Direct::Read(Some(s)) = read_direct(d.path(), now) else {
            panic!()
        };
        assert_eq!(s, parse("false false true false -1 -1 SIGTERM 0").unwrap());
        // Any other size is a layout we do not know: s6-svstat decides.
        let (d, _r) = slot(&[0; 40]);
        assert_eq!(read_direct(d.path(), now), Direct::Unknown);
    }

    #[test]
    fn no_reader_on_the_control_fifo_means_unsupervised() {
        let now = SystemTime::now();
        let (d, reader) = slot(&pack(1, now, 1, None, 0, 4));
        drop(reader);
        assert_eq!(read_direct(d.path(), now), Direct::Read(None));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_direct(empty.path(), now), Direct::Read(None));
    }

    #[test]
    fn parses_up_and_down_lines_from_2_11() {
        let up = parse("true true true false 13687 -1 NA 0").unwrap();
        assert!(up.up && up.wanted_up && !up.ready);
        assert_eq!(up.pid, Some(13687));
        assert_eq!(up.signal, None);
        let down = parse("false false true false -1 -1 SIGTERM 3").unwrap();
        assert!(!down.up && !down.wanted_up);
        assert_eq!(down.pid, None);
        assert_eq!(down.signal.as_deref(), Some("SIGTERM"));
        assert_eq!(down.for_secs, Some(3));
        let exited = parse("false true true false -1 78 NA 0").unwrap();
        assert_eq!(exited.exit_code, Some(78));
        assert!(parse("up (pid 3) 4 seconds").is_none());
    }
}
