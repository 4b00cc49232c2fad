//! Which profiles have a service installed, read from the directory the
//! backend writes its files to. Host managers cannot register at run time,
//! but `--all` still needs to know which gateways they manage.

use std::path::Path;

use hermes_core::fsutil::{self, FsError};
use hermes_core::name::ProfileName;
use hermes_core::service::ServiceError;

/// Profiles whose file `file_name(profile)` exists in `dir`, sorted. A file
/// counts only if its name is exactly what the backend would write.
pub fn installed_profiles(
    dir: &Path,
    prefix: &str,
    suffix: &str,
    file_name: impl Fn(&ProfileName) -> String,
) -> Result<Vec<ProfileName>, ServiceError> {
    let entries = match fsutil::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let default = ProfileName::default_profile();
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("read directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let profile = if name == file_name(&default) {
            Some(default.clone())
        } else {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .and_then(|candidate| ProfileName::parse(candidate).ok())
                .filter(|p| file_name(p) == name)
        };
        found.extend(profile);
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_names_count() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "hermes-gateway.service",
            "hermes-gateway-coder.service",
            "hermes-gateway-Coder.service",
            "hermes-gateway-default.service",
            "hermes-gateway-a.b.service",
            "other.service",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let name = |p: &ProfileName| crate::systemd::unit_name(p);
        let got = installed_profiles(dir.path(), "hermes-gateway-", ".service", name).unwrap();
        let names: Vec<&str> = got.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["coder", "default"]);
        let missing = dir.path().join("missing");
        assert!(installed_profiles(&missing, "x", "y", name)
            .unwrap()
            .is_empty());
    }
}
