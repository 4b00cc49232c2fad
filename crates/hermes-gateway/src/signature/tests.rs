use hyper::header::{HeaderName, HeaderValue};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn signed(scheme: Scheme, key: &[u8], ts: u64, id: Option<&str>, body: &[u8]) -> HeaderMap {
    let pairs = sign(scheme, key, ts, id, body);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers(&pairs)
}

fn check(scheme: Scheme, key: &[u8], map: &HeaderMap, body: &[u8]) -> Result<Head, AuthError> {
    let head = judge(scheme, map, NOW)?;
    verify(scheme, key, &head, body)?;
    Ok(head)
}

/// The hermes scheme with its two headers given as text.
fn hermes(
    ts: Option<&str>,
    sig: Option<&str>,
    key: Option<&str>,
    body: &[u8],
) -> Result<(), AuthError> {
    let mut pairs = Vec::new();
    if let Some(ts) = ts {
        pairs.push(("X-Hermes-Timestamp", ts));
    }
    if let Some(sig) = sig {
        pairs.push(("X-Hermes-Signature", sig));
    }
    if let Some(key) = key {
        pairs.push(("Idempotency-Key", key));
    }
    check(Scheme::Hermes, SECRET, &headers(&pairs), body).map(|_| ())
}

fn hermes_sig(ts: u64, key: Option<&str>, body: &[u8]) -> String {
    sign(Scheme::Hermes, SECRET, ts, key, body)[1].1.clone()
}

