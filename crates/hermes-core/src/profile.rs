//! Creating, listing, showing and removing profiles on disk. Supervisor work
//! (registering or unregistering a slot) is the caller's: this module only
//! touches `HERMES_HOME` and the alias directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, ConfigError, BASE_PORT};
use crate::fsutil::{self, FsError};
use crate::home::{HermesHome, ProfilePaths};
use crate::name::{HookName, ProfileName};
use crate::state::{self, GatewayState};

/// The environment variable in `.env` holding the webhook secret.
pub const SECRET_VAR: &str = "HERMES_WEBHOOK_SECRET";
/// First line of every alias wrapper we write; how we recognise our own.
const ALIAS_MARK: &str = "# hermes profile alias: generated, safe to delete";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("'default' is the root profile ({0}); it always exists and cannot be {1}")]
    Default(PathBuf, &'static str),
    #[error("profile '{0}' already exists")]
    Exists(ProfileName),
    #[error("no such profile '{0}': list profiles with `hermes profile list`")]
    NotFound(ProfileName),
    #[error("{0} exists but is not a hermes profile (no marker file); move it away first")]
    NotAProfile(PathBuf),
    #[error(
        "{0} is a symbolic link, not a profile directory; hermes does not follow it: \
         replace it with the directory itself"
    )]
    Symlink(PathBuf),
    #[error("port {port} is already used by profile '{profile}': choose another with --port")]
    PortTaken { port: u16, profile: ProfileName },
    #[error("no free gateway port between {BASE_PORT} and 65535")]
    NoFreePort,
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unable to read random bytes for the webhook secret: {0}")]
    Random(String),
}

/// What `profile list` and `profile show` report.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileInfo {
    pub name: ProfileName,
    pub dir: PathBuf,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Present only when the config is broken: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    pub gateway_state: Option<String>,
    pub desired_state: Option<String>,
    pub alias: Option<PathBuf>,
}

/// Mode of `HERMES_HOME`: everything below it (state, logs, inbox, secrets)
/// belongs to the service user alone.
pub const HOME_MODE: u32 = 0o700;

/// Make sure the root profile exists with its config, secret and marker.
pub fn ensure_root(home: &HermesHome) -> Result<(), ProfileError> {
    let paths = home.profile(&ProfileName::default_profile());
    fsutil::ensure_dir(home.root(), HOME_MODE)?;
    restrict_home(home.root())?;
    if !paths.config().exists() {
        Config::new(BASE_PORT).save(&paths.config())?;
    }
    if !paths.env_file().exists() {
        write_env(&paths.env_file())?;
    }
    if !paths.marker().exists() {
        write_marker(&paths.marker(), &paths.name)?;
    }
    Ok(())
}

/// Other users must not read state, logs or the inbox: a home we own that is
/// open to them (an older layout, an image's mkdir) is closed on first use.
fn restrict_home(root: &Path) -> Result<(), FsError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fsutil::metadata(root)?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    if ours && meta.mode() & 0o077 != 0 {
        fsutil::set_mode(root, HOME_MODE)?;
    }
    Ok(())
}

/// Held while profiles are created or deleted (and while their slots are
/// registered or unregistered), so names, ports and slots never race.
pub struct ProfilesLock {
    _lock: fsutil::FileLock,
}

pub fn lock(home: &HermesHome) -> Result<ProfilesLock, ProfileError> {
    ensure_root(home)?;
    Ok(ProfilesLock {
        _lock: fsutil::lock_exclusive(&home.profiles_lock())?,
    })
}

/// The profiles lock if no one holds it, for work that may be skipped
/// while a create runs (a gateway setting the port index right). Unlike
/// [`lock`] it never writes the root profile's files.
pub fn try_lock(home: &HermesHome) -> Result<Option<ProfilesLock>, FsError> {
    Ok(fsutil::try_lock_exclusive(&home.profiles_lock())?.map(|lock| ProfilesLock { _lock: lock }))
}

/// Profiles with a marker, `default` first, then sorted; stray directories are skipped.
pub fn list(home: &HermesHome) -> Result<Vec<ProfileName>, FsError> {
    let mut names = vec![ProfileName::default_profile()];
    names.extend(named_profiles(home)?.into_iter().filter_map(|e| e.ok()));
    Ok(names)
}

