//! Telling the supervisor "serving now": s6's `notification-fd` (a newline on
//! the descriptor, then close it) and systemd's `NOTIFY_SOCKET` (`READY=1`).
//! Called only once the listener is bound and the inbox recovered.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use crate::error::GatewayError;

pub struct Notifier {
    fd: Option<File>,
    socket: Option<OsString>,
}

impl Notifier {
    /// Take ownership of `--notify-fd N` (checked to be open) and read `NOTIFY_SOCKET`.
    pub fn new(fd: Option<i32>) -> Result<Notifier, GatewayError> {
        let fd = match fd {
            None => None,
            Some(n) if n <= 2 => {
                return Err(GatewayError::NotifyFd {
                    fd: n,
                    reason: "standard input, output and error cannot be used".to_string(),
                })
            }
            Some(n) => {
                // SAFETY: F_GETFD only reads the descriptor's flags; it tells us whether it is open.
                let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
                if flags < 0 {
                    return Err(GatewayError::NotifyFd {
                        fd: n,
                        reason: std::io::Error::last_os_error().to_string(),
                    });
                }
                // SAFETY: the descriptor is open and was handed to us for this one use;
                // nothing else in the process owns it. CLOEXEC keeps it out of children.
                unsafe { libc::fcntl(n, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
                Some(File::from(unsafe { OwnedFd::from_raw_fd(n) }))
            }
        };
        Ok(Notifier {
            fd,
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
        })
    }

    /// Signal readiness; failures are logged, since the gateway serves either way.
    pub fn ready(&mut self) {
        if let Some(mut file) = self.fd.take() {
            if let Err(e) = file.write_all(b"\n") {
                crate::log(&format!(
                    "unable to write readiness to the notification fd: {e}"
                ));
            }
            // Dropping closes it: s6 reads one line and needs nothing more.
        }
        self.notify("READY=1");
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    fn notify(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        if let Err(e) = send_datagram(socket, message) {
            crate::log(&format!(
                "unable to notify {}: {e}",
                socket.to_string_lossy()
            ));
        }
    }
}

/// Send one datagram to a `NOTIFY_SOCKET` path, or an abstract socket when it starts with `@`.
fn send_datagram(socket: &OsString, message: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        sock.send_to(message.as_bytes(), std::path::Path::new(socket))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_closed_and_standard_descriptors() {
        assert!(matches!(
            Notifier::new(Some(1)),
            Err(GatewayError::NotifyFd { fd: 1, .. })
        ));
        assert!(matches!(
            Notifier::new(Some(987_654)),
            Err(GatewayError::NotifyFd { fd: 987_654, .. })
        ));
    }

    #[test]
    fn notify_socket_gets_the_message_by_path_and_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        send_datagram(&path.clone().into_os_string(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("hermes-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_sock = UnixDatagram::bind_addr(&addr).unwrap();
        send_datagram(&OsString::from(format!("@{name}")), "STOPPING=1").unwrap();
        let n = abstract_sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn ready_writes_a_newline_then_closes() {
        use std::io::Read;
        let (r, w) = nix::unistd::pipe().unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(w);
        let mut notifier = Notifier::new(Some(raw)).unwrap();
        notifier.ready();
        let mut got = Vec::new();
        // read_to_end returns only because the write end was closed.
        File::from(r).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"\n");
    }
}
