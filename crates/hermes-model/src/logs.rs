//! Reading gateway logs and the boot log: the last lines of a file, and new
//! lines since a cursor so a viewer can follow a log that s6-log rotates; the
//! lines of a whole s6-log directory (`current` and its archives) and a
//! [`Follower`] that reads on across rotations, for `hermes gateway logs`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hermes_core::{fsutil, HermesHome, ProfileName};
use serde::Serialize;

/// At most this much of a file is read for a tail or one follow step.
const WINDOW: u64 = 256 * 1024;

/// s6-log's current file for a profile's gateway.
pub fn gateway_log(home: &HermesHome, profile: &ProfileName) -> PathBuf {
    home.gateway_log_dir(profile).join("current")
}

pub use hermes_core::logs::tail;

/// Lines read from a log, and where to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    pub lines: Vec<String>,
    /// Pass back to read what follows; opaque (`<inode>:<offset>`).
    pub cursor: String,
    /// The file was rotated or truncated since the cursor: start over.
    pub reset: bool,
}

/// Complete lines written after `cursor` (at most the last `max` of them), or
/// the last `max` lines when there is no cursor or the file was rotated.
pub fn read_since(path: &Path, cursor: Option<&str>, max: usize) -> Chunk {
    let empty = |reset| Chunk {
        lines: Vec::new(),
        cursor: String::new(),
        reset,
    };
    let Ok(mut file) = fsutil::open(path) else {
        return empty(cursor.is_some_and(|c| !c.is_empty()));
    };
    let Ok(meta) = file.metadata() else {
        return empty(false);
    };
    let (ino, size) = (meta.ino(), meta.len());
    let parsed = cursor.and_then(|c| {
        let (i, o) = c.split_once(':')?;
        Some((i.parse::<u64>().ok()?, o.parse::<u64>().ok()?))
    });
    let (start, reset, skip_partial) = match parsed {
        Some((i, o)) if i == ino && o <= size => (
            o.max(size.saturating_sub(WINDOW)),
            false,
            o < size.saturating_sub(WINDOW),
        ),
        Some(_) => (size.saturating_sub(WINDOW), true, size > WINDOW),
        None => (
            size.saturating_sub(WINDOW),
            cursor.is_some_and(|c| !c.is_empty()),
            size > WINDOW,
        ),
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(size - start).read_to_end(&mut bytes).is_err()
    {
        return empty(reset);
    }
    // A window starting mid-file begins mid-line: drop that fragment.
    let mut body: &[u8] = &bytes;
    if skip_partial {
        if let Some(nl) = body.iter().position(|b| *b == b'\n') {
            body = &body[nl + 1..];
        }
    }
    // Only complete lines: a half-written last line is read next time.
    let complete = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let consumed = (bytes.len() - body.len()) + complete;
    let text = String::from_utf8_lossy(&body[..complete]);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() > max {
        lines.drain(..lines.len() - max);
    }
    Chunk {
        lines,
        cursor: format!("{ino}:{}", start + consumed as u64),
        reset,
    }
}

/// s6-log's rotated archives in `dir`, oldest first: their names are
/// `@` and a TAI64N stamp, so the name order is the time order. `.u` files
/// (cut short by a crash of s6-log) count too.
pub fn archives(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fsutil::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('@') && (n.ends_with(".s") || n.ends_with(".u")))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// The lines of a whole file (archives are at most s6-log's size limit).
fn file_lines(path: &Path) -> Vec<String> {
    fsutil::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The timestamp s6-log's `T` directive puts in front of a line
/// (`2026-12-02 05:53:27.069958958`), if the line has one.
pub fn timestamp(line: &str) -> Option<&str> {
    let stamp = line.get(..29)?;
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (digits(0..4)
        && b[4] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[19] == b'.'
        && digits(20..29))
    .then_some(stamp)
}

/// Follows one s6-log directory: the lines already there, then every new
/// line once, across rotations. s6-log rotates by renaming `current` to an
/// archive and creating a new `current`; the follower keeps the renamed
/// file open and reads it to its end before it moves to the new one.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    file: Option<File>,
    ino: u64,
    /// Bytes read after the last newline: a line still being written.
    partial: Vec<u8>,
}

impl Follower {
    /// Opens `dir/current` (if there is one yet) at its start.
    pub fn new(dir: &Path) -> Follower {
        let mut f = Follower {
            dir: dir.to_path_buf(),
            file: None,
            ino: 0,
            partial: Vec::new(),
        };
        f.reopen();
        f
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn reopen(&mut self) -> bool {
        let Ok(file) = fsutil::open(&self.current()) else {
            return false;
        };
        self.ino = file.metadata().map_or(0, |m| m.ino());
        self.file = Some(file);
        true
    }

    /// The last `n` lines written so far (from the archives too when
    /// `current` has fewer), oldest first; [`Self::poll`] continues after them.
    pub fn backlog(&mut self, n: usize) -> Vec<String> {
        let mut lines = self.read_on();
        if lines.len() < n {
            // Archives were complete before `current` was opened.
            for archive in archives(&self.dir).iter().rev() {
                let mut older = file_lines(archive);
                older.append(&mut lines);
                lines = older;
                if lines.len() >= n {
                    break;
                }
            }
        }
        lines.drain(..lines.len().saturating_sub(n));
        lines
    }

    /// The complete lines written since the last call.
    pub fn poll(&mut self) -> Vec<String> {
        let mut lines = self.read_on();
        let rotated = match fsutil::metadata(&self.current()) {
            Ok(m) => self.file.is_none() || m.ino() != self.ino,
            Err(_) => false,
        };
        if rotated {
            // The rename came before the new `current`, and every write to the
            // old file before the rename: what is left of it is read now.
            lines.extend(self.read_on());
            if !self.partial.is_empty() {
                lines.push(String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into());
            }
            if self.reopen() {
                lines.extend(self.read_on());
            }
        }
        lines
    }

    fn read_on(&mut self) -> Vec<String> {
        let Some(file) = self.file.as_mut() else {
            return Vec::new();
        };
        let mut bytes = std::mem::take(&mut self.partial);
        if file.read_to_end(&mut bytes).is_err() {
            self.partial = bytes;
            return Vec::new();
        }
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(complete);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Lines of several logs in one stream, each after its source's name
/// (padded to the longest): ordered by s6-log's timestamp, a line without
/// one staying after the line before it in its own log.
pub fn interleave(sources: &[(String, Vec<String>)]) -> Vec<String> {
    let width = sources.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut tagged: Vec<(&str, usize, &str, &str)> = Vec::new();
    for (i, (name, lines)) in sources.iter().enumerate() {
        let mut last = "";
        for line in lines {
            last = timestamp(line).unwrap_or(last);
            tagged.push((last, i, name, line));
        }
    }
    // Stable: equal stamps keep each log's own order.
    tagged.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    tagged
        .into_iter()
        .map(|(_, _, name, line)| format!("{name:<width$} | {line}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn follows_new_complete_lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current");
        assert!(read_since(&path, None, 5).lines.is_empty());
        append(&path, "one\ntwo\nthree\nhalf");
        let first = read_since(&path, None, 100);
        assert_eq!(first.lines, ["one", "two", "three"]);
        append(&path, " line\nfour\n");
        let next = read_since(&path, Some(&first.cursor), 100);
        assert_eq!(
            (next.lines.clone(), next.reset),
            (vec!["half line".to_string(), "four".to_string()], false)
        );
        let idle = read_since(&path, Some(&next.cursor), 100);
        assert!(idle.lines.is_empty());
        // s6-log rotates by renaming `current` away and starting a new file.
        std::fs::rename(&path, dir.path().join("@4000.s")).unwrap();
        append(&path, "fresh\n");
        let rotated = read_since(&path, Some(&idle.cursor), 100);
        assert_eq!(
            (rotated.lines, rotated.reset),
            (vec!["fresh".to_string()], true)
        );
    }

    #[test]
    fn large_files_are_read_from_a_window_on_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let line = "x".repeat(99) + "\n";
        append(&path, &line.repeat(5000));
        append(&path, "last\n");
        let lines = tail(&path, 3);
        assert_eq!(lines, [&line[..99], &line[..99], "last"]);
    }

    #[test]
    fn a_backlog_reaches_into_the_archives_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("@400000006000000000000000.s"), "a\nb\n").unwrap();
        std::fs::write(dir.path().join("@400000006000000100000000.s"), "c\nd\n").unwrap();
        std::fs::write(dir.path().join("lock"), "").unwrap();
        append(&dir.path().join("current"), "e\n");
        assert_eq!(Follower::new(dir.path()).backlog(2), ["d", "e"]);
        assert_eq!(Follower::new(dir.path()).backlog(4), ["b", "c", "d", "e"]);
        assert_eq!(
            Follower::new(dir.path()).backlog(100),
            ["a", "b", "c", "d", "e"]
        );
    }

    #[test]
    fn a_follower_reads_every_line_once_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        let mut f = Follower::new(dir.path());
        assert!(f.backlog(10).is_empty());
        append(&current, "one\n");
        assert_eq!(f.poll(), ["one"]);
        append(&current, "two\nthr");
        assert_eq!(f.poll(), ["two"]);
        // Written to the old file after the last poll, then rotated away.
        append(&current, "ee\nfour\n");
        std::fs::rename(&current, dir.path().join("@400000006000000000000000.s")).unwrap();
        assert_eq!(f.poll(), ["three", "four"]);
        append(&current, "five\n");
        assert_eq!(f.poll(), ["five"]);
        // The old file's last lines, its rotation and the new file's first
        // line all between two polls.
        append(&current, "5b\n");
        std::fs::rename(&current, dir.path().join("@400000006000000100000000.s")).unwrap();
        append(&current, "5c\n");
        assert_eq!(f.poll(), ["5b", "5c"]);
        append(&current, "six\n");
        assert_eq!(f.poll(), ["six"]);
    }

    #[test]
    fn logs_interleave_by_timestamp_under_their_names() {
        let a = (
            "a".to_string(),
            vec![
                "2026-12-02 05:00:01.000000000  a1".to_string(),
                "no stamp, after a1".to_string(),
                "2026-12-02 05:00:03.000000000  a3".to_string(),
            ],
        );
        let coder = (
            "coder".to_string(),
            vec!["2026-12-02 05:00:02.000000000  c2".to_string()],
        );
        assert_eq!(
            interleave(&[a, coder]),
            [
                "a     | 2026-12-02 05:00:01.000000000  a1",
                "a     | no stamp, after a1",
                "coder | 2026-12-02 05:00:02.000000000  c2",
                "a     | 2026-12-02 05:00:03.000000000  a3",
            ]
        );
        assert_eq!(timestamp("2026-12-02 05:00:02.00000000  x"), None);
    }
}
