//! The gateway port every profile claims, for `profile create` to pick a
//! free one or refuse a taken one, without reading every `config.yaml`.
//!
//! Opening, reading and parsing each profile's config on every create made
//! a create at 1000 profiles cost 13 ms more CPU than at 100 (seven system
//! calls and a YAML parse per profile). `$HERMES_HOME/.profile-ports`
//! remembers each profile's port with the identity of the config it was
//! read from (inode, size, change and modification times); a config whose
//! identity is unchanged is not read again, so a known profile costs one
//! `stat` relative to `profiles/`. The index is only a cache: a missing or
//! damaged one is rebuilt from the configs. It is written only under the
//! profiles lock (by `profile create`), never synced: losing it costs one
//! slower create.

use std::fs::{DirEntry, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FileStat};

use crate::config::Config;
use crate::fsutil::{self, FsError, FsTime};
use crate::home::{HermesHome, PROFILE_MARKER};
use crate::name::ProfileName;

const HEADER: &str = "hermes profile ports 1";
const TRAILER: &str = "end";
const CONFIG: &str = "config.yaml";
/// Without the file system's own time (see [`claimed`]), a config changed
/// this recently by the wall clock is read again next time instead of being
/// trusted by its identity: a second write within one tick of the file
/// system's clock (a jiffy; a whole second on some) can leave its size and
/// times as they were.
const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(st: &FileStat) -> Identity {
        Identity {
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn changed_since(&self, since: (i64, i64)) -> bool {
        self.ctime >= since || self.mtime >= since
    }
}

/// One profile's config: its identity and the port it claims, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: Identity,
    port: Option<u16>,
}

/// The index as read: borrowed from the file's text, sorted by name.
type Known<'t> = Vec<(&'t str, Entry)>;

/// Every claimed port with its profile: `default`'s, then the named
/// profiles' (directories with a valid name and a marker) in directory
/// order. A profile the index knows is not checked for its marker again
/// until its config changes.
///
/// `fs_now` is a file system's device and its own time before the scan
/// (the change time of a file just stamped there): a config on it that last
/// changed before that time is kept in the index, since any later change
/// gives it a newer change time. With only the wall clock, a config is kept
/// once [`SETTLE`] old, and a loop of single creates read each of the
/// configs made in its last two seconds again every time (about 200 at the
/// pace of a create every 10 ms).
pub fn claimed(
    home: &HermesHome,
    fs_now: Option<FsTime>,
) -> Result<Vec<(u16, ProfileName)>, FsError> {
    claimed_at(home, fs_now, SystemTime::now())
}

