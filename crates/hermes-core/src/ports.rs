//! The gateway port every profile claims, for `profile create` to pick a
//! free one or refuse a taken one in a time that does not grow with the
//! number of profiles.
//!
//! `$HERMES_HOME/.profile-ports` records each profile's port, and the
//! state of `profiles/` (inode, link count, size, times) that list is
//! true for. A create that finds `profiles/` in that state believes the
//! index whole: no profile came or went since. Otherwise it lists
//! `profiles/` (a profile made, copied in or removed by hand is seen) and
//! reads the config of each profile the index does not know. A create
//! notes its own profile and the state of `profiles/` after it, when that
//! is the state before plus one directory (the link count one higher), so
//! a loop of creates lists nothing. (A `stat` of every config, to catch a
//! port edited by hand, cost 4 of a create's 7.5 ms of CPU at 1000
//! profiles; the listing another 1 ms.) What this can miss: a profile
//! directory renamed by hand in the same tick of the file system's clock
//! as a create's look at `profiles/`; its port is then learned as below.
//!
//! A port edited by hand is learned where it takes effect: a gateway,
//! before it binds, holds its port against the index ([`confirm`]). When
//! another profile's config names that port too, the gateway refuses to
//! start and names that profile. When the index has the port wrong, it is
//! set right (if no create holds the profiles lock just then), so later
//! creates give that port to no one else. Between the edit and that
//! gateway's next start, a create may hand the edited port to a new
//! profile; then whichever of the two gateways starts second refuses, and
//! `doctor`'s "gateway ports" check names both.
//!
//! The index is written only under the profiles lock and never synced: a
//! missing or damaged one is rebuilt from the configs.

use std::fs::{DirEntry, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat;

use crate::config::Config;
use crate::fsutil::{self, FsError};
use crate::home::{HermesHome, PROFILE_MARKER};
use crate::name::ProfileName;
use crate::profile::{self, ProfilesLock};

const HEADER: &str = "hermes profile ports 2";
const TRAILER: &str = "end";
/// The index's second line: the state of `profiles/` it lists.
const DIR_LINE: &str = "profiles";
const CONFIG: &str = "config.yaml";

/// The index as read: names borrowed from the file's text, sorted, each
/// with the port its profile's config named (`None`: none readable).
type Known<'t> = Vec<(&'t str, Option<u16>)>;

/// A port that another profile's config names too: the gateway of
/// `profile` must not start on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "gateway.port {port} is also profile '{other}''s ({}); give one of them another port, then start this gateway again",
    config.display()
)]
pub struct PortClash {
    pub port: u16,
    pub other: ProfileName,
    pub config: PathBuf,
}

/// The state of `profiles/`: a directory made, removed or renamed in it
/// changes its times, and where directories count their subdirectories,
/// its link count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirState {
    ino: u64,
    nlink: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DirState {
    /// `profiles/` now; `None` when it does not exist.
    fn of(dir: &Path) -> Result<Option<DirState>, FsError> {
        match stat::lstat(dir) {
            Ok(st) => Ok(Some(DirState {
                ino: st.st_ino,
                nlink: st.st_nlink,
                size: st.st_size,
                mtime: (st.st_mtime, st.st_mtime_nsec),
                ctime: (st.st_ctime, st.st_ctime_nsec),
            })),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(FsError::new("inspect", dir, e.into())),
        }
    }
}

/// The ports the profiles claim, read under the profiles lock; a
/// [`Creator`](crate::profile::Creator) adds each profile it makes and
/// saves them once it is done.
///
/// The index is kept as its own text, not as a list of names: parsing,
/// validating and writing back a thousand names cost a create at 1000
/// profiles 2.2 M instructions, more than all the rest of its work. A
/// create makes one pass over the lines, filling a bit set of ports, and
/// writes the text back with its own line spliced in.
pub struct Claims {
    /// The index's lines, `name port` or `name -`, each ending in `\n`,
    /// sorted by name, each name a profile's.
    lines: String,
    /// The ports those lines give.
    taken: PortSet,
    /// The state of `profiles/` that `lines` list; `None`: unknown, the
    /// next create lists `profiles/`.
    dir: Option<DirState>,
    unsaved: bool,
    path: PathBuf,
}

