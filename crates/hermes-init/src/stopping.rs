//! Whether the "stopping" notification can have anything to say, decided
//! without starting a process. It names the gateways that were serving when
//! the container stopped, and a gateway writes its `gateway.pid` before it
//! reports itself serving (boot reconciliation removes stale ones, a
//! gateway its own at exit). With no `gateway.pid` in any profile nothing
//! was up, and `hermes container notify-stopping` would queue nothing: a
//! short run (`docker run IMAGE true`) spawns no hermes at its stop.
//!
//! Looked at as root in the service user's volume: through directory
//! handles, stat only, never through a link. Anything unexpected (an
//! unreadable directory, a link where a directory belongs) answers "maybe",
//! and the notification is queued as before.

use std::ffi::OsStr;

use hermes_core::dirfd::{Dir, Kind};
use hermes_core::{HermesHome, ProfileName};

/// False only when no profile of `home` has a `gateway.pid`.
pub fn maybe_gateways_up(home: &HermesHome) -> bool {
    let pid_file = home.profile(&ProfileName::default_profile()).pid_file();
    let Some(name) = pid_file.file_name() else {
        return true;
    };
    let Ok(root) = Dir::open_no_links(home.root()) else {
        return true;
    };
    if has_entry(&root, name) {
        return true;
    }
    let profiles = home.profiles_dir();
    let Some(rel) = profiles.file_name() else {
        return true;
    };
    let dir = match root.open_dir(rel) {
        Ok(dir) => dir,
        Err(e) => return !e.is_not_found(),
    };
    let Ok(names) = dir.names() else {
        return true;
    };
    names.iter().any(|profile| match dir.stat(profile) {
        Ok(Some(st)) => match Kind::of(&st) {
            Kind::Dir => dir.open_dir(profile).map_or(true, |p| has_entry(&p, name)),
            // A stray file beside the profiles is no profile.
            Kind::File => false,
            Kind::Symlink | Kind::Other => true,
        },
        Ok(None) => false,
        Err(_) => true,
    })
}

fn has_entry(dir: &Dir, name: &OsStr) -> bool {
    !matches!(dir.stat(name), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn only_a_gateway_pid_somewhere_says_maybe() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        assert!(!maybe_gateways_up(&home), "an empty volume");
        fs::create_dir_all(home.profiles_dir().join("a")).unwrap();
        fs::create_dir_all(home.profiles_dir().join("b")).unwrap();
        fs::write(home.profiles_dir().join("stray-file"), "").unwrap();
        fs::write(home.profiles_dir().join("a/gateway_state.json"), "{}").unwrap();
        assert!(!maybe_gateways_up(&home), "profiles, none running");
        fs::write(home.profiles_dir().join("b/gateway.pid"), "42").unwrap();
        assert!(maybe_gateways_up(&home), "a named profile's gateway");
        fs::remove_file(home.profiles_dir().join("b/gateway.pid")).unwrap();
        fs::write(dir.path().join("gateway.pid"), "42").unwrap();
        assert!(maybe_gateways_up(&home), "the default profile's gateway");
    }

    #[test]
    fn a_link_where_profiles_belong_answers_maybe() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        std::os::unix::fs::symlink(elsewhere.path(), home.profiles_dir()).unwrap();
        assert!(maybe_gateways_up(&home));
    }
}
