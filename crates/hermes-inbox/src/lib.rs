//! A profile's webhook inbox: durable, ordered storage of accepted deliveries.
//!
//! Layout: `<profile>/inbox/<hook>/<first id, 20 digits>.seg`. Each hook has
//! its own append-only segments of length- and CRC-32C-framed records (see
//! [`record`]); ids start at 1 and grow by one per stored event, per hook.
//!
//! Guarantees:
//! - [`Inbox::append`] calls back with `Ok` only after the record is on disk:
//!   `fdatasync` of the segment, plus `fsync` of the file and its directory
//!   (and of new parent directories) when a segment is created. Appends queued
//!   together share those syncs (group commit).
//! - A failed write (for example a full disk) is cut back off the file before
//!   anyone is answered; the callers of that batch all get the error.
//! - [`Inbox::open`] keeps every whole record and cuts a torn or corrupt tail,
//!   reporting each cut in its [`RecoveryReport`].
//! - An `Idempotency-Key` already stored for the hook (within the last 24 h,
//!   [`Options::idempotency_window`]) is not written again; the caller gets the
//!   original id with `duplicate: true`, whatever the new body.
//! - Retention deletes whole segments from the oldest end, never the newest one.
// Every std::fs error here goes through `InboxError::io`, which names the
// path and what was being done to it (finer than fsutil's).
#![allow(clippy::disallowed_methods)]

mod error;
mod event;
mod index;
mod keys;
pub mod record;
mod segment;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hermes_core::name::HookName;

pub use error::InboxError;
pub use event::{Appended, Event, HookStats, Page};
pub use index::MAX_PAGE;

use index::{Index, SegmentIndex};
use writer::{HookWriter, Msg, Request, Writer};

/// Segments are capped below 1 GiB so that record offsets fit in 32 bits.
const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// Bodies are capped at 256 MiB whatever the configuration says.
const MAX_BODY_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct Options {
    /// A new segment is started once the tail reaches this size.
    pub segment_bytes: u64,
    pub max_body_bytes: u64,
    /// Delete segments whose newest event is older than this.
    pub retention_age: Option<Duration>,
    /// Delete the oldest segments while a hook holds more than this.
    pub retention_bytes: Option<u64>,
    /// How often age-based retention (and key expiry) is checked while idle.
    pub retention_interval: Duration,
    /// How long an `Idempotency-Key` is remembered (bounds the memory keys take);
    /// a retry later than this is stored as a new event.
    pub idempotency_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 8 << 20,
            max_body_bytes: hermes_core::config::DEFAULT_MAX_BODY,
            retention_age: None,
            retention_bytes: None,
            retention_interval: Duration::from_secs(60),
            idempotency_window: Duration::from_secs(24 * 3600),
        }
    }
}

impl Options {
    /// The inbox part of a profile's `webhooks:` section (0 = unlimited).
    pub fn from_config(section: &hermes_core::config::WebhookSection) -> Self {
        Options {
            max_body_bytes: section.max_body_bytes,
            retention_age: (section.retention_hours > 0)
                .then(|| Duration::from_secs(section.retention_hours * 3600)),
            retention_bytes: (section.retention_bytes > 0).then_some(section.retention_bytes),
            ..Options::default()
        }
    }
}

/// A tail cut during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub hook: String,
    pub segment: PathBuf,
    /// Whole records kept in that segment.
    pub kept_records: usize,
    pub cut_bytes: u64,
    pub reason: String,
}

/// What [`Inbox::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub hooks: usize,
    pub segments: usize,
    pub events: u64,
    pub cuts: Vec<Cut>,
    /// Segments left with no whole record, removed.
    pub removed_empty: Vec<PathBuf>,
}

pub(crate) struct Shared {
    pub index: Mutex<Index>,
    /// Why the last background retention pass failed, if it did.
    pub retention_error: Mutex<Option<String>>,
    /// Successful group commits (one data sync each) and the events they stored.
    pub commits: AtomicU64,
    pub committed_events: AtomicU64,
}

