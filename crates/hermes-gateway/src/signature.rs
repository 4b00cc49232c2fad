//! Webhook request signatures, one scheme per hook (`webhooks.hooks.<hook>.scheme`
//! in `config.yaml`), each verified the way its sender documents it. Every tag
//! is an HMAC-SHA256 of the raw body bytes with something in front:
//!
//! | scheme | headers | signed bytes | tag | delivery id |
//! |---|---|---|---|---|
//! | `hermes` (default) | `X-Hermes-Timestamp`, `X-Hermes-Signature: v2=<hex>` | `v2:<ts>:<Idempotency-Key or nothing>\n<body>` | hex | `Idempotency-Key` (signed) |
//! | `github` | `X-Hub-Signature-256: sha256=<hex>` | `<body>` | hex | `X-GitHub-Delivery` |
//! | `stripe` | `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]` | `<ts>.<body>` | hex | the body's `id` |
//! | `slack` | `X-Slack-Request-Timestamp`, `X-Slack-Signature: v0=<hex>` | `v0:<ts>:<body>` | hex | the body's `event_id` |
//! | `standard` | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>[ v1,…]` (or `svix-*`) | `<id>.<ts>.<body>` | base64 | `webhook-id` (signed) |
//!
//! The HMAC key is the secret's bytes as written, except for `standard`,
//! whose `whsec_<base64>` secret is keyed with the decoded bytes.
//!
//! Every header is judged before a byte of the body is read: a missing or
//! malformed header, a timestamp more than [`TOLERANCE_SECS`] from the
//! gateway's clock, or another scheme's headers are refused at once (401).
//! Several signatures are accepted where the scheme allows them (a secret
//! roll), at most [`MAX_CANDIDATES`]; one must match. Tags are compared with
//! [`hermes_core::ct::ct_eq`]. GitHub's signature covers neither a time nor
//! the delivery id: a captured GitHub delivery can be replayed, and is stored
//! once only if its `X-GitHub-Delivery` is left as it was.
//!
//! A verified Slack `url_verification` request is answered `200
//! {"challenge": …}` and not stored, as Slack requires of a Request URL.
//!
//! `hermes` `v1` (which left the key unsigned) is refused with a message saying
//! to sign with `v2`: a `v1` request could be replayed with any key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
pub use hermes_core::config::Scheme;
use hermes_core::ct::ct_eq;
use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use sha2::Sha256;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How far a timestamp may be from the gateway's clock, either way (every
/// scheme with a timestamp documents five minutes).
pub const TOLERANCE_SECS: u64 = 300;
/// At most this many signatures in one header (a rotation needs two).
pub const MAX_CANDIDATES: usize = 4;
/// The prefix of a Standard Webhooks secret.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// A raw HMAC-SHA256 tag.
pub type Tag = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{0} must be whole seconds since the Unix epoch")]
    BadTimestamp(&'static str),
    #[error("timestamp is {0} s away from the gateway's clock (limit {TOLERANCE_SECS} s)")]
    OutOfWindow(u64),
    #[error("{0}")]
    MalformedSignature(&'static str),
    #[error("this hook takes {expected} signatures but the request is signed for {found}: set webhooks.hooks.<hook>.scheme in the profile's config.yaml, or sign for {expected}")]
    WrongScheme { expected: Scheme, found: Scheme },
    #[error("{0} must be 1 to 255 visible ASCII characters")]
    BadDeliveryId(&'static str),
    #[error(
        "v1 signatures are no longer accepted (they do not cover Idempotency-Key): sign with v2"
    )]
    OldVersion,
    #[error("signature does not match")]
    BadSignature,
    #[error("this signed request was already received; a new attempt must be signed again")]
    Replayed,
    #[error("timestamp is older than the signatures the gateway remembers (it restarted or shed old entries since): sign the request again")]
    Forgotten,
    #[error("missing or wrong bearer token")]
    BadToken,
}

impl AuthError {
    /// A stable machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing_header",
            AuthError::BadTimestamp(_) => "bad_timestamp",
            AuthError::OutOfWindow(_) | AuthError::Forgotten => "timestamp_out_of_window",
            AuthError::MalformedSignature(_) => "malformed_signature",
            AuthError::WrongScheme { .. } => "wrong_scheme",
            AuthError::BadDeliveryId(_) => "bad_idempotency_key",
            AuthError::OldVersion => "old_signature_version",
            AuthError::BadSignature => "bad_signature",
            AuthError::Replayed => "replayed",
            AuthError::BadToken => "bad_token",
        }
    }
}

