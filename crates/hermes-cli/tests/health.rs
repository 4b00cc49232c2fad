use std::time::Duration;

use hermes_testkit::Env;

/// `hermes health`: exit code and stdout + stderr.
fn health(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let mut full = vec!["health"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_port_edited_to_another_profiles_is_reported_as_that_profile() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["web", "--no-alias"]);
    env.create(&["coder", "--no-alias"]);
    env.ok(&["-p", "web", "gateway", "start"]);
    env.ok(&["-p", "coder", "gateway", "start"]);
    let (code, text) = health(&env, &[]);
    assert_eq!(code, Some(0), "{text}\n{}", env.dump());
    assert_eq!(
        text.trim(),
        "ok: s6-svscan answers; 2 gateways up and answering as themselves"
    );

    // coder's gateway still listens on its old port; its config now names web's.
    let web = env.port_of("web");
    env.set_port("coder", web);
    let (code, text) = health(&env, &[]);
    assert_eq!(code, Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line per problem: {text}");
    assert!(
        lines[0].starts_with(&format!(
            "gateway 'coder': 127.0.0.1:{web} answers as profile 'web'"
        )),
        "{text}"
    );
    assert!(
        lines[0].contains("hermes -p coder gateway restart"),
        "{text}"
    );

    let status = env.ok(&["status"]);
    assert!(status.contains("answered as profile web"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["gateway", "status", "--all", "--json"])).unwrap();
    let coder = json
        .as_array()
        .and_then(|a| a.iter().find(|g| g["profile"] == "coder"))
        .unwrap_or_else(|| panic!("no coder in {json}"));
    assert_eq!(coder["health"]["state"], "wrong_profile", "{coder}");
    assert_eq!(coder["health"]["answered_as"], "web", "{coder}");
    let doctor = env.fails(&["doctor"], 1);
    assert!(
        doctor.contains("'coder' (port") && doctor.contains("answered as profile 'web'"),
        "{doctor}"
    );
}

#[test]
fn a_parked_gateway_fails_health_but_not_liveness() {
    let mut env = Env::with_gateway_up("p");
    assert_eq!(health(&env, &[]).0, Some(0));

    // A config the gateway refuses: exit 78, parked at once.
    std::fs::write(env.profile_dir("p").join("config.yaml"), "gateway: [\n").unwrap();
    env.fails(&["-p", "p", "gateway", "restart"], 1);
    let (code, text) = health(&env, &[]);
    assert_eq!(code, Some(1), "{text}\n{}", env.dump());
    assert!(
        text.starts_with("gateway 'p': is parked") && text.contains("hermes -p p gateway start"),
        "{text}"
    );
    let (code, text) = health(&env, &["--live"]);
    assert_eq!((code, text.trim()), (Some(0), "ok: s6-svscan answers"));
    let (_, json) = health(&env, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["problems"][0]["subject"], "gateway 'p'");

    // A stopped gateway is not wanted running: healthy again.
    env.ok(&["-p", "p", "gateway", "stop"]);
    assert_eq!(health(&env, &[]).0, Some(0));

    env.stop_supervisor(Duration::from_secs(15));
    let (code, text) = health(&env, &["--live"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("supervisor: "), "{text}");
    assert_eq!(health(&env, &[]).0, Some(1));
}
