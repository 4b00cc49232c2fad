//! The committed view of every hook: which segments exist and where each
//! durable record starts. Only the writer thread changes it, and only after an
//! fsync succeeded, so readers never see an event that could still be lost.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use hermes_core::name::HookName;

use crate::error::InboxError;
use crate::event::{HookStats, Page};
use crate::record;

/// Most events one page returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;
/// A page stops growing past this many bytes of records (it always holds at least one).
const PAGE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct SegmentIndex {
    pub first_id: u64,
    pub path: PathBuf,
    /// Start of each durable record; record `i` has id `first_id + i`.
    pub offsets: Vec<u32>,
    /// Durable length in bytes.
    pub len: u64,
    /// Newest `received_at` in the segment: what age-based retention looks at.
    pub newest_ms: u64,
}

impl SegmentIndex {
    /// One past the last id in this segment.
    pub fn end_id(&self) -> u64 {
        self.first_id + self.offsets.len() as u64
    }

    fn record_end(&self, i: usize) -> u64 {
        self.offsets
            .get(i + 1)
            .map_or(self.len, |&next| u64::from(next))
    }
}

pub type Index = BTreeMap<HookName, VecDeque<SegmentIndex>>;

/// One contiguous run of records to read from one segment.
struct Read {
    path: PathBuf,
    start: u64,
    end: u64,
    count: usize,
}

/// Oldest and newest stored ids.
fn span(segments: &VecDeque<SegmentIndex>) -> (Option<u64>, Option<u64>) {
    let first_id = segments
        .iter()
        .find(|s| !s.offsets.is_empty())
        .map(|s| s.first_id);
    let last_id = segments
        .iter()
        .rev()
        .find(|s| !s.offsets.is_empty())
        .map(|s| s.end_id() - 1);
    (first_id, last_id)
}

/// Plan a page under the lock (cheap), so the file reads happen without it.
fn plan(
    segments: &VecDeque<SegmentIndex>,
    after: u64,
    limit: usize,
) -> (Vec<Read>, Option<u64>, Option<u64>) {
    let (first_id, last_id) = span(segments);
    let mut reads = Vec::new();
    let mut taken = 0usize;
    let mut bytes = 0u64;
    for seg in segments {
        if seg.end_id() <= after.saturating_add(1) || seg.offsets.is_empty() {
            continue;
        }
        let from = after.saturating_add(1).saturating_sub(seg.first_id) as usize;
        let mut count = 0;
        for i in from..seg.offsets.len() {
            if taken == limit || (taken > 0 && bytes >= PAGE_BYTES) {
                break;
            }
            bytes += seg.record_end(i) - u64::from(seg.offsets[i]);
            taken += 1;
            count += 1;
        }
        if count > 0 {
            reads.push(Read {
                path: seg.path.clone(),
                start: u64::from(seg.offsets[from]),
                end: seg.record_end(from + count - 1),
                count,
            });
        }
        if taken == limit || bytes >= PAGE_BYTES {
            break;
        }
    }
    (reads, first_id, last_id)
}

/// Events of `hook` with id > `after`, oldest first, at most `limit` (capped at [`MAX_PAGE`];
/// 0 gives no events, only the first and last ids).
pub fn page(
    index: &std::sync::Mutex<Index>,
    hook: &HookName,
    after: u64,
    limit: usize,
    max_payload: usize,
) -> Result<Page, InboxError> {
    let limit = limit.min(MAX_PAGE);
    let (reads, first_id, last_id) = {
        let index = index.lock().unwrap_or_else(|p| p.into_inner());
        match index.get(hook) {
            Some(segments) => plan(segments, after, limit),
            None => (Vec::new(), None, None),
        }
    };
    let mut events = Vec::new();
    for read in reads {
        let file = match File::open(&read.path) {
            Ok(file) => file,
            // Retention removed the segment after we planned: its events are gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(InboxError::io("open segment", &read.path, e)),
        };
        let mut buf = vec![0; (read.end - read.start) as usize];
        file.read_exact_at(&mut buf, read.start)
            .map_err(|e| InboxError::io("read segment", &read.path, e))?;
        let mut pos = 0;
        for _ in 0..read.count {
            let (event, used) =
                record::decode(&buf[pos..], max_payload).map_err(|e| InboxError::Corrupt {
                    path: read.path.clone(),
                    message: format!("{e} at offset {}", read.start + pos as u64),
                })?;
            events.push(event);
            pos += used;
        }
    }
    Ok(Page {
        events,
        first_id,
        last_id,
    })
}

pub fn stats(index: &Index) -> Vec<HookStats> {
    index
        .iter()
        .map(|(hook, segments)| {
            let (first_id, last_id) = span(segments);
            HookStats {
                hook: hook.to_string(),
                first_id,
                last_id,
                segments: segments.len(),
                bytes: segments.iter().map(|s| s.len).sum(),
            }
        })
        .collect()
}
