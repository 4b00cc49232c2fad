//! The service user the supervision tree runs as: `hermes` from /etc/passwd,
//! with its ids remapped by `HERMES_UID`/`HERMES_GID` (aliases `PUID`/`PGID`).
//! The parsing and rewriting of passwd/group text are pure functions; stage 1
//! does the file I/O.

use std::path::PathBuf;

use crate::pid1::Credentials;

pub const NAME: &str = "hermes";
pub const DEFAULT_ID: u32 = 10000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("{var}={value:?} is not a numeric id")]
    NotANumber { var: &'static str, value: String },
    #[error("{var}=0 would run the supervision tree as root; choose a non-zero id")]
    Root { var: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl ServiceUser {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// One id from the first of `vars` that is set and not empty.
fn requested(
    vars: [&'static str; 2],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<u32>, UserError> {
    for var in vars {
        let Some(value) = env(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let id: u32 = value.trim().parse().map_err(|_| UserError::NotANumber {
            var,
            value: value.clone(),
        })?;
        if id == 0 {
            return Err(UserError::Root { var });
        }
        return Ok(Some(id));
    }
    Ok(None)
}

/// `(uid, gid)` asked for by the environment; `HERMES_*` wins over `PUID`/`PGID`.
pub fn requested_ids(
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Option<u32>, Option<u32>), UserError> {
    Ok((
        requested(["HERMES_UID", "PUID"], &env)?,
        requested(["HERMES_GID", "PGID"], &env)?,
    ))
}

/// `(uid, gid, home)` of `name` in passwd-format text.
pub fn passwd_entry(text: &str, name: &str) -> Option<(u32, u32, PathBuf)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5])))
    })
}

/// The text with `name`'s uid and gid replaced; `None` when nothing changes.
pub fn remap_passwd(text: &str, name: &str, uid: u32, gid: u32) -> Option<String> {
    rewrite(text, name, 7, |f| {
        f[2] = uid.to_string();
        f[3] = gid.to_string();
    })
}

/// The text with group `name`'s gid replaced; `None` when nothing changes.
pub fn remap_group(text: &str, name: &str, gid: u32) -> Option<String> {
    rewrite(text, name, 4, |f| f[2] = gid.to_string())
}

fn rewrite(
    text: &str,
    name: &str,
    fields: usize,
    change: impl Fn(&mut Vec<String>),
) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut f: Vec<String> = line.split(':').map(String::from).collect();
        if f.len() >= fields && f[0] == name {
            let before = f.clone();
            change(&mut f);
            changed |= f != before;
        }
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nhermes:x:10000:10000::/opt/data:/bin/sh\n";

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn hermes_vars_win_over_puid() {
        let ids = requested_ids(env(&[
            ("PUID", "99"),
            ("PGID", "100"),
            ("HERMES_UID", "1234"),
        ]));
        assert_eq!(ids, Ok((Some(1234), Some(100))));
        assert_eq!(requested_ids(env(&[])), Ok((None, None)));
    }

    #[test]
    fn root_and_garbage_are_refused() {
        assert_eq!(
            requested_ids(env(&[("PUID", "0")])),
            Err(UserError::Root { var: "PUID" })
        );
        assert!(matches!(
            requested_ids(env(&[("HERMES_GID", "abc")])),
            Err(UserError::NotANumber {
                var: "HERMES_GID",
                ..
            })
        ));
    }

    #[test]
    fn passwd_remap_touches_only_hermes() {
        assert_eq!(
            passwd_entry(PASSWD, "hermes"),
            Some((10000, 10000, PathBuf::from("/opt/data")))
        );
        let out = remap_passwd(PASSWD, "hermes", 99, 100).unwrap();
        assert_eq!(
            out,
            "root:x:0:0:root:/root:/bin/bash\nhermes:x:99:100::/opt/data:/bin/sh\n"
        );
        assert_eq!(remap_passwd(PASSWD, "hermes", 10000, 10000), None);
        let group = "root:x:0:\nhermes:x:10000:\n";
        assert_eq!(
            remap_group(group, "hermes", 100).unwrap(),
            "root:x:0:\nhermes:x:100:\n"
        );
    }
}