#[test]
fn known_vectors() {
    // printf 'v2:1800000000:\n{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
    assert_eq!(
        hermes_sig(NOW, None, br#"{"a":1}"#),
        "v2=3f97e1f9193a5bae88482f5e62ac5eaf56473628b8b22166eac02e0d04f6e172"
    );
    // printf 'v2:1800000000:k-1\n{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
    assert_eq!(
        hermes_sig(NOW, Some("k-1"), br#"{"a":1}"#),
        "v2=f8b76622ce586fdbeec1aad2a86f229263a750461bff13ed8400bbb6502a4fa8"
    );
    // GitHub's documented example.
    assert_eq!(
        sign(
            Scheme::Github,
            b"It's a Secret to Everybody",
            0,
            None,
            b"Hello, World!"
        ),
        [(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_string()
        )]
    );
    // printf '1800000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
    assert_eq!(
        sign(Scheme::Stripe, b"whsec_test", NOW, None, br#"{"a":1}"#)[0].1,
        "t=1800000000,v1=7de5e6bbc99c65ef0ddccacd4308ba03a5a12eb8859a0db070c5ca731c4fdc19"
    );
    // printf 'v0:1531420618:token=…' | openssl dgst -sha256 -hmac 8f74…85a5
    assert_eq!(
        sign(
            Scheme::Slack,
            b"8f742231b10e8888abcd99yyyzzz85a5",
            1_531_420_618,
            None,
            b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J"
        )[1]
        .1,
        "v0=bca5eef5dd737ed259b428b18cd24f679baa18c3fc5f1cb2a6ac9f03e717969a"
    );
    // The Standard Webhooks reference libraries' test vector.
    let key = signing_key(Scheme::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(
        sign(
            Scheme::Standard,
            &key,
            1_614_265_330,
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            br#"{"test": 2432232314}"#
        ),
        [
            ("webhook-timestamp", "1614265330".to_string()),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
            ),
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".to_string()),
        ]
    );
}

#[test]
fn secrets_key_their_scheme() {
    assert_eq!(signing_key(Scheme::Github, " abc\n"), Ok(b"abc".to_vec()));
    assert_eq!(signing_key(Scheme::Stripe, ""), Err(SecretError::Empty));
    for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!"] {
        assert_eq!(
            signing_key(Scheme::Standard, bad),
            Err(SecretError::NotStandard),
            "{bad}"
        );
    }
}

#[test]
fn every_scheme_round_trips_and_refuses_a_changed_byte_or_secret() {
    let body = br#"{"id":"evt_1","event_id":"Ev1","n":1}"#;
    for scheme in Scheme::ALL {
        let key = match scheme {
            Scheme::Standard => signing_key(scheme, "whsec_MDEyMzQ1Njc4OWFiY2RlZg==").unwrap(),
            _ => SECRET.to_vec(),
        };
        let map = signed(scheme, &key, NOW, Some("d-1"), body);
        let head = check(scheme, &key, &map, body).unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let expected_key = matches!(scheme, Scheme::Hermes | Scheme::Github | Scheme::Standard)
            .then(|| "d-1".to_string());
        assert_eq!(head.key, expected_key, "{scheme}");
        for i in 0..body.len() {
            let mut altered = body.to_vec();
            altered[i] ^= 1;
            assert_eq!(
                check(scheme, &key, &map, &altered).unwrap_err(),
                AuthError::BadSignature,
                "{scheme}"
            );
        }
        // Re-encoded JSON (a space added) is another body.
        let spaced = br#"{"id": "evt_1","event_id":"Ev1","n":1}"#;
        assert_eq!(
            check(scheme, &key, &map, spaced).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            check(scheme, b"another secret", &map, body).unwrap_err(),
            AuthError::BadSignature,
            "{scheme}"
        );
        // Each header changed by one character, or left out, is refused.
        for (name, value) in sign(scheme, &key, NOW, Some("d-1"), body) {
            let mut changed = value.clone().into_bytes();
            let last = changed.len() - 1;
            changed[last] = if changed[last] == b'0' { b'1' } else { b'0' };
            for replacement in [Some(String::from_utf8(changed).unwrap()), None] {
                let mut map = map.clone();
                match &replacement {
                    Some(v) => {
                        map.insert(name, HeaderValue::from_str(v).unwrap());
                    }
                    None => {
                        map.remove(name);
                    }
                }
                if scheme == Scheme::Github && name == "X-GitHub-Delivery" {
                    // Not signed by GitHub: only the event's key changes.
                    let head = check(scheme, &key, &map, body).unwrap();
                    assert_ne!(head.key.as_deref(), Some("d-1"));
                    continue;
                }
                assert!(
                    check(scheme, &key, &map, body).is_err(),
                    "{scheme}: {name} {replacement:?} accepted"
                );
            }
        }
        // Another scheme's request is named as such.
        for other in Scheme::ALL.into_iter().filter(|s| *s != scheme) {
            let map = signed(other, &key, NOW, Some("d-1"), body);
            assert_eq!(
                judge(scheme, &map, NOW),
                Err(AuthError::WrongScheme {
                    expected: scheme,
                    found: other
                })
            );
        }
    }
}

#[test]
fn timestamps_are_held_to_the_window_in_every_scheme_that_has_one() {
    let body = b"x";
    for scheme in Scheme::ALL {
        let key = SECRET.to_vec();
        for skew in [-300i64, 300] {
            let ts = (NOW as i64 + skew) as u64;
            let map = signed(scheme, &key, ts, Some("d"), body);
            assert!(check(scheme, &key, &map, body).is_ok(), "{scheme} {skew}");
        }
        for skew in [-301i64, 301, -86_400] {
            let ts = (NOW as i64 + skew) as u64;
            let map = signed(scheme, &key, ts, Some("d"), body);
            let result = check(scheme, &key, &map, body);
            if scheme == Scheme::Github {
                assert!(result.is_ok(), "GitHub signs no time");
            } else {
                assert_eq!(
                    result.unwrap_err(),
                    AuthError::OutOfWindow(skew.unsigned_abs()),
                    "{scheme}"
                );
            }
        }
    }
}

#[test]
fn several_signatures_during_a_secret_roll() {
    let body = b"roll";
    let old = b"old secret";
    // Stripe: t=…,v1=<new>,v1=<old>,v0=<test mode>.
    let new_sig = sign(Scheme::Stripe, SECRET, NOW, None, body)[0].1.clone();
    let old_sig = sign(Scheme::Stripe, old, NOW, None, body)[0].1.clone();
    let both = format!("{new_sig},{},v0=abc", old_sig.split_once(',').unwrap().1);
    let map = headers(&[("Stripe-Signature", &both)]);
    assert!(check(Scheme::Stripe, old, &map, body).is_ok());
    assert!(check(Scheme::Stripe, SECRET, &map, body).is_ok());
    let two_stamps = format!("{new_sig},t={NOW}");
    let map = headers(&[("Stripe-Signature", &two_stamps)]);
    assert!(matches!(
        judge(Scheme::Stripe, &map, NOW),
        Err(AuthError::MalformedSignature(_))
    ));
    // Standard Webhooks: space-separated, unknown versions (v1a) skipped.
    let new = signed(Scheme::Standard, SECRET, NOW, Some("m"), body);
    let old_map = signed(Scheme::Standard, old, NOW, Some("m"), body);
    let value = format!(
        "v1a,AAAA {} {}",
        old_map["webhook-signature"].to_str().unwrap(),
        new["webhook-signature"].to_str().unwrap()
    );
    let mut map = new.clone();
    map.insert("webhook-signature", HeaderValue::from_str(&value).unwrap());
    assert!(check(Scheme::Standard, old, &map, body).is_ok());
    assert!(check(Scheme::Standard, SECRET, &map, body).is_ok());
    // Svix's own header names are the same scheme.
    let svix = headers(&[
        ("svix-id", "m"),
        ("svix-timestamp", &NOW.to_string()),
        ("svix-signature", new["webhook-signature"].to_str().unwrap()),
    ]);
    assert!(check(Scheme::Standard, SECRET, &svix, body).is_ok());
    // Five candidates are too many.
    let sig = new["webhook-signature"].to_str().unwrap();
    let many = [sig; MAX_CANDIDATES + 1].join(" ");
    map.insert("webhook-signature", HeaderValue::from_str(&many).unwrap());
    assert!(matches!(
        judge(Scheme::Standard, &map, NOW),
        Err(AuthError::MalformedSignature(_))
    ));
}

#[test]
fn delivery_ids_in_the_body() {
    let body = br#"{"id":"evt_1","event_id":"Ev9","type":"x"}"#;
    assert_eq!(
        body_delivery_id(Scheme::Stripe, body).as_deref(),
        Some("evt_1")
    );
    assert_eq!(
        body_delivery_id(Scheme::Slack, body).as_deref(),
        Some("Ev9")
    );
    assert_eq!(body_delivery_id(Scheme::Github, body), None);
    assert_eq!(body_delivery_id(Scheme::Stripe, b"token=x&id=y"), None);
    assert_eq!(body_delivery_id(Scheme::Stripe, br#"{"id":7}"#), None);
}

#[test]
fn slack_url_verification_is_answered_with_its_challenge() {
    let body = br#"{"token":"t","challenge":"3eZbrw1aB","type":"url_verification"}"#;
    assert_eq!(
        slack_challenge(Scheme::Slack, body).as_deref(),
        Some("3eZbrw1aB")
    );
    assert_eq!(slack_challenge(Scheme::Github, body), None);
    assert_eq!(
        slack_challenge(Scheme::Slack, br#"{"type":"event_callback"}"#),
        None
    );
}

#[test]
fn the_key_is_signed() {
    let body = b"payload";
    let ts = NOW.to_string();
    let keyed = hermes_sig(NOW, Some("k-1"), body);
    assert_eq!(hermes(Some(&ts), Some(&keyed), Some("k-1"), body), Ok(()));
    // The captured request replayed under another key, without one, or with the
    // key and the body trading bytes: none verifies.
    for (key, body) in [
        (Some("k-2"), &body[..]),
        (None, &body[..]),
        (Some("k-1p"), &b"ayload"[..]),
    ] {
        assert_eq!(
            hermes(Some(&ts), Some(&keyed), key, body),
            Err(AuthError::BadSignature),
            "{key:?}"
        );
    }
    let unkeyed = hermes_sig(NOW, None, body);
    assert_eq!(
        hermes(Some(&ts), Some(&unkeyed), Some("k-1"), body),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        hermes(Some(&ts), Some(&unkeyed), Some("a key"), body),
        Err(AuthError::BadDeliveryId("Idempotency-Key"))
    );
}

#[test]
fn v1_is_refused_with_a_pointer_to_v2() {
    let ts = NOW.to_string();
    let v1 = "v1=982375ec2d6ac192f77803b87066b69d3463b6ed5ff23d6669ee28c974b98eef";
    assert_eq!(
        hermes(Some(&ts), Some(v1), None, b"x"),
        Err(AuthError::OldVersion)
    );
    // Alongside a v2 value, the v1 one is ignored.
    let both = format!("{v1},{}", hermes_sig(NOW, None, b"x"));
    assert_eq!(hermes(Some(&ts), Some(&both), None, b"x"), Ok(()));
}

#[test]
fn accept_and_reject_matrix() {
    let body = br#"{"event":"push"}"#;
    let ts = NOW.to_string();
    let good = hermes_sig(NOW, None, body);
    assert_eq!(hermes(Some(&ts), Some(&good), None, body), Ok(()));

    // A signature made for another timestamp does not carry over.
    let other = hermes_sig(NOW - 1, None, body);
    assert_eq!(
        hermes(Some(&ts), Some(&other), None, body),
        Err(AuthError::BadSignature)
    );

    // Missing and malformed headers.
    assert_eq!(
        hermes(None, Some(&good), None, body),
        Err(AuthError::MissingHeader("X-Hermes-Timestamp"))
    );
    assert_eq!(
        hermes(Some(&ts), None, None, body),
        Err(AuthError::MissingHeader("X-Hermes-Signature"))
    );
    for bad_ts in ["", "abc", "-5", "1.5", " 1800000000x", "9999999999999"] {
        assert_eq!(
            hermes(Some(bad_ts), Some(&good), None, body),
            Err(AuthError::BadTimestamp("X-Hermes-Timestamp")),
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
        assert!(
            matches!(
                hermes(Some(&ts), Some(bad_sig), None, body),
                Err(AuthError::MalformedSignature(_))
            ),
            "{bad_sig:?}"
        );
    }

    // Rotation: any one of several v2 signatures may match; unknown schemes are skipped.
    let wrong = sign(Scheme::Hermes, b"another secret", NOW, None, body)[1]
        .1
        .clone();
    let rotated = format!("{wrong}, v0=whatever, {good}");
    assert_eq!(hermes(Some(&ts), Some(&rotated), None, body), Ok(()));
    // Upper-case hex is accepted too.
    let upper = format!("v2={}", good[3..].to_uppercase());
    assert_eq!(hermes(Some(&ts), Some(&upper), None, body), Ok(()));
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