impl Claims {
    /// The ports the profiles claim. A profile the index knows costs no
    /// system call; while `profiles/` is as the index last saw it, it is
    /// not even listed.
    pub fn read(home: &HermesHome, _held: &ProfilesLock) -> Result<Claims, FsError> {
        let path = home.port_index();
        let text = read_index(&path);
        let profiles = home.profiles_dir();
        // Before the listing: a change during it makes the next create list again.
        let dir = DirState::of(&profiles)?;
        let whole = split(&text);
        let tidy_ports = whole.and_then(|(_, lines)| tidy(lines));
        // Lines edited by hand (out of order, a name twice) are still used,
        // and written back as a create writes them.
        let untidy = whole.is_some() && tidy_ports.is_none();
        if let (Some((recorded, lines)), Some(taken)) = (whole, tidy_ports) {
            if recorded.is_some() && recorded == dir {
                return Ok(Claims {
                    lines: lines.to_string(),
                    taken,
                    dir,
                    unsaved: false,
                    path,
                });
            }
        }
        let (recorded, known) = whole
            .and_then(|(recorded, lines)| Some((recorded, known(lines)?)))
            .unwrap_or_default();
        let mut scan = Scan::new(known);
        let default = ProfileName::default_profile();
        let root = fsutil::open(home.root())?;
        if exists_at(&root, Path::new(CONFIG), || home.profile(&default).config())? {
            scan.take(home, default);
        }
        match fsutil::read_dir(&profiles) {
            Ok(entries) => {
                let opened = fsutil::open(&profiles)?;
                for entry in entries {
                    let entry = entry.map_err(|e| FsError::new("list", &profiles, e))?;
                    scan.named(home, &opened, &entry)?;
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let unsaved = scan.came_or_went() || recorded != dir || untidy;
        let (lines, taken) = rendered(&scan.into_index());
        Ok(Claims {
            lines,
            taken,
            dir,
            unsaved,
            path,
        })
    }

    /// The profile that claims `port`, if one does.
    pub fn owner(&self, port: u16) -> Option<ProfileName> {
        if !self.taken.contains(port) {
            return None;
        }
        claimants(&self.lines, port)
            .into_iter()
            .find_map(|name| ProfileName::parse(name).ok())
    }

    /// The lowest port from `from` on that no profile claims.
    pub fn first_free(&self, from: u16) -> Option<u16> {
        (from..=u16::MAX).find(|port| !self.taken.contains(*port))
    }

    /// A profile this process has just made in `profiles/` under the lock.
    /// The index stays in step with `profiles/` when its link count went up
    /// by exactly that one directory; else the next create lists it.
    pub fn add(&mut self, home: &HermesHome, name: &ProfileName, port: u16) {
        let after = DirState::of(&home.profiles_dir()).ok().flatten();
        self.dir = match (self.dir, after) {
            (Some(before), Some(after)) if before.nlink > 1 && after.nlink == before.nlink + 1 => {
                Some(after)
            }
            _ => None,
        };
        self.taken.insert(port);
        let at = line_of(&self.lines, name.as_str());
        self.lines.replace_range(at, &format!("{name} {port}\n"));
        self.unsaved = true;
    }

    /// Write the index when it differs from the file.
    pub fn save(&mut self) -> Result<(), FsError> {
        if self.unsaved {
            save(&self.path, self.dir.as_ref(), &self.lines)?;
            self.unsaved = false;
        }
        Ok(())
    }

    /// The index as a list, sorted by name: for the rare change that is
    /// not a create's (a gateway's port learned).
    fn index(&self) -> Vec<(String, Option<u16>)> {
        lines_of(&self.lines)
            .filter_map(entry)
            .map(|(name, port)| (name.to_string(), port))
            .collect()
    }
}

/// The lines of `index` (sorted by name) and the ports they give.
fn rendered(index: &[(String, Option<u16>)]) -> (String, PortSet) {
    use std::fmt::Write;
    let mut lines = String::new();
    let mut taken = PortSet::new();
    for (name, port) in index {
        let _ = match port {
            Some(port) => {
                taken.insert(*port);
                writeln!(lines, "{name} {port}")
            }
            None => writeln!(lines, "{name} -"),
        };
    }
    (lines, taken)
}

/// A set of ports, one bit each: what a create asks of the claims.
struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    fn new() -> PortSet {
        PortSet(Box::new([0; 1024]))
    }
    fn insert(&mut self, port: u16) {
        self.0[usize::from(port / 64)] |= 1 << (port % 64);
    }
    fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

/// What a gateway checks before it binds `port`, the port `profile`'s
/// config names: that no other profile's config names it too. Reading the
/// index is all it costs while the index agrees. Otherwise the configs of
/// the profiles the index gives `port` are read, and the index is set
/// right when the profiles lock is free (a create holding it rebuilds a
/// missing index itself). Nothing here fails the start but a clash: the
/// index is only a record.
pub fn confirm(home: &HermesHome, profile: &ProfileName, port: u16) -> Result<(), PortClash> {
    let text = read_index(&home.port_index());
    if agrees(&text, profile.as_str(), port) == Some(true) {
        return Ok(());
    }
    relearn(home, profile, port)
}

/// Whether the index's text gives `port` to `profile` and to no other
/// profile; `None` when it is not a whole index. A search for the port,
/// nothing built: every gateway start of a fleet asks, and parsing the
/// whole index took 34 µs at 1000 profiles against 9 for this.
fn agrees(text: &str, profile: &str, port: u16) -> Option<bool> {
    let (_, lines) = split(text)?;
    let names = claimants(lines, port);
    Some(!names.is_empty() && names.iter().all(|name| *name == profile))
}

/// The names of the index lines that give `port`: a search for the
/// line's ending, no line parsed.
fn claimants(lines: &str, port: u16) -> Vec<&str> {
    lines
        .match_indices(&format!(" {port}\n"))
        .map(|(at, _)| &lines[lines[..at].rfind('\n').map_or(0, |i| i + 1)..at])
        .collect()
}

/// [`confirm`]'s slow way: with the lock when it is free, the index brought
/// up to date with `profiles/` first; then every other profile it gives
/// `port` is asked its config again.
fn relearn(home: &HermesHome, profile: &ProfileName, port: u16) -> Result<(), PortClash> {
    let held = profile::try_lock(home).ok().flatten();
    let mut claims = held.as_ref().and_then(|held| Claims::read(home, held).ok());
    let mut index = match &claims {
        Some(claims) => claims.index(),
        None => {
            let text = read_index(&home.port_index());
            owned(
                &split(&text)
                    .and_then(|(_, lines)| known(lines))
                    .unwrap_or_default(),
            )
        }
    };
    let mut changed = false;
    if let Err(at) = position(&index, profile.as_str()) {
        index.insert(at, (profile.to_string(), None));
    }
    for (name, claim) in index.iter_mut() {
        if name == profile.as_str() {
            changed |= *claim != Some(port);
            *claim = Some(port);
            continue;
        }
        if *claim != Some(port) {
            continue;
        }
        // Not a valid name: no profile's, and a create drops it.
        let Ok(other) = ProfileName::parse(name) else {
            continue;
        };
        let config = home.profile(&other).config();
        let now = Config::read_port(&config);
        if now == Some(port) {
            return Err(PortClash {
                port,
                other,
                config,
            });
        }
        *claim = now;
        changed = true;
    }
    if let Some(claims) = claims.as_mut() {
        if changed {
            (claims.lines, claims.taken) = rendered(&index);
            claims.unsaved = true;
        }
        let _ = claims.save();
    }
    Ok(())
}

/// One pass over the profiles, the index looked up in place and rebuilt
/// only when a profile came or went.
struct Scan<'t> {
    known: Known<'t>,
    /// Which of `known` are still there.
    seen: Vec<bool>,
    /// Profiles the index did not know.
    added: Vec<(String, Option<u16>)>,
    /// `<name>/<file>`, reused for every new profile's `stat`s.
    rel: String,
}

impl<'t> Scan<'t> {
    fn new(known: Known<'t>) -> Scan<'t> {
        Scan {
            seen: vec![false; known.len()],
            known,
            added: Vec::new(),
            rel: String::new(),
        }
    }

    /// One entry of `profiles/`, judged as `profile::named_profiles` does
    /// (on the type readdir gives: a link is not a directory). A name the
    /// index does not know must have its config and its marker.
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
        if position(&self.known, raw).is_err() {
            let config = || home.profile(&name).config();
            let marker = || home.profile(&name).marker();
            if !exists_at(profiles, self.rel_path(raw, CONFIG), config)?
                || !exists_at(profiles, self.rel_path(raw, PROFILE_MARKER), marker)?
            {
                return Ok(());
            }
        }
        self.take(home, name);
        Ok(())
    }

    fn rel_path(&mut self, profile: &str, file: &str) -> &Path {
        self.rel.clear();
        self.rel.push_str(profile);
        self.rel.push('/');
        self.rel.push_str(file);
        Path::new(&self.rel)
    }

    /// A profile that is there: the index's line kept when it knows the
    /// profile, else the port read from its config and noted for the index.
    fn take(&mut self, home: &HermesHome, name: ProfileName) {
        match position(&self.known, name.as_str()) {
            Ok(i) => self.seen[i] = true,
            Err(_) => {
                let port = Config::read_port(&home.profile(&name).config());
                self.added.push((name.to_string(), port));
            }
        }
    }

    /// Whether a profile came or went since the index was written.
    fn came_or_went(&self) -> bool {
        !self.added.is_empty() || self.seen.contains(&false)
    }

    /// The index as it now stands: the known profiles still there and the
    /// new ones, sorted by name.
    fn into_index(self) -> Vec<(String, Option<u16>)> {
        let mut kept: Vec<(String, Option<u16>)> = self
            .known
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| **seen)
            .map(|((name, port), _)| (name.to_string(), *port))
            .collect();
        kept.extend(self.added);
        kept.sort();
        kept
    }
}

/// Where `name` is in an index sorted by name (`Err`: where it would go).
fn position<S: AsRef<str>>(index: &[(S, Option<u16>)], name: &str) -> Result<usize, usize> {
    index.binary_search_by(|(n, _)| n.as_ref().cmp(name))
}

/// The index as read, owning its names: to be changed and saved.
fn owned(known: &Known<'_>) -> Vec<(String, Option<u16>)> {
    known.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

/// Whether `rel` exists below the open directory `dir`, not following its
/// last component. `full` names it in errors.
fn exists_at(dir: &File, rel: &Path, full: impl FnOnce() -> PathBuf) -> Result<bool, FsError> {
    match stat::fstatat(Some(dir.as_raw_fd()), rel, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(false),
        Err(e) => Err(FsError::new("inspect", &full(), e.into())),
    }
}

/// The index's text; empty (no index) when it cannot be read.
fn read_index(path: &Path) -> String {
    fsutil::read(path)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

fn render(dir: Option<&DirState>, lines: &str) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(lines.len() + 128);
    let _ = writeln!(text, "{HEADER}");
    let _ = match dir {
        Some(d) => writeln!(
            text,
            "{DIR_LINE} {} {} {} {} {} {} {}",
            d.ino, d.nlink, d.size, d.mtime.0, d.mtime.1, d.ctime.0, d.ctime.1
        ),
        None => writeln!(text, "{DIR_LINE} -"),
    };
    text.push_str(lines);
    text.push_str(TRAILER);
    text.push('\n');
    text
}

/// The state of `profiles/` an index lists and its lines, each ending in
/// `\n`; `None` when the text is not a whole index (a write cut short, or
/// an index of another version).
fn split(text: &str) -> Option<(Option<DirState>, &str)> {
    let body = text.strip_prefix(HEADER)?.strip_prefix('\n')?;
    let body = body.strip_suffix('\n')?.strip_suffix(TRAILER)?;
    let (dir, lines) = body.split_once('\n')?;
    Some((
        parse_dir(dir.strip_prefix(DIR_LINE)?.strip_prefix(' ')?)?,
        lines,
    ))
}

/// Index lines, each with its `\n`. A byte loop, as is [`entry`]'s: a
/// create walks a thousand lines, and `str::lines` and `split_once` spent
/// 500 instructions a line setting up their searches.
fn lines_of(lines: &str) -> impl Iterator<Item = &str> {
    let mut rest = lines;
    std::iter::from_fn(move || {
        let len = rest
            .bytes()
            .position(|b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(len);
        rest = after;
        (!line.is_empty()).then_some(line)
    })
}

/// One index line (its `\n` optional): a name and its port (`-`: none);
/// `None` when malformed.
fn entry(line: &str) -> Option<(&str, Option<u16>)> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let name = name_of(line);
    let port = match line.get(name.len() + 1..)? {
        "-" => None,
        p => Some(p.parse().ok()?),
    };
    Some((name, port))
}

/// An index line's name: up to its first space (the whole line if none).
fn name_of(line: &str) -> &str {
    line.bytes()
        .position(|b| b == b' ')
        .map_or(line, |i| &line[..i])
}

/// The ports an index's lines give, when the lines are as a create writes
/// them: sorted, each name once and a profile's as it is spelt.
fn tidy(lines: &str) -> Option<PortSet> {
    let mut taken = PortSet::new();
    let mut last = "";
    for line in lines_of(lines) {
        let (name, port) = entry(line)?;
        if name <= last || !ProfileName::is_canonical(name) {
            return None;
        }
        if let Some(port) = port {
            taken.insert(port);
        }
        last = name;
    }
    Some(taken)
}

/// Where `name`'s line is in sorted index lines; where it would go (an
/// empty range) when there is none.
fn line_of(lines: &str, name: &str) -> std::ops::Range<usize> {
    let mut at = 0;
    for line in lines_of(lines) {
        match name_of(line).cmp(name) {
            std::cmp::Ordering::Less => at += line.len(),
            std::cmp::Ordering::Equal => return at..at + line.len(),
            std::cmp::Ordering::Greater => break,
        }
    }
    at..at
}

/// An index's lines sorted by name; `None` when one is malformed. Lines
/// out of order or a name twice (edited by hand) are taken as meant.
fn known(lines: &str) -> Option<Known<'_>> {
    let mut index = lines_of(lines).map(entry).collect::<Option<Known<'_>>>()?;
    index.sort_by(|a, b| a.0.cmp(b.0));
    index.dedup_by(|a, b| a.0 == b.0);
    Some(index)
}

/// `Some(None)` for `-` (no state recorded); `None` when malformed.
fn parse_dir(fields: &str) -> Option<Option<DirState>> {
    if fields == "-" {
        return Some(None);
    }
    let mut f = fields.split(' ');
    let mut next = || f.next()?.parse::<i64>().ok();
    let dir = DirState {
        ino: u64::try_from(next()?).ok()?,
        nlink: u64::try_from(next()?).ok()?,
        size: next()?,
        mtime: (next()?, next()?),
        ctime: (next()?, next()?),
    };
    next().is_none().then_some(Some(dir))
}

/// Replace the index: a temporary file created exclusively (never through
/// a link), then renamed over it. Not synced: see the module's comment.
fn save(path: &Path, dir: Option<&DirState>, lines: &str) -> Result<(), FsError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let _ = fsutil::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(render(dir, lines).as_bytes()));
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

    fn claims(home: &HermesHome) -> Vec<(u16, String)> {
        let held = profile::lock(home).unwrap();
        let mut claims = Claims::read(home, &held).unwrap();
        claims.save().unwrap();
        let mut v: Vec<_> = claims
            .index()
            .into_iter()
            .filter_map(|(n, p)| Some((p?, n)))
            .collect();
        v.sort();
        v
    }

    fn name(s: &str) -> ProfileName {
        ProfileName::parse(s).unwrap()
    }

    fn set_port(home: &HermesHome, profile: &str, port: u16) {
        let config = home.profile(&name(profile)).config();
        let text = fs::read_to_string(&config).unwrap();
        let old = Config::read_port(&config).unwrap();
        fs::write(
            &config,
            text.replace(&format!("port: {old}"), &format!("port: {port}")),
        )
        .unwrap();
    }

    fn index_line(home: &HermesHome, profile: &str) -> Option<String> {
        fs::read_to_string(home.port_index())
            .unwrap()
            .lines()
            .find(|l| l.split(' ').next() == Some(profile))
            .map(str::to_string)
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
        assert_eq!(claims(&home), want);
        // The second time from the index: the same answer.
        assert_eq!(claims(&home), want);
    }

    #[test]
    fn the_index_is_written_only_when_profiles_come_or_go() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, home) = home_with(&[("b", 9002), ("a", 9001)]);
        let inode = || fs::metadata(home.port_index()).unwrap().ino();
        claims(&home);
        let written = inode();
        claims(&home);
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
        assert_eq!(claims(&home), want);
        // ... and written back in order, once.
        let tidy = "hermes profile ports 2\n";
        let text = fs::read_to_string(home.port_index()).unwrap();
        let body: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(body, ["a 9001", "b 9002", "default 9000", "end"], "{text}");
        assert!(text.starts_with(tidy));
        let written = inode();
        claims(&home);
        assert_eq!(inode(), written, "a tidy index was written again");
        // A profile gone: the index is written without it.
        let before = inode();
        fs::remove_dir_all(home.profiles_dir().join("b")).unwrap();
        claims(&home);
        assert_ne!(inode(), before);
        assert_eq!(index_line(&home, "b"), None);
    }

    #[test]
    fn a_known_profiles_port_comes_from_the_index_and_a_new_ones_from_its_config() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        claims(&home);
        assert_eq!(index_line(&home, "a").as_deref(), Some("a 9001"));
        // No config is read for a profile the index knows.
        set_port(&home, "a", 9011);
        assert!(claims(&home).contains(&(9001, "a".into())));
        // A profile copied in by hand is read.
        let copy = home.profiles_dir().join("c");
        fs::create_dir(&copy).unwrap();
        for file in [CONFIG, PROFILE_MARKER] {
            fs::copy(home.profiles_dir().join("a").join(file), copy.join(file)).unwrap();
        }
        assert!(claims(&home).contains(&(9011, "c".into())));
    }

    #[test]
    fn creates_keep_the_index_in_step_with_profiles_and_a_change_by_hand_is_seen() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        let dir_line = || {
            let text = fs::read_to_string(home.port_index()).unwrap();
            text.lines().nth(1).unwrap().to_string()
        };
        let state = || {
            let st = fs::symlink_metadata(home.profiles_dir()).unwrap();
            format!(
                "profiles {} {} {} {} {} {} {}",
                st.ino(),
                st.nlink(),
                st.size(),
                st.mtime(),
                st.mtime_nsec(),
                st.ctime(),
                st.ctime_nsec()
            )
        };
        // Each create left the index listing profiles/ as it is: the next
        // create believes it without listing.
        assert_eq!(dir_line(), state());
        assert_eq!(claims(&home).len(), 3);
        // A profile copied in by hand changes profiles/: it is listed, and
        // the new one read.
        let copy = home.profiles_dir().join("c");
        fs::create_dir(&copy).unwrap();
        fs::write(copy.join(CONFIG), "gateway:\n  port: 9003\n").unwrap();
        fs::write(copy.join(PROFILE_MARKER), "c\n").unwrap();
        assert_ne!(dir_line(), state());
        assert!(claims(&home).contains(&(9003, "c".into())));
        assert_eq!(dir_line(), state());
        // One removed by hand leaves the claims.
        fs::remove_dir_all(home.profiles_dir().join("a")).unwrap();
        assert!(!claims(&home).iter().any(|(_, n)| n == "a"));
        // A create that finds a directory it did not make (a create killed
        // half way left its staging) does not vouch for profiles/.
        fs::create_dir(home.profiles_dir().join(".d.creating")).unwrap();
        let held = profile::lock(&home).unwrap();
        profile::create(&home, &held, &name("d"), None).unwrap();
        drop(held);
        assert_eq!(dir_line(), "profiles -");
        assert_eq!(claims(&home).len(), 4);
        assert_eq!(dir_line(), state());
    }

    #[test]
    fn a_create_writes_the_index_a_rebuild_would() {
        let (_dir, home) = home_with(&[("c", 9003), ("a", 9001)]);
        let held = profile::lock(&home).unwrap();
        // Between the two, and at each end of the lines.
        for (profile, port) in [("b", None), ("0", Some(9500)), ("z", None)] {
            profile::create(&home, &held, &name(profile), port).unwrap();
        }
        drop(held);
        let spliced = fs::read_to_string(home.port_index()).unwrap();
        let body: Vec<&str> = spliced.lines().skip(2).collect();
        assert_eq!(
            body,
            [
                "0 9500",
                "a 9001",
                "b 8701",
                "c 9003",
                "default 9000",
                "z 8702",
                "end"
            ]
        );
        fs::remove_file(home.port_index()).unwrap();
        claims(&home);
        assert_eq!(fs::read_to_string(home.port_index()).unwrap(), spliced);
        // A port a profile holds is refused by name; the lowest free is given.
        let held = profile::lock(&home).unwrap();
        assert!(matches!(
            profile::create(&home, &held, &name("d"), Some(9003)),
            Err(profile::ProfileError::PortTaken { port: 9003, profile }) if profile == name("c")
        ));
        let e = profile::create(&home, &held, &name("e"), None).unwrap();
        assert_eq!(Config::read_port(&e.config()), Some(8703));
    }

    #[test]
    fn a_damaged_missing_or_older_index_is_rebuilt() {
        let (_dir, home) = home_with(&[("a", 9001)]);
        claims(&home);
        let whole = fs::read_to_string(home.port_index()).unwrap();
        // Cut short (no trailer), with a port that would be wrong if believed.
        let cut = &whole[..whole.find(" 9001\n").unwrap() + 3];
        fs::write(home.port_index(), cut).unwrap();
        assert!(claims(&home).contains(&(9001, "a".into())));
        assert_eq!(fs::read_to_string(home.port_index()).unwrap(), whole);
        fs::remove_file(home.port_index()).unwrap();
        assert!(claims(&home).contains(&(9001, "a".into())));
        // The first version's index (config identities before the port).
        fs::write(
            home.port_index(),
            "hermes profile ports 1\na 1 2 3 4 5 6 9555\nend\n",
        )
        .unwrap();
        assert!(claims(&home).contains(&(9001, "a".into())));
        assert_eq!(fs::read_to_string(home.port_index()).unwrap(), whole);
    }

    #[test]
    fn a_gateway_teaches_the_index_a_port_edited_by_hand() {
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        claims(&home);
        set_port(&home, "a", 9100);
        assert_eq!(confirm(&home, &name("a"), 9100), Ok(()));
        assert_eq!(index_line(&home, "a").as_deref(), Some("a 9100"));
        assert!(claims(&home).contains(&(9100, "a".into())));
        // The next create is refused the edited port and given the old one.
        let held = profile::lock(&home).unwrap();
        assert!(matches!(
            profile::create(&home, &held, &name("c"), Some(9100)),
            Err(profile::ProfileError::PortTaken { port: 9100, .. })
        ));
    }

    #[test]
    fn a_gateway_whose_port_another_config_names_is_refused() {
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        claims(&home);
        set_port(&home, "b", 9001);
        let clash = confirm(&home, &name("b"), 9001).unwrap_err();
        assert_eq!(clash.port, 9001);
        assert_eq!(clash.other, name("a"));
        assert_eq!(clash.config, home.profile(&name("a")).config());
        assert!(clash.to_string().contains("profile 'a'"), "{clash}");
        // Nothing was learned from a refused start.
        assert_eq!(index_line(&home, "b").as_deref(), Some("b 9002"));
        // The default profile's port is guarded too.
        assert_eq!(
            confirm(&home, &name("a"), 9000).unwrap_err().other,
            ProfileName::default_profile()
        );
    }

    #[test]
    fn two_profiles_that_swapped_ports_by_hand_both_start() {
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        claims(&home);
        set_port(&home, "a", 9002);
        set_port(&home, "b", 9001);
        assert_eq!(confirm(&home, &name("a"), 9002), Ok(()));
        assert_eq!(confirm(&home, &name("b"), 9001), Ok(()));
        assert_eq!(index_line(&home, "a").as_deref(), Some("a 9002"));
        assert_eq!(index_line(&home, "b").as_deref(), Some("b 9001"));
    }

    #[test]
    fn a_gateway_reads_only_the_index_while_it_agrees_and_writes_only_with_the_lock() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        claims(&home);
        let inode = || fs::metadata(home.port_index()).unwrap().ino();
        let before = inode();
        // A config the index would disagree with is not even read.
        set_port(&home, "b", 9001);
        assert_eq!(confirm(&home, &name("a"), 9001), Ok(()));
        assert_eq!(inode(), before);
        // While a create holds the lock, a clash is still found, and an
        // edit is not written down.
        let held = profile::lock(&home).unwrap();
        assert!(confirm(&home, &name("b"), 9001).is_err());
        set_port(&home, "b", 9200);
        assert_eq!(confirm(&home, &name("b"), 9200), Ok(()));
        assert_eq!(inode(), before);
        drop(held);
        assert_eq!(confirm(&home, &name("b"), 9200), Ok(()));
        assert_eq!(index_line(&home, "b").as_deref(), Some("b 9200"));
    }

    #[test]
    fn the_quick_look_agrees_only_with_a_whole_index_giving_the_port_to_this_profile_alone() {
        let whole = "hermes profile ports 2\nprofiles -\na 9001\nb 9002\nc -\nend\n";
        assert_eq!(agrees(whole, "a", 9001), Some(true));
        assert_eq!(agrees(whole, "a", 9002), Some(false));
        assert_eq!(agrees(whole, "c", 9003), Some(false));
        assert_eq!(agrees(whole, "d", 9004), Some(false));
        let twice = whole.replace("b 9002", "b 9001");
        assert_eq!(agrees(&twice, "a", 9001), Some(false));
        assert_eq!(agrees(&whole[..whole.len() - 4], "a", 9001), None);
        assert_eq!(
            agrees(
                "hermes profile ports 1\na 1 2 3 4 5 6 9001\nend\n",
                "a",
                9001
            ),
            None
        );
    }

    #[test]
    fn a_gateway_rebuilds_a_missing_index() {
        let (_dir, home) = home_with(&[("a", 9001), ("b", 9002)]);
        let _ = fs::remove_file(home.port_index());
        set_port(&home, "b", 9001);
        assert_eq!(
            confirm(&home, &name("b"), 9001).unwrap_err().other,
            name("a")
        );
        let _ = fs::remove_file(home.port_index());
        set_port(&home, "b", 9002);
        assert_eq!(confirm(&home, &name("a"), 9001), Ok(()));
        assert_eq!(index_line(&home, "a").as_deref(), Some("a 9001"));
    }
}
