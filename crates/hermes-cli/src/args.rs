//! Clap types only: what the user can type. No I/O happens here; the
//! commands in `commands/` turn these into library calls.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hermes_core::config::Scheme;
use hermes_core::name::HookName;
use hermes_core::ProfileName;

#[derive(Debug, Parser)]
#[command(
    name = "hermes",
    version,
    about = "Supervise per-profile gateways with s6, systemd, launchd or Windows tasks"
)]
pub struct Cli {
    /// Profile to act on (default: the root profile, `default`).
    #[arg(short = 'p', long = "profile", global = true, value_parser = parse_profile)]
    pub profile: Option<ProfileName>,
    /// Open the interactive terminal console.
    #[arg(short = 'T', long = "tui")]
    pub tui: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

pub fn parse_profile(raw: &str) -> Result<ProfileName, String> {
    ProfileName::parse(raw).map_err(|e| e.to_string())
}

pub fn parse_hook(raw: &str) -> Result<HookName, String> {
    HookName::parse(raw).map_err(|e| e.to_string())
}

pub fn parse_scheme(raw: &str) -> Result<Scheme, String> {
    Scheme::parse(raw).ok_or_else(|| {
        let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown scheme {raw:?}: one of {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, delete, list and show profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Run, start, stop and inspect a profile's gateway.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Run a user-level s6 supervision tree in the foreground.
    Supervise(SuperviseArgs),
    /// Service manager, supervisor and every supervised service.
    Status(JsonFlag),
    /// Check the installation and say how to fix what is wrong.
    Doctor(JsonFlag),
    /// Exit 0 when everything that should run answers; else one line per problem.
    Health(HealthArgs),
    /// Serve the web dashboard.
    Dashboard(DashboardArgs),
    /// Open the interactive terminal console.
    Tui,
    /// Send to, list and describe a profile's webhook inbox.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Container init stages and boot reconciliation.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// A slot logger's run step: end an s6-log that a killed supervisor
    /// left holding DIR's lock, then exec the logger.
    #[command(hide = true)]
    LogRun {
        dir: PathBuf,
        /// The logger's command line, after `--`.
        #[arg(last = true, required = true)]
        logger: Vec<OsString>,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only check that the supervision tree answers (a liveness probe).
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Create profiles, each with its own gateway port, webhook secret and
    /// alias. Many at once register their slots together: a scan of the
    /// supervision tree after 16, 32 and 64, then every 128, not one each.
    Create {
        #[arg(value_parser = parse_profile, required = true, num_args = 1..)]
        names: Vec<ProfileName>,
        /// Do not write the `NAME` alias wrapper.
        #[arg(long)]
        no_alias: bool,
        /// Gateway port (default: the next free one); one profile only.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
    },
    /// Stop and unregister the profile's gateway, then remove the profile.
    Delete {
        #[arg(value_parser = parse_profile)]
        name: ProfileName,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// List profiles.
    List(JsonFlag),
    /// Show one profile.
    Show {
        #[arg(value_parser = parse_profile)]
        name: ProfileName,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone)]
pub struct LifecycleArgs {
    /// Act on every registered gateway.
    #[arg(long)]
    pub all: bool,
    /// Seconds to wait for the outcome.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Debug, Args, Clone)]
pub struct ManagerArgs {
    /// Only print the files and commands; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Service manager to use instead of the detected one.
    #[arg(long, value_parser = ["s6", "systemd", "launchd", "windows", "none"])]
    pub manager: Option<String>,
    /// systemd: a system unit instead of a user unit.
    #[arg(long)]
    pub system: bool,
    /// systemd --system: the user the gateway runs as.
    #[arg(long)]
    pub run_as_user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway in the foreground until SIGTERM.
    Run {
        /// Take over from a gateway that holds the profile lock.
        #[arg(long)]
        replace: bool,
        /// Write a newline to this descriptor once serving (s6 readiness).
        #[arg(long)]
        notify_fd: Option<i32>,
        /// In the container: run here instead of starting the supervised slot.
        #[arg(long)]
        no_supervise: bool,
    },
    /// Start the gateway and wait until it is ready.
    Start(LifecycleArgs),
    /// Stop the gateway and wait until it is down.
    Stop(LifecycleArgs),
    /// Restart the gateway and wait until it is ready again.
    Restart(LifecycleArgs),
    /// Show the gateway's supervision state.
    Status {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the gateway's log: s6-log's `current`, and its archives when
    /// `-n` reaches beyond it.
    Logs(LogsArgs),
    /// Install the gateway as a service of the host's service manager.
    Install(ManagerArgs),
    /// Remove the gateway's host service.
    Uninstall(ManagerArgs),
    /// Called by the s6 finish script: record the exit, apply the crash-loop policy.
    #[command(hide = true)]
    FinishHook {
        /// s6's first finish argument: exit code, or 256 when killed by a signal.
        code: i32,
        /// s6's second finish argument: the signal number.
        signal: i32,
    },
}

#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    /// Keep printing new lines, across log rotations, until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to print first.
    #[arg(short = 'n', long = "lines", default_value_t = 50)]
    pub lines: usize,
    /// Every profile's log, interleaved by time, each line after its profile.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Scan directory (default: $HERMES_SCANDIR, else $XDG_RUNTIME_DIR/hermes/service).
    #[arg(long)]
    pub scandir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DashboardArgs {
    #[command(subcommand)]
    pub command: Option<DashboardCommand>,
    #[arg(long, env = "HERMES_DASHBOARD_HOST", default_value = hermes_core::dashboard::DEFAULT_HOST)]
    pub host: String,
    #[arg(long, env = "HERMES_DASHBOARD_PORT", default_value_t = hermes_core::dashboard::DEFAULT_PORT)]
    pub port: u16,
}

#[derive(Debug, Subcommand)]
pub enum DashboardCommand {
    /// Print the login link: the dashboard's address with its token.
    Url {
        #[arg(long, env = "HERMES_DASHBOARD_HOST", default_value = hermes_core::dashboard::DEFAULT_HOST)]
        host: String,
        #[arg(long, env = "HERMES_DASHBOARD_PORT", default_value_t = hermes_core::dashboard::DEFAULT_PORT)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Sign and send an event to the profile's gateway.
    Send {
        #[arg(value_parser = parse_hook)]
        hook: HookName,
        /// Body: literal text, @FILE, or - for standard input.
        #[arg(long, default_value = "-")]
        data: String,
        /// The delivery id (Idempotency-Key, X-GitHub-Delivery, webhook-id): a
        /// retry with the same one is a no-op that returns the original event id.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Sign as this sender does (hermes, github, stripe, slack, standard);
        /// default: the hook's configured scheme.
        #[arg(long, value_parser = parse_scheme)]
        scheme: Option<Scheme>,
    },
    /// List stored events.
    List {
        #[arg(value_parser = parse_hook)]
        hook: HookName,
        /// Only events with an id above this one.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Print what to paste into the sender's settings: URL, content type, secret.
    Url {
        #[arg(value_parser = parse_hook)]
        hook: HookName,
    },
    /// Say where the hook's secret comes from; --set stores the one its sender
    /// issued (read from standard input, never printed).
    Secret {
        #[arg(value_parser = parse_hook)]
        hook: HookName,
        /// Read the secret from standard input and store it (0600, beside .env).
        #[arg(long, conflicts_with = "remove")]
        set: bool,
        /// Forget the hook's own secret.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Rebuild gateway slots from the volume (the init runs this at boot).
    Reconcile {
        /// Print the decisions; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// A line of the init's own for the boot log (the init passes its boot notes).
        #[arg(long = "note", hide = true)]
        notes: Vec<String>,
    },
    /// The image's ENTRYPOINT: prepare the container, then stay its init
    /// (PID 1) around s6-svscan and the CMD.
    #[command(hide = true)]
    Init {
        /// The container's CMD.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<OsString>,
    },
    /// The dashboard slot's run step: refuse an unsafe bind, else serve.
    #[command(hide = true)]
    DashboardRun,
    /// The notify slot's run step: deliver the notification outbox until SIGTERM.
    #[command(hide = true)]
    NotifyRun,
    /// The init, before it stops the tree: queue the "stopping" notification
    /// naming the gateways up.
    #[command(hide = true)]
    NotifyStopping,
    /// The ingress slot's run step: serve the webhook ingress in the foreground.
    #[command(hide = true)]
    IngressRun,
}