/// [`claimed`] with the wall clock given: configs on another file system
/// than `fs_now`'s that changed within [`SETTLE`] of `now` are read but
/// not kept in the index.
fn claimed_at(
    home: &HermesHome,
    fs_now: Option<FsTime>,
    now: SystemTime,
) -> Result<Vec<(u16, ProfileName)>, FsError> {
    let path = home.port_index();
    let text = fsutil::read(&path)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    let known = parse(&text).unwrap_or_default();
    let mut scan = Scan {
        seen: vec![false; known.len()],
        known,
        added: Vec::new(),
        changed: false,
        fs_now,
        settled: epoch(now - SETTLE),
        rel: String::new(),
        claims: Vec::new(),
    };
    let default = ProfileName::default_profile();
    let root = fsutil::open(home.root())?;
    if let Some(st) = stat_at(&root, Path::new(CONFIG), || home.profile(&default).config())? {
        let at = scan.position(default.as_str());
        scan.take(home, default, &st, at);
    }
    let dir = home.profiles_dir();
    match fsutil::read_dir(&dir) {
        Ok(entries) => {
            let profiles = fsutil::open(&dir)?;
            for entry in entries {
                let entry = entry.map_err(|e| FsError::new("list", &dir, e))?;
                scan.named(home, &profiles, &entry)?;
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let claims = std::mem::take(&mut scan.claims);
    if let Some(kept) = scan.changed_index() {
        save(&path, &kept)?;
    }
    Ok(claims)
}

/// One pass over the profiles. Per profile it costs a `stat` and the
/// name's two allocations (the listing's and the claim's): the index is
/// looked up in place and only rebuilt when it changed. Building a new map
/// of owned names every time made this walk a few microseconds a profile,
/// most of a create's growth between 10 and 1000 profiles.
struct Scan<'t> {
    known: Known<'t>,
    /// Which of `known` still hold (their entries updated in place).
    seen: Vec<bool>,
    /// Profiles the index did not know, settled enough to keep.
    added: Vec<(String, Entry)>,
    /// Whether an entry of `known` changed or must go.
    changed: bool,
    /// A file system's device and its time before the scan: configs there
    /// changed before it are trusted by their identity.
    fs_now: Option<FsTime>,
    /// Elsewhere, configs changed before this wall-clock time are.
    settled: (i64, i64),
    /// `<name>/<file>`, reused for every profile's `stat`.
    rel: String,
    claims: Vec<(u16, ProfileName)>,
}

impl Scan<'_> {
    /// One entry of `profiles/`, judged as `profile::named_profiles` does
    /// (on the type readdir gives: a link is not a directory).
    fn named(
        &mut self,
        home: &HermesHome,
        profiles: &File,
        entry: &DirEntry,
    ) -> Result<(), FsError> {
        let file_name = entry.file_name();
        // A name that is not UTF-8 is no profile's.
        let Some(raw) = file_name.to_str() else {
            return Ok(());
        };
        let Ok(name) = ProfileName::parse(raw) else {
            return Ok(());
        };
        if name.as_str() != raw || name.is_default() || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            return Ok(());
        }
        let config = || home.profile(&name).config();
        let Some(st) = stat_at(profiles, self.rel_path(raw, CONFIG), config)? else {
            return Ok(());
        };
        let at = self.position(raw);
        let known = at.is_some_and(|i| self.known[i].1.id == Identity::of(&st));
        if !known {
            let marker = || home.profile(&name).marker();
            if stat_at(profiles, self.rel_path(raw, PROFILE_MARKER), marker)?.is_none() {
                return Ok(());
            }
        }
        self.take(home, name, &st, at);
        Ok(())
    }

    fn rel_path(&mut self, profile: &str, file: &str) -> &Path {
        self.rel.clear();
        self.rel.push_str(profile);
        self.rel.push('/');
        self.rel.push_str(file);
        Path::new(&self.rel)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.known.binary_search_by(|(n, _)| (*n).cmp(name)).ok()
    }

    /// Claim the profile's port: the index's (its entry `at`, when it has
    /// one) when the config's identity is unchanged, else read anew and
    /// noted for the index.
    fn take(&mut self, home: &HermesHome, name: ProfileName, st: &FileStat, at: Option<usize>) {
        let id = Identity::of(st);
        let read = || Entry {
            id,
            port: Config::read_port(&home.profile(&name).config()),
        };
        let since = match self.fs_now {
            Some(now) if now.dev == st.st_dev => now.at,
            _ => self.settled,
        };
        let keep = !id.changed_since(since);
        let entry = match at {
            Some(i) => {
                let held = self.known[i].1;
                let entry = if held.id == id { held } else { read() };
                self.seen[i] = keep;
                self.known[i].1 = entry;
                self.changed |= entry != held || !keep;
                entry
            }
            None => {
                let entry = read();
                if keep {
                    self.added.push((name.to_string(), entry));
                }
                entry
            }
        };
        if let Some(port) = entry.port {
            self.claims.push((port, name));
        }
    }

    /// The index to write back, when it differs from the one read.
    fn changed_index(self) -> Option<Vec<(String, Entry)>> {
        if !self.changed && self.added.is_empty() && !self.seen.contains(&false) {
            return None;
        }
        let mut kept: Vec<(String, Entry)> = self
            .known
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| **seen)
            .map(|((name, entry), _)| (name.to_string(), *entry))
            .collect();
        kept.extend(self.added);
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        Some(kept)
    }
}

/// `rel`'s metadata below the open directory `dir`, not following its last
/// component; `None` when absent. `full` names it in errors.
fn stat_at(
    dir: &File,
    rel: &Path,
    full: impl FnOnce() -> PathBuf,
) -> Result<Option<FileStat>, FsError> {
    match stat::fstatat(Some(dir.as_raw_fd()), rel, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(FsError::new("inspect", &full(), e.into())),
    }
}