/// A secret that cannot key its hook's scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error(
        "a Standard Webhooks secret is {STANDARD_SECRET_PREFIX}<base64>, as the sender shows it"
    )]
    NotStandard,
}

/// The HMAC key for `secret` under `scheme`.
pub fn signing_key(scheme: Scheme, secret: &str) -> Result<Vec<u8>, SecretError> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    match scheme {
        Scheme::Standard => secret
            .strip_prefix(STANDARD_SECRET_PREFIX)
            .and_then(|b64| BASE64.decode(b64).ok())
            .filter(|key| !key.is_empty())
            .ok_or(SecretError::NotStandard),
        _ => Ok(secret.as_bytes().to_vec()),
    }
}

/// What a request's headers say, judged before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub timestamp: Option<u64>,
    pub tags: Vec<Tag>,
    /// The delivery id the headers carry, the idempotency key of the event.
    pub key: Option<String>,
}

// The headers each scheme signs with (lower case, as hyper stores them).
const HERMES_TIMESTAMP: &str = "x-hermes-timestamp";
const HERMES_SIGNATURE: &str = "x-hermes-signature";
const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const GITHUB_DELIVERY: &str = "x-github-delivery";
const STRIPE_SIGNATURE: &str = "stripe-signature";
const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
const SLACK_SIGNATURE: &str = "x-slack-signature";
const STANDARD_ID: [&str; 2] = ["webhook-id", "svix-id"];
const STANDARD_TIMESTAMP: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
const STANDARD_SIGNATURE: [&str; 2] = ["webhook-signature", "svix-signature"];

/// The header that tells each scheme's requests apart.
fn signature_headers(scheme: Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::Hermes => &[HERMES_SIGNATURE],
        Scheme::Github => &[GITHUB_SIGNATURE],
        Scheme::Stripe => &[STRIPE_SIGNATURE],
        Scheme::Slack => &[SLACK_SIGNATURE],
        Scheme::Standard => &STANDARD_SIGNATURE,
    }
}

/// A header's display name, for messages.
fn display(name: &'static str) -> &'static str {
    match name {
        HERMES_TIMESTAMP => "X-Hermes-Timestamp",
        HERMES_SIGNATURE => "X-Hermes-Signature",
        GITHUB_SIGNATURE => "X-Hub-Signature-256",
        GITHUB_DELIVERY => "X-GitHub-Delivery",
        STRIPE_SIGNATURE => "Stripe-Signature",
        SLACK_TIMESTAMP => "X-Slack-Request-Timestamp",
        SLACK_SIGNATURE => "X-Slack-Signature",
        IDEMPOTENCY_HEADER => "Idempotency-Key",
        other => other,
    }
}

fn header<'a>(headers: &'a HeaderMap, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|name| {
        let value = headers.get(*name)?;
        // A value that is not text is as good as malformed; "" makes the parsers say so.
        Some((*name, value.to_str().unwrap_or("")))
    })
}

/// A required header, or the reason it is missing (another scheme's signature, or none).
fn required<'a>(
    headers: &'a HeaderMap,
    scheme: Scheme,
    names: &[&'static str],
) -> Result<&'a str, AuthError> {
    if let Some((_, value)) = header(headers, names) {
        return Ok(value);
    }
    let other = Scheme::ALL.into_iter().find(|s| {
        *s != scheme
            && signature_headers(*s)
                .iter()
                .any(|h| headers.contains_key(*h))
    });
    Err(match other {
        Some(found) => AuthError::WrongScheme {
            expected: scheme,
            found,
        },
        None => AuthError::MissingHeader(display(names[0])),
    })
}

fn timestamp(text: &str, name: &'static str, now_secs: u64) -> Result<u64, AuthError> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::BadTimestamp(display(name)));
    }
    let ts: u64 = text
        .parse()
        .map_err(|_| AuthError::BadTimestamp(display(name)))?;
    let skew = ts.abs_diff(now_secs);
    if skew > TOLERANCE_SECS {
        return Err(AuthError::OutOfWindow(skew));
    }
    Ok(ts)
}

fn delivery_id(value: &str, name: &'static str) -> Result<String, AuthError> {
    if hermes_inbox::valid_key(value) {
        Ok(value.to_string())
    } else {
        Err(AuthError::BadDeliveryId(display(name)))
    }
}

