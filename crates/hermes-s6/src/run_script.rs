//! A gateway slot's `run` file names hermes as its interpreter
//! (`#!/path/to/hermes slot-script`), so s6-supervise's exec of `./run`
//! starts hermes directly: one process start per gateway start instead of
//! two (`/bin/sh`, then hermes). Under `perf`, the shell was a quarter of
//! the CPU of a `start --all`, half of it the C library's start-up.
//!
//! The lines below the `#!` line stay an ordinary `sh` script (`sh run`
//! still works, shellcheck still reads it). hermes understands exactly the
//! commands `slot::render_run` writes, in order, and refuses anything else:
//! `exec 2>&1`, `cd 'DIR' || exit 111`, `export NAME='VALUE'` and a final
//! `exec 'PROGRAM' 'ARG'...`, every argument single-quoted as `sh_quote`
//! writes it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The interpreter's argument on the `#!` line, which the kernel passes
/// before the script's path: `hermes slot-script ./run [s6's arguments]`.
pub const INTERPRETER_ARG: &str = "slot-script";

/// Shortest `#!` line buffer of the kernels s6 runs on (Linux before 5.1).
const SHEBANG_MAX: usize = 127;

/// The first lines of a run script for `program`: hermes itself when the
/// kernel can take its path from a `#!` line (absolute, no blank or control
/// character, short enough for every kernel), then a line telling
/// shellcheck (and a reader) that the rest is `sh`; else `/bin/sh`.
pub fn interpreter_lines(program: &Path) -> String {
    let direct = program.to_str().and_then(|p| {
        let line = format!("#!{p} {INTERPRETER_ARG}");
        let plain = !p.chars().any(|c| c.is_whitespace() || c.is_control());
        (p.starts_with('/') && plain && line.len() <= SHEBANG_MAX)
            .then(|| format!("{line}\n# shellcheck shell=sh"))
    });
    direct.unwrap_or_else(|| "#!/bin/sh".to_string())
}

/// One command before a run script's final `exec`, in the order `sh` would
/// run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `exec 2>&1`
    MergeStderr,
    /// `cd 'DIR' || exit 111`
    Cd(PathBuf),
    /// `export NAME='VALUE'`
    Export(String, String),
}

/// A run script: its steps, then the argv of its final `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<Step>,
    pub exec: Vec<OsString>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {what} (hermes writes this file: `hermes -p PROFILE gateway uninstall`, then `install`, writes it anew)")]
pub struct ParseError {
    pub line: usize,
    pub what: &'static str,
}

/// A word as the script spells it: an unquoted part (letters, digits and
/// `_=|&>./-`: enough for the keywords `||` and `2>&1` and an export's
/// `NAME=`, each only accepted whole), then a single-quoted part, either
/// possibly empty.
#[derive(Debug)]
struct Word {
    bare: String,
    quoted: Option<String>,
}

impl Word {
    fn keyword(&self, want: &str) -> bool {
        self.quoted.is_none() && self.bare == want
    }

