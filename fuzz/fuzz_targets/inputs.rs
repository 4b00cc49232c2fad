//! One target over every outside input hermes parses or renders. The first
//! byte picks the parser; the rest is its input. Beyond "no panic", each arm
//! checks the property the code promises:
//! - names: anything accepted matches the grammar and stays one path component;
//! - config.yaml and gateway_state.json: parse, and a parsed state re-serialises
//!   to the same value (unknown fields kept);
//! - the s6 run script: tokenised the way sh would, and read by hermes's own
//!   reader (`run_script::parse`), it yields exactly the spec's working
//!   directory, environment and argv, whatever the values hold;
//! - any text given to that reader: refused or read, never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use hermes_core::config::Config;
use hermes_core::name::{HookName, ProfileName};
use hermes_core::service::GatewaySpec;
use hermes_core::state::GatewayState;
use hermes_s6::run_script::{self, Script, Step};
use libfuzzer_sys::fuzz_target;

fn grammatical(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn one_component(name: &str) {
    let base = Path::new("/home/profiles");
    let joined = base.join(name);
    assert_eq!(joined.parent(), Some(base), "{name:?} escapes");
    assert!(matches!(joined.components().next_back(), Some(Component::Normal(_))));
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Newline,
}

/// The subset of sh word splitting the renderer relies on: blanks separate,
/// newlines end commands, '…' quotes literally, \ escapes one character.
fn tokenize(script: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    toks.push(Tok::Word(w));
                }
            }
            '\n' => {
                if let Some(w) = word.take() {
                    toks.push(Tok::Word(w));
                }
                toks.push(Tok::Newline);
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    word.get_or_insert_with(String::new).push(n);
                }
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    if let Some(w) = word {
        toks.push(Tok::Word(w));
    }
    toks
}

fn words(ws: &[&str]) -> Vec<Tok> {
    ws.iter().map(|w| Tok::Word(w.to_string())).collect()
}

fn check_run_script(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Fields separated by NUL (which no path or variable can contain).
    let mut fields = text.split('\0');
    let Ok(profile) = ProfileName::parse(fields.next().unwrap_or("")) else { return };
    let program = fields.next().unwrap_or("/usr/bin/hermes").to_string();
    let workdir = fields.next().unwrap_or("/w").to_string();
    let mut env = BTreeMap::new();
    for (i, v) in fields.enumerate() {
        env.insert(format!("HX_{i}"), v.to_string());
    }
    let spec = GatewaySpec {
        profile: profile.clone(),
        program: PathBuf::from(&program),
        home: PathBuf::from("/h"),
        workdir: PathBuf::from(&workdir),
        log_dir: PathBuf::from("/h/logs"),
        env: env.clone(),
    };
    let script = hermes_s6::slot::render_run(&spec);
    // Comment lines (the shebang, shellcheck's and the generated-file note)
    // precede the commands.
    let body: String = script
        .split_inclusive('\n')
        .skip_while(|l| l.starts_with('#'))
        .collect();
    let mut want = words(&["exec", "2>&1"]);
    want.push(Tok::Newline);
    want.extend(words(&["cd", &workdir, "||", "exit", "111"]));
    want.push(Tok::Newline);
    for (k, v) in &env {
        want.extend(words(&["export", &format!("{k}={v}")]));
        want.push(Tok::Newline);
    }
    want.push(Tok::Word("exec".into()));
    want.push(Tok::Word(program.clone()));
    for a in spec.args() {
        want.push(Tok::Word(a));
    }
    want.extend(words(&["--notify-fd", "3"]));
    want.push(Tok::Newline);
    assert_eq!(tokenize(&body), want, "script:\n{script}");
    let mut steps = vec![Step::MergeStderr, Step::Cd(PathBuf::from(&workdir))];
    steps.extend(env.iter().map(|(k, v)| Step::Export(k.clone(), v.clone())));
    let mut exec = vec![OsString::from(&program)];
    exec.extend(spec.args().into_iter().map(OsString::from));
    exec.extend(["--notify-fd", "3"].map(OsString::from));
    assert_eq!(run_script::parse(&script), Ok(Script { steps, exec }), "script:\n{script}");
    assert!(script.starts_with("#!"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 6 {
        0 => {
            let raw = String::from_utf8_lossy(rest);
            if let Ok(name) = ProfileName::parse(&raw) {
                assert!(grammatical(name.as_str()), "{name:?}");
                one_component(name.as_str());
                assert_eq!(ProfileName::from_service_name(&name.service_name()), Some(name));
            }
        }
        1 => {
            let raw = String::from_utf8_lossy(rest);
            if let Ok(hook) = HookName::parse(&raw) {
                assert!(grammatical(hook.as_str()), "{hook:?}");
                one_component(hook.as_str());
            }
        }
        2 => {
            if let Ok(config) = serde_yaml::from_slice::<Config>(rest) {
                let _ = config.problems();
                if let Ok(text) = serde_yaml::to_string(&config) {
                    let _ = serde_yaml::from_str::<Config>(&text);
                }
            }
        }
        3 => {
            if let Ok(state) = serde_json::from_slice::<GatewayState>(rest) {
                let text = serde_json::to_vec(&state).expect("a parsed state serialises");
                let again: GatewayState =
                    serde_json::from_slice(&text).expect("re-serialised state parses");
                assert_eq!(again, state);
            }
        }
        4 => check_run_script(rest),
        _ => {
            if let Ok(script) = run_script::parse(&String::from_utf8_lossy(rest)) {
                assert!(!script.exec.is_empty());
            }
        }
    }
});
