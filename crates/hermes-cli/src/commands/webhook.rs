//! `hermes webhook send|list|url|secret`: talk to the profile's running
//! gateway, and tell a hook's sender what to send.

use std::io::{IsTerminal, Read};

use anyhow::Context as _;
use hermes_core::config::Scheme;
use hermes_core::name::HookName;
use hermes_core::{ingress, profile, ExitStatus};
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
            scheme,
        } => {
            let signing = scheme.unwrap_or_else(|| target.scheme(&hook));
            if idempotency_key.is_some() && matches!(signing, Scheme::Stripe | Scheme::Slack) {
                anyhow::bail!(
                    "--idempotency-key: {signing} carries the delivery id in the body (Stripe's \"id\", Slack's \"event_id\"), not in a header"
                );
            }
            let body = read_body(&data)?;
            let answer = target.send(&hook, &body, idempotency_key.as_deref(), Some(signing))?;
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
        WebhookCommand::Url { hook } => print!(
            "{}",
            render_url(
                &target,
                &hook,
                &secret_source(&target, &hook),
                ingress::Settings::from_env().public_url.as_deref()
            )
        ),
        WebhookCommand::Secret { hook, set, remove } => secret(&target, &hook, set, remove)?,
    }
    Ok(ExitStatus::Success)
}

/// Where a hook's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SecretSource {
    Own,
    Profile,
    Missing,
}

fn secret_source(target: &Target, hook: &HookName) -> SecretSource {
    let own = profile::hook_secret(&target.paths, hook)
        .ok()
        .flatten()
        .is_some();
    match (own, target.scheme(hook).takes_our_secret()) {
        (true, _) => SecretSource::Own,
        (false, true) => SecretSource::Profile,
        (false, false) => SecretSource::Missing,
    }
}

fn secret(target: &Target, hook: &HookName, set: bool, remove: bool) -> anyhow::Result<()> {
    let scheme = target.scheme(hook);
    let path = target.paths.hook_secret(hook);
    let profile = &target.paths.name;
    if set {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "Paste the secret {scheme} issued for hook {hook}, then press Enter and Ctrl-D:"
            );
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("unable to read the secret from standard input")?;
        signature::signing_key(scheme, &text)
            .with_context(|| format!("hook {hook} takes {scheme} signatures"))?;
        profile::set_hook_secret(&target.paths, hook, text.trim())?;
        println!(
            "stored the secret of hook {hook} ({scheme}) in {} (mode 0600)",
            path.display()
        );
        println!("restart the gateway to use it: hermes -p {profile} gateway restart");
    } else if remove {
        if profile::remove_hook_secret(&target.paths, hook)? {
            println!(
                "removed {}; restart the gateway: hermes -p {profile} gateway restart",
                path.display()
            );
        } else {
            println!("hook {hook} has no secret of its own");
        }
    } else {
        println!(
            "{}",
            describe_secret(&secret_source(target, hook), target, hook)
        );
    }
    Ok(())
}