    /// A word that is all quoted: a literal argument.
    fn literal(&self) -> Option<&str> {
        self.quoted.as_deref().filter(|_| self.bare.is_empty())
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Lexer<'_> {
    fn fail(&self, what: &'static str) -> ParseError {
        ParseError {
            line: self.line,
            what,
        }
    }

    fn skip_blanks(&mut self) {
        while self.chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
    }

    /// The words of the next command, or `None` at the end of the text.
    fn command(&mut self) -> Result<Option<(usize, Vec<Word>)>, ParseError> {
        loop {
            self.skip_blanks();
            match self.chars.peek() {
                None => return Ok(None),
                Some('\n') => {
                    self.chars.next();
                    self.line += 1;
                }
                Some('#') => while self.chars.next_if(|c| *c != '\n').is_some() {},
                Some(_) => break,
            }
        }
        let start = self.line;
        let mut words = Vec::new();
        loop {
            self.skip_blanks();
            match self.chars.peek() {
                None => break,
                Some('\n') => {
                    self.chars.next();
                    self.line += 1;
                    break;
                }
                Some(_) => words.push(self.word()?),
            }
        }
        Ok(Some((start, words)))
    }

    fn word(&mut self) -> Result<Word, ParseError> {
        let mut bare = String::new();
        while let Some(c) = self
            .chars
            .next_if(|c| c.is_ascii_alphanumeric() || "_=|&>./-".contains(*c))
        {
            bare.push(c);
        }
        let mut quoted = None;
        loop {
            match self.chars.peek() {
                Some('\'') => {
                    self.chars.next();
                    let opened = self.line;
                    let text: &mut String = quoted.get_or_insert_with(String::new);
                    loop {
                        match self.chars.next() {
                            Some('\'') => break,
                            Some(c) => {
                                if c == '\n' {
                                    self.line += 1;
                                }
                                text.push(c);
                            }
                            None => {
                                return Err(ParseError {
                                    line: opened,
                                    what: "a quote is never closed",
                                })
                            }
                        }
                    }
                }
                // `'\''`: a quote inside a quoted word.
                Some('\\') if quoted.is_some() => {
                    self.chars.next();
                    if self.chars.next() != Some('\'') {
                        return Err(self.fail("a backslash escapes something other than a quote"));
                    }
                    quoted.get_or_insert_with(String::new).push('\'');
                }
                None | Some(' ' | '\t' | '\n') => break,
                Some(_) => return Err(self.fail("a character sh would not take literally")),
            }
        }
        if bare.is_empty() && quoted.is_none() {
            return Err(self.fail("a character sh would not take literally"));
        }
        Ok(Word { bare, quoted })
    }
}

/// One command line of a run script.
enum Command {
    Step(Step),
    Exec(Vec<OsString>),
}

fn command(words: &[Word]) -> Result<Command, &'static str> {
    match words {
        [exec, redirect] if exec.keyword("exec") && redirect.keyword("2>&1") => {
            Ok(Command::Step(Step::MergeStderr))
        }
        [cd, dir, or, exit, code]
            if cd.keyword("cd")
                && or.keyword("||")
                && exit.keyword("exit")
                && code.keyword("111") =>
        {
            dir.literal()
                .map(|d| Command::Step(Step::Cd(PathBuf::from(d))))
                .ok_or("cd's directory is not quoted")
        }
        [export, assignment] if export.keyword("export") => {
            let (name, unquoted) = assignment
                .bare
                .split_once('=')
                .filter(|(n, _)| crate::slot::valid_env_key(n))
                .ok_or("export names no variable")?;
            match &assignment.quoted {
                Some(value) if unquoted.is_empty() => {
                    Ok(Command::Step(Step::Export(name.to_string(), value.clone())))
                }
                _ => Err("export's value is not quoted"),
            }
        }
        [exec, argv @ ..] if exec.keyword("exec") && !argv.is_empty() => argv
            .iter()
            .map(|w| w.literal().map(OsString::from))
            .collect::<Option<Vec<_>>>()
            .map(Command::Exec)
            .ok_or("exec's arguments are not all quoted"),
        _ => Err("not a command a run script has"),
    }
}

