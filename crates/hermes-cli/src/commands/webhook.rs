//! `hermes webhook send|list|url`: talk to the profile's running gateway.

use std::io::Read;

use anyhow::Context as _;
use hermes_core::name::HookName;
use hermes_core::{profile, ExitStatus};
use hermes_gateway::remote::Target;
use hermes_gateway::signature;
use serde_json::Value;

use crate::args::WebhookCommand;
use crate::Context;

pub fn run(ctx: &Context, cmd: WebhookCommand) -> anyhow::Result<ExitStatus> {
    let paths = profile::existing(&ctx.home, &ctx.profile)?;
    let target = Target::of(&paths)?;
    match cmd {
        WebhookCommand::Send {
            hook,
            data,
            idempotency_key,
        } => {
            let body = read_body(&data)?;
            let answer = target.send(&hook, &body, idempotency_key.as_deref())?;
            let id = &answer["id"];
            if answer["duplicate"] == Value::Bool(true) {
                println!("already stored: hook {hook}, event {id} (same idempotency key)");
            } else {
                println!("accepted: hook {hook}, event {id}");
            }
        }
        WebhookCommand::List {
            hook,
            after,
            limit,
            json,
        } => {
            let page = target.list(&hook, after.unwrap_or(0), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_page(&page);
            }
        }
        WebhookCommand::Url { hook } => print_url(&target, &hook, &paths.env_file()),
    }
    Ok(ExitStatus::Success)
}

/// `-` is standard input, `@FILE` a file, anything else the body itself.
fn read_body(data: &str) -> anyhow::Result<Vec<u8>> {
    if data == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("unable to read the body from standard input")?;
        Ok(body)
    } else if let Some(path) = data.strip_prefix('@') {
        std::fs::read(path).with_context(|| format!("unable to read the body from {path}"))
    } else {
        Ok(data.as_bytes().to_vec())
    }
}

fn print_page(page: &Value) {
    let events = page["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if events.is_empty() {
        println!("no events");
    }
    for event in events {
        let body = match &event["body"] {
            Value::String(text) => text.replace('\n', "\\n"),
            _ => format!(
                "(binary, base64) {}",
                event["body_base64"].as_str().unwrap_or("")
            ),
        };
        let shown: String = body.chars().take(100).collect();
        let ellipsis = if shown.len() < body.len() { "…" } else { "" };
        println!(
            "{:>8}  {}  {shown}{ellipsis}",
            event["id"],
            hermes_core::state::utc_timestamp(event["received_at_ms"].as_u64().unwrap_or(0))
        );
    }
    if page["more"] == Value::Bool(true) {
        println!("(more: --after {})", page["next_after"]);
    }
}

fn print_url(target: &Target, hook: &HookName, env_file: &std::path::Path) {
    let url = target.url(&format!("/v1/webhooks/{hook}"));
    println!("{url}");
    println!();
    println!("Sign each POST with the profile's HERMES_WEBHOOK_SECRET (in its .env):");
    println!("  {}: <unix seconds>", header(signature::TIMESTAMP_HEADER));
    println!(
        "  {}: v2=<hex HMAC-SHA256 of \"v2:<timestamp>:<Idempotency-Key or nothing>\\n<raw body>\">",
        header(signature::SIGNATURE_HEADER)
    );
    println!("  Idempotency-Key: <optional, 1-255 visible ASCII; a retry signed again returns the original id>");
    println!(
        "Timestamps more than {} s from the gateway's clock are refused, and so is a signature seen before.",
        signature::TOLERANCE_SECS
    );
    println!(
        "Example (after `set -a; . {}; set +a`):",
        env_file.display()
    );
    println!("  ts=$(date +%s); body='{{\"hello\":1}}'");
    println!("  sig=$(printf 'v2:%s:\\n%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac \"$HERMES_WEBHOOK_SECRET\" | sed 's/^.* //')");
    println!(
        "  curl -H \"X-Hermes-Timestamp: $ts\" -H \"X-Hermes-Signature: v2=$sig\" --data-binary \"$body\" {url}"
    );
    println!(
        "Read events: curl -H \"Authorization: Bearer $HERMES_WEBHOOK_SECRET\" '{url}/events?after=0&limit=100'"
    );
}

/// `X-Hermes-Timestamp` from the lower-case constant.
fn header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_capitalised() {
        assert_eq!(header("x-hermes-timestamp"), "X-Hermes-Timestamp");
    }
}
