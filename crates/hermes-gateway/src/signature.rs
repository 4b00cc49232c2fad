//! Webhook request signing, modelled on Slack's and Stripe's schemes.
//!
//! A sender puts two headers on `POST /v1/webhooks/<hook>`:
//!
//! - `X-Hermes-Timestamp: <unix seconds>`
//! - `X-Hermes-Signature: v2=<hex>`, where `<hex>` is the lower-case hex
//!   HMAC-SHA256, keyed with the profile's `HERMES_WEBHOOK_SECRET` (the string
//!   as written in `.env`, as bytes), of
//!   `v2:<timestamp>:<Idempotency-Key, or nothing>\n<raw body>`.
//!   A key never holds a newline, so key and body cannot trade bytes.
//!   Several comma-separated `v2=` values are accepted (one must match), so a
//!   sender can sign with an old and a new secret during a rotation.
//!
//! The request is refused (401) when a header is missing or malformed, when
//! the timestamp is more than 300 s in the past or in the future, or when no
//! signature matches; the headers are checked before a byte of the body is
//! read. Signing the key stops a captured request from being replayed under
//! another key; [`crate::replay`] refuses the same signature twice.
//!
//! `v1` (which left the key unsigned) is refused with a message saying to sign
//! with `v2`: a `v1` request could be replayed with any key, and hermes has no
//! senders outside this repository that still need it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-hermes-timestamp";
pub const SIGNATURE_HEADER: &str = "x-hermes-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How far a timestamp may be from the gateway's clock, either way.
pub const TOLERANCE_SECS: u64 = 300;
const VERSION: &str = "v2";
/// At most this many signatures in one header (a rotation needs two).
const MAX_CANDIDATES: usize = 4;

/// A raw HMAC-SHA256 tag.
pub type Tag = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing X-Hermes-Timestamp header")]
    MissingTimestamp,
    #[error("missing X-Hermes-Signature header")]
    MissingSignature,
    #[error("X-Hermes-Timestamp must be whole seconds since the Unix epoch")]
    BadTimestamp,
    #[error("timestamp is {0} s away from the gateway's clock (limit {TOLERANCE_SECS} s)")]
    OutOfWindow(u64),
    #[error(
        "X-Hermes-Signature must be v2=<64 hex digits> (at most {MAX_CANDIDATES}, comma-separated)"
    )]
    MalformedSignature,
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
            AuthError::MissingTimestamp | AuthError::MissingSignature => "missing_header",
            AuthError::BadTimestamp => "bad_timestamp",
            AuthError::OutOfWindow(_) | AuthError::Forgotten => "timestamp_out_of_window",
            AuthError::MalformedSignature => "malformed_signature",
            AuthError::OldVersion => "old_signature_version",
            AuthError::BadSignature => "bad_signature",
            AuthError::Replayed => "replayed",
            AuthError::BadToken => "bad_token",
        }
    }
}

fn mac(secret: &[u8], timestamp: u64, key: Option<&str>, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{VERSION}:{timestamp}:{}\n", key.unwrap_or("")).as_bytes());
    mac.update(body);
    mac
}

/// The `X-Hermes-Signature` value for `body` sent at `timestamp` with `key`
/// as its `Idempotency-Key` (if any).
pub fn sign(secret: &[u8], timestamp: u64, key: Option<&str>, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, key, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{VERSION}={hex}")
}

/// Check the timestamp header before the body is read; returns the timestamp.
pub fn check_timestamp(header: Option<&[u8]>, now_secs: u64) -> Result<u64, AuthError> {
    let raw = header.ok_or(AuthError::MissingTimestamp)?;
    let text = std::str::from_utf8(raw).map_err(|_| AuthError::BadTimestamp)?;
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::BadTimestamp);
    }
    let ts: u64 = text.parse().map_err(|_| AuthError::BadTimestamp)?;
    let skew = ts.abs_diff(now_secs);
    if skew > TOLERANCE_SECS {
        return Err(AuthError::OutOfWindow(skew));
    }
    Ok(ts)
}

