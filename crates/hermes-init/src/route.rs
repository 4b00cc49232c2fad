//! What the container's CMD means (the "Container contract" table): server
//! mode, the TUI, a program on PATH, or a hermes command. Pure: the caller
//! passes in how to look a name up.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainProgram {
    /// No CMD and no terminal: the supervised services are the whole job.
    Server,
    /// The interactive console (`hermes tui`).
    Tui,
    /// `hermes <args>`, as the service user.
    Hermes(Vec<OsString>),
    /// A program found on PATH (or given by path), run as it is.
    Program { path: PathBuf, argv: Vec<OsString> },
}

impl MainProgram {
    /// Whether it must start only once boot reconciliation has published the
    /// slots: hermes reads them (`hermes status`, the TUI), and server mode
    /// has nothing else to do. Any other program starts beside it.
    pub fn reads_reconciled_slots(&self) -> bool {
        !matches!(self, MainProgram::Program { .. })
    }

    /// Whether it draws the whole terminal (the TUI, however it was asked
    /// for): nothing the supervision tree prints may land on it then.
    pub fn draws_the_terminal(&self) -> bool {
        match self {
            MainProgram::Tui => true,
            MainProgram::Hermes(args) => subcommand(args) == Some(OsStr::new("tui")),
            _ => false,
        }
    }
}

/// The subcommand of hermes arguments: the first word that is neither an
/// option nor the profile `-p`/`--profile` names.
fn subcommand(args: &[OsString]) -> Option<&OsStr> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "-p" || word == "--profile" {
            words.next();
        } else if !word.as_encoded_bytes().starts_with(b"-") {
            return Some(word);
        }
    }
    None
}

/// Decide what to run for `cmd`. `lookup` resolves a bare name on PATH;
/// `is_hermes` tells whether a resolved path is this hermes binary.
pub fn route(
    cmd: &[OsString],
    stdin_is_tty: bool,
    lookup: impl Fn(&OsStr) -> Option<PathBuf>,
    is_hermes: impl Fn(&Path) -> bool,
) -> MainProgram {
    let Some(first) = cmd.first() else {
        return if stdin_is_tty {
            MainProgram::Tui
        } else {
            MainProgram::Server
        };
    };
    if cmd.len() == 1 && (first == "--tui" || first == "-T") {
        return MainProgram::Tui;
    }
    let resolved = if first.as_encoded_bytes().contains(&b'/') {
        Some(PathBuf::from(first))
    } else if first.as_encoded_bytes().starts_with(b"-") {
        // `--version`, `-p coder status`: hermes options, never programs.
        None
    } else {
        lookup(first)
    };
    match resolved {
        // A profile alias (a link to hermes named after the profile).
        Some(path) if is_hermes(&path) => match crate::aliases::profile_of_invocation(first) {
            Some(profile) => {
                let mut args = vec!["-p".into(), profile.as_str().into()];
                args.extend(cmd[1..].iter().cloned());
                MainProgram::Hermes(args)
            }
            None => MainProgram::Hermes(cmd[1..].to_vec()),
        },
        Some(path) => MainProgram::Program {
            path,
            argv: cmd.to_vec(),
        },
        None => MainProgram::Hermes(cmd.to_vec()),
    }
}

/// The hermes arguments of a CMD that names hermes (`hermes …`, a path to
/// it) or is a bare hermes command line.
pub fn hermes_args(cmd: &[OsString]) -> Vec<OsString> {
    match cmd.first() {
        Some(first) if Path::new(first).file_name() == Some(OsStr::new("hermes")) => {
            cmd[1..].to_vec()
        }
        _ => cmd.to_vec(),
    }
}

