//! Segment files: `<first id, 20 digits>.seg`, records back to back. Scanning
//! one at start-up keeps every whole record and cuts whatever follows the first
//! bad one, so a write torn by a crash never hides or corrupts the records
//! before it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::InboxError;
use crate::keys::Fingerprinter;
use crate::record;

const SUFFIX: &str = ".seg";

pub fn file_name(first_id: u64) -> String {
    format!("{first_id:020}{SUFFIX}")
}

pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What one segment holds after recovery.
#[derive(Debug)]
pub struct Scanned {
    /// Byte offset of each whole record; record `i` has id `first_id + i`.
    pub offsets: Vec<u32>,
    /// Length of the valid prefix (the file is cut to this).
    pub len: u64,
    pub newest_ms: u64,
    /// Idempotency key fingerprints with their event ids and receive times.
    pub keys: Vec<(u128, (u64, u64))>,
    /// Set when a tail was cut: how many bytes and why.
    pub cut: Option<(u64, String)>,
}

/// Read a segment, validate every record, and truncate (with fsync) any invalid tail.
/// Idempotency keys of records received at or before `keys_since_ms` have expired and are skipped.
pub fn recover(
    path: &Path,
    first_id: u64,
    max_payload: usize,
    keys_since_ms: u64,
    fingerprints: &Fingerprinter,
) -> Result<Scanned, InboxError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| InboxError::io("open segment", path, e))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(|e| InboxError::io("read segment", path, e))?;
    let mut scanned = Scanned {
        offsets: Vec::new(),
        len: 0,
        newest_ms: 0,
        keys: Vec::new(),
        cut: None,
    };
    let mut pos = 0usize;
    while pos < buf.len() {
        let expected = first_id + scanned.offsets.len() as u64;
        let problem = match record::view(&buf[pos..], max_payload) {
            Ok((record, _)) if record.id != expected => {
                format!("record id {} where {expected} was expected", record.id)
            }
            Ok((record, used)) => {
                scanned.offsets.push(pos as u32);
                scanned.newest_ms = scanned.newest_ms.max(record.received_at_ms);
                if let Some(key) = record.key.filter(|_| record.received_at_ms > keys_since_ms) {
                    let fp = fingerprints.of(key);
                    scanned.keys.push((fp, (record.id, record.received_at_ms)));
                }
                pos += used;
                continue;
            }
            Err(invalid) => invalid.to_string(),
        };
        let cut = (buf.len() - pos) as u64;
        file.set_len(pos as u64)
            .and_then(|()| file.sync_all())
            .map_err(|e| InboxError::io("cut torn tail of", path, e))?;
        scanned.cut = Some((cut, format!("{problem} at offset {pos}")));
        break;
    }
    scanned.len = pos as u64;
    Ok(scanned)
}

/// Segment files of a hook directory, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, InboxError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| InboxError::io("list", dir, e))? {
        let entry = entry.map_err(|e| InboxError::io("list", dir, e))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Make the directory entry of `path` durable: fsync its parent.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

/// Create `dir` if missing, making the new entry durable before returning.
pub fn ensure_dir(dir: &Path) -> Result<(), InboxError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(InboxError::io(
                "use directory",
                dir,
                io::Error::other("exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(InboxError::io("inspect", dir, e)),
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(InboxError::io("create directory", dir, e)),
    }
    sync_parent(dir).map_err(|e| InboxError::io("sync directory above", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_id() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
        assert!(file_name(9) < file_name(10));
    }
}
