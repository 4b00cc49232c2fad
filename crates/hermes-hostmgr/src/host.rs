//! The facts about the invoking user that decide where host service files go,
//! read once from the process environment so backends and tests take them as
//! plain values.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnv {
    /// `$HOME`.
    pub home_dir: PathBuf,
    /// `$XDG_CONFIG_HOME`, when set to an absolute path.
    pub xdg_config_home: Option<PathBuf>,
    pub uid: u32,
    /// The login name of `uid` (from the password database), when it has one.
    pub user_name: Option<String>,
}

impl HostEnv {
    pub fn from_process() -> Self {
        let uid = nix::unistd::getuid();
        HostEnv {
            home_dir: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
            // The XDG spec says relative values are invalid and must be ignored.
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute()),
            uid: uid.as_raw(),
            user_name: nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.xdg_config_home
            .clone()
            .unwrap_or_else(|| self.home_dir.join(".config"))
    }
}