/// Whether the CMD is a hermes command that only reads the volume
/// (`status`, `profile list`, `gateway status`, `--version`, `--help`),
/// with any options (`-p NAME`, `--json`).
pub fn read_only_hermes(cmd: &[OsString]) -> bool {
    let args = hermes_args(cmd);
    let mut words = Vec::new();
    let mut iter = args.iter().map(|a| a.to_str());
    while let Some(arg) = iter.next() {
        let Some(arg) = arg else { return false };
        match arg {
            "-p" | "--profile" => {
                iter.next();
            }
            "--version" | "-V" | "--help" | "-h" if words.is_empty() => return true,
            _ if arg.starts_with('-') => {}
            _ => words.push(arg),
        }
    }
    matches!(
        words.as_slice(),
        ["status"] | ["profile", "list"] | ["gateway", "status"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn decide(list: &[&str], tty: bool) -> MainProgram {
        let lookup = |name: &OsStr| match name.to_str().unwrap() {
            "sleep" | "sh" | "bash" | "hermes" => Some(PathBuf::from("/usr/bin").join(name)),
            // A profile alias: a link to hermes.
            "coder" => Some(PathBuf::from("/run/hermes-aliases/coder")),
            _ => None,
        };
        route(&args(list), tty, lookup, |p| {
            p == Path::new("/usr/bin/hermes") || p == Path::new("/run/hermes-aliases/coder")
        })
    }

    #[test]
    fn the_container_contract_table() {
        assert_eq!(decide(&[], false), MainProgram::Server);
        assert_eq!(decide(&[], true), MainProgram::Tui);
        assert!(decide(&[], true).draws_the_terminal());
        assert!(!decide(&[], false).draws_the_terminal());
        assert_eq!(decide(&["--tui"], false), MainProgram::Tui);
        assert_eq!(decide(&["-T"], true), MainProgram::Tui);
        assert_eq!(
            decide(&["sh", "-c", "exit 42"], false),
            MainProgram::Program {
                path: "/usr/bin/sh".into(),
                argv: args(&["sh", "-c", "exit 42"])
            }
        );
        assert_eq!(
            decide(&["status"], false),
            MainProgram::Hermes(args(&["status"]))
        );
        assert_eq!(
            decide(&["gateway", "run"], false),
            MainProgram::Hermes(args(&["gateway", "run"]))
        );
        assert_eq!(
            decide(&["--version"], false),
            MainProgram::Hermes(args(&["--version"]))
        );
        assert_eq!(
            decide(&["-p", "coder", "status"], false),
            MainProgram::Hermes(args(&["-p", "coder", "status"]))
        );
    }

    #[test]
    fn hermes_by_name_or_path_is_a_hermes_command() {
        assert_eq!(
            decide(&["hermes", "profile", "list"], false),
            MainProgram::Hermes(args(&["profile", "list"]))
        );
        assert_eq!(
            decide(&["/usr/bin/hermes", "status"], false),
            MainProgram::Hermes(args(&["status"]))
        );
        assert_eq!(
            decide(&["coder", "gateway", "status"], false),
            MainProgram::Hermes(args(&["-p", "coder", "gateway", "status"]))
        );
        assert_eq!(
            decide(&["./script.sh"], false),
            MainProgram::Program {
                path: "./script.sh".into(),
                argv: args(&["./script.sh"])
            }
        );
    }

    #[test]
    fn only_the_tui_draws_the_terminal() {
        for (cmd, tty, draws) in [
            (&[][..], true, true),
            (&["--tui"][..], false, true),
            (&["hermes", "tui"][..], true, true),
            (&["tui"][..], true, true),
            (&["-p", "coder", "tui"][..], true, true),
            (&["coder", "tui"][..], true, true),
            (&[][..], false, false),
            (&["gateway", "run"][..], true, false),
            (&["-p", "tui", "status"][..], true, false),
            (&["sh"][..], true, false),
        ] {
            assert_eq!(decide(cmd, tty).draws_the_terminal(), draws, "{cmd:?}");
        }
    }

    #[test]
    fn only_other_programs_start_beside_the_reconciler() {
        for (cmd, tty, waits) in [
            (&[][..], false, true),
            (&[][..], true, true),
            (&["status"][..], false, true),
            (&["hermes", "gateway", "run"][..], false, true),
            (&["sleep", "1"][..], false, false),
            (&["sh", "-c", "hermes status"][..], false, false),
        ] {
            assert_eq!(decide(cmd, tty).reads_reconciled_slots(), waits, "{cmd:?}");
        }
    }

    #[test]
    fn read_only_commands_are_recognised() {
        for cmd in [
            &["status"][..],
            &["hermes", "status", "--json"],
            &["/usr/local/bin/hermes", "profile", "list"],
            &["-p", "coder", "gateway", "status"],
            &["--version"],
        ] {
            assert!(read_only_hermes(&args(cmd)), "{cmd:?}");
        }
        for cmd in [
            &[][..],
            &["sh", "-c", "hermes status"],
            &["gateway", "start"],
            &["profile", "create", "x"],
            &["status", "extra"],
            &["-p", "status", "gateway", "run"],
        ] {
            assert!(!read_only_hermes(&args(cmd)), "{cmd:?}");
        }
    }
}