/// A run script's steps and its final `exec`, or the first line that is
/// not one of them.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
        line: 1,
    };
    let mut steps = Vec::new();
    let mut exec = None;
    while let Some((line, words)) = lexer.command()? {
        if exec.is_some() {
            return Err(ParseError {
                line,
                what: "a command after the final exec",
            });
        }
        match command(&words).map_err(|what| ParseError { line, what })? {
            Command::Step(step) => steps.push(step),
            Command::Exec(argv) => exec = Some(argv),
        }
    }
    let exec = exec.ok_or(ParseError {
        line: lexer.line,
        what: "the script ends without an exec",
    })?;
    Ok(Script { steps, exec })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::render_run;
    use hermes_core::service::GatewaySpec;
    use hermes_core::ProfileName;
    use std::collections::BTreeMap;

    fn spec(program: &str, workdir: &str, env: &[(&str, &str)]) -> GatewaySpec {
        GatewaySpec {
            profile: ProfileName::parse("coder").unwrap(),
            program: program.into(),
            home: "/data".into(),
            workdir: workdir.into(),
            log_dir: "/data/logs/gateways/coder".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_rendered_run_script_parses_back_to_its_spec() {
        let odd = "it's a \"dir\"\nwith $HOME `x` \\ and ''";
        let s = spec(
            "/usr/local/bin/hermes",
            odd,
            &[("HERMES_HOME", "/da'ta"), ("EMPTY", ""), ("NL", "a\nb'")],
        );
        let script = parse(&render_run(&s)).unwrap();
        let argv = [
            "/usr/local/bin/hermes",
            "-p",
            "coder",
            "gateway",
            "run",
            "--replace",
            "--notify-fd",
            "3",
        ];
        assert_eq!(
            script,
            Script {
                steps: vec![
                    Step::MergeStderr,
                    Step::Cd(PathBuf::from(odd)),
                    Step::Export("EMPTY".into(), "".into()),
                    Step::Export("HERMES_HOME".into(), "/da'ta".into()),
                    Step::Export("NL".into(), "a\nb'".into()),
                ],
                exec: argv.iter().map(OsString::from).collect(),
            }
        );
    }

    #[test]
    fn hermes_is_the_interpreter_only_where_a_shebang_can_name_it() {
        assert_eq!(
            interpreter_lines(Path::new("/usr/local/bin/hermes")),
            "#!/usr/local/bin/hermes slot-script\n# shellcheck shell=sh"
        );
        for program in [
            "/opt/my bin/hermes",
            "/usr/local/bin/hermes (deleted)",
            "relative/hermes",
            "/tab\there",
        ] {
            assert_eq!(
                interpreter_lines(Path::new(program)),
                "#!/bin/sh",
                "{program}"
            );
        }
        let long = format!("/{}", "d/".repeat(60));
        assert_eq!(interpreter_lines(Path::new(&long)), "#!/bin/sh");
    }

    #[test]
    fn anything_but_the_rendered_commands_is_refused_with_its_line() {
        let cases = [
            (
                "exec 2>&1\nrm -rf /\nexec 'x'\n",
                2,
                "not a command a run script has",
            ),
            (
                "exec 'x' $HOME\n",
                1,
                "a character sh would not take literally",
            ),
            (
                "exec 'x' \"y\"\n",
                1,
                "a character sh would not take literally",
            ),
            (
                "exec 'x'; echo\n",
                1,
                "a character sh would not take literally",
            ),
            ("exec x\n", 1, "exec's arguments are not all quoted"),
            (
                "cd /tmp || exit 111\nexec 'x'\n",
                1,
                "cd's directory is not quoted",
            ),
            ("cd '/tmp'\nexec 'x'\n", 1, "not a command a run script has"),
            ("export A-B='1'\nexec 'x'\n", 1, "export names no variable"),
            ("export A=1\nexec 'x'\n", 1, "export's value is not quoted"),
            ("exec 'x\n", 1, "a quote is never closed"),
            (
                "exec 'a'\\n\n",
                1,
                "a backslash escapes something other than a quote",
            ),
            ("exec 'x'\nexec 'y'\n", 2, "a command after the final exec"),
            (
                "# nothing\nexec 2>&1\n",
                3,
                "the script ends without an exec",
            ),
            (
                "'exec' '2>&1'\nexec 'x'\n",
                1,
                "not a command a run script has",
            ),
        ];
        for (text, line, what) in cases {
            assert_eq!(parse(text), Err(ParseError { line, what }), "{text:?}");
        }
    }
}
