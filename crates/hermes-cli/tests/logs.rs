//! `hermes gateway logs`: the backlog across s6-log's archives, `-f` across
//! a real rotation, and `--all` under the profiles' names.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hermes_testkit::Env;

const LIMIT: Duration = Duration::from_secs(15);

/// Every line on disk, archives oldest first, then `current`.
fn on_disk(env: &Env, profile: &str) -> Vec<String> {
    let dir = env.log_dir(profile);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('@'))
        .collect();
    names.sort();
    names.push("current".into());
    names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn archives(env: &Env, profile: &str) -> usize {
    std::fs::read_dir(env.log_dir(profile))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with('@'))
        })
        .count()
}

/// Force s6-log to rotate (SIGALRM) and wait for the archive.
fn rotate(env: &Env, profile: &str) {
    let before = archives(env, profile);
    let st = std::process::Command::new("s6-svc")
        .arg("-a")
        .arg(env.slot(profile).join("log"))
        .status()
        .unwrap();
    assert!(st.success());
    env.wait_for("an s6-log archive", LIMIT, || {
        archives(env, profile) > before
    });
}

struct Follow {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follow {
    fn start(env: &Env, args: &[&str]) -> Follow {
        let mut child = env
            .command(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn hermes gateway logs -f");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Follow { child, lines }
    }

    fn seen(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_reads_every_line_once_across_a_rotation() {
    let env = Env::with_gateway_up("lg");
    env.wait_for("the gateway's first lines", LIMIT, || {
        !on_disk(&env, "lg").is_empty()
    });

    let follow = Follow::start(&env, &["-p", "lg", "gateway", "logs", "-f", "-n", "1000"]);
    env.wait_for("the backlog", LIMIT, || {
        follow.seen() == on_disk(&env, "lg")
    });

    // A rotation with nothing written after it, then lines in the new
    // `current` (the stop and the start of a restart), then a second rotation.
    rotate(&env, "lg");
    let lines_before = on_disk(&env, "lg").len();
    env.ok(&["-p", "lg", "gateway", "restart"]);
    rotate(&env, "lg");
    env.ok(&["-p", "lg", "gateway", "restart"]);
    env.wait_for("the lines after two rotations", LIMIT, || {
        let disk = on_disk(&env, "lg");
        disk.len() > lines_before && follow.seen() == disk
    });
    assert!(archives(&env, "lg") >= 2);

    // Without -f, -n reaches back into the archives, oldest first.
    let disk = on_disk(&env, "lg");
    let out = env.ok(&["-p", "lg", "gateway", "logs", "-n", "1000"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), disk);
    let out = env.ok(&["-p", "lg", "gateway", "logs", "-n", "2"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), disk[disk.len() - 2..]);
}

#[test]
fn all_interleaves_profiles_by_time_under_their_names() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["aa", "--no-alias"]);
    env.create(&["bbbb", "--no-alias"]);
    env.ok(&["-p", "aa", "gateway", "start"]);
    env.ok(&["-p", "bbbb", "gateway", "start"]);
    env.ok(&["-p", "aa", "gateway", "restart"]);
    let out = env.ok(&["gateway", "logs", "--all", "-n", "1000"]);
    let lines: Vec<&str> = out.lines().collect();
    let expected = on_disk(&env, "aa").len() + on_disk(&env, "bbbb").len();
    assert_eq!(lines.len(), expected, "{out}");
    assert!(lines.iter().any(|l| l.starts_with("aa   | ")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("bbbb | ")), "{out}");
    let stamps: Vec<&str> = lines.iter().map(|l| &l[7..36]).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "{out}");
    // bbbb started between aa's start and its restart.
    let first_b = lines.iter().position(|l| l.starts_with("bbbb")).unwrap();
    assert!(
        lines[first_b + 1..].iter().any(|l| l.starts_with("aa ")),
        "{out}"
    );
}

#[test]
fn a_kill_from_outside_ends_with_a_line_in_the_log_and_lines_name_the_profile() {
    let env = Env::with_gateway_up("kl");
    let pid = env.status("kl")["pid"].as_u64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The finish hook's line goes through the logger: timestamped, kept.
    let ended = hermes_testkit::wait_for("the ended line in the log", LIMIT, || {
        on_disk(&env, "kl")
            .into_iter()
            .find(|l| l.contains("hermes: gateway 'kl' ended with signal 9"))
    });
    assert!(hermes_model::logs::timestamp(&ended).is_some(), "{ended}");
    let disk = on_disk(&env, "kl");
    let gateway_lines: Vec<&String> = disk
        .iter()
        .filter(|l| l.contains("hermes-gateway"))
        .collect();
    assert!(!gateway_lines.is_empty());
    assert!(
        gateway_lines
            .iter()
            .all(|l| l.contains("hermes-gateway[kl]: ")),
        "{disk:#?}"
    );
}