pub struct Inbox {
    dir: PathBuf,
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    max_body_bytes: u64,
    recovery: RecoveryReport,
}

pub(crate) fn now_ms() -> u64 {
    hermes_core::state::now_ms()
}

/// A key is stored verbatim, so it must be printable and bounded.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= record::MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

impl Inbox {
    /// Recover every hook under `dir` and start the writer thread.
    pub fn open(dir: &Path, options: Options) -> Result<Inbox, InboxError> {
        let mut options = options;
        options.segment_bytes = options.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
        options.max_body_bytes = options.max_body_bytes.clamp(1, MAX_BODY_BYTES);
        // A zero interval would make the writer spin on its queue.
        options.retention_interval = options.retention_interval.max(Duration::from_secs(1));
        // Records are judged against the hard cap, not today's configured limit:
        // lowering `max_body_bytes` must never turn stored events into "corrupt" tails.
        let max_payload = record::max_payload(MAX_BODY_BYTES);
        let mut report = RecoveryReport::default();
        let mut index = Index::new();
        let mut hooks = HashMap::new();
        let keys_since_ms = now_ms().saturating_sub(options.idempotency_window.as_millis() as u64);
        let fingerprints = keys::Fingerprinter::default();
        for (hook, hook_dir) in hook_dirs(dir)? {
            let scan = Scan {
                max_payload,
                keys_since_ms,
                fingerprints: &fingerprints,
            };
            let (segments, writer) = recover_hook(&hook, &hook_dir, &scan, &mut report)?;
            report.hooks += 1;
            index.insert(hook.clone(), segments);
            hooks.insert(hook, writer);
        }
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            retention_error: Mutex::new(None),
            commits: AtomicU64::new(0),
            committed_events: AtomicU64::new(0),
        });
        let max_body_bytes = options.max_body_bytes;
        let writer = Writer {
            inbox_dir: dir.to_path_buf(),
            fingerprints,
            hooks,
            shared: shared.clone(),
            options,
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("inbox-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| InboxError::io("start the writer thread for", dir, e))?;
        Ok(Inbox {
            dir: dir.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            shared,
            max_body_bytes,
            recovery: report,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Queue an append; `done` is called exactly once, after the event is durable or failed.
    pub fn append(
        &self,
        hook: HookName,
        key: Option<String>,
        body: Vec<u8>,
        done: impl FnOnce(Result<Appended, InboxError>) + Send + 'static,
    ) {
        if key.as_deref().is_some_and(|k| !valid_key(k)) {
            return done(Err(InboxError::BadKey));
        }
        if body.len() as u64 > self.max_body_bytes {
            return done(Err(InboxError::TooLarge {
                len: body.len(),
                max: self.max_body_bytes,
            }));
        }
        let request = Request {
            hook,
            key,
            body,
            received_at_ms: now_ms(),
            done: Box::new(done),
        };
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(Msg::Append(req))) = tx.send(Msg::Append(request)) {
                    (req.done)(Err(InboxError::Closed));
                }
            }
            None => (request.done)(Err(InboxError::Closed)),
        }
    }

    /// Events of `hook` with id > `after`, at most `limit` (capped at [`MAX_PAGE`]).
    pub fn page(&self, hook: &HookName, after: u64, limit: usize) -> Result<Page, InboxError> {
        index::page(
            &self.shared.index,
            hook,
            after,
            limit,
            record::max_payload(MAX_BODY_BYTES),
        )
    }

    pub fn stats(&self) -> Vec<HookStats> {
        index::stats(&self.shared.index.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Group commits since open and the events they stored: events per commit is
    /// how many deliveries shared each fsync.
    pub fn commits(&self) -> (u64, u64) {
        (
            self.shared.commits.load(Ordering::Relaxed),
            self.shared.committed_events.load(Ordering::Relaxed),
        )
    }

    /// Why the last background retention pass failed, if it did.
    pub fn retention_error(&self) -> Option<String> {
        self.shared
            .retention_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Apply retention now (after every append queued before it); returns segments deleted.
    pub fn enforce_retention(&self) -> Result<usize, InboxError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let msg = Msg::Retain(Box::new(move |r| {
            let _ = reply_tx.send(r);
        }));
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.send(msg).is_ok());
        if sent != Some(true) {
            return Err(InboxError::Closed);
        }
        reply_rx.recv().unwrap_or(Err(InboxError::Closed))
    }

    /// Finish every queued append, then stop the writer. Later appends fail with `Closed`.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// Refuse `path` unless it is a real directory (or, with `missing_ok`, absent).
fn plain_dir(path: &Path, missing_ok: bool) -> Result<bool, InboxError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(meta) => Err(InboxError::NotADirectory {
            path: path.to_path_buf(),
            what: if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file"
            },
        }),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(InboxError::io("inspect", path, e)),
    }
}

