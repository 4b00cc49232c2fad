//! End to end in real headless Chromium (Debian package `chromium`) against
//! the dashboard over a fake manager; `scripts/test` installs Chromium, and a
//! missing one fails the test. Screenshots are kept under
//! `target/tmp/hermes-dashboard/`.
#![allow(clippy::disallowed_methods)] // tests

mod common;

use common::Served;
use hermes_model::fake::{FakeEnv, Slot};
use hermes_testkit::cdp::{chromium, row_label, Chrome};
use serde_json::json;

const TOKEN: &str = "browser-test-token-0123456789";

#[test]
fn dashboard_in_headless_chromium() {
    let binary = chromium();
    let env = FakeEnv::new();
    for name in ["alpha", "beta", "gamma"] {
        env.add_profile(name);
        env.serve_health(name);
    }
    env.set_slot("alpha", Slot::up(101));
    env.set_slot("beta", Slot::up(102));
    env.set_slot("gamma", Slot::down(hermes_core::service::Want::Down));
    let served = Served::start(env, "127.0.0.1", None);
    let mut chrome = Chrome::launch(
        &binary,
        &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hermes-dashboard"),
    );

    // Load through the login link (`hermes dashboard url`): signed in, both
    // running gateways up, and the token gone from the address bar.
    chrome.open(&served.url(&format!("/#token={}", served.token)));
    chrome.wait_until(
        "alpha and beta up",
        &format!(
            "{} && {}",
            row_label("alpha", "up"),
            row_label("beta", "up")
        ),
    );
    chrome.wait_until("the stopped gamma", &row_label("gamma", "stopped"));
    assert_eq!(chrome.eval("location.href"), json!(served.url("/")));

    // Stop beta from its row, see it stopped; start it, see it up.
    chrome.click("tr[data-profile=\"beta\"] button[data-action=\"stop\"]");
    chrome.wait_until("beta stopped", &row_label("beta", "stopped"));
    assert!(!served.env.slot("beta").unwrap().up);
    chrome.wait_until(
        "the outcome announced",
        "document.querySelector('#notice').textContent.includes('down')",
    );
    chrome.click("tr[data-profile=\"beta\"] button[data-action=\"start\"]");
    chrome.wait_until("beta up again", &row_label("beta", "up"));
    assert!(served.env.slot("beta").unwrap().up);

    // The log pane follows new lines.
    served.env.write_log("alpha", "first line\n");
    chrome.click("tr[data-profile=\"alpha\"] button[data-action=\"log\"]");
    chrome.wait_until(
        "the log tail",
        "document.querySelector('#log').textContent.includes('first line')",
    );
    served.env.write_log("alpha", "followed line\n");
    chrome.wait_until(
        "a followed line",
        "document.querySelector('#log').textContent.includes('followed line')",
    );
    println!(
        "screenshot: {}",
        chrome.screenshot("dashboard-1280.png").display()
    );

    // Delete gamma: the dialog refuses until the name is typed.
    chrome.click("tr[data-profile=\"gamma\"] button[data-action=\"delete\"]");
    chrome.wait_until(
        "the confirmation dialog",
        "document.querySelector('#confirm').open",
    );
    assert_eq!(
        chrome.eval("document.querySelector('#confirm-ok').disabled"),
        json!(true)
    );
    chrome.type_text("gamma");
    chrome.click("#confirm-ok");
    chrome.wait_until(
        "gamma gone",
        "document.querySelector('tr[data-profile=\"gamma\"]') === null",
    );
    assert!(!served.env.root().join("home/profiles/gamma").exists());
    assert_eq!(
        served.env.calls(),
        ["stop beta", "start beta", "unregister gamma"]
    );

    // Phone width: still every gateway, as cards.
    chrome.viewport(390, 844, true);
    chrome.wait_until(
        "rows laid out as blocks",
        "getComputedStyle(document.querySelector('tbody tr')).display === 'block'",
    );
    println!(
        "screenshot: {}",
        chrome.screenshot("dashboard-phone.png").display()
    );
    chrome.viewport(1280, 900, false);

    // Without the token, the page is refused and asks to sign in.
    let guarded = Served::start(
        {
            let env = FakeEnv::new();
            env.add_profile("alpha");
            env
        },
        "0.0.0.0",
        Some(TOKEN),
    );
    chrome.open(&guarded.url("/"));
    chrome.wait_until(
        "the sign-in form",
        "!document.querySelector('#login').hidden && document.querySelector('#app').hidden",
    );
    assert_eq!(
        chrome.eval("fetch('/api/status').then(r => r.status)"),
        json!(401)
    );
    println!(
        "screenshot: {}",
        chrome.screenshot("dashboard-refused.png").display()
    );
    chrome.eval("document.querySelector('#token').focus()");
    chrome.type_text(TOKEN);
    chrome.click("#login-form button[type=submit]");
    chrome.wait_until("gateways after sign-in", &row_label("alpha", "no_slot"));
    assert_eq!(
        chrome.eval("document.cookie"),
        json!(""),
        "the session cookie must be HttpOnly"
    );
}

