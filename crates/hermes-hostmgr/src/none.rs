//! The `none` backend: no service manager was found. Every lifecycle call
//! fails with one line that names the fix, instead of pretending to work.

use std::time::Duration;

use hermes_core::name::ProfileName;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError, ServiceManager, SlotStatus};

pub const FIX: &str = "no service manager found (no s6 supervisor, systemd, launchd or Task Scheduler): start one with `hermes supervise`, or run hermes in its container";

#[derive(Debug, Default, Clone, Copy)]
pub struct NoneManager;

impl NoneManager {
    pub fn refuse(operation: &'static str) -> ServiceError {
        ServiceError::Unsupported {
            manager: ManagerKind::None,
            operation,
            hint: Some(FIX.to_string()),
        }
    }
}

impl ServiceManager for NoneManager {
    fn kind(&self) -> ManagerKind {
        ManagerKind::None
    }

    fn install(&self, _spec: &GatewaySpec) -> Result<(), ServiceError> {
        Err(Self::refuse("install"))
    }

    fn uninstall(&self, _profile: &ProfileName) -> Result<(), ServiceError> {
        Err(Self::refuse("uninstall"))
    }

    fn start(&self, _profile: &ProfileName, _t: Duration) -> Result<SlotStatus, ServiceError> {
        Err(Self::refuse("start"))
    }

    fn stop(&self, _profile: &ProfileName, _t: Duration) -> Result<SlotStatus, ServiceError> {
        Err(Self::refuse("stop"))
    }

    fn restart(&self, _profile: &ProfileName, _t: Duration) -> Result<SlotStatus, ServiceError> {
        Err(Self::refuse("restart"))
    }

    fn status(&self, _profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        Err(Self::refuse("status"))
    }

    fn registration_unsupported(&self, operation: &'static str) -> ServiceError {
        Self::refuse(operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_names_the_fix_in_one_line() {
        let p = ProfileName::parse("coder").unwrap();
        let t = Duration::from_secs(1);
        let m = NoneManager;
        let spec = GatewaySpec {
            profile: p.clone(),
            program: "/bin/hermes".into(),
            home: "/h".into(),
            workdir: "/h".into(),
            log_dir: "/h/l".into(),
            env: Default::default(),
        };
        let errors = [
            m.install(&spec).unwrap_err(),
            m.uninstall(&p).unwrap_err(),
            m.start(&p, t).unwrap_err(),
            m.stop(&p, t).unwrap_err(),
            m.restart(&p, t).unwrap_err(),
            m.status(&p).unwrap_err(),
            m.register(&spec, true).unwrap_err(),
            m.unregister(&p).unwrap_err(),
            m.list().unwrap_err(),
        ];
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains("`hermes supervise`"), "{line}");
            assert!(
                line.contains("not supported by the none service manager"),
                "{line}"
            );
        }
    }
}
