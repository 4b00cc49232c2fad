//! Every external command a host backend runs goes through `CommandRunner`,
//! so tests can record the exact argv sequence and script the answers, and so
//! every failure can name the command that failed.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use hermes_core::service::ServiceError;

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// `None` when the command was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(stdout: &str) -> Self {
        Output::exit(0, stdout, "")
    }

    pub fn exit(code: i32, stdout: &str, stderr: &str) -> Self {
        Output {
            code: Some(code),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

pub trait CommandRunner {
    /// Run `argv` to completion with no stdin; a spawn failure is `ServiceError::Spawn`.
    fn run(&self, argv: &[String]) -> Result<Output, ServiceError>;
}

impl<T: CommandRunner + ?Sized> CommandRunner for &T {
    fn run(&self, argv: &[String]) -> Result<Output, ServiceError> {
        (**self).run(argv)
    }
}

/// Runs commands for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, argv: &[String]) -> Result<Output, ServiceError> {
        let (program, args) = argv.split_first().ok_or_else(|| ServiceError::Spawn {
            program: String::new(),
            source: std::io::Error::other("empty command line"),
        })?;
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ServiceError::Spawn {
                program: program.clone(),
                source,
            })?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A fake for tests: records every argv and answers from a script, in order.
/// A command with no scripted answer succeeds with empty output, so tests only
/// script the answers that matter and still see every call in `calls()`.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    calls: Mutex<Vec<Vec<String>>>,
    answers: Mutex<VecDeque<(Vec<String>, Output)>>,
}

impl RecordingRunner {
    pub fn new() -> Self {
        RecordingRunner::default()
    }

    /// Answer the next call of exactly `argv` with `output` (answers are used once, in order).
    pub fn answer(&self, argv: &[&str], output: Output) -> &Self {
        self.answers
            .lock()
            .expect("runner script lock")
            .push_back((argv.iter().map(|s| s.to_string()).collect(), output));
        self
    }

    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().expect("runner calls lock").clone()
    }

    /// The calls, each joined with spaces: easy to compare in assertions.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls().iter().map(|argv| argv.join(" ")).collect()
    }
}

impl CommandRunner for RecordingRunner {
    fn run(&self, argv: &[String]) -> Result<Output, ServiceError> {
        self.calls
            .lock()
            .expect("runner calls lock")
            .push(argv.to_vec());
        let mut answers = self.answers.lock().expect("runner script lock");
        let found = answers.iter().position(|(want, _)| want == argv);
        Ok(found
            .and_then(|i| answers.remove(i))
            .map(|(_, out)| out)
            .unwrap_or_else(|| Output::ok("")))
    }
}

/// The error for a command that exited non-zero, when no finer mapping applies.
pub fn command_error(argv: &[String], out: &Output) -> ServiceError {
    ServiceError::Command {
        argv: argv.to_vec(),
        code: out.code,
        stderr: if out.stderr.trim().is_empty() {
            out.stdout.clone()
        } else {
            out.stderr.clone()
        },
    }
}

/// Build an argv from string slices.
pub fn argv<S: AsRef<str>>(words: &[S]) -> Vec<String> {
    words.iter().map(|w| w.as_ref().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_runner_reports_code_and_output() {
        let out = SystemRunner
            .run(&argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]))
            .unwrap();
        assert_eq!(out, Output::exit(3, "out\n", "err\n"));
    }

    #[test]
    fn system_runner_names_a_missing_program() {
        let err = SystemRunner
            .run(&argv(&["/nonexistent/hermes-test-prog"]))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unable to run `/nonexistent/hermes-test-prog`:"),
            "{err}"
        );
    }

    #[test]
    fn recording_runner_answers_in_order_and_records() {
        let r = RecordingRunner::new();
        r.answer(&["a"], Output::exit(1, "", "first"))
            .answer(&["a"], Output::ok("second"));
        assert_eq!(r.run(&argv(&["b"])).unwrap(), Output::ok(""));
        assert_eq!(r.run(&argv(&["a"])).unwrap().stderr, "first");
        assert_eq!(r.run(&argv(&["a"])).unwrap().stdout, "second");
        assert_eq!(r.call_lines(), ["b", "a", "a"]);
    }
}
