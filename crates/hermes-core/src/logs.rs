//! Reading the end of a log file (s6-log's `current`, the boot log).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of the file's end is read to find the last lines.
const TAIL_WINDOW: u64 = 64 * 1024;

/// The last `lines` lines of `path`; empty when the file is missing.
pub fn tail(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = crate::fsutil::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_WINDOW);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut all: Vec<&str> = text.lines().collect();
    if start > 0 && !all.is_empty() {
        // The first line of the window is probably cut.
        all.remove(0);
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("current");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), ["b", "c"]);
        assert_eq!(tail(&p, 10), ["a", "b", "c"]);
        assert!(tail(&dir.path().join("none"), 3).is_empty());
    }
}