/// Tags from `prefix<encoded>` parts; parts with another prefix are skipped.
fn tags<'a>(
    parts: impl Iterator<Item = &'a str>,
    prefix: &str,
    decode: fn(&str) -> Option<Tag>,
    malformed: &'static str,
) -> Result<Vec<Tag>, AuthError> {
    let mut tags = Vec::new();
    for part in parts {
        let Some(encoded) = part.strip_prefix(prefix) else {
            continue;
        };
        if tags.len() == MAX_CANDIDATES {
            return Err(AuthError::MalformedSignature(malformed));
        }
        tags.push(decode(encoded).ok_or(AuthError::MalformedSignature(malformed))?);
    }
    if tags.is_empty() {
        return Err(AuthError::MalformedSignature(malformed));
    }
    Ok(tags)
}

/// Judge a request's headers under `scheme`, before its body is read.
pub fn judge(scheme: Scheme, headers: &HeaderMap, now_secs: u64) -> Result<Head, AuthError> {
    match scheme {
        Scheme::Hermes => {
            const MALFORMED: &str =
                "X-Hermes-Signature must be v2=<64 hex digits> (at most 4, comma-separated)";
            let ts = required(headers, scheme, &[HERMES_TIMESTAMP])?;
            let sig = required(headers, scheme, &[HERMES_SIGNATURE])?;
            let timestamp = timestamp(ts, HERMES_TIMESTAMP, now_secs)?;
            let parts: Vec<&str> = sig.split(',').map(str::trim).collect();
            let tags = tags(parts.iter().copied(), "v2=", decode_hex, MALFORMED).map_err(|e| {
                let v1_only = parts.iter().any(|p| p.starts_with("v1="))
                    && !parts.iter().any(|p| p.starts_with("v2="));
                if v1_only {
                    AuthError::OldVersion
                } else {
                    e
                }
            })?;
            let key = header(headers, &[IDEMPOTENCY_HEADER])
                .map(|(name, value)| delivery_id(value, name))
                .transpose()?;
            Ok(Head {
                timestamp: Some(timestamp),
                tags,
                key,
            })
        }
        Scheme::Github => {
            const MALFORMED: &str = "X-Hub-Signature-256 must be sha256=<64 hex digits>";
            let sig = required(headers, scheme, &[GITHUB_SIGNATURE])?;
            let tags = tags(
                std::iter::once(sig.trim()),
                "sha256=",
                decode_hex,
                MALFORMED,
            )?;
            let key = header(headers, &[GITHUB_DELIVERY])
                .map(|(name, value)| delivery_id(value, name))
                .transpose()?;
            Ok(Head {
                timestamp: None,
                tags,
                key,
            })
        }
        Scheme::Stripe => {
            const MALFORMED: &str =
                "Stripe-Signature must be t=<unix seconds>,v1=<64 hex digits>[,v1=…] (at most 4 v1)";
            let sig = required(headers, scheme, &[STRIPE_SIGNATURE])?;
            let parts: Vec<&str> = sig.split(',').map(str::trim).collect();
            let mut stamps = parts.iter().filter_map(|p| p.strip_prefix("t="));
            let (Some(ts), None) = (stamps.next(), stamps.next()) else {
                return Err(AuthError::MalformedSignature(MALFORMED));
            };
            let timestamp = timestamp(ts, STRIPE_SIGNATURE, now_secs)?;
            let tags = tags(parts.iter().copied(), "v1=", decode_hex, MALFORMED)?;
            Ok(Head {
                timestamp: Some(timestamp),
                tags,
                key: None,
            })
        }
        Scheme::Slack => {
            const MALFORMED: &str = "X-Slack-Signature must be v0=<64 hex digits>";
            let sig = required(headers, scheme, &[SLACK_SIGNATURE])?;
            let ts = required(headers, scheme, &[SLACK_TIMESTAMP])?;
            let timestamp = timestamp(ts, SLACK_TIMESTAMP, now_secs)?;
            let tags = tags(std::iter::once(sig.trim()), "v0=", decode_hex, MALFORMED)?;
            Ok(Head {
                timestamp: Some(timestamp),
                tags,
                key: None,
            })
        }
        Scheme::Standard => {
            const MALFORMED: &str =
                "webhook-signature must be v1,<base64 of 32 bytes> (at most 4, space-separated)";
            let sig = required(headers, scheme, &STANDARD_SIGNATURE)?;
            let id = required(headers, scheme, &STANDARD_ID)?;
            let ts = required(headers, scheme, &STANDARD_TIMESTAMP)?;
            let timestamp = timestamp(ts, STANDARD_TIMESTAMP[0], now_secs)?;
            let key = delivery_id(id, STANDARD_ID[0])?;
            let tags = tags(sig.split(' '), "v1,", decode_base64, MALFORMED)?;
            Ok(Head {
                timestamp: Some(timestamp),
                tags,
                key: Some(key),
            })
        }
    }
}

