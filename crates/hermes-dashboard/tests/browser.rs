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
