//! The CLI's webhook commands call a running gateway with hermes-core's HTTP
//! client; a refused connection says how to check the gateway.

use std::time::Duration;

use hermes_core::http::{self, HttpError, Request};

pub use hermes_core::http::Response;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} (is the gateway running? `hermes gateway status`)")]
    Connect(#[source] HttpError),
    #[error(transparent)]
    Http(HttpError),
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, ClientError> {
    let request = Request {
        method,
        path,
        headers,
        body,
    };
    http::request(addr, &request, timeout).map_err(|e| match e {
        HttpError::Resolve { .. } | HttpError::Connect { .. } => ClientError::Connect(e),
        other => ClientError::Http(other),
    })
}