fn mac(scheme: Scheme, key: &[u8], timestamp: u64, id: Option<&str>, body: &[u8]) -> Tag {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    match scheme {
        Scheme::Hermes => mac.update(format!("v2:{timestamp}:{}\n", id.unwrap_or("")).as_bytes()),
        Scheme::Github => {}
        Scheme::Stripe => mac.update(format!("{timestamp}.").as_bytes()),
        Scheme::Slack => mac.update(format!("v0:{timestamp}:").as_bytes()),
        Scheme::Standard => mac.update(format!("{}.{timestamp}.", id.unwrap_or("")).as_bytes()),
    }
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Check the head's tags against the raw body; returns the tag that matched.
pub fn verify(scheme: Scheme, key: &[u8], head: &Head, body: &[u8]) -> Result<Tag, AuthError> {
    let expected = mac(
        scheme,
        key,
        head.timestamp.unwrap_or(0),
        head.key.as_deref(),
        body,
    );
    head.tags
        .iter()
        .find(|tag| ct_eq(&tag[..], &expected))
        .copied()
        .ok_or(AuthError::BadSignature)
}

/// The headers `scheme`'s sender would put on `body` sent at `timestamp` with
/// delivery id `id` (for `hermes` the optional `Idempotency-Key`; `github` and
/// `standard` send it in their own header; `stripe` and `slack` carry it in the body).
pub fn sign(
    scheme: Scheme,
    key: &[u8],
    timestamp: u64,
    id: Option<&str>,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let tag = mac(scheme, key, timestamp, id, body);
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let mut headers = match scheme {
        Scheme::Hermes => vec![
            ("X-Hermes-Timestamp", timestamp.to_string()),
            ("X-Hermes-Signature", format!("v2={hex}")),
        ],
        Scheme::Github => vec![("X-Hub-Signature-256", format!("sha256={hex}"))],
        Scheme::Stripe => vec![("Stripe-Signature", format!("t={timestamp},v1={hex}"))],
        Scheme::Slack => vec![
            ("X-Slack-Request-Timestamp", timestamp.to_string()),
            ("X-Slack-Signature", format!("v0={hex}")),
        ],
        Scheme::Standard => vec![
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", format!("v1,{}", BASE64.encode(tag))),
        ],
    };
    match (scheme, id) {
        (Scheme::Hermes, Some(id)) => headers.push(("Idempotency-Key", id.to_string())),
        (Scheme::Github, Some(id)) => headers.push(("X-GitHub-Delivery", id.to_string())),
        (Scheme::Standard, id) => headers.push(("webhook-id", id.unwrap_or("").to_string())),
        _ => {}
    }
    headers
}

/// The sender's delivery id inside a verified body, for schemes whose headers
/// carry none: Stripe's event `id`, Slack's `event_id`.
pub fn body_delivery_id(scheme: Scheme, body: &[u8]) -> Option<String> {
    let field = match scheme {
        Scheme::Stripe => "id",
        Scheme::Slack => "event_id",
        _ => return None,
    };
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value[field]
        .as_str()
        .filter(|id| hermes_inbox::valid_key(id))
        .map(str::to_string)
}

/// The challenge of Slack's `url_verification` request (sent, signed, when
/// an app's Request URL is saved), which must be echoed back.
pub fn slack_challenge(scheme: Scheme, body: &[u8]) -> Option<String> {
    if scheme != Scheme::Slack {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    (value["type"] == "url_verification")
        .then(|| value["challenge"].as_str().map(str::to_string))
        .flatten()
}

/// `Authorization: Bearer <secret>`, compared in constant time.
pub fn check_bearer(secret: &[u8], header: Option<&[u8]>) -> Result<(), AuthError> {
    let token = header
        .and_then(|h| h.strip_prefix(b"Bearer "))
        .ok_or(AuthError::BadToken)?;
    if ct_eq(token, secret) {
        Ok(())
    } else {
        Err(AuthError::BadToken)
    }
}

fn decode_hex(hex: &str) -> Option<Tag> {
    if hex.len() != 64 {
        return None;
    }
    let mut tag = [0u8; 32];
    for (i, byte) in tag.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(tag)
}

fn decode_base64(b64: &str) -> Option<Tag> {
    BASE64.decode(b64).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests;
