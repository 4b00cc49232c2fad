//! The static slots the scandir gets at every boot, beside the gateway
//! slots the reconciler registers (hermes-s6 renders and writes them).
//! Everything here is executed by the supervision tree, which runs as the
//! service user.

use std::path::Path;

use hermes_core::{dashboard, ingress, HermesHome};
use hermes_s6::static_slot::{StaticSlot, DASHBOARD, INGRESS, NOTIFY};

/// Every static slot; `var` reads the environment the init was started with.
pub fn static_slots(
    program: &Path,
    home: &HermesHome,
    var: impl Fn(&str) -> Option<String>,
) -> Vec<StaticSlot> {
    let program = program.to_string_lossy().into_owned();
    vec![
        // `hermes container dashboard-run` checks the bind and execs the dashboard.
        StaticSlot {
            name: DASHBOARD,
            argv: vec![program.clone(), "container".into(), "dashboard-run".into()],
            log_dir: home.dashboard_log_dir(),
            enabled: dashboard::Settings::from_vars(&var).enabled,
        },
        // The webhook ingress: opt-in, it opens a port to the outside.
        StaticSlot {
            name: INGRESS,
            argv: vec![program.clone(), "container".into(), "ingress-run".into()],
            log_dir: home.ingress_log_dir(),
            enabled: ingress::Settings::from_vars(&var).enabled,
        },
        // The notification sender: always up (it idles without targets), so
        // notifications do not depend on the opt-in dashboard.
        StaticSlot {
            name: NOTIFY,
            argv: vec![program, "container".into(), "notify-run".into()],
            log_dir: home.notify_log_dir(),
            enabled: true,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_static_slot_starts_only_when_asked() {
        let home = HermesHome::new("/opt/data");
        let on = static_slots(Path::new("/usr/local/bin/hermes"), &home, |k| {
            (k == "HERMES_DASHBOARD").then(|| "1".to_string())
        });
        assert_eq!(on.len(), 3);
        assert_eq!(on[0].name, "dashboard");
        assert!(on[0].enabled);
        assert_eq!(
            on[0].argv,
            ["/usr/local/bin/hermes", "container", "dashboard-run"]
        );
        assert_eq!(on[0].log_dir, home.dashboard_log_dir());
        assert_eq!(on[1].name, "ingress");
        assert!(!on[1].enabled);
        assert_eq!(
            on[1].argv,
            ["/usr/local/bin/hermes", "container", "ingress-run"]
        );
        assert_eq!(on[1].log_dir, home.ingress_log_dir());
        let off = static_slots(Path::new("/h"), &home, |k| {
            (k == "HERMES_INGRESS").then(|| "1".to_string())
        });
        assert!(!off[0].enabled);
        assert!(off[1].enabled);
    }

    #[test]
    fn the_notification_sender_always_runs() {
        let home = HermesHome::new("/opt/data");
        let slots = static_slots(Path::new("/usr/local/bin/hermes"), &home, |_| None);
        let notify = slots.iter().find(|s| s.name == "notify").unwrap();
        assert!(notify.enabled);
        assert_eq!(
            notify.argv,
            ["/usr/local/bin/hermes", "container", "notify-run"]
        );
        assert_eq!(notify.log_dir, home.notify_log_dir());
    }
}
