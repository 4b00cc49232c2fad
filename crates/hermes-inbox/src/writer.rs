//! The single writer thread. It takes every append waiting in its queue,
//! writes them per hook in one `write`, makes them durable with one fsync per
//! touched segment (group commit), and only then publishes them to readers and
//! answers the callers. A failed batch is cut back off the file, so nothing of
//! it is ever acknowledged or left half-written.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use hermes_core::name::HookName;

use crate::error::InboxError;
use crate::event::Appended;
use crate::index::SegmentIndex;
use crate::keys::{Fingerprinter, KeyMap};
use crate::segment;
use crate::{record, Options, Shared};

/// Most appends folded into one group commit.
const MAX_BATCH: usize = 4096;
/// A batch stops taking appends past this many bytes.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

pub type Done = Box<dyn FnOnce(Result<Appended, InboxError>) + Send>;

pub struct Request {
    pub hook: HookName,
    pub key: Option<String>,
    pub body: Vec<u8>,
    pub received_at_ms: u64,
    pub done: Done,
}

pub enum Msg {
    Append(Request),
    /// Apply retention now; answer with the number of segments deleted.
    Retain(Box<dyn FnOnce(Result<usize, InboxError>) + Send>),
}

/// Writer-side state of one hook: the open tail segment and what ids and keys it has used.
pub struct HookWriter {
    pub dir: PathBuf,
    /// The tail segment, opened for appending; `None` until the first write.
    pub active: Option<(File, PathBuf)>,
    pub active_len: u64,
    pub next_id: u64,
    /// Idempotency key fingerprint → (event id, received at ms).
    pub keys: KeyMap<(u64, u64)>,
    /// A failed batch could not be cut off the tail: never append after it again.
    pub force_rollover: bool,
}

impl HookWriter {
    pub fn new(dir: PathBuf) -> Self {
        HookWriter {
            dir,
            active: None,
            active_len: 0,
            next_id: 1,
            keys: KeyMap::default(),
            force_rollover: false,
        }
    }
}

pub struct Writer {
    pub inbox_dir: PathBuf,
    pub fingerprints: Fingerprinter,
    pub hooks: HashMap<HookName, HookWriter>,
    pub shared: Arc<Shared>,
    pub options: Options,
}