/// The `v2` tags of the signature header, checked before the body is read.
/// Unknown schemes are skipped, so senders can add future ones alongside `v2`.
pub fn parse_signatures(header: Option<&[u8]>) -> Result<Vec<Tag>, AuthError> {
    let raw = header.ok_or(AuthError::MissingSignature)?;
    let text = std::str::from_utf8(raw).map_err(|_| AuthError::MalformedSignature)?;
    let mut tags = Vec::new();
    let mut old = false;
    for part in text.split(',').map(str::trim) {
        if part.starts_with("v1=") {
            old = true;
            continue;
        }
        let Some(hex) = part.strip_prefix("v2=") else {
            continue;
        };
        if tags.len() == MAX_CANDIDATES {
            return Err(AuthError::MalformedSignature);
        }
        tags.push(decode_hex(hex).ok_or(AuthError::MalformedSignature)?);
    }
    match (tags.is_empty(), old) {
        (false, _) => Ok(tags),
        (true, true) => Err(AuthError::OldVersion),
        (true, false) => Err(AuthError::MalformedSignature),
    }
}

/// Check the tags against the raw body, in constant time per candidate;
/// returns the tag that matched.
pub fn verify(
    secret: &[u8],
    timestamp: u64,
    key: Option<&str>,
    tags: &[Tag],
    body: &[u8],
) -> Result<Tag, AuthError> {
    let expected = mac(secret, timestamp, key, body);
    tags.iter()
        .find(|tag| expected.clone().verify_slice(&tag[..]).is_ok())
        .copied()
        .ok_or(AuthError::BadSignature)
}

