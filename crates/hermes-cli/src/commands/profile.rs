//! `hermes profile create|delete|list|show`.

use std::io::{BufRead, IsTerminal, Write};

use hermes_core::profile::{self, ProfileError, ProfileInfo};
use hermes_core::{ExitStatus, ProfileName};
use hermes_model::actions::{self, ActionError};

use super::status::env::CliEnv;

use crate::args::ProfileCommand;
use crate::{CodedError, Context};

pub fn run(ctx: &Context, cmd: ProfileCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ProfileCommand::Create {
            names,
            no_alias,
            port,
        } => create(ctx, &names, no_alias, port),
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

fn action_error(err: ActionError) -> anyhow::Error {
    match err {
        ActionError::Profile(e) => profile_error(e),
        other => other.into(),
    }
}

fn create(
    ctx: &Context,
    names: &[ProfileName],
    no_alias: bool,
    port: Option<u16>,
) -> anyhow::Result<ExitStatus> {
    if port.is_some() && names.len() > 1 {
        return Err(CodedError {
            message: "--port takes one profile: create the others without it".to_string(),
            status: ExitStatus::Usage,
        }
        .into());
    }
    let wanted: Vec<(ProfileName, Option<u16>)> = names.iter().map(|n| (n.clone(), port)).collect();
    let mut results =
        actions::create_many(&CliEnv::new(ctx), &wanted, !no_alias).map_err(action_error)?;
    if results.len() == 1 {
        // One profile: its error is the command's, with its exit code.
        print_created(&results.remove(0).map_err(action_error)?);
        return Ok(ExitStatus::Success);
    }
    let mut failed = false;
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(created) => print_created(&created),
            Err(e) => {
                failed = true;
                eprintln!("hermes: profile '{name}' not created: {}", action_error(e));
            }
        }
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn print_created(created: &actions::Created) {
    let name = &created.profile;
    println!(
        "created profile '{name}' at {} (gateway port {})",
        created.dir.display(),
        created.port
    );
    if let Some(alias) = &created.alias {
        println!("alias: {alias}");
    }
    match (created.slot, &created.slot_error) {
        (true, _) => println!(
            "slot {} registered (down): start it with `hermes -p {name} gateway start`",
            name.service_name()
        ),
        (false, Some(why)) => {
            println!(
                "slot not registered yet ({why}); `hermes -p {name} gateway start` registers it"
            )
        }
        (false, None) => {}
    }
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
    profile::existing(&ctx.home, name).map_err(profile_error)?;
    if !yes && !confirm(name)? {
        println!("not deleted");
        return Ok(ExitStatus::Failure);
    }
    let deleted = actions::delete(&CliEnv::new(ctx), name).map_err(action_error)?;
    if deleted.unregistered {
        println!("gateway stopped and its service removed");
    }
    if deleted.alias_removed {
        println!("alias removed");
    }
    println!("deleted profile '{name}'");
    Ok(ExitStatus::Success)
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