/// Each directory under `profiles/`: a valid profile name, or why it is not one.
pub fn named_profiles(home: &HermesHome) -> Result<Vec<Result<ProfileName, String>>, FsError> {
    let dir = home.profiles_dir();
    let entries = match fsutil::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("list", &dir, e))?;
        let raw = entry.file_name().to_string_lossy().into_owned();
        if raw.starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().ok();
        let is_dir = file_type.is_some_and(|t| t.is_dir());
        let is_link = file_type.is_some_and(|t| t.is_symlink());
        let verdict = match ProfileName::parse(&raw) {
            _ if is_link => Err(format!("{raw}: a symbolic link, not followed")),
            _ if !is_dir => Err(format!("{raw}: not a directory")),
            Ok(name) if name.as_str() != raw => Err(format!("{raw}: not a canonical name")),
            Ok(name) if name.is_default() => Err(format!("{raw}: 'default' is the root profile")),
            Ok(name) if !entry.path().join(crate::home::PROFILE_MARKER).exists() => {
                Err(format!("{name}: no profile marker"))
            }
            Ok(name) => Ok(name),
            Err(e) => Err(format!("{raw}: {e}")),
        };
        found.push(verdict);
    }
    // Formatted once per entry, not twice per comparison (1000 profiles: 20,000 strings).
    found.sort_by_cached_key(|v| format!("{v:?}"));
    Ok(found)
}

/// The paths of an existing profile, or `NotFound`.
pub fn existing(home: &HermesHome, name: &ProfileName) -> Result<ProfilePaths, ProfileError> {
    let paths = home.profile(name);
    if name.is_default() {
        ensure_root(home)?;
        return Ok(paths);
    }
    // A symlinked profile directory would send state, pid and inbox out of the home.
    let is_real_dir = fsutil::symlink_metadata(&paths.dir).is_ok_and(|m| m.is_dir());
    if fsutil::symlink_metadata(&paths.dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ProfileError::Symlink(paths.dir));
    }
    match fsutil::symlink_metadata(&paths.marker()) {
        Ok(meta) if meta.is_file() && is_real_dir => Ok(paths),
        _ if fsutil::symlink_metadata(&paths.dir).is_ok() => {
            Err(ProfileError::NotAProfile(paths.dir))
        }
        _ => Err(ProfileError::NotFound(name.clone())),
    }
}

pub fn info(home: &HermesHome, name: &ProfileName, alias_dir: Option<&Path>) -> ProfileInfo {
    let paths = home.profile(name);
    let (host, port, config_error) = match Config::load(&paths.config()) {
        Ok(c) => (Some(c.gateway.host), Some(c.gateway.port), None),
        Err(e) => (
            None,
            Config::read_port(&paths.config()),
            Some(e.to_string()),
        ),
    };
    let state: GatewayState = state::load(&paths.state())
        .map(|l| l.state())
        .unwrap_or_default();
    let alias = alias_dir
        .map(|d| d.join(name.as_str()))
        .filter(|p| is_our_alias(p));
    ProfileInfo {
        name: name.clone(),
        dir: paths.dir,
        host,
        port,
        config_error,
        gateway_state: state.gateway_state.map(|s| s.as_str().to_string()),
        desired_state: state.desired_state.map(|s| s.as_str().to_string()),
        alias,
    }
}

/// Create a named profile: its directory appears complete or not at all.
pub fn create(
    home: &HermesHome,
    held: &ProfilesLock,
    name: &ProfileName,
    port: Option<u16>,
) -> Result<ProfilePaths, ProfileError> {
    Creator::new(home, held)
        .create(name, port)
        .map(|made| made.paths)
}

/// A profile a [`Creator`] made, with the port it chose.
#[derive(Debug)]
pub struct NewProfile {
    pub paths: ProfilePaths,
    pub port: u16,
}

/// Creates profiles under one hold of the profiles lock, reading the ports
/// the existing profiles claim once for all of them (on the first create
/// that gets that far) and adding each new profile's port as it is made;
/// the port index is written once, when the creator is dropped. Nothing
/// else creates a profile while the lock is held (the creator borrows it,
/// so it cannot outlive it), so the list stays true.
pub struct Creator<'a> {
    home: &'a HermesHome,
    held: &'a ProfilesLock,
    claimed: Option<crate::ports::Claims>,
}

impl Drop for Creator<'_> {
    /// The port index learns the new profiles once, however many there
    /// were. A failure to write it only costs the next create a listing.
    fn drop(&mut self) {
        if let Some(claimed) = &mut self.claimed {
            let _ = claimed.save();
        }
    }
}

