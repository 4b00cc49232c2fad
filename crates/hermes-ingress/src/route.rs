//! Which profile a request is for, and the path its gateway serves it on.
//! Pure: only the path's shape is judged here; the gateway judges methods,
//! hook names and everything else.

use hermes_core::ProfileName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// For `profile`'s gateway, at `path` (with the query, if any).
    Gateway { profile: ProfileName, path: String },
    /// Not a path the ingress serves.
    NotFound,
    /// The first segment is not a profile name.
    BadProfile(String),
}

/// `/<profile>/v1/webhooks/<hook>` and `/<profile>/v1/webhooks/<hook>/events`.
pub fn route(path: &str, query: Option<&str>) -> Route {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let Some((first, tail)) = rest.split_once('/') else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = tail.split('/').collect();
    let served = match parts.as_slice() {
        ["v1", "webhooks", hook] | ["v1", "webhooks", hook, "events"] => !hook.is_empty(),
        _ => false,
    };
    if !served {
        return Route::NotFound;
    }
    // Exactly as written: the name is not lower-cased into another profile's.
    let Some(profile) = ProfileName::parse(first)
        .ok()
        .filter(|p| p.as_str() == first)
    else {
        return Route::BadProfile(first.to_string());
    };
    let mut path = format!("/{tail}");
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Route::Gateway { profile, path }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(profile: &str, path: &str) -> Route {
        Route::Gateway {
            profile: ProfileName::parse(profile).unwrap(),
            path: path.to_string(),
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, Option<&str>, Route)] = &[
            (
                "/coder/v1/webhooks/github",
                None,
                gateway("coder", "/v1/webhooks/github"),
            ),
            (
                "/default/v1/webhooks/x/events",
                Some("after=3&limit=10"),
                gateway("default", "/v1/webhooks/x/events?after=3&limit=10"),
            ),
            ("/coder/health", None, Route::NotFound),
            ("/coder/v1/webhooks", None, Route::NotFound),
            ("/coder/v1/webhooks/", None, Route::NotFound),
            ("/coder/v1/webhooks/a/b", None, Route::NotFound),
            ("/v1/webhooks/github", None, Route::NotFound),
            ("/", None, Route::NotFound),
            ("", None, Route::NotFound),
            (
                "/Coder/v1/webhooks/a",
                None,
                Route::BadProfile("Coder".into()),
            ),
            (
                "/Bad..Name/v1/webhooks/a",
                None,
                Route::BadProfile("Bad..Name".into()),
            ),
        ];
        for (path, query, want) in cases {
            assert_eq!(&route(path, *query), want, "{path} {query:?}");
        }
    }
}
