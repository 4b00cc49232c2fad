//! Property tests over everything that turns outside input into paths or
//! shell: profile and hook names, config.yaml, gateway_state.json, and the s6
//! slot / alias renderers. The renderers are checked by running what they
//! produce: `sh -n` must accept it, and executing it with a fake program that
//! records its argv, environment and working directory must reproduce exactly
//! the spec — so no name or value can change a script's meaning.
#![allow(clippy::disallowed_methods)] // tests

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;

use hermes_core::config::Config;
use hermes_core::name::{HookName, ProfileName};
use hermes_core::service::GatewaySpec;
use hermes_core::state::{self, GatewayState, Loaded};
use hermes_core::HermesHome;
use hermes_s6::slot;

const NAME_RE: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

fn matches_name_grammar(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Joining `name` under `base` adds exactly one normal component.
fn stays_one_level_below(base: &Path, name: &str) -> bool {
    let joined = base.join(name);
    joined.parent() == Some(base)
        && joined
            .components()
            .next_back()
            .is_some_and(|c| matches!(c, Component::Normal(_)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_string_parses_to_a_grammatical_name_or_an_error(raw in any::<String>()) {
        if let Ok(name) = ProfileName::parse(&raw) {
            prop_assert!(matches_name_grammar(name.as_str()), "{NAME_RE} violated by {name:?}");
            prop_assert!(stays_one_level_below(Path::new("/h/profiles"), name.as_str()));
            prop_assert_eq!(ProfileName::parse(name.as_str()), Ok(name.clone()));
            prop_assert_eq!(ProfileName::from_service_name(&name.service_name()), Some(name));
        }
        if let Ok(hook) = HookName::parse(&raw) {
            prop_assert!(matches_name_grammar(hook.as_str()));
            prop_assert!(stays_one_level_below(Path::new("/h/inbox"), hook.as_str()));
        }
    }

    #[test]
    fn grammatical_names_are_accepted_whatever_the_case_and_padding(
        name in "[a-z0-9][a-z0-9_-]{0,63}",
        upper in any::<bool>(),
        pad_left in "[ \t]{0,3}",
        pad_right in "[ \t\n]{0,3}",
    ) {
        let shown = if upper { name.to_ascii_uppercase() } else { name.clone() };
        let raw = format!("{pad_left}{shown}{pad_right}");
        let reserved = ["hermes", "test", "tmp", "root", "sudo"].contains(&name.as_str());
        match ProfileName::parse(&raw) {
            Ok(p) => prop_assert_eq!(p.as_str(), name.as_str()),
            Err(e) => prop_assert!(reserved, "{raw:?} refused: {e}"),
        }
        prop_assert_eq!(HookName::parse(&raw).map(|h| h.as_str().to_string()), Ok(name));
    }

    #[test]
    fn names_with_a_forbidden_character_are_refused(
        left in "[a-z0-9]{1,10}",
        bad in "[^a-zA-Z0-9_\\- \t\n\r\u{b}\u{c}]",
        right in "[a-z0-9]{0,10}",
    ) {
        let raw = format!("{left}{bad}{right}");
        // Unicode case folding could turn some characters into ASCII; trim() drops Unicode spaces.
        prop_assume!(!raw.trim().to_ascii_lowercase().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'));
        prop_assert!(ProfileName::parse(&raw).is_err(), "{raw:?} accepted");
        prop_assert!(HookName::parse(&raw).is_err(), "{raw:?} accepted as a hook");
    }

    #[test]
    fn profile_paths_stay_inside_the_home(name in "[a-z0-9][a-z0-9_-]{0,63}") {
        prop_assume!(ProfileName::parse(&name).is_ok());
        let home = HermesHome::new("/srv/hermes");
        let p = ProfileName::parse(&name).unwrap();
        let spec = GatewaySpec::for_profile(&home, &p, Path::new("/usr/bin/hermes"));
        for path in [&spec.workdir, &spec.log_dir] {
            prop_assert!(path.starts_with("/srv/hermes"), "{}", path.display());
            prop_assert!(path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
        }
        if !p.is_default() {
            prop_assert_eq!(spec.workdir.parent(), Some(Path::new("/srv/hermes/profiles")));
        }
    }

    #[test]
    fn config_loading_never_panics(text in ".{0,300}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(&path, &text).unwrap();
        if let Ok(c) = Config::load(&path) {
            prop_assert!(c.problems().is_empty());
            prop_assert!(c.gateway.port > 0);
        }
    }

    #[test]
    fn config_yaml_shaped_input_never_panics(
        port in prop_oneof![Just("0".to_string()), Just("65536".to_string()), Just("-1".to_string()), "[0-9]{1,6}", "\\PC{0,8}"],
        host in prop_oneof![Just("127.0.0.1".to_string()), Just("::1".to_string()), Just("localhost".to_string()), "\\PC{0,20}"],
        extra in "[a-z]{1,8}",
        extra_val in "\\PC{0,20}",
    ) {
        let text = format!("gateway:\n  host: {host}\n  port: {port}\n{extra}: {extra_val}\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(&path, &text).unwrap();
        let loaded = Config::load(&path);
        let port_ok = port.trim().parse::<u16>().is_ok_and(|p| p > 0);
        if let Ok(c) = &loaded {
            prop_assert!(port_ok, "accepted port {port:?}:\n{text}");
            prop_assert!(c.problems().is_empty());
        }
    }

    #[test]
    fn valid_configs_round_trip_and_keep_other_sections(
        port in 1u16..,
        host in prop_oneof![Just("127.0.0.1"), Just("0.0.0.0"), Just("::1"), Just("localhost")],
        key in "[a-z]{1,10}",
        value in "\\PC{0,40}",
    ) {
        prop_assume!(!["gateway", "webhooks"].contains(&key.as_str()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let mut c = Config::new(port);
        c.gateway.host = host.to_string();
        c.other.insert(serde_yaml::Value::String(key.clone()), serde_yaml::Value::String(value.clone()));
        c.save(&path).unwrap();
        let back = Config::load(&path).unwrap();
        prop_assert_eq!(back, c);
        prop_assert_eq!(Config::read_port(&path), Some(port));
    }

    #[test]
    fn state_loading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway_state.json");
        fs::write(&path, &bytes).unwrap();
        prop_assert!(state::load(&path).is_ok());
    }

    #[test]
    fn state_shaped_json_never_panics(
        pid in prop_oneof![Just(serde_json::json!(-1)), Just(serde_json::json!(4294967296u64)), Just(serde_json::json!("x")), Just(serde_json::json!(null)), (0u32..).prop_map(|p| serde_json::json!(p))],
        st in prop_oneof![Just("running"), Just("bogus"), Just(""), Just("startup_failed")],
        restarts in prop_oneof![Just(serde_json::json!(-5)), Just(serde_json::json!(1.5)), (0u32..).prop_map(|r| serde_json::json!(r))],
    ) {
        let text = serde_json::json!({"pid": pid, "gateway_state": st, "restarts": restarts, "x": {"y": [1, 2]}}).to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway_state.json");
        fs::write(&path, &text).unwrap();
        prop_assert!(state::load(&path).is_ok());
    }

    #[test]
    fn state_round_trips_and_keeps_unknown_fields(
        pid in proptest::option::of(1u32..),
        restarts in 0u32..1000,
        reason in proptest::option::of("\\PC{0,60}"),
        extra_key in "[a-z_]{1,12}",
        extra_val in "\\PC{0,30}",
    ) {
        let known = ["pid", "gateway_state", "desired_state", "exit_reason", "restarts", "fast_failures", "last_exit", "started_at", "updated_at"];
        prop_assume!(!known.contains(&extra_key.as_str()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway_state.json");
        let mut s = GatewayState { pid, restarts, exit_reason: reason, ..GatewayState::default() };
        s.extra.insert(extra_key.clone(), serde_json::Value::String(extra_val.clone()));
        state::save(&path, &s).unwrap();
        match state::load(&path).unwrap() {
            Loaded::Found(back) => prop_assert_eq!(back, s),
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

// ---- renderers, executed ----

/// A fake program that writes its argv, `pwd` and the `HX_*` environment,
/// NUL-separated, to `$FAKE_OUT` (`$PWD`, not `$(pwd)`: command substitution
/// would strip a trailing newline from the directory name).
const FAKE: &str = "#!/bin/sh\n{ for a in \"$0\" \"$@\"; do printf '%s\\0' \"$a\"; done; printf 'PWD=%s\\0' \"$PWD\"; env -0 | grep -z '^HX_' | LC_ALL=C sort -z; } > \"$FAKE_OUT\"\n";

struct Record {
    argv: Vec<String>,
    pwd: String,
    env: BTreeMap<String, String>,
}

fn install_fake(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, FAKE).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn syntax_ok(script: &Path) -> Result<(), String> {
    let out = Command::new("sh").arg("-n").arg(script).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "sh -n {}: {}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(script).unwrap_or_default()
        ))
    }
}

fn execute(
    script: &Path,
    args: &[&str],
    path_prefix: Option<&Path>,
    out: &Path,
) -> Result<Record, String> {
    let mut sh = Command::new("sh");
    sh.arg(script);
    execute_by(sh, args, path_prefix, out, script)
}

/// `script` carried out by `runner` (`sh script`, or hermes reading it).
fn execute_by(
    mut cmd: Command,
    args: &[&str],
    path_prefix: Option<&Path>,
    out: &Path,
    script: &Path,
) -> Result<Record, String> {
    cmd.args(args).env("FAKE_OUT", out).current_dir("/");
    if let Some(dir) = path_prefix {
        cmd.env("PATH", format!("{}:/usr/bin:/bin", dir.display()));
    }
    let ran = cmd.output().unwrap();
    let raw = fs::read(out).map_err(|e| {
        format!(
            "the fake program did not run ({e}); sh said: {}\nscript:\n{}",
            String::from_utf8_lossy(&ran.stderr),
            fs::read_to_string(script).unwrap_or_default()
        )
    })?;
    fs::remove_file(out).unwrap();
    let mut rec = Record {
        argv: vec![],
        pwd: String::new(),
        env: BTreeMap::new(),
    };
    for item in raw.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let item = String::from_utf8_lossy(item).into_owned();
        if let Some(p) = item.strip_prefix("PWD=") {
            rec.pwd = p.to_string();
        } else if let Some((k, v)) = item.strip_prefix("HX_").and_then(|kv| kv.split_once('=')) {
            rec.env.insert(format!("HX_{k}"), v.to_string());
        } else {
            rec.argv.push(item);
        }
    }
    Ok(rec)
}

/// A file-name component: anything but '/' and NUL, and not `.`/`..`.
fn component() -> impl Strategy<Value = String> {
    "[^/\u{0}]{1,24}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn value() -> impl Strategy<Value = String> {
    // Anything a path or variable can hold: quotes, $, `, \, newlines, unicode.
    prop_oneof![
        "[^\u{0}]{0,40}",
        Just("'".to_string()),
        Just("'\\''".to_string()),
        Just("$(touch /tmp/hermes-pwned)".to_string()),
        Just("`id`;\n exit 3".to_string()),
        Just("a\nb\\".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn slot_scripts_mean_exactly_their_spec(
        name in "[a-z0-9][a-z0-9_-]{0,20}",
        prog_dir in component(),
        prog_name in component(),
        work in component(),
        log in component(),
        env in proptest::collection::btree_map("HX_[A-Z0-9_]{0,8}", value(), 0..4),
        echo in any::<bool>(),
    ) {
        let Ok(profile) = ProfileName::parse(&name) else { return Ok(()) };
        let tmp = tempfile::tempdir().unwrap();
        let program = tmp.path().join("p").join(&prog_dir).join(&prog_name);
        install_fake(&program);
        let workdir = tmp.path().join("w").join(&work);
        fs::create_dir_all(&workdir).unwrap();
        let log_dir = tmp.path().join("l").join(&log);
        let spec = GatewaySpec {
            profile: profile.clone(),
            program: program.clone(),
            home: tmp.path().to_path_buf(),
            workdir: workdir.clone(),
            log_dir: log_dir.clone(),
            env: env.clone(),
        };
        let out = tmp.path().join("record");
        let prefix = if profile.is_default() { vec![] } else { vec!["-p".to_string(), name.clone()] };
        let prog = program.to_string_lossy().into_owned();

        // run: cd into the workdir, export exactly the env, exec the gateway.
        let run = tmp.path().join("run");
        fs::write(&run, slot::render_run(&spec)).unwrap();
        syntax_ok(&run).map_err(TestCaseError::fail)?;
        let rec = execute(&run, &[], None, &out).map_err(TestCaseError::fail)?;
        let mut want = vec![prog.clone()];
        want.extend(prefix.iter().cloned());
        want.extend(["gateway", "run", "--replace", "--notify-fd", "3"].map(String::from));
        prop_assert_eq!(&rec.argv, &want);
        prop_assert_eq!(PathBuf::from(&rec.pwd), workdir.clone());
        prop_assert_eq!(&rec.env, &env);
        // hermes as the interpreter (what the kernel runs for the `#!` line,
        // here with s6's service-name argument): the same program, argv,
        // directory and environment.
        let mut by_hermes = Command::new(hermes_testkit::env::hermes_bin());
        by_hermes.arg(hermes_s6::run_script::INTERPRETER_ARG).arg(&run);
        let rec = execute_by(by_hermes, &["gateway-x"], None, &out, &run).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&rec.argv, &want);
        prop_assert_eq!(PathBuf::from(&rec.pwd), workdir.clone());
        prop_assert_eq!(&rec.env, &env);

        // finish: the hook with s6's two arguments passed through untouched.
        let finish = tmp.path().join("finish");
        fs::write(&finish, slot::render_finish(&spec)).unwrap();
        syntax_ok(&finish).map_err(TestCaseError::fail)?;
        let rec = execute(&finish, &["256", "9"], None, &out).map_err(TestCaseError::fail)?;
        let mut want = vec![prog.clone()];
        want.extend(prefix.iter().cloned());
        want.extend(["gateway", "finish-hook", "256", "9"].map(String::from));
        prop_assert_eq!(&rec.argv, &want);
        prop_assert_eq!(&rec.env, &env);

        // log/run: hermes's `log-run` step for exactly the log dir, then
        // s6-log into exactly the log dir.
        let log_dir_arg = log_dir.to_string_lossy().into_owned();
        let log_run = tmp.path().join("log-run");
        fs::write(&log_run, slot::render_log_run(&spec, echo)).unwrap();
        syntax_ok(&log_run).map_err(TestCaseError::fail)?;
        let rec = execute(&log_run, &[], None, &out).map_err(TestCaseError::fail)?;
        let step = [prog.clone(), slot::LOG_RUN.to_string(), log_dir_arg.clone(), "--".to_string()];
        prop_assert_eq!(&rec.argv[..4], &step[..]);
        let logger = &rec.argv[4..];
        prop_assert_eq!(logger.first().map(String::as_str), Some("s6-log"));
        prop_assert_eq!(logger.last(), Some(&log_dir_arg));
        // The copy to s6-svscan's stdout (`T 1`, timestamped) only when asked.
        prop_assert_eq!(logger.len(), if echo { 8 } else { 6 });
        prop_assert_eq!(logger.windows(2).any(|w| w[0] == "T" && w[1] == "1"), echo);
        // The real hermes, as the interpreter of a logger naming it, takes
        // the step and execs that same s6-log (found on PATH: our fake).
        let bin = tmp.path().join("fakebin");
        install_fake(&bin.join("s6-log"));
        let hermes = hermes_testkit::env::hermes_bin();
        let by_itself = GatewaySpec { program: hermes.clone(), ..spec.clone() };
        fs::write(&log_run, slot::render_log_run(&by_itself, echo)).unwrap();
        let mut by_hermes = Command::new(&hermes);
        by_hermes.arg(hermes_s6::run_script::INTERPRETER_ARG).arg(&log_run);
        let rec = execute_by(by_hermes, &["gateway-x/log"], Some(&bin), &out, &log_run).map_err(TestCaseError::fail)?;
        let mut want = logger.to_vec();
        want[0] = bin.join("s6-log").to_string_lossy().into_owned();
        prop_assert_eq!(&rec.argv, &want);

        // Every file of the slot stays inside the slot directory.
        for (rel, _, _) in slot::render(&spec, false, echo).files {
            prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{}", rel.display());
        }
    }

    #[test]
    fn alias_wrapper_means_exactly_hermes_dash_p(
        name in "[a-z0-9][a-z0-9_-]{0,20}",
        prog_name in component(),
        args in proptest::collection::vec(value(), 0..4),
    ) {
        let Ok(profile) = ProfileName::parse(&name) else { return Ok(()) };
        let tmp = tempfile::tempdir().unwrap();
        let program = tmp.path().join("p").join(&prog_name);
        install_fake(&program);
        let alias = tmp.path().join("alias");
        fs::write(&alias, hermes_core::profile::render_alias(&program, &profile)).unwrap();
        syntax_ok(&alias).map_err(TestCaseError::fail)?;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let rec = execute(&alias, &arg_refs, None, &tmp.path().join("record")).map_err(TestCaseError::fail)?;
        let mut want = vec![program.to_string_lossy().into_owned(), "-p".to_string(), name.clone()];
        want.extend(args.iter().filter(|a| !a.is_empty()).cloned());
        // The record drops empty strings (NUL-split), so compare without them.
        prop_assert_eq!(rec.argv, want);
    }
}
