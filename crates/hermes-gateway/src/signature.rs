//! Webhook request signing, modelled on Slack's and Stripe's schemes.
//!
//! A sender puts two headers on `POST /v1/webhooks/<hook>`:
//!
//! - `X-Hermes-Timestamp: <unix seconds>`
//! - `X-Hermes-Signature: v1=<hex>`, where `<hex>` is the lower-case hex
//!   HMAC-SHA256, keyed with the profile's `HERMES_WEBHOOK_SECRET` (the string
//!   as written in `.env`, as bytes), of `v1:<timestamp>:<raw body>`.
//!   Several comma-separated `v1=` values are accepted (one must match), so a
//!   sender can sign with an old and a new secret during a rotation.
//!
//! The request is refused (401) when a header is missing or malformed, when
//! the timestamp is more than 300 s in the past or in the future, or when no
//! signature matches. Signing the timestamp together with the body bounds the
//! replay window; `Idempotency-Key` makes retries inside it harmless.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-hermes-timestamp";
pub const SIGNATURE_HEADER: &str = "x-hermes-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How far a timestamp may be from the gateway's clock, either way.
pub const TOLERANCE_SECS: u64 = 300;
const VERSION: &str = "v1";

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
    #[error("X-Hermes-Signature must be v1=<64 hex digits>")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("missing or wrong bearer token")]
    BadToken,
}

impl AuthError {
    /// A stable machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingTimestamp | AuthError::MissingSignature => "missing_header",
            AuthError::BadTimestamp => "bad_timestamp",
            AuthError::OutOfWindow(_) => "timestamp_out_of_window",
            AuthError::MalformedSignature => "malformed_signature",
            AuthError::BadSignature => "bad_signature",
            AuthError::BadToken => "bad_token",
        }
    }
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{VERSION}:{timestamp}:").as_bytes());
    mac.update(body);
    mac
}

/// The `X-Hermes-Signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
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

/// Check the signature header against the raw body, in constant time per candidate.
pub fn check_signature(
    secret: &[u8],
    timestamp: u64,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), AuthError> {
    let raw = header.ok_or(AuthError::MissingSignature)?;
    let text = std::str::from_utf8(raw).map_err(|_| AuthError::MalformedSignature)?;
    let mut candidates = Vec::new();
    for part in text.split(',').map(str::trim) {
        let Some(hex) = part.strip_prefix("v1=") else {
            // Unknown versions are skipped, so senders can add future schemes alongside v1.
            continue;
        };
        candidates.push(decode_hex(hex).ok_or(AuthError::MalformedSignature)?);
    }
    if candidates.is_empty() {
        return Err(AuthError::MalformedSignature);
    }
    let expected = mac(secret, timestamp, body);
    if candidates
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
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

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn verify(ts: Option<&str>, sig: Option<&str>, body: &[u8]) -> Result<(), AuthError> {
        let ts = check_timestamp(ts.map(str::as_bytes), NOW)?;
        check_signature(SECRET, ts, sig.map(str::as_bytes), body)
    }

    #[test]
    fn known_vector() {
        // printf %s 'v1:1800000000:{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        assert_eq!(
            sign(SECRET, NOW, br#"{"a":1}"#),
            "v1=982375ec2d6ac192f77803b87066b69d3463b6ed5ff23d6669ee28c974b98eef"
        );
    }

    #[test]
    fn accept_and_reject_matrix() {
        let body = br#"{"event":"push"}"#;
        let ts = NOW.to_string();
        let good = sign(SECRET, NOW, body);
        assert_eq!(verify(Some(&ts), Some(&good), body), Ok(()));

        // Timestamps: at the edges of the window both ways, then past them.
        for skew in [-300i64, 300] {
            let t = (NOW as i64 + skew) as u64;
            let s = sign(SECRET, t, body);
            assert_eq!(verify(Some(&t.to_string()), Some(&s), body), Ok(()));
        }
        for skew in [-301i64, 301, -86_400] {
            let t = (NOW as i64 + skew) as u64;
            let s = sign(SECRET, t, body);
            assert_eq!(
                verify(Some(&t.to_string()), Some(&s), body),
                Err(AuthError::OutOfWindow(skew.unsigned_abs()))
            );
        }
        // A signature made for another timestamp does not carry over.
        let other = sign(SECRET, NOW - 1, body);
        assert_eq!(
            verify(Some(&ts), Some(&other), body),
            Err(AuthError::BadSignature)
        );

        // Missing and malformed headers.
        assert_eq!(
            verify(None, Some(&good), body),
            Err(AuthError::MissingTimestamp)
        );
        assert_eq!(
            verify(Some(&ts), None, body),
            Err(AuthError::MissingSignature)
        );
        for bad_ts in ["", "abc", "-5", "1.5", " 1800000000", "9999999999999"] {
            assert_eq!(
                verify(Some(bad_ts), Some(&good), body),
                Err(AuthError::BadTimestamp),
                "{bad_ts:?}"
            );
        }
        for bad_sig in [
            "",
            "v1=",
            "v1=zz",
            "sha256=abcd",
            &good[3..],
            &format!("{good}0"),
        ] {
            assert_eq!(
                verify(Some(&ts), Some(bad_sig), body),
                Err(AuthError::MalformedSignature),
                "{bad_sig:?}"
            );
        }

        // Wrong secret.
        let wrong = sign(b"another secret", NOW, body);
        assert_eq!(
            verify(Some(&ts), Some(&wrong), body),
            Err(AuthError::BadSignature)
        );

        // The body altered by one byte, anywhere, or one byte longer or shorter.
        for i in 0..body.len() {
            let mut altered = body.to_vec();
            altered[i] ^= 1;
            assert_eq!(
                verify(Some(&ts), Some(&good), &altered),
                Err(AuthError::BadSignature)
            );
        }
        assert_eq!(
            verify(Some(&ts), Some(&good), &body[1..]),
            Err(AuthError::BadSignature)
        );
        let mut longer = body.to_vec();
        longer.push(b' ');
        assert_eq!(
            verify(Some(&ts), Some(&good), &longer),
            Err(AuthError::BadSignature)
        );

        // Rotation: any one of several v1 signatures may match; unknown schemes are skipped.
        let rotated = format!("{wrong}, v0=whatever, {good}");
        assert_eq!(verify(Some(&ts), Some(&rotated), body), Ok(()));
        // Upper-case hex is accepted too.
        let upper = format!("v1={}", good[3..].to_uppercase());
        assert_eq!(verify(Some(&ts), Some(&upper), body), Ok(()));
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
