//! Whether a supervisor listens on a control FIFO: opening it write-only and
//! non-blocking succeeds only if a process holds the read end (what `s6-svok`
//! checks). Nothing is written; the descriptor is closed at once.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What opening a FIFO for writing, without blocking, says about its reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FifoProbe {
    Missing,
    NotFifo,
    /// ENXIO: nobody has it open for reading.
    NoReader,
    Reader,
    /// It exists but belongs to someone else: a supervisor of another user.
    Denied,
    Error(String),
}

/// Open `path` write-only and non-blocking: that succeeds only if a reader
/// (s6-svscan) has it open. Nothing is written; the descriptor is closed at once.
pub fn probe_fifo(path: &Path) -> FifoProbe {
    match crate::fsutil::metadata(path) {
        Err(e) if e.is_not_found() => return FifoProbe::Missing,
        Err(e) => return FifoProbe::Error(e.to_string()),
        Ok(meta) if !meta.file_type().is_fifo() => return FifoProbe::NotFifo,
        Ok(_) => {}
    }
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(_) => FifoProbe::Reader,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => FifoProbe::NoReader,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => FifoProbe::Denied,
        Err(e) => FifoProbe::Error(format!("unable to open {}: {e}", path.display())),
    }
}

/// Whether a process holds the read end of `fifo`, i.e. a supervisor listens on it.
pub fn fifo_has_reader(fifo: &Path) -> bool {
    probe_fifo(fifo) == FifoProbe::Reader
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_probe_on_a_real_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("control");
        assert_eq!(probe_fifo(&fifo), FifoProbe::Missing);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(probe_fifo(&fifo), FifoProbe::NoReader);
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        assert_eq!(probe_fifo(&fifo), FifoProbe::Reader);
        assert!(fifo_has_reader(&fifo));
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        assert_eq!(probe_fifo(&file), FifoProbe::NotFifo);
    }
}