impl<'a> Creator<'a> {
    pub fn new(home: &'a HermesHome, held: &'a ProfilesLock) -> Creator<'a> {
        Creator {
            home,
            held,
            claimed: None,
        }
    }

    /// Create one named profile, as [`create`] does.
    pub fn create(
        &mut self,
        name: &ProfileName,
        port: Option<u16>,
    ) -> Result<NewProfile, ProfileError> {
        let home = self.home;
        if name.is_default() {
            return Err(ProfileError::Default(home.root().to_path_buf(), "created"));
        }
        fsutil::ensure_dir_under(home.root(), &home.profiles_dir(), HOME_MODE)?;
        let paths = home.profile(name);
        if fsutil::symlink_metadata(&paths.dir).is_ok() {
            return Err(if paths.marker().exists() {
                ProfileError::Exists(name.clone())
            } else {
                ProfileError::NotAProfile(paths.dir)
            });
        }
        let claimed = match &mut self.claimed {
            Some(claimed) => claimed,
            unread => unread.insert(crate::ports::Claims::read(home, self.held)?),
        };
        let port = choose_port(claimed, port)?;
        let staging = home.profiles_dir().join(format!(".{name}.creating"));
        if staging.exists() {
            // Left by a create that was killed half way; it never became visible.
            fsutil::remove_dir_all(&staging)?;
        }
        let build = || -> Result<(), ProfileError> {
            fsutil::ensure_dir_under(home.root(), &staging, HOME_MODE)?;
            Config::new(port).save(&staging.join("config.yaml"))?;
            write_env(&staging.join(".env"))?;
            write_marker(&staging.join(crate::home::PROFILE_MARKER), name)?;
            fsutil::sync_dir(&staging)?;
            Ok(())
        };
        if let Err(e) = build() {
            let _ = fsutil::remove_dir_all(&staging);
            return Err(e);
        }
        fsutil::rename(&staging, &paths.dir)?;
        claimed.add(home, name, port);
        fsutil::sync_dir(&home.profiles_dir())?;
        Ok(NewProfile { paths, port })
    }
}

/// Remove a named profile's directory (the caller has already unregistered its gateway).
pub fn remove(
    home: &HermesHome,
    _held: &ProfilesLock,
    name: &ProfileName,
) -> Result<(), ProfileError> {
    if name.is_default() {
        return Err(ProfileError::Default(home.root().to_path_buf(), "deleted"));
    }
    let paths = existing(home, name)?;
    // Rename first so a half-finished removal never looks like a profile.
    let doomed = home.profiles_dir().join(format!(".{name}.deleting"));
    fsutil::rename(&paths.dir, &doomed)?;
    fsutil::remove_dir_all(&doomed)?;
    Ok(())
}

fn choose_port(claims: &crate::ports::Claims, wanted: Option<u16>) -> Result<u16, ProfileError> {
    match wanted {
        Some(port) => match claims.owner(port) {
            Some(profile) => Err(ProfileError::PortTaken { port, profile }),
            None => Ok(port),
        },
        None => claims
            .first_free(BASE_PORT + 1)
            .ok_or(ProfileError::NoFreePort),
    }
}

fn write_env(path: &Path) -> Result<(), ProfileError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ProfileError::Random(e.to_string()))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!("{SECRET_VAR}={secret}\n");
    fsutil::atomic_write(path, text.as_bytes(), 0o600)?;
    Ok(())
}

fn write_marker(path: &Path, name: &ProfileName) -> Result<(), ProfileError> {
    let text = format!(
        "{{\"profile\":\"{name}\",\"created_at\":{}}}\n",
        state::now_ms()
    );
    fsutil::atomic_write(path, text.as_bytes(), 0o644)?;
    Ok(())
}

/// Read one variable from a profile's `.env` (KEY=VALUE lines, optional quotes).
pub fn env_value(paths: &ProfilePaths, key: &str) -> Result<Option<String>, FsError> {
    let path = paths.env_file();
    let bytes = match fsutil::read_no_follow(&path) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_string())
    }))
}

