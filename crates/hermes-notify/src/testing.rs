//! The unit tests' receiver: a loopback listener, plain or TLS, that keeps
//! every request and answers each with one status; and a test CA.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Got {
    pub head: String,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    }
}

pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    /// Plain HTTP on a port of its own.
    pub fn start(status: &'static str) -> Receiver {
        Receiver::on(0, status, None)
    }

    /// On `port` (0: any), over TLS with `tls`; the thread lives as long as the test.
    pub fn on(port: u16, status: &'static str, tls: Option<Arc<ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let keep = got.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                let record = |got| keep.lock().unwrap().push(got);
                match &tls {
                    None => exchange(tcp, &answer, record),
                    Some(config) => {
                        let conn = ServerConnection::new(config.clone()).unwrap();
                        exchange(StreamOwned::new(conn, tcp), &answer, record)
                    }
                };
            }
        });
        Receiver { port, got }
    }

    pub fn url(&self, scheme: &str, host: &str) -> String {
        format!("{scheme}://{host}:{}/hook", self.port)
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Each request's `Idempotency-Key`, in order.
    pub fn keys(&self) -> Vec<String> {
        self.got()
            .iter()
            .filter_map(|g| g.header("idempotency-key"))
            .collect()
    }
}

/// Read one request (head and `Content-Length` body), `record` it, then
/// answer (so the sender sees the answer after the test can see the
/// request); `None` when the connection broke first (a failed handshake).
fn exchange<S: Read + Write>(mut s: S, answer: &str, record: impl FnOnce(Got)) -> Option<()> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut got = Got {
        head,
        body: raw[end + 4..].to_vec(),
    };
    let len: usize = got
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while got.body.len() < len {
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        got.body.extend_from_slice(&buf[..n]);
    }
    record(got);
    s.write_all(answer.as_bytes()).ok()?;
    s.flush().ok()
}

/// A CA made for one test, and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate, PEM: what a target's `ca_file` holds.
    pub pem: String,
    pub server: Arc<ServerConfig>,
}

/// A new CA and a server certificate for `names` (DNS names or addresses).
pub fn test_ca(names: &[&str]) -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: two test CAs are two issuers, as in life.
    static CAS: AtomicUsize = AtomicUsize::new(0);
    let n = CAS.fetch_add(1, Ordering::SeqCst);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("hermes test CA {n}"));
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TestCa {
        pem: ca.pem(),
        server: Arc::new(server),
    }
}