fn epoch(t: SystemTime) -> (i64, i64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

fn render(index: &[(String, Entry)]) -> String {
    use std::fmt::Write;
    let mut text = format!("{HEADER}\n");
    for (name, e) in index {
        let _ = write!(
            text,
            "{name} {} {} {} {} {} {} ",
            e.id.ino, e.id.size, e.id.mtime.0, e.id.mtime.1, e.id.ctime.0, e.id.ctime.1
        );
        let _ = match e.port {
            Some(port) => writeln!(text, "{port}"),
            None => writeln!(text, "-"),
        };
    }
    text.push_str(TRAILER);
    text.push('\n');
    text
}

/// The index sorted by name, or `None` when the text is not a whole one (a
/// write cut short).
fn parse(text: &str) -> Option<Known<'_>> {
    let body = text.strip_prefix(HEADER)?.strip_prefix('\n')?;
    let body = body.strip_suffix('\n')?.strip_suffix(TRAILER)?;
    let mut index = Known::new();
    for line in body.lines() {
        let mut f = line.split(' ');
        let mut next = || f.next();
        let name = next()?;
        let id = Identity {
            ino: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            mtime: (next()?.parse().ok()?, next()?.parse().ok()?),
            ctime: (next()?.parse().ok()?, next()?.parse().ok()?),
        };
        let port = match next()? {
            "-" => None,
            p => Some(p.parse().ok()?),
        };
        if next().is_some() {
            return None;
        }
        index.push((name, Entry { id, port }));
    }
    index.sort_by(|a, b| a.0.cmp(b.0));
    index.dedup_by(|a, b| a.0 == b.0);
    Some(index)
}

