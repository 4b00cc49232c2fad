//! The dashboard's bind rule and token, shared by the dashboard itself, its
//! container slot, `hermes dashboard url` and `doctor`. The dashboard always
//! wants a token (loopback is no boundary between the users of one machine):
//! `HERMES_DASHBOARD_TOKEN` when set, else one generated at first start into
//! [`TOKEN_FILE`], mode 0600, in `HERMES_HOME`. A non-loopback bind needs an
//! explicit `HERMES_DASHBOARD_TOKEN` of at least [`MIN_TOKEN_LEN`] bytes.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 9119;
/// Shorter tokens are refused on a non-loopback bind (exit 78): guessable over a network.
pub const MIN_TOKEN_LEN: usize = 16;
/// The generated token's file, in `HERMES_HOME`.
pub const TOKEN_FILE: &str = ".dashboard-token";

/// The dashboard's settings as the environment gives them; every reader
/// (its container slot, `dashboard-run`, status and doctor) takes them here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `HERMES_DASHBOARD=1`: the container starts the dashboard slot.
    pub enabled: bool,
    /// `HERMES_DASHBOARD_HOST`, default [`DEFAULT_HOST`].
    pub host: String,
    /// `HERMES_DASHBOARD_PORT`, default [`DEFAULT_PORT`] (also when not a port).
    pub port: u16,
    /// `HERMES_DASHBOARD_TOKEN`, trimmed.
    pub token: Option<String>,
}

impl Settings {
    /// From the environment as `var` reads it (blank counts as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let var = |k: &str| non_blank(var(k));
        Settings {
            enabled: enabled(var("HERMES_DASHBOARD").as_deref()),
            host: var("HERMES_DASHBOARD_HOST").unwrap_or_else(|| DEFAULT_HOST.to_string()),
            port: var("HERMES_DASHBOARD_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(DEFAULT_PORT),
            token: var("HERMES_DASHBOARD_TOKEN"),
        }
    }

    pub fn from_env() -> Settings {
        Settings::from_vars(|k| std::env::var(k).ok())
    }
}

/// A setting's value trimmed; blank counts as unset.
pub(crate) fn non_blank(raw: Option<String>) -> Option<String> {
    raw.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `HERMES_DASHBOARD`: 1, true or yes turn the dashboard on.
pub fn enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// `localhost`, or a loopback address (brackets around IPv6 allowed).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A token that is set and not blank.
pub fn token_set(token: Option<&str>) -> bool {
    token.is_some_and(|t| !t.trim().is_empty())
}

/// Why the dashboard must not serve on `host:port` with this explicit token
/// (`HERMES_DASHBOARD_TOKEN`), if it must not.
pub fn bind_refusal(host: &str, port: u16, token: Option<&str>) -> Option<String> {
    bind_refusal_for_length(host, port, token.map_or(0, |t| t.trim().len()))
}

/// [`bind_refusal`] for a token of `len` bytes (0: none), for callers that keep only its length.
pub fn bind_refusal_for_length(host: &str, port: u16, len: usize) -> Option<String> {
    if is_loopback(host) {
        return None;
    }
    if len == 0 {
        return Some(format!(
            "the dashboard would listen on {host}:{port}, which is not loopback, without \
             HERMES_DASHBOARD_TOKEN: set a token, or bind {DEFAULT_HOST}"
        ));
    }
    (len < MIN_TOKEN_LEN).then(|| {
        format!(
            "the dashboard would listen on {host}:{port}, which is not loopback, with a \
             HERMES_DASHBOARD_TOKEN of {len} bytes: use at least {MIN_TOKEN_LEN} random \
             characters (e.g. `openssl rand -hex 16`), or bind {DEFAULT_HOST}"
        )
    })
}

/// Where the generated token lives in the home rooted at `home`.
pub fn token_file(home: &Path) -> PathBuf {
    home.join(TOKEN_FILE)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("unable to {op} the dashboard token file {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Missing, and this caller does not create it.
    #[error(
        "no dashboard token yet: the dashboard writes {path} when it first starts \
         (HERMES_DASHBOARD=1 in the container, or `hermes dashboard`); or set HERMES_DASHBOARD_TOKEN"
    )]
    Missing { path: PathBuf },
    /// Not a private regular file, or too short: a configuration error (exit 78).
    #[error("the dashboard token file {path} {why}: delete it to have a new token made at the next start")]
    Unsafe { path: PathBuf, why: String },
    #[error("unable to read random bytes for the dashboard token: {0}")]
    Random(getrandom::Error),
}

impl TokenFileError {
    /// Whether this is the operator's configuration to fix (exit 78) rather than a failure.
    pub fn is_config(&self) -> bool {
        matches!(self, TokenFileError::Unsafe { .. })
    }
}

