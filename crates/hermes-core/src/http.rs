//! The one hand-written HTTP/1.1 client of hermes (the CLI's webhook
//! commands, the health probes, the test kit): one request per connection
//! (`Connection: close`), the answer read to the end of the stream or to a
//! byte limit. No pool and no retry, so a probe's latency is the server's.
//! [`send_all`] sends many requests at once from one thread (the health
//! probes of every gateway).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, SockAddr, Socket, Type};

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
    let mut stream = connect(addr, timeout)?;
    exchange(&mut stream, addr, request, limit)
}

/// A connection to `addr` whose reads and writes time out with what is
/// left of `timeout` after the connect.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, HttpError> {
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| HttpError::Connect { addr, source })?;
    let io = |source| HttpError::Io { addr, source };
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining)).map_err(io)?;
    stream.set_write_timeout(Some(remaining)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// [`send`] over a connection already open (plain or TLS) to `addr`.
pub fn exchange<S: Read + Write>(
    stream: &mut S,
    addr: SocketAddr,
    request: &Request<'_>,
    limit: u64,
) -> Result<Response, HttpError> {
    let sent = stream
        .write_all(&head(addr, request))
        .and_then(|()| stream.write_all(request.body))
        .and_then(|()| stream.flush());
    let mut raw = Vec::with_capacity(512);
    let read = stream.take(limit).read_to_end(&mut raw);
    answer(addr, &raw, sent, read)
}

/// The request line and headers, through the blank line.
fn head(addr: SocketAddr, request: &Request<'_>) -> Vec<u8> {
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
    head.into_bytes()
}

/// What was read, whatever happened while sending and reading: an answer
/// that arrived whole counts even when the send or the read failed after it
/// (a server may answer 413 early and close before the whole body is sent;
/// a slow close may time out the read).
fn answer(
    addr: SocketAddr,
    raw: &[u8],
    sent: io::Result<()>,
    read: io::Result<usize>,
) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io { addr, source };
    match (parse(raw), sent, read) {
        (Ok(response), _, _) => Ok(response),
        (Err(_), Err(e), _) | (Err(_), Ok(()), Err(e)) => Err(io(e)),
        (Err(message), Ok(()), Ok(_)) => Err(HttpError::BadResponse { addr, message }),
    }
}

/// One request of [`send_all`] on its way.
struct Exchange {
    addr: SocketAddr,
    socket: Option<Socket>,
    connected: bool,
    out: Vec<u8>,
    written: usize,
    sent: io::Result<()>,
    raw: Vec<u8>,
    result: Option<Result<Response, HttpError>>,
    started: Instant,
    /// From `started` until `result` was set.
    took: Option<Duration>,
}

impl Exchange {
    fn start(addr: SocketAddr, request: &Request<'_>) -> Exchange {
        let mut out = head(addr, request);
        out.extend_from_slice(request.body);
        let mut x = Exchange {
            addr,
            socket: None,
            connected: false,
            out,
            written: 0,
            sent: Ok(()),
            raw: Vec::with_capacity(512),
            result: None,
            started: Instant::now(),
            took: None,
        };
        let opened = Socket::new(Domain::for_address(addr), Type::STREAM, None)
            .and_then(|s| s.set_nonblocking(true).map(|()| s));
        match opened {
            Ok(socket) => {
                let _ = socket.set_tcp_nodelay(true);
                match socket.connect(&SockAddr::from(addr)) {
                    Ok(()) => x.connected = true,
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(source) => x.result = Some(Err(HttpError::Connect { addr, source })),
                }
                x.socket = Some(socket);
            }
            Err(source) => x.result = Some(Err(HttpError::Connect { addr, source })),
        }
        if x.connected {
            x.write();
        } else if x.result.is_none() {
            x.write_early();
        }
        x
    }

    /// The request written at once if the handshake is already done, as it
    /// mostly is on loopback: the server then finds it with the connection
    /// it accepts and answers in one wake-up, not one for the connection and
    /// another for the request.
    fn write_early(&mut self) {
        let Some(mut socket) = self.socket.as_ref() else {
            return;
        };
        match socket.write(&self.out) {
            Ok(n) => {
                self.connected = true;
                self.written = n;
                self.write();
            }
            // Still connecting: the poll loop waits for it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Unsent, so the connect is what failed (refused, unreachable).
            Err(source) => {
                let addr = self.addr;
                self.result = Some(Err(HttpError::Connect { addr, source }));
            }
        }
    }

    /// What to wait for, or `None` when done.
    fn wants(&self) -> Option<PollFlags> {
        if self.result.is_some() {
            None
        } else if !self.connected || self.written < self.out.len() {
            Some(PollFlags::POLLOUT)
        } else {
            Some(PollFlags::POLLIN)
        }
    }