/// What an append did: stored a new record, or found its idempotency key.
enum Stored {
    New(u64),
    Duplicate(u64),
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Msg>) {
        let interval = self.options.retention_interval;
        let mut last_pass = Instant::now();
        loop {
            // Retention is due every interval whether the inbox is idle or busy.
            let wait = interval.saturating_sub(last_pass.elapsed());
            let first = match rx.recv_timeout(wait) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if last_pass.elapsed() >= interval {
                self.retain_and_record();
                last_pass = Instant::now();
            }
            let Some(first) = first else { continue };
            let mut appends: BTreeMap<HookName, Vec<Request>> = BTreeMap::new();
            let mut retains = Vec::new();
            let mut bytes = 0;
            let mut count = 0;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(req) => {
                        bytes += req.body.len();
                        count += 1;
                        appends.entry(req.hook.clone()).or_default().push(req);
                    }
                    Msg::Retain(reply) => retains.push(reply),
                }
                if count < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            let mut rolled = false;
            for (hook, reqs) in appends {
                rolled |= self.commit(hook, reqs);
            }
            if !retains.is_empty() {
                let result = self.retain(crate::now_ms());
                for reply in retains {
                    reply(match &result {
                        Ok(n) => Ok(*n),
                        Err(e) => Err(InboxError::WriteFailed {
                            path: self.inbox_dir.clone(),
                            message: e.to_string(),
                        }),
                    });
                }
            } else if rolled {
                self.retain_and_record();
            }
        }
    }

    fn retain_and_record(&mut self) {
        let outcome = self.retain(crate::now_ms()).err().map(|e| e.to_string());
        *self
            .shared
            .retention_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = outcome;
    }

    /// Write one hook's share of a batch; returns whether a new segment was started.
    fn commit(&mut self, hook: HookName, reqs: Vec<Request>) -> bool {
        let segment_bytes = self.options.segment_bytes;
        let dir = self.inbox_dir.join(hook.as_str());
        let writer = self
            .hooks
            .entry(hook.clone())
            .or_insert_with(|| HookWriter::new(dir));
        let rolling =
            writer.active.is_none() || writer.force_rollover || writer.active_len >= segment_bytes;
        let base = if rolling { 0 } else { writer.active_len };

        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        let mut newest = 0;
        let mut received = Vec::new();
        let mut pending: KeyMap<u64> = KeyMap::default();
        let mut outcomes = Vec::with_capacity(reqs.len());
        let mut next_id = writer.next_id;
        for req in &reqs {
            let fingerprint = req.key.as_ref().map(|k| self.fingerprints.of(k.as_bytes()));
            let known = fingerprint.and_then(|fp| {
                writer
                    .keys
                    .get(&fp)
                    .map(|&(id, _)| id)
                    .or_else(|| pending.get(&fp).copied())
            });
            if let Some(id) = known {
                outcomes.push(Stored::Duplicate(id));
                continue;
            }
            offsets.push((base + buf.len() as u64) as u32);
            record::encode(
                next_id,
                req.received_at_ms,
                req.key.as_deref(),
                &req.body,
                &mut buf,
            );
            newest = newest.max(req.received_at_ms);
            received.push(req.received_at_ms);
            if let Some(fp) = fingerprint {
                pending.insert(fp, next_id);
            }
            outcomes.push(Stored::New(next_id));
            next_id += 1;
        }

        let result = if buf.is_empty() {
            Ok(None)
        } else if rolling {
            start_segment(&self.inbox_dir, writer, &buf).map(Some)
        } else {
            append_tail(writer, &buf).map(|()| None)
        };
        match result {
            Ok(created) => {
                if !buf.is_empty() {
                    self.shared.commits.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .committed_events
                        .fetch_add(offsets.len() as u64, Ordering::Relaxed);
                }
                let first_new = writer.next_id;
                writer.next_id = next_id;
                writer.keys.extend(
                    pending
                        .into_iter()
                        .map(|(fp, id)| (fp, (id, received[(id - first_new) as usize]))),
                );
                let mut index = self.shared.index.lock().unwrap_or_else(|p| p.into_inner());
                let segments = index.entry(hook).or_default();
                if let Some(path) = created.as_ref() {
                    segments.push_back(SegmentIndex {
                        first_id: first_new,
                        path: path.clone(),
                        offsets: Vec::new(),
                        len: 0,
                        newest_ms: 0,
                    });
                }
                if let Some(tail) = segments.back_mut().filter(|_| !buf.is_empty()) {
                    tail.offsets.extend_from_slice(&offsets);
                    tail.len += buf.len() as u64;
                    tail.newest_ms = tail.newest_ms.max(newest);
                }
                drop(index);
                for (req, outcome) in reqs.into_iter().zip(outcomes) {
                    (req.done)(Ok(match outcome {
                        Stored::New(id) => Appended {
                            id,
                            duplicate: false,
                        },
                        Stored::Duplicate(id) => Appended {
                            id,
                            duplicate: true,
                        },
                    }));
                }
                created.is_some()
            }
            Err((path, err)) => {
                for (req, outcome) in reqs.into_iter().zip(outcomes) {
                    // A key that was already durable before this batch is still a good answer.
                    let durable_dup =
                        matches!(outcome, Stored::Duplicate(id) if id < writer.next_id);
                    (req.done)(match outcome {
                        Stored::Duplicate(id) if durable_dup => Ok(Appended {
                            id,
                            duplicate: true,
                        }),
                        _ => Err(InboxError::batch(path.clone(), &err)),
                    });
                }
                false
            }
        }
    }

    /// Delete whole segments from the front of each hook past the age or size limit.
    /// The tail segment is never deleted: it holds the newest id.
    fn retain(&mut self, now_ms: u64) -> Result<usize, InboxError> {
        let window_ms = self.options.idempotency_window.as_millis() as u64;
        for writer in self.hooks.values_mut() {
            writer
                .keys
                .retain(|_, (_, at)| at.saturating_add(window_ms) > now_ms);
        }
        let age_ms = self.options.retention_age.map(|d| d.as_millis() as u64);
        let cap = self.options.retention_bytes;
        if age_ms.is_none() && cap.is_none() {
            return Ok(0);
        }
        let mut doomed: Vec<(HookName, PathBuf, u64)> = Vec::new();
        {
            let mut index = self.shared.index.lock().unwrap_or_else(|p| p.into_inner());
            for (hook, segments) in index.iter_mut() {
                let mut total: u64 = segments.iter().map(|s| s.len).sum();
                while segments.len() > 1 {
                    let front = &segments[0];
                    let too_old = age_ms.is_some_and(|age| front.newest_ms + age <= now_ms);
                    let too_big = cap.is_some_and(|cap| total > cap);
                    if !(too_old || too_big) {
                        break;
                    }
                    let gone = segments.pop_front().expect("len > 1");
                    total -= gone.len;
                    let next_first = segments[0].first_id;
                    doomed.push((hook.clone(), gone.path, next_first));
                }
            }
        }
        let mut first_error = None;
        for (hook, path, next_first) in &doomed {
            if let Some(writer) = self.hooks.get_mut(hook) {
                writer.keys.retain(|_, (id, _)| *id >= *next_first);
            }
            let removed = fs::remove_file(path).and_then(|()| segment::sync_parent(path));
            if let Err(e) = removed {
                first_error.get_or_insert(InboxError::io("delete old segment", path, e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(doomed.len()),
        }
    }
}

/// Create the next segment holding `buf`, durably: file and directory entry.
fn start_segment(
    inbox_dir: &Path,
    writer: &mut HookWriter,
    buf: &[u8],
) -> Result<PathBuf, (PathBuf, io::Error)> {
    let as_io = |e: InboxError| match e {
        InboxError::Io { path, source, .. } => (path, source),
        other => (inbox_dir.to_path_buf(), io::Error::other(other.to_string())),
    };
    segment::ensure_dir(inbox_dir).map_err(as_io)?;
    segment::ensure_dir(&writer.dir).map_err(as_io)?;
    let path = writer.dir.join(segment::file_name(writer.next_id));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| (path.clone(), e))?;
    let written = file
        .write_all(buf)
        .and_then(|()| file.sync_all())
        .and_then(|()| segment::sync_parent(&path));
    if let Err(err) = written {
        drop(file);
        // Nothing in it was acknowledged; leaving it would only make recovery cut it.
        let _ = fs::remove_file(&path).and_then(|()| segment::sync_parent(&path));
        return Err((path, err));
    }
    writer.active = Some((file, path.clone()));
    writer.active_len = buf.len() as u64;
    writer.force_rollover = false;
    Ok(path)
}

/// Append `buf` to the tail segment and fdatasync it; on failure cut it back off.
fn append_tail(writer: &mut HookWriter, buf: &[u8]) -> Result<(), (PathBuf, io::Error)> {
    let (file, path) = writer.active.as_mut().expect("tail segment is open");
    // fdatasync covers the size change of an append; the inode needs nothing else.
    let written = file.write_all(buf).and_then(|()| file.sync_data());
    match written {
        Ok(()) => {
            writer.active_len += buf.len() as u64;
            Ok(())
        }
        Err(err) => {
            let cut = file
                .set_len(writer.active_len)
                .and_then(|()| file.sync_data());
            if cut.is_err() {
                // The tail may keep part of this batch; later appends go to a new segment
                // so that recovery's cut never reaches an acknowledged record.
                writer.force_rollover = true;
            }
            Err((path.clone(), err))
        }
    }
}
