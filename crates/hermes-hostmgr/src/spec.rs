//! Checks every renderer applies to a `GatewaySpec` before writing it in its
//! own format: paths must be absolute UTF-8, environment names must be names.

use std::path::Path;

use hermes_core::service::GatewaySpec;

/// The gateway's environment, sorted, with `HERMES_HOME` always the spec's home.
pub fn environment(spec: &GatewaySpec) -> Result<Vec<(String, String)>, String> {
    let home = utf8(&spec.home, "HERMES_HOME")?;
    let mut env = spec.env.clone();
    env.insert("HERMES_HOME".to_string(), home.to_string());
    for name in env.keys() {
        if !valid_env_name(name) {
            return Err(format!(
                "environment variable name {name:?} is not [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
    }
    Ok(env.into_iter().collect())
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn utf8<'a>(path: &'a Path, what: &str) -> Result<&'a str, String> {
    path.to_str()
        .ok_or_else(|| format!("{what} {} is not valid UTF-8", path.display()))
}

pub fn require_absolute<'a>(path: &'a Path, what: &str) -> Result<&'a str, String> {
    let text = utf8(path, what)?;
    if !path.is_absolute() {
        return Err(format!("{what} {text:?} is not an absolute path"));
    }
    Ok(text)
}

/// POSIX-portable user names (what useradd accepts by default), or a numeric uid.
pub fn valid_user_name(name: &str) -> bool {
    let numeric = !name.is_empty() && name.chars().all(|c| c.is_ascii_digit());
    let mut chars = name.chars();
    let named = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    numeric || named
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::ProfileName;
    use std::collections::BTreeMap;

    fn spec(env: &[(&str, &str)]) -> GatewaySpec {
        GatewaySpec {
            profile: ProfileName::parse("coder").unwrap(),
            program: "/usr/bin/hermes".into(),
            home: "/h".into(),
            workdir: "/h/profiles/coder".into(),
            log_dir: "/h/logs/gateways/coder".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn home_always_wins_and_names_are_checked() {
        let env = environment(&spec(&[("HERMES_HOME", "/elsewhere"), ("A_1", "x")])).unwrap();
        assert_eq!(
            env,
            [
                ("A_1".to_string(), "x".to_string()),
                ("HERMES_HOME".to_string(), "/h".to_string())
            ]
        );
        for bad in ["1A", "A-B", "A B", "", "A=B"] {
            assert!(environment(&spec(&[(bad, "x")])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_names() {
        for ok in ["alice", "_svc", "hermes-gw", "1000"] {
            assert!(valid_user_name(ok), "{ok}");
        }
        for bad in ["", "Alice", "a b", "-a", "a;b", "a\n"] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }
}