/// The log panel and the table's tools, on a page signed in through the form
/// (where the log showed every line twice) over a slow link.
#[test]
fn log_panel_and_table_tools_in_headless_chromium() {
    let binary = chromium();
    let env = FakeEnv::new();
    let names = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    ];
    for name in names {
        env.add_profile(name);
        env.serve_health(name);
        env.set_slot(name, Slot::up(100));
    }
    env.set_slot("beta", Slot::down(hermes_core::service::Want::Down));
    let long = format!("config: {}", "a very long reason that goes on ".repeat(8));
    env.write_state(
        "gamma",
        &json!({"gateway_state": "startup_failed", "exit_reason": long}).to_string(),
    );
    env.write_log("alpha", "line one\nline two\n");
    let served = Served::start(env, "0.0.0.0", Some(TOKEN));
    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hermes-dashboard");
    let mut chrome = Chrome::launch(&binary, &artefacts);
    chrome.viewport(1400, 900, false);

    chrome.open(&served.url("/"));
    chrome.wait_until(
        "the sign-in form",
        "!document.querySelector('#login').hidden",
    );
    chrome.eval("document.querySelector('#token').focus()");
    chrome.type_text(TOKEN);
    chrome.click("#login-form button[type=submit]");
    chrome.wait_until("the gateways", &row_label("kappa", "up"));

    // A slow link: the first read of the log is still on its way when the
    // next poll is due. Both read from the start, and both were appended.
    chrome.command("Network.enable", json!({}));
    chrome.command(
        "Network.emulateNetworkConditions",
        json!({"offline": false, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1}),
    );
    chrome.click("tr[data-profile=\"alpha\"] button[data-action=\"log\"]");
    let log_text = "document.querySelector('#log').textContent";
    chrome.wait_until("the log tail", &format!("{log_text}.includes('line two')"));
    served.env.write_log("alpha", "line three\n");
    chrome.wait_until(
        "a followed line",
        &format!("{log_text}.includes('line three')"),
    );
    assert_eq!(
        chrome.eval(log_text),
        json!("line one\nline two\nline three\n"),
        "each line once"
    );
    chrome.command(
        "Network.emulateNetworkConditions",
        json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
    );

    // Opening a row's log brings the panel on screen.
    let on_screen = |sel: &str| {
        format!(
            "(() => {{ const r = document.querySelector('{sel}').getBoundingClientRect(); \
             return r.top >= 0 && r.top < innerHeight && r.bottom > 0; }})()"
        )
    };
    chrome.wait_until("the log panel on screen", &on_screen("#log"));

    // Scrolled back, new lines do not pull the reader down.
    let many: String = (0..200).map(|i| format!("filler {i}\n")).collect();
    served.env.write_log("alpha", &many);
    chrome.wait_until("the filler", &format!("{log_text}.includes('filler 199')"));
    chrome.eval("document.querySelector('#log').scrollTop = 0");
    served.env.write_log("alpha", "after scrolling back\n");
    chrome.wait_until(
        "a line while scrolled back",
        &format!("{log_text}.includes('after scrolling back')"),
    );
    assert_eq!(
        chrome.eval("document.querySelector('#log').scrollTop"),
        json!(0)
    );

    // Wrap is on; the button turns it off.
    let white_space = "getComputedStyle(document.querySelector('#log')).whiteSpace";
    assert_eq!(chrome.eval(white_space), json!("pre-wrap"));
    chrome.click("#log-wrap");
    assert_eq!(chrome.eval(white_space), json!("pre"));
    assert_eq!(
        chrome.eval("document.querySelector('#log-wrap').getAttribute('aria-pressed')"),
        json!("false")
    );
    chrome.click("#log-wrap");

    // Clear empties the panel and it goes on following.
    chrome.click("#log-clear");
    assert_eq!(chrome.eval(log_text), json!(""));
    served.env.write_log("alpha", "after clearing\n");
    chrome.wait_until(
        "a line after clearing",
        &format!("{log_text} === 'after clearing\\n'"),
    );

    // Download saves the log's last lines as a file.
    let downloads = tempfile::tempdir().unwrap();
    chrome.command(
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.path()}),
    );
    chrome.click("#log-download");
    let saved = downloads.path().join("alpha-gateway.log");
    hermes_testkit::wait::wait_for(
        "the downloaded log",
        std::time::Duration::from_secs(15),
        || {
            std::fs::read_to_string(&saved)
                .ok()
                .filter(|t| t.ends_with("after clearing\n"))
        },
    );
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.starts_with("line one\nline two\nline three\n"),
        "{text}"
    );

    // Filter by name, then by state; Esc clears it.
    let visible = "[...document.querySelectorAll('#gateways tbody tr')].filter(r => !r.hidden).map(r => r.dataset.profile).join(',')";
    chrome.eval("document.querySelector('#filter').focus()");
    chrome.type_text("eta");
    chrome.wait_until(
        "only the names with eta",
        &format!("{visible} === 'beta,eta,theta,zeta'"),
    );
    chrome.eval("(() => { const f = document.querySelector('#filter'); f.value = 'stopped'; f.dispatchEvent(new Event('input')); })()");
    chrome.wait_until("only the stopped", &format!("{visible} === 'beta'"));
    chrome.command(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27}),
    );
    chrome.wait_until(
        "every row again",
        &format!("{visible}.split(',').length === 11"),
    );

    // Sort by profile, then the other way.
    let order = "[...document.querySelectorAll('#gateways tbody tr')].map(r => r.dataset.profile).join(',')";
    chrome.click("th[data-sort=\"profile\"] button");
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.push("default");
    sorted.sort();
    assert_eq!(chrome.eval(order), json!(sorted.join(",")));
    chrome.click("th[data-sort=\"profile\"] button");
    sorted.reverse();
    assert_eq!(chrome.eval(order), json!(sorted.join(",")));
    assert_eq!(
        chrome
            .eval("document.querySelector('th[data-sort=\"profile\"]').getAttribute('aria-sort')"),
        json!("descending")
    );

    // When each gateway last started.
    let since = "document.querySelector('tr[data-profile=\"alpha\"] td[data-label=\"Since\"]')";
    assert!(chrome
        .eval(&format!("{since}.title"))
        .as_str()
        .unwrap()
        .starts_with("started "));
    assert!(chrome
        .eval(&format!("/\\d:\\d\\d:\\d\\d/.test({since}.textContent)"))
        .as_bool()
        .unwrap());

    // A long reason shows its start, once; the row expands to all of it.
    let reason = "document.querySelector('tr[data-profile=\"gamma\"] .reason-text').textContent";
    let short = chrome.eval(reason);
    assert!(short.as_str().unwrap().ends_with('…'), "{short}");
    assert!(short.as_str().unwrap().matches("a very long").count() < 8);
    chrome.click("tr[data-profile=\"gamma\"] button[data-action=\"expand\"]");
    let full = chrome.eval(reason);
    assert_eq!(
        full.as_str().unwrap().matches("config:").count(),
        1,
        "{full}"
    );
    assert_eq!(
        full.as_str().unwrap().matches("a very long").count(),
        8,
        "{full}"
    );

    // Each row's buttons on one line.
    let one_line = "[...document.querySelectorAll('#gateways tbody tr')].every(r => new Set([...r.querySelectorAll('.actions button')].map(b => b.getBoundingClientRect().top)).size === 1)";
    assert_eq!(chrome.eval(one_line), json!(true));
    // …and on screen at 1400 px, without scrolling the table sideways.
    assert_eq!(
        chrome.eval("[...document.querySelectorAll('#gateways button[data-action=\"delete\"]')].every(b => b.getBoundingClientRect().right <= innerWidth)"),
        json!(true)
    );

    // A failed action: its message and the gateway's log tail as lines, until dismissed.
    use hermes_core::service::ServiceManager;
    served
        .env
        .manager()
        .uninstall(&hermes_core::ProfileName::parse("alpha").unwrap())
        .unwrap();
    chrome.click("tr[data-profile=\"alpha\"] button[data-action=\"stop\"]");
    chrome.wait_until("the failure", "!document.querySelector('#failure').hidden");
    let tail =
        chrome.eval("[...document.querySelectorAll('#failure-tail li')].map(l => l.textContent)");
    let tail: Vec<String> = serde_json::from_value(tail).unwrap();
    assert!(tail.len() > 1, "{tail:?}");
    assert_eq!(tail.last().map(String::as_str), Some("after clearing"));
    chrome.click("#failure-dismiss");
    assert_eq!(
        chrome.eval("document.querySelector('#failure').hidden"),
        json!(true)
    );

    // Stop all asks first, then stops every slot in one call; start all brings them back.
    served.env.set_slot("alpha", Slot::up(100));
    chrome.click("#stop-all");
    assert_eq!(
        chrome.eval("document.querySelector('#stop-all').textContent"),
        json!("Really stop all?")
    );
    assert!(
        served.env.slot("kappa").unwrap().up,
        "nothing stopped before the confirmation"
    );
    chrome.click("#stop-all");
    chrome.wait_until(
        "every gateway stopped",
        &format!(
            "{} && {}",
            row_label("alpha", "stopped"),
            row_label("kappa", "stopped")
        ),
    );
    assert!(names.iter().all(|n| !served.env.slot(n).unwrap().up));
    chrome.click("#start-all");
    chrome.wait_until(
        "every gateway up",
        &format!(
            "{} && {}",
            row_label("beta", "up"),
            row_label("kappa", "up")
        ),
    );
    assert!(names.iter().all(|n| served.env.slot(n).unwrap().up));

    let shot = chrome.screenshot("dashboard-1400.png");
    println!("screenshot: {}", shot.display());
    chrome.click("#failure-dismiss");
    assert_eq!(
        chrome.eval("document.querySelector('#failure').hidden"),
        json!(true)
    );

    // 420 px: the gateways come before the service cards.
    chrome.viewport(420, 900, true);
    chrome.wait_until(
        "rows laid out as blocks",
        "getComputedStyle(document.querySelector('tbody tr')).display === 'block'",
    );
    let top = |sel: &str| format!("document.querySelector('{sel}').getBoundingClientRect().top");
    assert_eq!(
        chrome.eval(&format!("{} < {}", top("#gw-section"), top("#services"))),
        json!(true)
    );
    chrome.eval("window.scrollTo(0, 0)");
    chrome.wait_until(
        "the gateway list on the first screen",
        &on_screen("#gateways tbody tr"),
    );
    assert_eq!(chrome.eval(one_line), json!(true));
    println!(
        "screenshot: {}",
        chrome.screenshot("dashboard-420.png").display()
    );
}
