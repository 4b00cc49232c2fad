//! `hermes gateway run`, start to finish: lock, pid file, state, config,
//! inbox recovery, listen, readiness, serve, drain, stopped.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use hermes_core::config::{Config, LimitsSection};
use hermes_core::fsutil::{self, Durability};
use hermes_core::home::{HermesHome, ProfilePaths};
use hermes_core::ports;
use hermes_core::profile::{self, SECRET_VAR};
use hermes_core::state::{self, LastExit, RunState, StopSignal};
use hermes_core::ProfileName;
use hermes_inbox::{Inbox, Options};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::admission::Admission;
use crate::error::GatewayError;
use crate::hooks::{Hooks, Recorder};
use crate::readiness::Notifier;
use crate::replay::{self, ReplayGuard};
use crate::routes::App;
use crate::{lock, server};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub home: HermesHome,
    pub profile: ProfileName,
    /// Take over from a gateway holding the lock.
    pub replace: bool,
    /// s6's `notification-fd`.
    pub notify_fd: Option<i32>,
}

/// Run the gateway in the foreground until SIGTERM or SIGINT. `Ok` means a clean stop.
pub fn run(options: RunOptions) -> Result<(), GatewayError> {
    let _ = crate::PROFILE.set(options.profile.to_string());
    let mut notifier = Notifier::new(options.notify_fd)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    let _enter = runtime.enter();
    // Installed first, so a SIGTERM during start-up ends in an orderly stop, not a kill.
    let mut term = signal(SignalKind::terminate()).map_err(GatewayError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(GatewayError::Runtime)?;

    let paths = profile::existing(&options.home, &options.profile)?;
    let _lock = lock::acquire(&paths, options.replace)?;
    let pid = std::process::id();
    // Not synced: the lock, not this file, says who runs, a boot removes a
    // stale one, and one a power loss leaves empty reads as no pid.
    fsutil::replace(
        &paths.pid_file(),
        format!("{pid}\n").as_bytes(),
        0o644,
        Durability::Volatile,
    )?;
    let started = Instant::now();
    let started_at_ms = state::now_ms();
    // The state is written once before readiness, when start-up has
    // succeeded or failed: meanwhile s6 says "up, not ready", which is what
    // every front end shows as starting.
    let outcome = runtime
        .block_on(start(&options.home, &paths))
        .and_then(|parts| {
            report(&paths, |s| {
                s.pid = Some(pid);
                s.started_at = Some(started_at_ms);
                s.gateway_state = Some(RunState::Running);
                s.exit_reason = None;
            })?;
            Ok(parts)
        });
    let (listener, inbox, secret, limits, hooks) = match outcome {
        Ok(parts) => parts,
        Err(err) => {
            // The caller prints the error: one line, not two.
            let reason = err.to_string();
            let _ = report(&paths, |s| {
                s.started_at = Some(started_at_ms);
                s.gateway_state = Some(RunState::StartupFailed);
                s.exit_reason = Some(reason);
                s.pid = None;
            });
            remove_pid_file(&paths, pid);
            return Err(err);
        }
    };
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = Arc::new(App {
        paths: paths.clone(),
        pid,
        started,
        started_at_ms,
        listen: listen.clone(),
        secret,
        inbox: inbox.clone(),
        state: Mutex::new(RunState::Running),
        admission: Admission::new(
            limits.max_connections as usize,
            limits.max_inflight_body_bytes,
        ),
        limits,
        replay: Mutex::new(ReplayGuard::new(started_at_ms / 1000, replay::MAX_ENTRIES)),
        requests: Default::default(),
        hooks,
        deliveries: Recorder::new(&paths),
    });
    // The last delivery per hook reaches the disk at most once a second, and
    // only after a delivery: an idle gateway is never woken for it (1000 idle
    // gateways ticking every second cost about 94 ms of CPU a second).
    let flusher = {
        let app = app.clone();
        runtime.spawn(async move {
            loop {
                app.deliveries.noted().await;
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || app.deliveries.flush(&app.paths)).await;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    crate::log(&format!(
        "profile {} serving on {listen} (pid {pid}, ready in {} ms)",
        paths.name,
        started.elapsed().as_millis()
    ));
    notifier.ready();
    let stop = async {
        let reason = tokio::select! {
            _ = term.recv() => StopSignal::Term,
            _ = int.recv() => StopSignal::Int,
        };
        notifier.stopping();
        reason
    };
    let reason = runtime.block_on(server::serve(listener, app.clone(), stop));
    flusher.abort();
    app.deliveries.flush(&paths);
    // Every queued append is written and answered before the process ends.
    inbox.close();
    // The exit 0 that follows is recorded here too, and `record_stop` clears
    // the failure count of a requested stop as the hook's policy does, so
    // the finish hook has nothing left to write (`finish::already_recorded`)
    // and the slot's finish script skips it.
    report(&paths, |s| {
        s.record_stop(reason);
        s.pid = None;
        s.last_exit = Some(LastExit {
            code: Some(0),
            signal: None,
            at: state::now_ms(),
        });
    })?;
    remove_pid_file(&paths, pid);
    crate::log(&format!("stopped ({})", reason.as_str()));
    Ok(())
}

/// Record what the gateway says about itself: atomically, not durably. A
/// power loss ends the gateway anyway and the next one rewrites all of it;
/// the fsync before the rename keeps the operator's wish beside it from
/// being lost to a torn file. Waiting for the directory's sync as well
/// would put a journal commit before readiness (twice) and before exit
/// (twice) of every gateway that `start --all` and `stop --all` wait for.
pub(crate) fn report<T>(
    paths: &ProfilePaths,
    change: impl FnOnce(&mut state::GatewayState) -> T,
) -> Result<T, state::StateError> {
    state::update_with(paths, Durability::Atomic, change)
}

/// Everything that can fail before serving: config, secret, a port another
/// profile's config names too, inbox recovery, bind.
async fn start(
    home: &HermesHome,
    paths: &ProfilePaths,
) -> Result<(TcpListener, Arc<Inbox>, Vec<u8>, LimitsSection, Hooks), GatewayError> {
    let config = Config::load(&paths.config())?;
    ports::confirm(home, &paths.name, config.gateway.port)?;
    let secret = profile::env_value(paths, SECRET_VAR)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| GatewayError::NoSecret {
            path: paths.env_file(),
        })?;
    let hooks = Hooks::load(paths, &config.webhooks, &secret)?;
    let inbox = Inbox::open(&paths.inbox_dir(), Options::from_config(&config.webhooks))?;
    report_recovery(&inbox);
    let addr = format!("{}:{}", config.gateway.host, config.gateway.port);
    let listener = TcpListener::bind((config.gateway.host.as_str(), config.gateway.port))
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    let limits = LimitsSection {
        max_inflight_body_bytes: config.inflight_body_bytes(),
        ..config.gateway.limits
    };
    Ok((
        listener,
        Arc::new(inbox),
        secret.into_bytes(),
        limits,
        hooks,
    ))
}

fn report_recovery(inbox: &Inbox) {
    let report = inbox.recovery();
    crate::log(&format!(
        "inbox {}: recovered {} event(s) in {} segment(s) of {} hook(s)",
        inbox.dir().display(),
        report.events,
        report.segments,
        report.hooks
    ));
    for cut in &report.cuts {
        crate::log(&format!(
            "inbox: cut {} byte(s) from {} after {} whole record(s): {}",
            cut.cut_bytes,
            cut.segment.display(),
            cut.kept_records,
            cut.reason
        ));
    }
    for path in &report.removed_empty {
        crate::log(&format!(
            "inbox: removed {}: no whole record in it",
            path.display()
        ));
    }
}

/// Remove `gateway.pid` only if it is still ours (a replacement may have written its own).
fn remove_pid_file(paths: &ProfilePaths, pid: u32) {
    if lock::read_pid(&paths.pid_file()) == Some(pid as i32) {
        let _ = fsutil::remove_file(&paths.pid_file());
    }
}