/// A hook's sender-issued secret, if one was set (`hermes webhook secret HOOK --set`).
pub fn hook_secret(paths: &ProfilePaths, hook: &HookName) -> Result<Option<String>, FsError> {
    match fsutil::read_no_follow(&paths.hook_secret(hook)) {
        Ok(bytes) => {
            Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string()).filter(|s| !s.is_empty()))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Store a hook's secret, readable by its owner only.
pub fn set_hook_secret(paths: &ProfilePaths, hook: &HookName, secret: &str) -> Result<(), FsError> {
    fsutil::atomic_write(
        &paths.hook_secret(hook),
        format!("{secret}\n").as_bytes(),
        0o600,
    )
}

/// Remove a hook's secret; `false` when there was none.
pub fn remove_hook_secret(paths: &ProfilePaths, hook: &HookName) -> Result<bool, FsError> {
    match fsutil::remove_file(&paths.hook_secret(hook)) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// What happened to an alias wrapper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasOutcome {
    Written(PathBuf),
    /// Something that is not ours already answers to that name.
    Skipped {
        path: PathBuf,
        reason: String,
    },
}

fn is_our_alias(path: &Path) -> bool {
    fsutil::read_no_follow(path)
        .map(|b| String::from_utf8_lossy(&b).lines().nth(1) == Some(ALIAS_MARK))
        .unwrap_or(false)
}

/// Single-quote a word for POSIX sh.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

pub fn render_alias(program: &Path, name: &ProfileName) -> String {
    format!(
        "#!/bin/sh\n{ALIAS_MARK}\nexec {} -p {} \"$@\"\n",
        sh_quote(&program.to_string_lossy()),
        sh_quote(name.as_str())
    )
}

/// Write `<alias_dir>/<name>` unless that, or a command of that name on `path_var`, is not ours.
pub fn write_alias(
    alias_dir: &Path,
    program: &Path,
    name: &ProfileName,
    path_var: Option<&str>,
) -> Result<AliasOutcome, FsError> {
    let target = alias_dir.join(name.as_str());
    if fsutil::symlink_metadata(&target).is_ok() && !is_our_alias(&target) {
        return Ok(AliasOutcome::Skipped {
            reason: format!("{} exists and is not a hermes alias", target.display()),
            path: target,
        });
    }
    let shadowed = path_var
        .unwrap_or("")
        .split(':')
        .filter(|d| !d.is_empty() && Path::new(d) != alias_dir)
        .map(|d| Path::new(d).join(name.as_str()))
        .find(|p| p.is_file());
    if let Some(other) = shadowed {
        return Ok(AliasOutcome::Skipped {
            reason: format!(
                "a command named '{name}' already exists at {}",
                other.display()
            ),
            path: target,
        });
    }
    fsutil::ensure_dir(alias_dir, 0o755)?;
    fsutil::atomic_write(&target, render_alias(program, name).as_bytes(), 0o755)?;
    Ok(AliasOutcome::Written(target))
}

/// Remove the alias only if it is ours; returns whether one was removed.
pub fn remove_alias(alias_dir: &Path, name: &ProfileName) -> Result<bool, FsError> {
    let target = alias_dir.join(name.as_str());
    if !is_our_alias(&target) {
        return Ok(false);
    }
    fsutil::remove_file(&target)?;
    Ok(true)
}

/// Mode bits of a file, for checks and tests.
pub fn mode_of(path: &Path) -> Option<u32> {
    fsutil::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn name(s: &str) -> ProfileName {
        ProfileName::parse(s).unwrap()
    }

    #[test]
    fn a_profile_whose_config_does_not_parse_keeps_its_port() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let broken = create(&home, &lock(&home).unwrap(), &name("broken"), None).unwrap();
        let port = Config::read_port(&broken.config()).unwrap();
        // A tab where YAML wants spaces, and a key without its colon.
        let text = format!("gateway:\n  port: {port}\n\thost: x\nmodel\n  - [\n");
        std::fs::write(broken.config(), text).unwrap();
        assert!(Config::load(&broken.config()).is_err());
        assert_eq!(Config::read_port(&broken.config()), Some(port));
        let next = create(&home, &lock(&home).unwrap(), &name("next"), None).unwrap();
        assert_ne!(Config::read_port(&next.config()), Some(port));
        assert!(matches!(
            create(&home, &lock(&home).unwrap(), &name("c"), Some(port)),
            Err(ProfileError::PortTaken { profile, .. }) if profile.as_str() == "broken"
        ));
    }

    #[test]
    fn one_creator_sees_the_ports_of_the_profiles_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let first = create(&home, &lock(&home).unwrap(), &name("first"), None).unwrap();
        let taken = Config::read_port(&first.config()).unwrap();
        let held = lock(&home).unwrap();
        let mut creator = Creator::new(&home, &held);
        let mut ports = vec![taken];
        for n in ["a", "b", "c"] {
            let made = creator.create(&name(n), None).unwrap();
            assert_eq!(Config::read_port(&made.paths.config()), Some(made.port));
            ports.push(made.port);
        }
        let fixed = creator.create(&name("fixed"), Some(40_000)).unwrap();
        assert_eq!(fixed.port, 40_000);
        assert_eq!(Config::read_port(&fixed.paths.config()), Some(40_000));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            4,
            "every profile of the batch has its own port"
        );
        // A later name of the same batch asking for a port made earlier in it.
        assert!(matches!(
            creator.create(&name("late"), Some(40_000)),
            Err(ProfileError::PortTaken { profile, .. }) if profile.as_str() == "fixed"
        ));
        assert!(matches!(
            creator.create(&name("again"), Some(taken)),
            Err(ProfileError::PortTaken { profile, .. }) if profile.as_str() == "first"
        ));
        assert!(matches!(
            creator.create(&name("b"), None),
            Err(ProfileError::Exists(_))
        ));
        drop(creator);
        drop(held);
        // What the batch made is on disk, for the next create's own reading.
        assert!(matches!(
            create(&home, &lock(&home).unwrap(), &name("d"), Some(40_000)),
            Err(ProfileError::PortTaken { profile, .. }) if profile.as_str() == "fixed"
        ));
    }

    #[test]
    fn create_assigns_distinct_ports_and_secret_0600() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let a = create(&home, &lock(&home).unwrap(), &name("a"), None).unwrap();
        let b = create(&home, &lock(&home).unwrap(), &name("b"), None).unwrap();
        let pa = Config::read_port(&a.config()).unwrap();
        let pb = Config::read_port(&b.config()).unwrap();
        assert_ne!(pa, pb);
        assert_ne!(pa, BASE_PORT);
        assert_eq!(mode_of(&a.env_file()), Some(0o600));
        let secret = env_value(&a, SECRET_VAR).unwrap().unwrap();
        assert_eq!(secret.len(), 64);
        assert!(matches!(
            create(&home, &lock(&home).unwrap(), &name("c"), Some(pa)),
            Err(ProfileError::PortTaken { .. })
        ));
        assert!(matches!(
            create(&home, &lock(&home).unwrap(), &name("a"), None),
            Err(ProfileError::Exists(_))
        ));
        assert!(matches!(
            create(
                &home,
                &lock(&home).unwrap(),
                &ProfileName::default_profile(),
                None
            ),
            Err(ProfileError::Default(..))
        ));
        assert_eq!(
            list(&home).unwrap(),
            vec![ProfileName::default_profile(), name("a"), name("b")]
        );
    }

    #[test]
    fn stray_directories_are_not_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        fs::create_dir_all(home.profiles_dir().join("stray")).unwrap();
        fs::create_dir_all(home.profiles_dir().join("Bad Name")).unwrap();
        assert_eq!(list(&home).unwrap(), vec![ProfileName::default_profile()]);
        assert!(matches!(
            existing(&home, &name("stray")),
            Err(ProfileError::NotAProfile(_))
        ));
        assert!(matches!(
            create(&home, &lock(&home).unwrap(), &name("stray"), None),
            Err(ProfileError::NotAProfile(_))
        ));
        assert!(matches!(
            remove(&home, &lock(&home).unwrap(), &name("nope")),
            Err(ProfileError::NotFound(_))
        ));
    }

    #[test]
    fn a_linked_profile_directory_is_reported_as_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path().join("home"));
        let real = dir.path().join("elsewhere");
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join(crate::home::PROFILE_MARKER), "").unwrap();
        fs::create_dir_all(home.profiles_dir()).unwrap();
        std::os::unix::fs::symlink(&real, home.profiles_dir().join("linked")).unwrap();
        let err = existing(&home, &name("linked")).unwrap_err();
        assert!(matches!(err, ProfileError::Symlink(_)), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            named_profiles(&home).unwrap(),
            vec![Err("linked: a symbolic link, not followed".to_string())]
        );
    }

    #[test]
    fn aliases_never_overwrite_foreign_commands() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("mine"), "#!/bin/sh\necho not hermes\n").unwrap();
        let out = write_alias(&bin, Path::new("/usr/bin/hermes"), &name("mine"), None).unwrap();
        assert!(matches!(out, AliasOutcome::Skipped { .. }));
        assert_eq!(
            fs::read_to_string(bin.join("mine")).unwrap(),
            "#!/bin/sh\necho not hermes\n"
        );

        let other = dir.path().join("other");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("ls2"), "x").unwrap();
        let path_var = format!("{}:{}", bin.display(), other.display());
        let out = write_alias(&bin, Path::new("/h"), &name("ls2"), Some(&path_var)).unwrap();
        assert!(matches!(out, AliasOutcome::Skipped { .. }));

        let out = write_alias(&bin, Path::new("/opt/my hermes"), &name("coder"), None).unwrap();
        assert_eq!(out, AliasOutcome::Written(bin.join("coder")));
        let text = fs::read_to_string(bin.join("coder")).unwrap();
        assert!(
            text.contains("exec '/opt/my hermes' -p 'coder' \"$@\""),
            "{text}"
        );
        assert!(remove_alias(&bin, &name("coder")).unwrap());
        assert!(!remove_alias(&bin, &name("mine")).unwrap());
    }

    #[test]
    fn sh_quote_handles_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
