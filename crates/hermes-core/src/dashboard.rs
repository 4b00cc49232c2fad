//! The dashboard's bind rule, shared by the dashboard itself, its container
//! slot and `doctor`: a non-loopback bind needs `HERMES_DASHBOARD_TOKEN`.

use std::net::IpAddr;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 9119;

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

/// Why the dashboard must not serve on `host:port` with this token, if it must not.
pub fn bind_refusal(host: &str, port: u16, token: Option<&str>) -> Option<String> {
    (!is_loopback(host) && !token_set(token)).then(|| {
        format!(
            "the dashboard would listen on {host}:{port}, which is not loopback, without \
             HERMES_DASHBOARD_TOKEN: set a token, or bind {DEFAULT_HOST}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(bind_refusal("0.0.0.0", 9119, Some("s3cret")), None);
    }
}
