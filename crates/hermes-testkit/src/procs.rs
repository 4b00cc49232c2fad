//! Processes read straight from `/proc` (the suites must also run where
//! procps is missing, and must not trust hermes to report its own processes).

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// One-letter state from `/proc/<pid>/stat` (`Z` is a zombie).
    pub state: char,
    pub argv: Vec<String>,
}

impl Proc {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// A gateway process of `profile`: started from its slot (hermes
    /// reading the run script, named by s6's service-name argument), or by
    /// hand (`hermes [-p P] gateway run`).
    pub fn is_gateway_of(&self, profile: &str) -> bool {
        match self
            .argv
            .iter()
            .position(|a| a == hermes_s6::run_script::INTERPRETER_ARG)
        {
            Some(i) => {
                self.argv.get(i + 2).map(String::as_str) == Some(&format!("gateway-{profile}"))
            }
            None => {
                let named = match self.argv.iter().position(|a| a == "-p") {
                    Some(i) => self.argv.get(i + 1).map(String::as_str) == Some(profile),
                    None => profile == "default",
                };
                named
                    && self
                        .argv
                        .windows(2)
                        .any(|w| w[0] == "gateway" && w[1] == "run")
            }
        }
    }
}

pub fn read(pid: u32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: it ends at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let argv = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        comm,
        state,
        argv,
    })
}

pub fn all() -> Vec<Proc> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect()
}

/// Every live descendant of `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<Proc> {
    let procs = all();
    let mut found: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            frontier.push(p.pid);
            found.push(p.clone());
        }
    }
    found
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    read(pid).is_some_and(|p| !p.is_zombie())
}

fn status_field_kb(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resident set size in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_field_kb(pid, "status", "VmRSS:")
}

/// Proportional set size in KiB: shared pages split between their users, so a
/// sum over many processes of the same binary is not inflated.
pub fn pss_kb(pid: u32) -> Option<u64> {
    status_field_kb(pid, "smaps_rollup", "Pss:")
}

/// The value of `key` in the process's environment (readable by its owner or root).
pub fn environ_var(pid: u32, key: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    raw.split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
}

pub fn cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Processes that belong to a test environment rooted at `root`: their
/// `HERMES_HOME` or working directory lies under it. This is how leaks are found
/// after a supervisor is gone (orphans are reparented away from its tree).
pub fn belonging_to(root: &Path) -> Vec<Proc> {
    let me = std::process::id();
    all()
        .into_iter()
        .filter(|p| p.pid != me && !p.is_zombie())
        .filter(|p| {
            environ_var(p.pid, "HERMES_HOME").is_some_and(|h| Path::new(&h).starts_with(root))
                || cwd(p.pid).is_some_and(|c| c.starts_with(root))
        })
        .collect()
}