    /// The socket is ready for what it waited for (or failed).
    fn step(&mut self, limit: u64) {
        if !self.connected {
            let Some(socket) = &self.socket else { return };
            match socket.take_error() {
                Ok(None) => self.connected = true,
                Ok(Some(source)) | Err(source) => {
                    let addr = self.addr;
                    self.result = Some(Err(HttpError::Connect { addr, source }));
                    return;
                }
            }
        }
        if self.written < self.out.len() {
            self.write();
        } else {
            self.read(limit);
        }
    }

    fn write(&mut self) {
        let Some(mut socket) = self.socket.as_ref() else {
            return;
        };
        while self.written < self.out.len() {
            match socket.write(&self.out[self.written..]) {
                Ok(0) => {
                    self.sent = Err(io::ErrorKind::WriteZero.into());
                    self.written = self.out.len();
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Read what the server said before it stopped reading.
                    self.sent = Err(e);
                    self.written = self.out.len();
                }
            }
        }
    }

    fn read(&mut self, limit: u64) {
        let Some(mut socket) = self.socket.as_ref() else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            let room = (limit.saturating_sub(self.raw.len() as u64)).min(buf.len() as u64) as usize;
            if room == 0 {
                return self.finish(Ok(self.raw.len()));
            }
            match socket.read(&mut buf[..room]) {
                Ok(0) => return self.finish(Ok(self.raw.len())),
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.finish(Err(e)),
            }
        }
    }

    fn finish(&mut self, read: io::Result<usize>) {
        let sent = std::mem::replace(&mut self.sent, Ok(()));
        self.result = Some(answer(self.addr, &self.raw, sent, read));
        self.socket = None;
    }

    /// Stamp how long it took, once it has its result.
    fn note_done(&mut self) {
        if self.result.is_some() && self.took.is_none() {
            self.took = Some(self.started.elapsed());
        }
    }

    /// Out of time: what arrived may still be a whole answer.
    fn time_out(&mut self) {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
        if !self.connected {
            let addr = self.addr;
            self.result = Some(Err(HttpError::Connect {
                addr,
                source: timed_out(),
            }));
        } else if self.sent.is_err() || self.written == self.out.len() {
            self.finish(Err(timed_out()));
        } else {
            self.sent = Err(timed_out());
            self.finish(Ok(self.raw.len()));
        }
    }
}

/// The most connections [`send_all`] holds open at once: a thousand
/// gateways are probed without nearing the 1024 descriptors a process is
/// commonly allowed.
const IN_FLIGHT: usize = 256;

