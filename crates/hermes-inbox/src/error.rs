//! Every way the inbox can fail, each naming the file or directory involved.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("unable to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No space (or quota) left: nothing of the failed batch remains on disk.
    #[error("disk full while writing {path}: {message}")]
    DiskFull { path: PathBuf, message: String },
    /// A batch failed for another I/O reason: nothing of it was acknowledged.
    #[error("unable to store event in {path}: {message}")]
    WriteFailed { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Something other than a plain directory where the inbox or a hook's
    /// directory belongs: refused, never followed.
    #[error("{path} is {what}, not a directory: the inbox never follows links out of its profile; replace it with a directory")]
    NotADirectory { path: PathBuf, what: &'static str },
    #[error("idempotency key must be 1 to 255 visible ASCII characters")]
    BadKey,
    #[error("body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: u64 },
    #[error("the inbox is shutting down")]
    Closed,
}

impl InboxError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        InboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The error a whole failed batch reports to each of its writers.
    pub(crate) fn batch(path: PathBuf, err: &io::Error) -> Self {
        if is_disk_full(err) {
            InboxError::DiskFull {
                path,
                message: err.to_string(),
            }
        } else {
            InboxError::WriteFailed {
                path,
                message: err.to_string(),
            }
        }
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, InboxError::DiskFull { .. })
    }
}

/// Out of space, out of quota, or past a file size limit: all "storage full" to a sender.
pub(crate) fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}
