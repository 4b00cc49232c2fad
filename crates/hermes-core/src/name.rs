//! Profile (and webhook hook) names, validated once at the edge into a type
//! that cannot hold anything else. A `ProfileName` is always safe to use as a
//! single path component and inside a quoted shell word.

use std::fmt;

/// Names that would confuse an operator or shadow a system account.
const RESERVED: &[&str] = &["hermes", "test", "tmp", "root", "sudo"];
const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {0:?} is longer than 64 characters")]
    TooLong(String),
    #[error("name {0:?} must start with a-z or 0-9 and contain only a-z, 0-9, '_' and '-'")]
    BadCharacters(String),
    #[error("name {0:?} is reserved")]
    Reserved(String),
}

/// Validate `raw` against `^[a-z0-9][a-z0-9_-]{0,63}$` after trimming and lower-casing.
fn normalise(raw: &str) -> Result<String, NameError> {
    let name = raw.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // Non-ASCII input must be refused, not lower-cased into something else.
    let valid_first = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid_rest = |c: char| valid_first(c) || c == '_' || c == '-';
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(valid_first);
    if !first_ok || !chars.all(valid_rest) {
        return Err(NameError::BadCharacters(raw.to_string()));
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong(raw.to_string()));
    }
    Ok(name)
}

/// A validated profile name. `default` is the root profile (`$HERMES_HOME` itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ProfileName(String);

impl ProfileName {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = normalise(raw)?;
        if RESERVED.contains(&name.as_str()) {
            return Err(NameError::Reserved(name));
        }
        Ok(ProfileName(name))
    }

    /// Whether `raw` is a name [`parse`](Self::parse) takes as it is
    /// spelt; nothing allocated, for checking a thousand names in a file.
    pub fn is_canonical(raw: &str) -> bool {
        let bytes = raw.as_bytes();
        let valid_first = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let valid_rest = |b: &u8| valid_first(b) || *b == b'_' || *b == b'-';
        bytes.first().is_some_and(valid_first)
            && bytes[1..].iter().all(valid_rest)
            && bytes.len() <= MAX_LEN
            && !RESERVED.contains(&raw)
    }

    pub fn default_profile() -> Self {
        ProfileName(Self::DEFAULT.to_string())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hermes command line that runs `args` on this profile, for hints:
    /// `hermes -p broken gateway start` (a bare `hermes gateway start` acts
    /// on `default`, whichever profile the hint is about).
    pub fn command(&self, args: &str) -> String {
        format!("hermes -p {} {args}", self.0)
    }

    /// The s6 slot (and log directory) name of this profile's gateway.
    pub fn service_name(&self) -> String {
        format!("gateway-{}", self.0)
    }

    /// The profile a slot name belongs to, if it is a gateway slot.
    pub fn from_service_name(service: &str) -> Option<Self> {
        service
            .strip_prefix("gateway-")
            .and_then(|rest| ProfileName::parse(rest).ok())
            .filter(|name| name.0 == service["gateway-".len()..])
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProfileName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileName::parse(s)
    }
}

/// A webhook hook name: the same character rules as a profile name, nothing reserved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct HookName(String);

impl HookName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        normalise(raw).map(HookName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(ProfileName::parse(" Coder ").unwrap().as_str(), "coder");
        assert_eq!(ProfileName::parse("a").unwrap().as_str(), "a");
        assert_eq!(ProfileName::parse("0_x-y").unwrap().as_str(), "0_x-y");
        assert!(ProfileName::parse("Default").unwrap().is_default());
        assert!(ProfileName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "", "  ", "..", ".", "a/b", "a;b", "a b", "é", "ｃoder", "-a", "_a", "a.b", "a\nb",
            "$(x)", "a'b",
        ] {
            assert!(ProfileName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            ProfileName::parse(&"a".repeat(65)),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(
            ProfileName::parse("root"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            ProfileName::parse("HERMES"),
            Err(NameError::Reserved(_))
        ));
    }

    #[test]
    fn a_canonical_name_is_one_parse_keeps_as_spelt() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for raw in [
            "a", "0_x-y", "coder", "default", &long, &too_long, "", " a", "a ", "A", "Coder",
            "root", "tmp", "-a", "_a", "a.b", "a b", "é", "ｃoder", "a\nb",
        ] {
            let kept = ProfileName::parse(raw).is_ok_and(|n| n.as_str() == raw);
            assert_eq!(ProfileName::is_canonical(raw), kept, "{raw:?}");
        }
    }

    #[test]
    fn service_names_round_trip() {
        let p = ProfileName::parse("coder").unwrap();
        assert_eq!(p.service_name(), "gateway-coder");
        assert_eq!(ProfileName::from_service_name("gateway-coder"), Some(p));
        assert_eq!(ProfileName::from_service_name("gateway-Coder"), None);
        assert_eq!(ProfileName::from_service_name("dashboard"), None);
        assert_eq!(ProfileName::from_service_name(".gateway-x.tmp"), None);
    }

    #[test]
    fn hook_names_allow_reserved_words() {
        assert_eq!(HookName::parse("test").unwrap().as_str(), "test");
        assert!(HookName::parse("../x").is_err());
    }
}
