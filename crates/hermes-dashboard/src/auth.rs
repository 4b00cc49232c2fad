//! Who may call the API. There is always a token (loopback is no boundary
//! between the users of one machine): a caller sends it as a bearer header
//! or trades it once for an HttpOnly session cookie. The token never goes
//! back to the browser: the cookie holds a random session id instead.
//!
//! Every check of a token, on any path, first takes a unit from the
//! [`Limiter`]: wrong guesses run out of units and get `429` with
//! `Retry-After`. A session id is 256 random bits, so a valid cookie is
//! honoured even while its address is limited (a flood does not sign the
//! operator out); a wrong one still costs a unit.
//!
//! State-changing calls made with the cookie must also carry the session's
//! CSRF token (from `POST /api/login` or `GET /api/session`) in
//! `X-CSRF-Token`; a page on another origin can neither read that token nor
//! send a custom header without a CORS preflight, which we never grant.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limit::Limiter;

/// The session cookie's name.
pub const COOKIE: &str = "hermes_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest go first (a flood of logins cannot grow memory).
const MAX_SESSIONS: usize = 256;

use hermes_core::ct::ct_eq;

/// 32 random bytes, hex encoded.
pub fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// How a request proved it may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `Authorization: Bearer <token>`: not ambient, so no CSRF token needed.
    Bearer,
    /// The session cookie; POSTs need this session's CSRF token.
    Session { csrf: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No or wrong credentials.
    Unauthorized,
    /// Right credentials, missing or wrong CSRF token.
    Csrf,
    /// Too many wrong credentials from this source (or from all): try again after this.
    Limited(Duration),
}

struct Session {
    csrf: String,
    expires: Instant,
}

pub struct Auth {
    token: String,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Limiter,
}

impl Auth {
    pub fn new(token: String) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
            limiter: Limiter::new(),
        }
    }

    /// Whether `given` is the token, counted against `peer`'s budget of failures.
    fn check_token(&self, peer: IpAddr, given: &str) -> Result<(), Denied> {
        self.limiter.reserve(peer).map_err(Denied::Limited)?;
        if ct_eq(given.trim().as_bytes(), self.token.as_bytes()) {
            self.limiter.refund(peer);
            Ok(())
        } else {
            Err(Denied::Unauthorized)
        }
    }

    /// Who is calling from `peer`, from the `Authorization` and `Cookie` headers.
    pub fn identify(
        &self,
        peer: IpAddr,
        authorization: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Principal, Denied> {
        if let Some(value) = authorization {
            let given = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or("");
            // A wrong bearer token is a failure even when a cookie is also sent.
            return self.check_token(peer, given).map(|()| Principal::Bearer);
        }
        let id = cookie.and_then(session_id).ok_or(Denied::Unauthorized)?;
        let found = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            // Look the id up by constant-time comparison, not by hashing a guess.
            sessions
                .iter()
                .find(|(k, _)| ct_eq(k.as_bytes(), id.as_bytes()))
                .map(|(_, s)| Principal::Session {
                    csrf: s.csrf.clone(),
                })
        };
        match found {
            Some(who) => Ok(who),
            None => {
                // A wrong id costs a unit like a wrong token (no refund: it failed).
                self.limiter.reserve(peer).map_err(Denied::Limited)?;
                Err(Denied::Unauthorized)
            }
        }
    }

    /// Whether a state-changing call from `who` carries the right CSRF token.
    pub fn check_csrf(&self, who: &Principal, header: Option<&str>) -> Result<(), Denied> {
        let expected = match who {
            Principal::Bearer => return Ok(()),
            Principal::Session { csrf } => csrf,
        };
        match header {
            Some(given) if ct_eq(given.trim().as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(Denied::Csrf),
        }
    }

    /// The CSRF token a page of `who` must send.
    pub fn csrf_for(&self, who: &Principal) -> Option<String> {
        match who {
            Principal::Session { csrf } => Some(csrf.clone()),
            Principal::Bearer => None,
        }
    }

    /// Trade the token for a session: `(session id, csrf token)`.
    pub fn login(&self, peer: IpAddr, given: &str) -> Result<(String, String), LoginError> {
        self.check_token(peer, given).map_err(LoginError::Denied)?;
        let (id, csrf) = (
            random_id().map_err(LoginError::Random)?,
            random_id().map_err(LoginError::Random)?,
        );
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: Instant::now() + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    pub fn logout(&self, cookie: Option<&str>) {
        if let Some(id) = cookie.and_then(session_id) {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }
}

#[derive(Debug)]
pub enum LoginError {
    Denied(Denied),
    Random(getrandom::Error),
}

/// The session id in a `Cookie:` header.
fn session_id(cookie: &str) -> Option<&str> {
    cookie.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn token_is_taken_as_bearer_or_session_cookie() {
        let auth = Auth::new("s3cret-token-value".into());
        assert_eq!(auth.identify(PEER, None, None), Err(Denied::Unauthorized));
        assert_eq!(
            auth.identify(PEER, Some("Bearer wrong"), None),
            Err(Denied::Unauthorized)
        );
        let bearer = auth
            .identify(PEER, Some("Bearer s3cret-token-value"), None)
            .unwrap();
        assert!(auth.check_csrf(&bearer, None).is_ok());
        assert!(matches!(
            auth.login(PEER, "wrong"),
            Err(LoginError::Denied(Denied::Unauthorized))
        ));
        let (id, csrf) = auth.login(PEER, "s3cret-token-value").unwrap();
        let cookie = format!("theme=dark; {COOKIE}={id}");
        let who = auth.identify(PEER, None, Some(&cookie)).unwrap();
        assert_eq!(who, Principal::Session { csrf: csrf.clone() });
        assert_eq!(auth.check_csrf(&who, None), Err(Denied::Csrf));
        assert!(auth.check_csrf(&who, Some(&csrf)).is_ok());
        auth.logout(Some(&cookie));
        assert_eq!(
            auth.identify(PEER, None, Some(&cookie)),
            Err(Denied::Unauthorized)
        );
    }

    #[test]
    fn guesses_run_out_on_every_kind_of_credential_but_a_session_holds() {
        let auth = Auth::new("s3cret-token-value".into());
        let (id, _) = auth.login(PEER, "s3cret-token-value").unwrap();
        let cookie = format!("{COOKIE}={id}");
        let mut failures = 0;
        let limited = loop {
            let outcome = match failures % 3 {
                0 => auth.identify(PEER, Some("Bearer guess"), None).map(|_| ()),
                1 => auth.login(PEER, "guess").map(|_| ()).map_err(|e| match e {
                    LoginError::Denied(d) => d,
                    LoginError::Random(e) => panic!("{e}"),
                }),
                _ => auth
                    .identify(PEER, None, Some(&format!("{COOKIE}=guess")))
                    .map(|_| ()),
            };
            match outcome {
                Err(Denied::Unauthorized) => failures += 1,
                Err(Denied::Limited(wait)) => break wait,
                other => panic!("unexpected {other:?}"),
            }
            assert!(failures < 100, "never limited");
        };
        assert_eq!(failures, 10);
        assert!(limited > Duration::ZERO);
        // Even the right token is not compared while limited: that would be an oracle.
        assert!(matches!(
            auth.identify(PEER, Some("Bearer s3cret-token-value"), None),
            Err(Denied::Limited(_))
        ));
        assert!(auth.identify(PEER, None, Some(&cookie)).is_ok());
    }
}
