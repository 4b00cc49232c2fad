//! The dashboard slot's policy: whether it is wanted at all, and whether its
//! bind address is safe to serve on. A non-loopback bind without a token is a
//! fatal configuration error (exit 78), which the slot's finish script turns
//! into "permanently down" instead of a restart storm.

use std::net::IpAddr;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 9119;

/// `HERMES_DASHBOARD`: 1, true or yes turn the dashboard on.
pub fn enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why the dashboard must not start with this host and token, if it must not.
pub fn refusal(host: &str, token: Option<&str>) -> Option<String> {
    let has_token = token.is_some_and(|t| !t.trim().is_empty());
    (!is_loopback(host) && !has_token).then(|| {
        format!(
            "HERMES_DASHBOARD_HOST={host} is reachable from outside the container and \
             HERMES_DASHBOARD_TOKEN is not set: refusing to serve an unauthenticated \
             dashboard. Set HERMES_DASHBOARD_TOKEN, or bind {DEFAULT_HOST}."
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_truthy_values_enable() {
        assert!(enabled(Some("1")));
        assert!(enabled(Some("Yes")));
        assert!(!enabled(Some("0")));
        assert!(!enabled(Some("")));
        assert!(!enabled(None));
    }

    #[test]
    fn non_loopback_needs_a_token() {
        assert_eq!(refusal("127.0.0.1", None), None);
        assert_eq!(refusal("127.3.4.5", None), None);
        assert_eq!(refusal("::1", None), None);
        assert_eq!(refusal("localhost", None), None);
        assert!(refusal("0.0.0.0", None)
            .unwrap()
            .contains("HERMES_DASHBOARD_TOKEN"));
        assert!(refusal("0.0.0.0", Some(" ")).is_some());
        assert_eq!(refusal("0.0.0.0", Some("s3cret")), None);
    }
}
