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

use std::collections::BTreeMap;
use std::fs::{DirEntry, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FileStat};

use crate::config::Config;
use crate::fsutil::{self, FsError};
use crate::home::{HermesHome, PROFILE_MARKER};
use crate::name::ProfileName;

const HEADER: &str = "hermes profile ports 1";
const TRAILER: &str = "end";
const CONFIG: &str = "config.yaml";
/// A config changed this recently is read again next time instead of being
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

type Index = BTreeMap<String, Entry>;

/// Every claimed port with its profile: `default`'s, then the named
/// profiles' (directories with a valid name and a marker) in directory
/// order. A profile the index knows is not checked for its marker again
/// until its config changes.
pub fn claimed(home: &HermesHome) -> Result<Vec<(u16, ProfileName)>, FsError> {
    claimed_at(home, SystemTime::now())
}

/// [`claimed`] with the clock given: configs changed within [`SETTLE`] of
/// `now` are read but not kept in the index.
fn claimed_at(home: &HermesHome, now: SystemTime) -> Result<Vec<(u16, ProfileName)>, FsError> {
    let path = home.port_index();
    let mut scan = Scan {
        known: fsutil::read(&path)
            .ok()
            .and_then(|bytes| parse(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default(),
        settled: epoch(now - SETTLE),
        kept: Index::new(),
        claims: Vec::new(),
    };
    let default = ProfileName::default_profile();
    let root = fsutil::open(home.root())?;
    let config = home.profile(&default).config();
    if let Some(st) = stat_at(&root, Path::new(CONFIG), &config)? {
        scan.take(default, &st, &config);
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
    if scan.kept != scan.known {
        save(&path, &scan.kept)?;
    }
    Ok(scan.claims)
}

struct Scan {
    known: Index,
    /// Configs changed before this are trusted by their identity.
    settled: (i64, i64),
    /// The index to write back.
    kept: Index,
    claims: Vec<(u16, ProfileName)>,
}

impl Scan {
    /// One entry of `profiles/`, judged as `profile::named_profiles` does
    /// (on the type readdir gives: a link is not a directory).
    fn named(
        &mut self,
        home: &HermesHome,
        profiles: &File,
        entry: &DirEntry,
    ) -> Result<(), FsError> {
        let raw = entry.file_name().to_string_lossy().into_owned();
        let Ok(name) = ProfileName::parse(&raw) else {
            return Ok(());
        };
        if name.as_str() != raw || name.is_default() || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            return Ok(());
        }
        let paths = home.profile(&name);
        let config = paths.config();
        let Some(st) = stat_at(profiles, &Path::new(&raw).join(CONFIG), &config)? else {
            return Ok(());
        };
        let known = self
            .known
            .get(&raw)
            .is_some_and(|e| e.id == Identity::of(&st));
        let marker = Path::new(&raw).join(PROFILE_MARKER);
        if known || stat_at(profiles, &marker, &paths.marker())?.is_some() {
            self.take(name, &st, &config);
        }
        Ok(())
    }

    fn take(&mut self, name: ProfileName, st: &FileStat, config: &Path) {
        let entry = current(&self.known, name.as_str(), st, config);
        if let Some(port) = entry.port {
            self.claims.push((port, name.clone()));
        }
        if !entry.id.changed_since(self.settled) {
            self.kept.insert(name.to_string(), entry);
        }
    }
}

/// The entry for a config: the index's when its identity is unchanged, else read anew.
fn current(known: &Index, name: &str, st: &FileStat, config: &Path) -> Entry {
    let id = Identity::of(st);
    match known.get(name) {
        Some(entry) if entry.id == id => *entry,
        _ => Entry {
            id,
            port: Config::read_port(config),
        },
    }
}

/// `rel`'s metadata below the open directory `dir`, not following its last
/// component; `None` when absent. `full` names it in errors.
fn stat_at(dir: &File, rel: &Path, full: &Path) -> Result<Option<FileStat>, FsError> {
    match stat::fstatat(Some(dir.as_raw_fd()), rel, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(FsError::new("inspect", full, e.into())),
    }
}

fn epoch(t: SystemTime) -> (i64, i64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

fn render(index: &Index) -> String {
    let mut text = format!("{HEADER}\n");
    for (name, e) in index {
        let port = e.port.map_or("-".to_string(), |p| p.to_string());
        text.push_str(&format!(
            "{name} {} {} {} {} {} {} {port}\n",
            e.id.ino, e.id.size, e.id.mtime.0, e.id.mtime.1, e.id.ctime.0, e.id.ctime.1
        ));
    }
    text.push_str(TRAILER);
    text.push('\n');
    text
}

/// The index, or `None` when the text is not a whole one (a write cut short).
fn parse(text: &str) -> Option<Index> {
    let body = text.strip_prefix(HEADER)?.strip_prefix('\n')?;
    let body = body.strip_suffix(&format!("{TRAILER}\n"))?;
    let mut index = Index::new();
    for line in body.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [name, ino, size, ms, mns, cs, cns, port] = f[..] else {
            return None;
        };
        let port = match port {
            "-" => None,
            p => Some(p.parse().ok()?),
        };
        let id = Identity {
            ino: ino.parse().ok()?,
            size: size.parse().ok()?,
            mtime: (ms.parse().ok()?, mns.parse().ok()?),
            ctime: (cs.parse().ok()?, cns.parse().ok()?),
        };
        index.insert(name.to_string(), Entry { id, port });
    }
    Some(index)
}

/// Replace the index: a temporary file created exclusively (never through
/// a link), then renamed over it. Not synced: see the module's comment.
fn save(path: &Path, index: &Index) -> Result<(), FsError> {
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
        assert_eq!(ports(&claimed_at(&home, later()).unwrap()), want);
        // The second time from the index: the same answer.
        assert_eq!(ports(&claimed_at(&home, later()).unwrap()), want);
    }

    #[test]
    fn a_known_config_is_not_read_again_and_a_changed_one_is() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        claimed_at(&home, later()).unwrap();
        let index = fs::read_to_string(home.port_index()).unwrap();
        assert!(
            index
                .lines()
                .any(|l| l.starts_with("a ") && l.ends_with(" 9001")),
            "{index}"
        );
        // An index saying 9555 for the same identity is believed: no re-read.
        fs::write(home.port_index(), index.replace(" 9001\n", " 9555\n")).unwrap();
        assert!(ports(&claimed_at(&home, later()).unwrap()).contains(&(9555, "a".into())));
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
        assert!(ports(&claimed_at(&home, later()).unwrap()).contains(&(9011, "a".into())));
    }

    #[test]
    fn a_config_changed_within_the_settle_time_is_not_kept() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        let claims = claimed_at(&home, SystemTime::now()).unwrap();
        assert!(ports(&claims).contains(&(9001, "a".into())));
        let index = fs::read_to_string(home.port_index()).unwrap_or_default();
        assert!(
            !index.contains("\na "),
            "a fresh config was trusted: {index}"
        );
    }

    #[test]
    fn a_damaged_or_missing_index_is_rebuilt() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        claimed_at(&home, later()).unwrap();
        let whole = fs::read_to_string(home.port_index()).unwrap();
        // Cut short (no trailer), with a port that would be wrong if believed.
        let cut = &whole[..whole.find(" 9001\n").unwrap() + 3];
        fs::write(home.port_index(), cut).unwrap();
        assert!(ports(&claimed_at(&home, later()).unwrap()).contains(&(9001, "a".into())));
        assert_eq!(fs::read_to_string(home.port_index()).unwrap(), whole);
        fs::remove_file(home.port_index()).unwrap();
        assert!(ports(&claimed_at(&home, later()).unwrap()).contains(&(9001, "a".into())));
        // A deleted profile leaves the index.
        fs::remove_dir_all(home.profiles_dir().join("a")).unwrap();
        claimed_at(&home, later()).unwrap();
        assert!(!fs::read_to_string(home.port_index())
            .unwrap()
            .contains("\na "));
    }
}
