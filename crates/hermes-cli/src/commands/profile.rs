//! `hermes profile create|delete|list|show`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use hermes_core::profile::{self, AliasOutcome, ProfileError, ProfileInfo};
use hermes_core::service::ServiceError;
use hermes_core::{ExitStatus, ProfileName};

use crate::args::ProfileCommand;
use crate::{CodedError, Context};

pub fn run(ctx: &Context, cmd: ProfileCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ProfileCommand::Create {
            name,
            no_alias,
            port,
        } => create(ctx, &name, no_alias, port),
        ProfileCommand::Delete { name, yes } => delete(ctx, &name, yes),
        ProfileCommand::List(flag) => list(ctx, flag.json),
        ProfileCommand::Show { name, json } => show(ctx, &name, json),
    }
}

/// Refusing `default` is a usage error, not a failure.
fn profile_error(err: ProfileError) -> anyhow::Error {
    match err {
        ProfileError::Default(..) => CodedError {
            message: err.to_string(),
            status: ExitStatus::Usage,
        }
        .into(),
        other => other.into(),
    }
}

fn create(
    ctx: &Context,
    name: &ProfileName,
    no_alias: bool,
    port: Option<u16>,
) -> anyhow::Result<ExitStatus> {
    let paths = profile::create(&ctx.home, name, port).map_err(profile_error)?;
    let info = profile::info(&ctx.home, name, None);
    println!(
        "created profile '{name}' at {} (gateway port {})",
        paths.dir.display(),
        info.port.map_or("?".to_string(), |p| p.to_string())
    );
    if !no_alias {
        let path_var = std::env::var("PATH").ok();
        match profile::write_alias(&ctx.alias_dir, &ctx.program, name, path_var.as_deref())? {
            AliasOutcome::Written(path) => {
                println!(
                    "alias {} written: `{name} gateway start` works",
                    path.display()
                )
            }
            AliasOutcome::Skipped { reason, .. } => {
                println!("alias not written: {reason}; use `hermes -p {name} …`")
            }
        }
    }
    let manager = ctx.manager();
    if manager.supports_registration() {
        let spec = hermes_core::service::GatewaySpec::for_profile(&ctx.home, name, &ctx.program);
        match manager.register(&spec, false) {
            Ok(()) => println!(
                "slot {} registered (down): start it with `hermes -p {name} gateway start`",
                name.service_name()
            ),
            Err(ServiceError::NoSupervisor { .. }) => println!(
                "no supervisor is running yet: `hermes -p {name} gateway start` registers the slot once one is"
            ),
            Err(e) => return Err(e).context(format!("profile '{name}' was created, but its slot was not registered")),
        }
    }
    Ok(ExitStatus::Success)
}

fn confirm(name: &ProfileName) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(CodedError {
            message: format!(
                "refusing to delete profile '{name}' without confirmation: pass --yes"
            ),
            status: ExitStatus::Usage,
        }
        .into());
    }
    print!("Delete profile '{name}' and all its data? Type its name to confirm: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == name.as_str())
}

fn delete(ctx: &Context, name: &ProfileName, yes: bool) -> anyhow::Result<ExitStatus> {
    if name.is_default() {
        return Err(profile_error(ProfileError::Default(
            ctx.home.root().to_path_buf(),
            "deleted",
        )));
    }
    let paths = profile::existing(&ctx.home, name).map_err(profile_error)?;
    if !yes && !confirm(name)? {
        println!("not deleted");
        return Ok(ExitStatus::Failure);
    }
    let manager = ctx.manager();
    let removed = if manager.supports_registration() {
        manager.unregister(name)
    } else {
        // Host managers: the installed unit, plist or task goes with the profile.
        match manager.uninstall(name) {
            Err(ServiceError::ServiceNotInstalled { .. }) => Ok(()),
            other => other,
        }
    };
    removed.with_context(|| {
        format!("unable to stop and remove the gateway service of '{name}'; nothing was deleted")
    })?;
    hermes_gateway_stop_unsupervised(&paths)?;
    if profile::remove_alias(&ctx.alias_dir, name)? {
        println!("alias removed");
    }
    profile::remove(&ctx.home, name).map_err(profile_error)?;
    println!("deleted profile '{name}'");
    Ok(ExitStatus::Success)
}

/// A gateway run by hand (`--no-supervise`) still holds the profile lock:
/// ask it to stop before its directory goes away.
fn hermes_gateway_stop_unsupervised(paths: &hermes_core::home::ProfilePaths) -> anyhow::Result<()> {
    use hermes_core::fsutil::try_lock_exclusive;
    if try_lock_exclusive(&paths.gateway_lock())?.is_some() {
        return Ok(());
    }
    let pid = std::fs::read_to_string(paths.pid_file())
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .context(
            "the profile's gateway is running but gateway.pid does not name it; stop it first",
        )?;
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("unable to send SIGTERM to the gateway (pid {pid})"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while try_lock_exclusive(&paths.gateway_lock())?.is_none() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the gateway (pid {pid}) did not stop within 10 s; nothing was deleted");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitStatus> {
    let infos: Vec<ProfileInfo> = profile::list(&ctx.home)?
        .iter()
        .map(|n| profile::info(&ctx.home, n, Some(&ctx.alias_dir)))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(ExitStatus::Success);
    }
    println!(
        "{:<24} {:>5}  {:<15} {:<8} DIR",
        "PROFILE", "PORT", "GATEWAY", "DESIRED"
    );
    for i in &infos {
        println!(
            "{:<24} {:>5}  {:<15} {:<8} {}",
            i.name.as_str(),
            i.port.map_or("-".to_string(), |p| p.to_string()),
            i.gateway_state.as_deref().unwrap_or("-"),
            i.desired_state.as_deref().unwrap_or("-"),
            i.dir.display()
        );
    }
    Ok(ExitStatus::Success)
}

fn show(ctx: &Context, name: &ProfileName, json: bool) -> anyhow::Result<ExitStatus> {
    profile::existing(&ctx.home, name).map_err(profile_error)?;
    let info = profile::info(&ctx.home, name, Some(&ctx.alias_dir));
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitStatus::Success);
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    println!("profile:        {}", info.name);
    println!("directory:      {}", info.dir.display());
    println!(
        "gateway:        {}:{}",
        opt(info.host),
        opt(info.port.map(|p| p.to_string()))
    );
    println!("gateway state:  {}", opt(info.gateway_state));
    println!("desired state:  {}", opt(info.desired_state));
    println!(
        "alias:          {}",
        opt(info.alias.map(|p| p.display().to_string()))
    );
    if let Some(err) = info.config_error {
        println!("config error:   {err}");
    }
    Ok(ExitStatus::Success)
}
