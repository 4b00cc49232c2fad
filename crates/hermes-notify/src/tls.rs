//! The TLS client of `https://` targets: rustls (ring), the system's CA
//! bundle or the target's own `ca_file`, the certificate checked against the
//! URL's host.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hermes_core::fsutil;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Debian's bundle, from the `ca-certificates` package.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The CA file to trust: the target's own, else `SSL_CERT_FILE` (as for
/// OpenSSL), else [`SYSTEM_BUNDLE`].
pub fn bundle(ca_file: Option<&Path>) -> PathBuf {
    ca_file.map(Path::to_path_buf).unwrap_or_else(|| {
        std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSTEM_BUNDLE))
    })
}

/// The certificates of the PEM file at `path` as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let bytes = fsutil::read(path).map_err(|e| {
        if e.is_not_found() && path == Path::new(SYSTEM_BUNDLE) {
            format!("no CA bundle at {SYSTEM_BUNDLE}: install ca-certificates or set ca_file")
        } else {
            e.to_string()
        }
    })?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("{}: unreadable PEM: {e}", path.display()))?;
        // A bundle may hold a certificate webpki cannot use; the others still count.
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(format!(
            "{}: no usable CA certificate in it",
            path.display()
        ));
    }
    Ok(store)
}

/// A client trusting the CAs in `ca` and nothing else. Built per attempt:
/// notifications are rare, and an edited CA file counts at the next try.
pub fn config(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS session over `tcp`, handshake done (within `tcp`'s timeouts): a
/// certificate not signed by the trusted CAs or not for `host` fails here,
/// with rustls' reason and the CA file that was used.
pub fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
    ca: &Path,
) -> Result<impl Read + Write, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host} is not a valid TLS server name"))?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| {
            let certificate = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            if certificate {
                format!(
                    "TLS handshake with {host} failed: {e} (trusted CAs: {})",
                    ca.display()
                )
            } else {
                format!("TLS handshake with {host} failed: {e}")
            }
        })?;
    }
    Ok(StreamOwned::new(conn, tcp))
}