/// Hook directories under the inbox; an entry that is not a valid hook name
/// is ignored, a valid one that is not a real directory is refused.
fn hook_dirs(dir: &Path) -> Result<Vec<(HookName, PathBuf)>, InboxError> {
    if !plain_dir(dir, true)? {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| InboxError::io("list", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InboxError::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match HookName::parse(&name) {
            Ok(hook) if hook.as_str() == name => {
                // A planted link where a hook's events belong is refused now,
                // not discovered by the first delivery.
                plain_dir(&entry.path(), false)?;
                found.push((hook, entry.path()));
            }
            _ => {}
        }
    }
    found.sort();
    Ok(found)
}

/// How recovery judges records and which idempotency keys it keeps.
struct Scan<'a> {
    max_payload: usize,
    keys_since_ms: u64,
    fingerprints: &'a keys::Fingerprinter,
}

fn recover_hook(
    hook: &HookName,
    dir: &Path,
    scan: &Scan,
    report: &mut RecoveryReport,
) -> Result<(std::collections::VecDeque<SegmentIndex>, HookWriter), InboxError> {
    let mut segments = std::collections::VecDeque::new();
    let mut writer = HookWriter::new(dir.to_path_buf());
    for (first_id, path) in segment::list(dir)? {
        if first_id < writer.next_id {
            return Err(InboxError::Corrupt {
                path,
                message: format!(
                    "segment starts at id {first_id}, but ids up to {} are already stored; \
                     move the overlapping segment away",
                    writer.next_id - 1
                ),
            });
        }
        let scanned = segment::recover(
            &path,
            first_id,
            scan.max_payload,
            scan.keys_since_ms,
            scan.fingerprints,
        )?;
        if let Some((cut_bytes, reason)) = scanned.cut {
            report.cuts.push(Cut {
                hook: hook.to_string(),
                segment: path.clone(),
                kept_records: scanned.offsets.len(),
                cut_bytes,
                reason,
            });
        }
        if scanned.offsets.is_empty() {
            std::fs::remove_file(&path)
                .and_then(|()| segment::sync_parent(&path))
                .map_err(|e| InboxError::io("remove empty segment", &path, e))?;
            report.removed_empty.push(path);
            continue;
        }
        report.segments += 1;
        report.events += scanned.offsets.len() as u64;
        writer.next_id = first_id + scanned.offsets.len() as u64;
        writer.keys.extend(scanned.keys);
        writer.active_len = scanned.len;
        segments.push_back(SegmentIndex {
            first_id,
            path,
            offsets: scanned.offsets,
            len: scanned.len,
            newest_ms: scanned.newest_ms,
        });
    }
    if let Some(tail) = segments.back() {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&tail.path)
            .map_err(|e| InboxError::io("open segment", &tail.path, e))?;
        writer.active = Some((file, tail.path.clone()));
    }
    Ok((segments, writer))
}

#[cfg(test)]
mod tests;