/// One line: which secret the hook is verified with (never its value).
fn describe_secret(source: &SecretSource, target: &Target, hook: &HookName) -> String {
    let scheme = target.scheme(hook);
    let profile = &target.paths.name;
    match source {
        SecretSource::Own => format!(
            "hook {hook} ({scheme}): its own secret, in {}",
            target.paths.hook_secret(hook).display()
        ),
        SecretSource::Profile => format!(
            "hook {hook} ({scheme}): the profile's HERMES_WEBHOOK_SECRET, in {}",
            target.paths.env_file().display()
        ),
        SecretSource::Missing => format!(
            "hook {hook} ({scheme}): NO SECRET YET; set the one {scheme} issued: hermes -p {profile} webhook secret {hook} --set"
        ),
    }
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

/// What to paste into the sender's settings, per scheme. Pure, for snapshot tests.
fn render_url(
    target: &Target,
    hook: &HookName,
    source: &SecretSource,
    public_url: Option<&str>,
) -> String {
    let inside = target.hook_url(hook);
    // With HERMES_PUBLIC_URL, the outside reaches the gateway through the ingress.
    let url = match public_url {
        Some(public) => ingress::public_hook_url(public, &target.paths.name, hook),
        None => inside.clone(),
    };
    let scheme = target.scheme(hook);
    let profile = &target.paths.name;
    let env_file = target.paths.env_file();
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let secret = describe_secret(source, target, hook);
    let set = format!("hermes -p {profile} webhook secret {hook} --set");
    match scheme {
        Scheme::Hermes => {
            line(url.clone());
            line(String::new());
            line(format!("Scheme: hermes. Secret: {secret}"));
            line("Sign each POST with that secret:".to_string());
            line(format!("  {}: <unix seconds>", header(HERMES_TIMESTAMP)));
            line(format!(
                "  {}: v2=<hex HMAC-SHA256 of \"v2:<timestamp>:<Idempotency-Key or nothing>\\n<raw body>\">",
                header(HERMES_SIGNATURE)
            ));
            line("  Idempotency-Key: <optional, 1-255 visible ASCII; a retry signed again returns the original id>".to_string());
            line(format!(
                "Timestamps more than {} s from the gateway's clock are refused, and so is a signature seen before.",
                signature::TOLERANCE_SECS
            ));
            line(format!(
                "Example (after `set -a; . {}; set +a`):",
                env_file.display()
            ));
            line("  ts=$(date +%s); body='{\"hello\":1}'".to_string());
            line("  sig=$(printf 'v2:%s:\\n%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac \"$HERMES_WEBHOOK_SECRET\" | sed 's/^.* //')".to_string());
            line(format!(
                "  curl -H \"X-Hermes-Timestamp: $ts\" -H \"X-Hermes-Signature: v2=$sig\" --data-binary \"$body\" {url}"
            ));
            line(format!(
                "Or: hermes -p {profile} webhook send {hook} --data '{{\"hello\":1}}'"
            ));
        }
        Scheme::Github => {
            line(
                "GitHub: the repository's (or organisation's) Settings > Webhooks > Add webhook"
                    .to_string(),
            );
            line(format!("  Payload URL:   {url}"));
            line("  Content type:  application/json".to_string());
            line(format!("  Secret:        {}", match source {
                SecretSource::Own => format!("the one stored for this hook (change it with: {set})"),
                _ => format!("the value of HERMES_WEBHOOK_SECRET in {} (or choose one and store it with: {set})", env_file.display()),
            }));
            line("Verified: X-Hub-Signature-256 over the raw body; X-GitHub-Delivery is the idempotency key.".to_string());
        }
        Scheme::Stripe => {
            line("Stripe: Dashboard > Developers > Webhooks > Add endpoint".to_string());
            line(format!("  Endpoint URL:  {url}"));
            line(format!(
                "  Then reveal the endpoint's signing secret (whsec_...) and store it: {set}"
            ));
            line(format!("  {secret}"));
            line(format!("Verified: Stripe-Signature (t=, v1=) within {} s; the event's id is the idempotency key.", signature::TOLERANCE_SECS));
        }
        Scheme::Slack => {
            line("Slack: your app's Event Subscriptions (or Interactivity, Slash Commands) Request URL".to_string());
            line(format!("  Request URL:   {url}"));
            line(format!("  Secret: the app's Signing Secret (Basic Information > App Credentials); store it: {set}"));
            line(format!("  {secret}"));
            line(format!("Verified: X-Slack-Signature (v0=) and X-Slack-Request-Timestamp within {} s; an Events API event_id is the idempotency key.", signature::TOLERANCE_SECS));
        }
        Scheme::Standard => {
            line("Standard Webhooks (Svix and others): the sender's endpoint settings".to_string());
            line(format!("  Endpoint URL:  {url}"));
            line(format!(
                "  Secret: the endpoint's signing secret (whsec_...); store it: {set}"
            ));
            line(format!("  {secret}"));
            line(format!("Verified: webhook-signature (v1,) with webhook-id and webhook-timestamp within {} s; webhook-id is the idempotency key.", signature::TOLERANCE_SECS));
        }
    }
    if url != inside {
        line(format!(
            "(through the webhook ingress; inside the container: {inside})"
        ));
    }
    line(format!(
        "Read events: hermes -p {profile} webhook list {hook}  (or GET {url}/events with Authorization: Bearer $HERMES_WEBHOOK_SECRET)"
    ));
    out
}

const HERMES_TIMESTAMP: &str = "x-hermes-timestamp";
const HERMES_SIGNATURE: &str = "x-hermes-signature";

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

    fn target(scheme: &str) -> Target {
        let mut config = hermes_core::config::Config::new(8701);
        config.webhooks.hooks.insert(
            "h".into(),
            hermes_core::config::HookSection {
                scheme: Scheme::parse(scheme).unwrap(),
            },
        );
        Target {
            addr: "127.0.0.1:8701".into(),
            secret: "the-profile-secret".into(),
            paths: hermes_core::home::ProfilePaths {
                name: hermes_core::ProfileName::parse("p").unwrap(),
                dir: "/home/u/.hermes/profiles/p".into(),
            },
            config,
        }
    }

    #[test]
    fn url_says_what_to_paste_for_each_sender() {
        let hook = HookName::parse("h").unwrap();
        let gh = render_url(&target("github"), &hook, &SecretSource::Profile, None);
        for line in [
            "  Payload URL:   http://127.0.0.1:8701/v1/webhooks/h\n",
            "  Content type:  application/json\n",
            "  Secret:        the value of HERMES_WEBHOOK_SECRET in /home/u/.hermes/profiles/p/.env",
        ] {
            assert!(gh.contains(line), "{line:?} not in\n{gh}");
        }
        let stripe = render_url(&target("stripe"), &hook, &SecretSource::Missing, None);
        assert!(
            stripe.contains("  Endpoint URL:  http://127.0.0.1:8701/v1/webhooks/h\n")
                && stripe.contains("hermes -p p webhook secret h --set")
                && stripe.contains("NO SECRET YET"),
            "{stripe}"
        );
        let slack = render_url(&target("slack"), &hook, &SecretSource::Own, None);
        assert!(
            slack.contains("Signing Secret")
                && slack.contains("its own secret, in /home/u/.hermes/profiles/p/.env.hook.h"),
            "{slack}"
        );
        let standard = render_url(&target("standard"), &hook, &SecretSource::Own, None);
        assert!(standard.contains("whsec_"), "{standard}");
        let hermes = render_url(&target("hermes"), &hook, &SecretSource::Profile, None);
        assert!(
            hermes.starts_with("http://127.0.0.1:8701/v1/webhooks/h\n"),
            "{hermes}"
        );
        assert!(hermes.contains("X-Hermes-Signature: v2=<hex"), "{hermes}");
        let outside = render_url(
            &target("github"),
            &hook,
            &SecretSource::Profile,
            Some("https://hooks.example.org/"),
        );
        assert!(
            outside.contains("  Payload URL:   https://hooks.example.org/p/v1/webhooks/h\n")
                && outside.contains("inside the container: http://127.0.0.1:8701/v1/webhooks/h"),
            "{outside}"
        );
        for text in [gh, stripe, slack, standard, hermes] {
            assert!(!text.contains("the-profile-secret"), "{text}");
        }
    }

    #[test]
    fn header_names_are_capitalised() {
        assert_eq!(header("x-hermes-timestamp"), "X-Hermes-Timestamp");
    }
}
