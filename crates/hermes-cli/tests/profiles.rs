use std::os::unix::fs::PermissionsExt;

use hermes_testkit::{free_port, Env};

#[test]
fn bad_names_exit_2_and_write_nothing() {
    let env = Env::new();
    let long = "a".repeat(65);
    for bad in ["", "..", "a/b", "a;b", "a b", "é", "-x", long.as_str()] {
        let out = env.fails(&["profile", "create", bad], 2);
        assert_eq!(
            out.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{out}"
        );
        assert!(
            !env.home().join("profiles").exists(),
            "{bad:?} wrote profiles/"
        );
        env.fails(&["-p", bad, "gateway", "status"], 2);
    }
    assert!(!env.bin_dir().exists());
}

#[test]
fn default_cannot_be_created_or_deleted() {
    let env = Env::new();
    let out = env.fails(&["profile", "create", "Default"], 2);
    assert!(out.contains("root profile"), "{out}");
    env.fails(&["profile", "delete", "default", "--yes"], 2);
    env.fails(&["profile", "create", "root"], 2);
}

#[test]
fn create_list_show_delete() {
    let env = Env::new();
    let out = env.ok(&["profile", "create", "Coder"]);
    assert!(out.contains("created profile 'coder'"), "{out}");
    let dir = env.profile_dir("coder");
    assert!(dir.join(".hermes-profile").is_file());
    let env_file = dir.join(".env");
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&env_file)
        .unwrap()
        .starts_with("HERMES_WEBHOOK_SECRET="));
    let alias = std::fs::read_to_string(env.bin_dir().join("coder")).unwrap();
    assert!(alias.contains("-p 'coder' \"$@\""), "{alias}");

    env.ok(&["profile", "create", "second"]);
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["profile", "list", "--json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "coder", "second"]);
    let ports: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["profile", "show", "coder", "--json"])).unwrap();
    assert_eq!(show["name"], "coder");
    assert!(!show.to_string().contains("HERMES_WEBHOOK_SECRET"));

    // Without --yes and without a terminal: refused, nothing removed.
    env.fails(&["profile", "delete", "coder"], 2);
    assert!(dir.exists());
    env.ok(&["profile", "delete", "coder", "--yes"]);
    assert!(!dir.exists());
    assert!(!env.bin_dir().join("coder").exists());
    env.fails(&["profile", "show", "coder"], 1);
}

#[test]
fn ports_are_unique_and_chosen_ports_checked() {
    let env = Env::new();
    let port = free_port();
    env.ok(&[
        "profile",
        "create",
        "a",
        "--port",
        &port.to_string(),
        "--no-alias",
    ]);
    let out = env.fails(
        &[
            "profile",
            "create",
            "b",
            "--port",
            &port.to_string(),
            "--no-alias",
        ],
        1,
    );
    assert!(out.contains("already used by profile 'a'"), "{out}");
    assert!(!env.profile_dir("b").exists());
    assert!(
        !env.bin_dir().join("a").exists(),
        "--no-alias wrote an alias"
    );
}

#[test]
fn alias_never_overwrites_a_foreign_command() {
    let env = Env::new();
    std::fs::create_dir_all(env.bin_dir()).unwrap();
    std::fs::write(env.bin_dir().join("tool"), "#!/bin/sh\necho mine\n").unwrap();
    let out = env.ok(&["profile", "create", "tool"]);
    assert!(out.contains("no alias"), "{out}");
    assert_eq!(
        std::fs::read_to_string(env.bin_dir().join("tool")).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    env.ok(&["profile", "delete", "tool", "--yes"]);
    assert!(
        env.bin_dir().join("tool").exists(),
        "delete removed a foreign command"
    );
}

#[test]
fn stray_directories_are_not_profiles() {
    let env = Env::new();
    std::fs::create_dir_all(env.home().join("profiles/stray")).unwrap();
    let list = env.ok(&["profile", "list"]);
    assert!(!list.contains("stray"), "{list}");
    let out = env.fails(&["profile", "create", "stray"], 1);
    assert!(out.contains("not a hermes profile"), "{out}");
}
