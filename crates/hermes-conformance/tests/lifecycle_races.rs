//! Lifecycle commands racing the supervisor's own state changes.
#![allow(clippy::disallowed_methods)] // tests

use std::time::Duration;

use hermes_testkit::{free_port, poll, render_output, Env};
use hermes_testkit::{http, procs};

/// Enough rounds to catch a one-in-ten race most of the time, few enough for CI (~6 s each).
const ROUNDS: usize = 6;

/// Crash the gateway (SIGABRT, a death of its own; a SIGKILL from outside
/// never parks) as soon as it answers, until the crash-loop policy parks the slot.
fn park(env: &Env, profile: &str, port: u16) {
    for _ in 0..10 {
        let st = env.status(profile);
        if st["want"] == "down" && st["up"] == false {
            return;
        }
        if let Some(pid) = st["pid"].as_u64() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGABRT,
            );
            poll(Duration::from_secs(5), Duration::from_millis(1), || {
                !procs::alive(pid as u32)
            });
        }
        poll(Duration::from_secs(6), Duration::from_millis(5), || {
            http::healthy(port) || env.status(profile)["want"] == "down"
        });
    }
    panic!("the slot was never parked\n{}", env.dump());
}

/// Regression: `gateway start`/`restart` of a parked slot used to exit 1 with
/// the old crash-loop reason about one time in ten although the gateway came
/// up (s6-svc only queues the command; status read before s6 acted on it).
#[test]
fn starting_a_parked_slot_reports_success_every_time() {
    let mut env = Env::new();
    env.supervise();
    let port = free_port();
    env.ok(&[
        "profile",
        "create",
        "loop",
        "--no-alias",
        "--port",
        &port.to_string(),
    ]);
    env.ok(&["-p", "loop", "gateway", "start"]);
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        park(&env, "loop", port);
        let verb = if round % 2 == 0 { "start" } else { "restart" };
        let out = env.run(&["-p", "loop", "gateway", verb]);
        let up = poll(Duration::from_secs(10), Duration::from_millis(5), || {
            http::healthy(port)
        });
        assert!(up, "round {round}: never came back\n{}", env.dump());
        if !out.status.success() {
            failures.push(render_output(
                &format!("round {round}: hermes -p loop gateway {verb}"),
                &out,
            ));
        }
        // A requested restart clears the failure count before the next round.
        std::thread::sleep(Duration::from_millis(1100));
        env.ok(&["-p", "loop", "gateway", "restart"]);
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} starts of a parked slot exited non-zero although the gateway came up:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
