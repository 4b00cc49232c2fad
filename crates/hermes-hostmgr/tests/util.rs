//! Shared fixtures: an ordinary spec and a hostile one whose values carry
//! every character that unit files, plists, XML and cmd.exe treat specially;
//! and what every host backend answers to slot registration.

use std::collections::BTreeMap;
use std::path::Path;

use hermes_core::service::{GatewaySpec, ServiceError, ServiceManager};
use hermes_core::ProfileName;
use hermes_hostmgr::runner::RecordingRunner;

pub fn profile(name: &str) -> ProfileName {
    ProfileName::parse(name).unwrap()
}

pub fn spec(name: &str) -> GatewaySpec {
    let home = Path::new("/home/ann/.hermes");
    let p = profile(name);
    GatewaySpec {
        workdir: if p.is_default() {
            home.to_path_buf()
        } else {
            home.join("profiles").join(name)
        },
        log_dir: home.join("logs/gateways").join(name),
        profile: p,
        program: "/usr/local/bin/hermes".into(),
        home: home.to_path_buf(),
        env: BTreeMap::from([("HERMES_HOME".to_string(), home.display().to_string())]),
    }
}

/// Characters each format must escape: space, both quotes, %, $, backslash,
/// `&<>`, a specifier-looking `%h`, a `${VAR}`, and non-ASCII.
pub const HOSTILE_DIR: &str = "my apps/100% \"q\" 'it's' $HOME ${X} a\\b &<>é %h";

/// Executable names cannot hold quotes or backslashes under systemd (it refuses
/// them), so the program lives under a directory with every other special.
pub const HOSTILE_BIN_DIR: &str = "bin dir/100% $HOME ${X} &<>é %h";

/// A spec whose paths live under `root/HOSTILE_DIR` and whose environment
/// adds a value with a newline, a tab and a carriage return.
pub fn hostile_spec(root: &Path) -> GatewaySpec {
    let base = root.join(HOSTILE_DIR);
    let mut s = spec("coder");
    s.program = root.join(HOSTILE_BIN_DIR).join("hermes");
    s.home = base.join("home");
    s.workdir = base.join("home/profiles/coder");
    s.log_dir = base.join("home/logs/gateways/coder");
    s.env = BTreeMap::from([
        ("HERMES_HOME".to_string(), s.home.display().to_string()),
        (
            "GREETING".to_string(),
            "line one\nline\ttwo \"quoted\" 'single' $HOME ${HOME} 100% %i \\ \r end".to_string(),
        ),
        ("EMPTY".to_string(), String::new()),
    ]);
    s
}

/// A host backend refuses slot registration with a typed error and runs nothing.
pub fn assert_registration_refused(m: &dyn ServiceManager, runner: &RecordingRunner) {
    assert!(!m.supports_registration());
    for e in [
        m.register(&spec("coder"), true).unwrap_err(),
        m.unregister(&profile("coder")).unwrap_err(),
    ] {
        assert!(matches!(e, ServiceError::Unsupported { .. }), "{e}");
    }
    assert!(runner.calls().is_empty());
}