/// The token in `path`; [`TokenFileError::Missing`] when there is none.
/// The file must be a regular file (not a link) that no group or other user can read.
pub fn read_token(path: &Path) -> Result<String, TokenFileError> {
    let io_err = |op, source| TokenFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let unsafe_file = |why: String| TokenFileError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TokenFileError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file("is a symbolic link".into()))
        }
        Err(e) => return Err(io_err("open", e)),
    };
    let meta = file.metadata().map_err(|e| io_err("inspect", e))?;
    if !meta.file_type().is_file() {
        return Err(unsafe_file("is not a regular file".into()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_file(format!(
            "has mode {:03o}: other users may have read it",
            meta.mode() & 0o777
        )));
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| io_err("read", e))?;
    let token = text.trim().to_string();
    if token.len() < MIN_TOKEN_LEN {
        return Err(unsafe_file(format!(
            "holds {} bytes, fewer than {MIN_TOKEN_LEN}",
            token.len()
        )));
    }
    Ok(token)
}

/// The token in `path`, made first (32 random bytes, hex, mode 0600) when
/// there is none. Two starts at once agree on one token: the new file is
/// linked into place, which fails rather than replaces when one is there.
pub fn read_or_create_token(path: &Path) -> Result<String, TokenFileError> {
    match read_token(path) {
        Err(TokenFileError::Missing { .. }) => {}
        other => return other,
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(TokenFileError::Random)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{TOKEN_FILE}.tmp.{}", std::process::id()));
    let io_err = |op, p: &Path, source| TokenFileError::Io {
        op,
        path: p.to_path_buf(),
        source,
    };
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(format!("{token}\n").as_bytes())?;
        file.sync_all()
    };
    let _ = fsutil::remove_file(&tmp);
    if let Err(e) = write() {
        let _ = fsutil::remove_file(&tmp);
        return Err(io_err("write", &tmp, e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fsutil::remove_file(&tmp);
    match linked {
        Ok(()) => {
            let _ = fsutil::sync_dir(dir);
            Ok(token)
        }
        // Another start won the race: use its token.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(path),
        Err(e) => Err(io_err("create", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_where_unset_blank_or_not_a_port() {
        let none = Settings::from_vars(|_| None);
        assert_eq!(
            none,
            Settings {
                enabled: false,
                host: DEFAULT_HOST.into(),
                port: DEFAULT_PORT,
                token: None,
            }
        );
        let set = Settings::from_vars(|k| match k {
            "HERMES_DASHBOARD" => Some("yes".into()),
            "HERMES_DASHBOARD_HOST" => Some(" 0.0.0.0 ".into()),
            "HERMES_DASHBOARD_PORT" => Some("9200".into()),
            "HERMES_DASHBOARD_TOKEN" => Some(" abc \n".into()),
            _ => None,
        });
        assert_eq!(
            set,
            Settings {
                enabled: true,
                host: "0.0.0.0".into(),
                port: 9200,
                token: Some("abc".into()),
            }
        );
        let odd = Settings::from_vars(|k| match k {
            "HERMES_DASHBOARD_HOST" | "HERMES_DASHBOARD_TOKEN" => Some("  ".into()),
            "HERMES_DASHBOARD_PORT" => Some("http".into()),
            _ => None,
        });
        assert_eq!(odd, none);
    }

    #[test]
    fn only_truthy_values_enable() {
        assert!(enabled(Some("1")) && enabled(Some("Yes")) && enabled(Some("true")));
        assert!(!enabled(Some("0")) && !enabled(Some("")) && !enabled(None));
    }

    #[test]
    fn non_loopback_needs_a_token() {
        for host in ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"] {
            assert_eq!(bind_refusal(host, 9119, None), None, "{host}");
        }
        assert!(bind_refusal("0.0.0.0", 9119, None).is_some());
        assert!(bind_refusal("0.0.0.0", 9119, Some(" ")).is_some());
        assert_eq!(
            bind_refusal("0.0.0.0", 9119, Some("s3cret-0123456789")),
            None
        );
    }

    #[test]
    fn short_tokens_are_refused_off_loopback_only() {
        let why = bind_refusal("0.0.0.0", 9119, Some("ab")).unwrap();
        assert!(why.contains("2 bytes") && why.contains("16"), "{why}");
        assert!(bind_refusal("::", 9119, Some("0123456789abcde")).is_some());
        assert_eq!(bind_refusal("::", 9119, Some("0123456789abcdef")), None);
        assert_eq!(bind_refusal("127.0.0.1", 9119, Some("ab")), None);
    }

    #[test]
    fn token_file_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path());
        assert!(matches!(
            read_token(&path),
            Err(TokenFileError::Missing { .. })
        ));
        let made = read_or_create_token(&path).unwrap();
        assert_eq!(made.len(), 64);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_or_create_token(&path).unwrap(), made);
        assert_eq!(read_token(&path).unwrap(), made);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn token_file_others_can_read_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path());
        fs::write(&path, "0123456789abcdef0123\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_or_create_token(&path).unwrap_err();
        assert!(err.is_config() && err.to_string().contains("644"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(&path).unwrap(), "0123456789abcdef0123");
        fs::write(&path, "short\n").unwrap();
        assert!(read_token(&path).unwrap_err().is_config());

        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "0123456789abcdef0123\n").unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let err = read_or_create_token(&path).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
