//! Who may call the API. Without a token (loopback only) everyone on this
//! machine may; with a token, a caller sends it as a bearer header or trades
//! it once for an HttpOnly session cookie. The token never goes back to the
//! browser: the cookie holds a random session id instead.
//!
//! State-changing calls made with ambient credentials (the cookie, or nothing
//! in open mode) must also carry the CSRF token from `GET /api/session` in
//! `X-CSRF-Token`; a page on another origin can neither read that token nor
//! send a custom header without a CORS preflight, which we never grant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "hermes_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest go first (a flood of logins cannot grow memory).
const MAX_SESSIONS: usize = 256;

/// Compare secrets in time that depends only on their lengths, not on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// 32 random bytes, hex encoded.
pub fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// How a request proved it may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No token configured: the loopback-only open mode.
    Open,
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
}

struct Session {
    csrf: String,
    expires: Instant,
}

pub struct Auth {
    token: Option<String>,
    /// The CSRF token of open mode, where there are no sessions.
    open_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    pub fn new(token: Option<String>) -> Result<Auth, getrandom::Error> {
        Ok(Auth {
            token,
            open_csrf: random_id()?,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Who is calling, from the `Authorization` and `Cookie` headers.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Principal, Denied> {
        let Some(token) = &self.token else {
            return Ok(Principal::Open);
        };
        if let Some(value) = authorization {
            let given = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or("");
            // A wrong bearer token is a failure even when a cookie is also sent.
            return if ct_eq(given.trim().as_bytes(), token.as_bytes()) {
                Ok(Principal::Bearer)
            } else {
                Err(Denied::Unauthorized)
            };
        }
        let id = cookie.and_then(session_id).ok_or(Denied::Unauthorized)?;
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
            .ok_or(Denied::Unauthorized)
    }

    /// Whether a state-changing call from `who` carries the right CSRF token.
    pub fn check_csrf(&self, who: &Principal, header: Option<&str>) -> Result<(), Denied> {
        let expected = match who {
            Principal::Bearer => return Ok(()),
            Principal::Open => &self.open_csrf,
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
            Principal::Open => Some(self.open_csrf.clone()),
            Principal::Session { csrf } => Some(csrf.clone()),
            Principal::Bearer => None,
        }
    }

    /// Trade the token for a session: `(session id, csrf token)`, or `None` when wrong.
    pub fn login(&self, given: &str) -> Result<Option<(String, String)>, getrandom::Error> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        if !ct_eq(given.trim().as_bytes(), token.as_bytes()) {
            return Ok(None);
        }
        let (id, csrf) = (random_id()?, random_id()?);
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
        Ok(Some((id, csrf)))
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

    #[test]
    fn ct_eq_compares_whole_values() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn open_mode_needs_csrf_only() {
        let auth = Auth::new(None).unwrap();
        let who = auth.identify(None, None).unwrap();
        assert_eq!(who, Principal::Open);
        let csrf = auth.csrf_for(&who).unwrap();
        assert_eq!(auth.check_csrf(&who, None), Err(Denied::Csrf));
        assert_eq!(auth.check_csrf(&who, Some("nope")), Err(Denied::Csrf));
        assert!(auth.check_csrf(&who, Some(&csrf)).is_ok());
    }

    #[test]
    fn token_mode_takes_bearer_or_session_cookie() {
        let auth = Auth::new(Some("s3cret-token-value".into())).unwrap();
        assert_eq!(auth.identify(None, None), Err(Denied::Unauthorized));
        assert_eq!(
            auth.identify(Some("Bearer wrong"), None),
            Err(Denied::Unauthorized)
        );
        let bearer = auth
            .identify(Some("Bearer s3cret-token-value"), None)
            .unwrap();
        assert!(auth.check_csrf(&bearer, None).is_ok());
        assert_eq!(auth.login("wrong").unwrap(), None);
        let (id, csrf) = auth.login("s3cret-token-value").unwrap().unwrap();
        let cookie = format!("theme=dark; {COOKIE}={id}");
        let who = auth.identify(None, Some(&cookie)).unwrap();
        assert_eq!(who, Principal::Session { csrf: csrf.clone() });
        assert_eq!(auth.check_csrf(&who, None), Err(Denied::Csrf));
        assert!(auth.check_csrf(&who, Some(&csrf)).is_ok());
        auth.logout(Some(&cookie));
        assert_eq!(
            auth.identify(None, Some(&cookie)),
            Err(Denied::Unauthorized)
        );
    }
}