/// `Authorization: Bearer <secret>`, compared in constant time.
pub fn check_bearer(secret: &[u8], header: Option<&[u8]>) -> Result<(), AuthError> {
    let token = header
        .and_then(|h| h.strip_prefix(b"Bearer "))
        .ok_or(AuthError::BadToken)?;
    if token.len() == secret.len()
        && token.iter().zip(secret).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn check(
        ts: Option<&str>,
        sig: Option<&str>,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let ts = check_timestamp(ts.map(str::as_bytes), NOW)?;
        let tags = parse_signatures(sig.map(str::as_bytes))?;
        verify(SECRET, ts, key, &tags, body).map(|_| ())
    }

    fn verify_unkeyed(ts: Option<&str>, sig: Option<&str>, body: &[u8]) -> Result<(), AuthError> {
        check(ts, sig, None, body)
    }

    #[test]
    fn known_vectors() {
        // printf 'v2:1800000000:\n{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        assert_eq!(
            sign(SECRET, NOW, None, br#"{"a":1}"#),
            "v2=3f97e1f9193a5bae88482f5e62ac5eaf56473628b8b22166eac02e0d04f6e172"
        );
        // printf 'v2:1800000000:k-1\n{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        assert_eq!(
            sign(SECRET, NOW, Some("k-1"), br#"{"a":1}"#),
            "v2=f8b76622ce586fdbeec1aad2a86f229263a750461bff13ed8400bbb6502a4fa8"
        );
    }

    #[test]
    fn the_key_is_signed() {
        let body = b"payload";
        let ts = NOW.to_string();
        let keyed = sign(SECRET, NOW, Some("k-1"), body);
        assert_eq!(check(Some(&ts), Some(&keyed), Some("k-1"), body), Ok(()));
        // The captured request replayed under another key, without one, or with the
        // key and the body trading bytes: none verifies.
        for (key, body) in [
            (Some("k-2"), &body[..]),
            (None, &body[..]),
            (Some("k-1p"), &b"ayload"[..]),
        ] {
            assert_eq!(
                check(Some(&ts), Some(&keyed), key, body),
                Err(AuthError::BadSignature),
                "{key:?}"
            );
        }
        let unkeyed = sign(SECRET, NOW, None, body);
        assert_eq!(
            check(Some(&ts), Some(&unkeyed), Some("k-1"), body),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn v1_is_refused_with_a_pointer_to_v2() {
        let v1 = "v1=982375ec2d6ac192f77803b87066b69d3463b6ed5ff23d6669ee28c974b98eef";
        assert_eq!(
            parse_signatures(Some(v1.as_bytes())),
            Err(AuthError::OldVersion)
        );
        // Alongside a v2 value, the v1 one is ignored.
        let both = format!("{v1},{}", sign(SECRET, NOW, None, b"x"));
        assert_eq!(parse_signatures(Some(both.as_bytes())).unwrap().len(), 1);
    }

    #[test]
    fn accept_and_reject_matrix() {
        let body = br#"{"event":"push"}"#;
        let ts = NOW.to_string();
        let good = sign(SECRET, NOW, None, body);
        assert_eq!(verify_unkeyed(Some(&ts), Some(&good), body), Ok(()));

        // Timestamps: at the edges of the window both ways, then past them.
        for skew in [-300i64, 300] {
            let t = (NOW as i64 + skew) as u64;
            let s = sign(SECRET, t, None, body);
            assert_eq!(verify_unkeyed(Some(&t.to_string()), Some(&s), body), Ok(()));
        }
        for skew in [-301i64, 301, -86_400] {
            let t = (NOW as i64 + skew) as u64;
            let s = sign(SECRET, t, None, body);
            assert_eq!(
                verify_unkeyed(Some(&t.to_string()), Some(&s), body),
                Err(AuthError::OutOfWindow(skew.unsigned_abs()))
            );
        }
        // A signature made for another timestamp does not carry over.
        let other = sign(SECRET, NOW - 1, None, body);
        assert_eq!(
            verify_unkeyed(Some(&ts), Some(&other), body),
            Err(AuthError::BadSignature)
        );

        // Missing and malformed headers.
        assert_eq!(
            verify_unkeyed(None, Some(&good), body),
            Err(AuthError::MissingTimestamp)
        );
        assert_eq!(
            verify_unkeyed(Some(&ts), None, body),
            Err(AuthError::MissingSignature)
        );
        for bad_ts in ["", "abc", "-5", "1.5", " 1800000000", "9999999999999"] {
            assert_eq!(
                verify_unkeyed(Some(bad_ts), Some(&good), body),
                Err(AuthError::BadTimestamp),
                "{bad_ts:?}"
            );
        }
        let too_many = [good.as_str(); MAX_CANDIDATES + 1].join(",");
        for bad_sig in [
            "",
            "v2=",
            "v2=zz",
            "sha256=abcd",
            &good[3..],
            &format!("{good}0"),
            &too_many,
        ] {
            assert_eq!(
                verify_unkeyed(Some(&ts), Some(bad_sig), body),
                Err(AuthError::MalformedSignature),
                "{bad_sig:?}"
            );
        }

        // Wrong secret.
        let wrong = sign(b"another secret", NOW, None, body);
        assert_eq!(
            verify_unkeyed(Some(&ts), Some(&wrong), body),
            Err(AuthError::BadSignature)
        );

        // The body altered by one byte, anywhere, or one byte longer or shorter.
        for i in 0..body.len() {
            let mut altered = body.to_vec();
            altered[i] ^= 1;
            assert_eq!(
                verify_unkeyed(Some(&ts), Some(&good), &altered),
                Err(AuthError::BadSignature)
            );
        }
        assert_eq!(
            verify_unkeyed(Some(&ts), Some(&good), &body[1..]),
            Err(AuthError::BadSignature)
        );
        let mut longer = body.to_vec();
        longer.push(b' ');
        assert_eq!(
            verify_unkeyed(Some(&ts), Some(&good), &longer),
            Err(AuthError::BadSignature)
        );

        // Rotation: any one of several v2 signatures may match; unknown schemes are skipped.
        let rotated = format!("{wrong}, v0=whatever, {good}");
        assert_eq!(verify_unkeyed(Some(&ts), Some(&rotated), body), Ok(()));
        // Upper-case hex is accepted too.
        let upper = format!("v2={}", good[3..].to_uppercase());
        assert_eq!(verify_unkeyed(Some(&ts), Some(&upper), body), Ok(()));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            check_bearer(SECRET, Some(b"Bearer 0123456789abcdef")),
            Ok(())
        );
        for bad in [
            &b"Bearer 0123456789abcdeF"[..],
            b"Bearer ",
            b"0123456789abcdef",
            b"Basic x",
            b"Bearer 0123456789abcdef0",
        ] {
            assert_eq!(check_bearer(SECRET, Some(bad)), Err(AuthError::BadToken));
        }
        assert_eq!(check_bearer(SECRET, None), Err(AuthError::BadToken));
    }
}
