//! Reading gateway logs and the boot log: the last lines of a file, and new
//! lines since a cursor so a viewer can follow a log that s6-log rotates.

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
}