/// [`send`] every request from this thread, each within `timeout` of its
/// connect: up to [`IN_FLIGHT`] connections are opened and their requests
/// written without waiting, and one `poll` loop reads the answers as they
/// come, opening the next connection as one finishes. For many local
/// servers (the health probe of every gateway) this costs a fraction of a
/// thread per request: no thread start-up, and one wake-up per batch of
/// answers. The results are in the order of `requests`, each with the time
/// from its connect to its answer (or its failure).
pub fn send_all(
    requests: &[(SocketAddr, Request<'_>)],
    timeout: Duration,
    limit: u64,
) -> Vec<(Result<Response, HttpError>, Duration)> {
    let mut xs: Vec<Exchange> = Vec::with_capacity(requests.len());
    loop {
        let open = xs.iter().filter(|x| x.result.is_none()).count();
        for (addr, request) in requests[xs.len()..]
            .iter()
            .take(IN_FLIGHT.saturating_sub(open))
        {
            let mut x = Exchange::start(*addr, request);
            x.note_done();
            xs.push(x);
        }
        let waiting: Vec<(usize, PollFlags)> = xs
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.wants().map(|w| (i, w)))
            .collect();
        if waiting.is_empty() {
            if xs.len() == requests.len() {
                break;
            }
            continue;
        }
        let now = Instant::now();
        let left = |x: &Exchange| (x.started + timeout).saturating_duration_since(now);
        let expired: Vec<usize> = waiting
            .iter()
            .map(|&(i, _)| i)
            .filter(|&i| left(&xs[i]).is_zero())
            .collect();
        if !expired.is_empty() {
            for i in expired {
                xs[i].time_out();
                xs[i].note_done();
            }
            continue;
        }
        let soonest = waiting
            .iter()
            .map(|&(i, _)| left(&xs[i]))
            .min()
            .unwrap_or_default();
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd<'_>> = waiting
                .iter()
                .filter_map(|&(i, w)| xs[i].socket.as_ref().map(|s| PollFd::new(s.as_fd(), w)))
                .collect();
            let ms = PollTimeout::try_from(soonest.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    for &(i, _) in &waiting {
                        let addr = xs[i].addr;
                        xs[i].result = Some(Err(HttpError::Io {
                            addr,
                            source: io::Error::from(e),
                        }));
                        xs[i].note_done();
                    }
                    continue;
                }
            }
            fds.iter()
                .zip(&waiting)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, &(i, _))| i)
                .collect()
        };
        for i in ready {
            xs[i].step(limit);
            xs[i].note_done();
        }
    }
    xs.into_iter()
        .map(|x| {
            let took = x.took.unwrap_or_else(|| x.started.elapsed());
            let result = x.result.unwrap_or_else(|| {
                Err(HttpError::Io {
                    addr: x.addr,
                    source: io::Error::other("no answer"),
                })
            });
            (result, took)
        })
        .collect()
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

    /// A server that answers `answer` to each connection, in turn.
    fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                while !got.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn send_all_answers_each_request_in_order_and_bounds_the_wait() {
        let a = serve(vec!["HTTP/1.1 200 OK\r\n\r\na"]);
        let b = serve(vec!["HTTP/1.1 503 No\r\n\r\nbbbbbbbb"]);
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Accepts (the backlog does) but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let get = Request::get("/health");
        let requests = [
            (a, get),
            (closed, get),
            (silent.local_addr().unwrap(), get),
            (b, get),
        ];
        let started = Instant::now();
        let r = send_all(&requests, Duration::from_millis(300), 21);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.len(), 4);
        let ok = r[0].0.as_ref().unwrap();
        assert_eq!((ok.status, ok.text()), (200, "a".to_string()));
        assert!(
            matches!(r[1].0, Err(HttpError::Connect { .. })),
            "{:?}",
            r[1]
        );
        let err = r[2].0.as_ref().unwrap_err();
        assert!(matches!(err, HttpError::Io { .. }), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
        // Each answer's time is its own: the silent one waited out the timeout.
        assert!(r[2].1 >= Duration::from_millis(300), "{:?}", r[2].1);
        assert!(r[0].1 < r[2].1, "{:?} {:?}", r[0].1, r[2].1);
        // The limit cuts the answer.
        let cut = r[3].0.as_ref().unwrap();
        assert_eq!((cut.status, cut.text()), (503, "bb".to_string()));
        assert!(send_all(&[], Duration::from_millis(10), 1).is_empty());
    }

    #[test]
    fn a_request_goes_out_with_its_connection_when_the_handshake_is_done() {
        // On loopback the handshake completes within the connect call, so
        // the server finds the request with the connection it accepts.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let request = Request::get("/health");
        let x = Exchange::start(addr, &request);
        assert!(x.result.is_none(), "{:?}", x.result);
        assert!(x.connected);
        assert_eq!(x.written, x.out.len());
        let (s, _) = listener.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        let n = (&s).read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"GET /health HTTP/1.1\r\n"));
    }

    #[test]
    fn send_all_holds_at_most_its_window_open() {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
            .unwrap();
        listener.listen(4096).unwrap();
        let listener: TcpListener = listener.into();
        let addr = listener.local_addr().unwrap();
        let n = IN_FLIGHT * 2 + 7;
        let server = std::thread::spawn(move || {
            let answer = |mut s: std::net::TcpStream| {
                s.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 512];
                let mut got = Vec::new();
                while !got.ends_with(b"\r\n\r\n") {
                    let k = s.read(&mut buf).unwrap();
                    assert!(k > 0);
                    got.extend_from_slice(&buf[..k]);
                }
                s.write_all(b"HTTP/1.1 200 OK\r\n\r\nok").unwrap();
            };
            // Answer nobody until the connections stop coming: all that
            // came are the ones the client holds open at once.
            listener.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            let mut last = Instant::now();
            while last.elapsed() < Duration::from_millis(500) {
                match listener.accept() {
                    Ok((s, _)) => {
                        held.push(s);
                        last = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            let most = held.len();
            let rest = n - most;
            held.into_iter().for_each(answer);
            listener.set_nonblocking(false).unwrap();
            for _ in 0..rest {
                answer(listener.accept().unwrap().0);
            }
            most
        });
        let requests = vec![(addr, Request::get("/")); n];
        let r = send_all(&requests, Duration::from_secs(20), 64);
        assert_eq!(r.len(), n);
        for (answer, _) in &r {
            assert_eq!(answer.as_ref().unwrap().text(), "ok");
        }
        let most = server.join().unwrap();
        assert!(
            (1..=IN_FLIGHT).contains(&most),
            "{most} connections open at once"
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