/// Replace the index: a temporary file created exclusively (never through
/// a link), then renamed over it. Not synced: see the module's comment.
fn save(path: &Path, index: &[(String, Entry)]) -> Result<(), FsError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let _ = fsutil::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(render(index).as_bytes()));
    if let Err(e) = written {
        let _ = fsutil::remove_file(&tmp);
        return Err(FsError::new("write", &tmp, e));
    }
    fsutil::rename(&tmp, path).inspect_err(|_| {
        let _ = fsutil::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;
    use std::fs;

    fn home_with(names: &[(&str, u16)]) -> (tempfile::TempDir, HermesHome) {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        fs::write(home.root().join(CONFIG), "gateway:\n  port: 9000\n").unwrap();
        for (name, port) in names {
            let held = profile::lock(&home).unwrap();
            let name = ProfileName::parse(name).unwrap();
            profile::create(&home, &held, &name, Some(*port)).unwrap();
        }
        (dir, home)
    }

    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    fn ports(claims: &[(u16, ProfileName)]) -> Vec<(u16, String)> {
        let mut v: Vec<_> = claims.iter().map(|(p, n)| (*p, n.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn every_profile_with_a_marker_claims_its_port() {
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        fs::create_dir_all(home.profiles_dir().join("stray")).unwrap();
        fs::write(
            home.profiles_dir().join("stray/config.yaml"),
            "gateway:\n  port: 9003\n",
        )
        .unwrap();
        let want = vec![
            (9000, "default".into()),
            (9001, "a".into()),
            (9002, "b".into()),
        ];
        assert_eq!(ports(&claimed_at(&home, None, later()).unwrap()), want);
        // The second time from the index: the same answer.
        assert_eq!(ports(&claimed_at(&home, None, later()).unwrap()), want);
    }

    #[test]
    fn the_index_is_written_only_when_it_changes() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, home) = home_with(&[("b", 9002), ("a", 9001)]);
        let inode = || fs::metadata(home.port_index()).unwrap().ino();
        claimed_at(&home, None, later()).unwrap();
        let written = inode();
        claimed_at(&home, None, later()).unwrap();
        assert_eq!(inode(), written, "an unchanged index was written again");
        // Out of order and with a name twice (edited by hand): still used.
        let text = fs::read_to_string(home.port_index()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let a = lines.iter().position(|l| l.starts_with("a ")).unwrap();
        let moved = lines.remove(a);
        lines.insert(lines.len() - 1, moved);
        lines.insert(lines.len() - 1, moved);
        fs::write(home.port_index(), lines.join("\n") + "\n").unwrap();
        let want = vec![
            (9000, "default".into()),
            (9001, "a".into()),
            (9002, "b".into()),
        ];
        assert_eq!(ports(&claimed_at(&home, None, later()).unwrap()), want);
        // A profile gone: the index is written without it.
        let before = inode();
        fs::remove_dir_all(home.profiles_dir().join("b")).unwrap();
        claimed_at(&home, None, later()).unwrap();
        assert_ne!(inode(), before);
        assert!(!fs::read_to_string(home.port_index())
            .unwrap()
            .contains("\nb "));
    }

    #[test]
    fn a_known_config_is_not_read_again_and_a_changed_one_is() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        claimed_at(&home, None, later()).unwrap();
        let index = fs::read_to_string(home.port_index()).unwrap();
        assert!(
            index
                .lines()
                .any(|l| l.starts_with("a ") && l.ends_with(" 9001")),
            "{index}"
        );
        // An index saying 9555 for the same identity is believed: no re-read.
        fs::write(home.port_index(), index.replace(" 9001\n", " 9555\n")).unwrap();
        assert!(ports(&claimed_at(&home, None, later()).unwrap()).contains(&(9555, "a".into())));
        // Rewritten in place, same size, only the times differ: read again.
        let config = home.profiles_dir().join("a/config.yaml");
        let text = fs::read_to_string(&config).unwrap().replace("9001", "9011");
        fs::write(&config, text).unwrap();
        let past = nix::sys::time::TimeSpec::new(1_000_000, 0);
        nix::sys::stat::utimensat(
            None,
            &config,
            &past,
            &past,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        assert!(ports(&claimed_at(&home, None, later()).unwrap()).contains(&(9011, "a".into())));
    }

    #[test]
    fn a_config_changed_within_the_settle_time_is_not_kept() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        let claims = claimed_at(&home, None, SystemTime::now()).unwrap();
        assert!(ports(&claims).contains(&(9001, "a".into())));
        let index = fs::read_to_string(home.port_index()).unwrap_or_default();
        assert!(
            !index.contains("\na "),
            "a fresh config was trusted: {index}"
        );
    }

    #[test]
    fn the_file_systems_own_time_settles_a_config_the_wall_clock_calls_fresh() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, home) = home_with(&[("a", 9001)]);
        let config = fs::metadata(home.profiles_dir().join("a/config.yaml")).unwrap();
        let (dev, changed) = (config.dev(), (config.ctime(), config.ctime_nsec()));
        let kept = |dev, at| {
            let _ = fs::remove_file(home.port_index());
            let claims = claimed_at(&home, Some(FsTime { dev, at }), SystemTime::now()).unwrap();
            assert!(ports(&claims).contains(&(9001, "a".into())));
            let index = fs::read_to_string(home.port_index()).unwrap_or_default();
            index.contains("\na ")
        };
        // A tick after its change on the same file system: kept at once.
        assert!(kept(dev, (changed.0 + 1, 0)));
        // In the tick of its change: a second write may follow unseen.
        assert!(!kept(dev, changed));
        // On another file system, the wall clock decides: too fresh.
        assert!(!kept(dev + 1, (changed.0 + 1, 0)));
    }

    #[test]
    fn a_damaged_or_missing_index_is_rebuilt() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        claimed_at(&home, None, later()).unwrap();
        let whole = fs::read_to_string(home.port_index()).unwrap();
        // Cut short (no trailer), with a port that would be wrong if believed.
        let cut = &whole[..whole.find(" 9001\n").unwrap() + 3];
        fs::write(home.port_index(), cut).unwrap();
        assert!(ports(&claimed_at(&home, None, later()).unwrap()).contains(&(9001, "a".into())));
        assert_eq!(fs::read_to_string(home.port_index()).unwrap(), whole);
        fs::remove_file(home.port_index()).unwrap();
        assert!(ports(&claimed_at(&home, None, later()).unwrap()).contains(&(9001, "a".into())));
        // A deleted profile leaves the index.
        fs::remove_dir_all(home.profiles_dir().join("a")).unwrap();
        claimed_at(&home, None, later()).unwrap();
        assert!(!fs::read_to_string(home.port_index())
            .unwrap()
            .contains("\na "));
    }
}
