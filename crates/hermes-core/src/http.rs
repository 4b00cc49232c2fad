//! The one hand-written HTTP/1.1 client of hermes (the CLI's webhook
//! commands, the health probes, the test kit): one request per connection
//! (`Connection: close`), the answer read to the end of the stream or to a
//! byte limit. No pool and no retry, so a probe's latency is the server's.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("unable to resolve {addr}: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("unable to connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("unreadable response from {addr}: {message}")]
    BadResponse { addr: SocketAddr, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request; `headers` come after `Host` (unless they name their own),
/// `Connection` and `Content-Length`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Self {
        Request {
            method: "GET",
            path,
            headers: &[],
            body: b"",
        }
    }
}

/// The first address `host:port` resolves to.
pub fn resolve(addr: &str) -> Result<SocketAddr, HttpError> {
    let resolve = |source| HttpError::Resolve {
        addr: addr.to_string(),
        source,
    };
    addr.to_socket_addrs()
        .map_err(resolve)?
        .next()
        .ok_or_else(|| resolve(io::Error::other("no address")))
}

/// Send `request` to `addr` and read at most `limit` bytes of the answer,
/// all within `timeout`. An answer that arrived whole counts even when the
/// send or the read failed after it (a server may answer 413 early and close
/// before the whole body is sent; a slow close may time out the read).
pub fn send(
    addr: SocketAddr,
    request: &Request<'_>,
    timeout: Duration,
    limit: u64,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| HttpError::Connect { addr, source })?;
    let io = |source| HttpError::Io { addr, source };
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining)).map_err(io)?;
    stream.set_write_timeout(Some(remaining)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
    if !request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    head.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n",
        request.body.len()
    ));
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(request.body));
    let mut raw = Vec::with_capacity(512);
    let read = (&mut stream).take(limit).read_to_end(&mut raw);
    match (parse(&raw), sent, read) {
        (Ok(response), _, _) => Ok(response),
        (Err(_), Err(e), _) | (Err(_), Ok(()), Err(e)) => Err(io(e)),
        (Err(message), Ok(()), Ok(_)) => Err(HttpError::BadResponse { addr, message }),
    }
}

/// [`send`] to `host:port`, reading the whole answer.
pub fn request(
    addr: &str,
    request: &Request<'_>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    send(resolve(addr)?, request, timeout, u64::MAX)
}

/// An `HTTP/1.x NNN` status line, headers, and the body after them.
pub fn parse(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_status_and_body() {
        let r = parse(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, &r.body[..]), (202, &b"{}"[..]));
        assert_eq!(r.headers, [("content-length".to_string(), "2".to_string())]);
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn sends_one_request_and_reads_to_the_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"\r\n\r\nhi") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "{}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nabcdef").unwrap();
            String::from_utf8(got).unwrap()
        });
        let headers = [("X-A", "1".to_string())];
        let req = Request {
            method: "POST",
            path: "/p",
            headers: &headers,
            body: b"hi",
        };
        let r = send(addr, &req, Duration::from_secs(5), 21).unwrap();
        assert_eq!((r.status, r.text()), (200, "ab".to_string()));
        let got = server.join().unwrap();
        assert_eq!(
            got,
            format!("POST /p HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi")
        );
    }

    #[test]
    fn a_closed_port_is_a_connect_error_naming_it() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = request(
            &format!("127.0.0.1:{port}"),
            &Request::get("/"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
