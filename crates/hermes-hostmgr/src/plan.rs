//! Install and uninstall are computed as a `Plan` (files to write or remove,
//! commands to run) before anything happens. `--dry-run` prints the plan;
//! a real run applies the same plan, so what is printed is what is done.

use std::fmt;
use std::path::{Path, PathBuf};

use hermes_core::fsutil::{self, FsError};
use hermes_core::service::ServiceError;

use crate::runner::{CommandRunner, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// With a byte-order mark: `schtasks /Create /XML` reads UTF-16 task files.
    Utf16Le,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write {
        path: PathBuf,
        text: String,
        encoding: Encoding,
        mode: u32,
    },
    /// Create a directory and its parents (log directories the manager will not create).
    CreateDir { path: PathBuf },
    /// Remove a file; a file that is already gone is fine.
    Remove { path: PathBuf },
    /// Run a command; `tolerate` lists exit codes that mean "already in the wanted state".
    Run {
        argv: Vec<String>,
        tolerate: Vec<i32>,
    },
}

impl Step {
    pub fn write(path: PathBuf, text: String) -> Self {
        Step::Write {
            path,
            text,
            encoding: Encoding::Utf8,
            mode: 0o644,
        }
    }

    pub fn run(argv: Vec<String>) -> Self {
        Step::Run {
            argv,
            tolerate: Vec::new(),
        }
    }

    pub fn run_tolerating(argv: Vec<String>, tolerate: &[i32]) -> Self {
        Step::Run {
            argv,
            tolerate: tolerate.to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Things the operator should know that do not stop the plan (lingering off, …).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Every command the plan runs, in order.
    pub fn commands(&self) -> Vec<&[String]> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Run { argv, .. } => Some(argv.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// Apply the steps in order, stopping at the first failure. `map_failure`
    /// turns a non-zero exit into the backend's typed error.
    pub fn apply(
        &self,
        runner: &dyn CommandRunner,
        map_failure: &dyn Fn(&[String], &Output) -> ServiceError,
    ) -> Result<(), ServiceError> {
        for step in &self.steps {
            match step {
                Step::Write {
                    path,
                    text,
                    encoding,
                    mode,
                } => write_file(path, text, *encoding, *mode)?,
                Step::CreateDir { path } => fsutil::create_dir_all(path)?,
                Step::Remove { path } => match fsutil::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                },
                Step::Run { argv, tolerate } => {
                    let out = runner.run(argv)?;
                    let tolerated = out.code.is_some_and(|c| tolerate.contains(&c));
                    if !out.success() && !tolerated {
                        return Err(map_failure(argv, &out));
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_file(path: &Path, text: &str, encoding: Encoding, mode: u32) -> Result<(), FsError> {
    if let Some(dir) = path.parent() {
        // Plain create_dir_all: user config directories are often symlinks
        // managed by dotfile tools, and following them is what the user wants.
        fsutil::create_dir_all(dir)?;
    }
    let bytes = match encoding {
        Encoding::Utf8 => text.as_bytes().to_vec(),
        Encoding::Utf16Le => [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect(),
    };
    fsutil::atomic_write(path, &bytes, mode)
}

/// Quote a word for a POSIX shell so a printed command can be pasted back.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The `--dry-run` listing: each file's path then its content, each command.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            match step {
                Step::Write {
                    path,
                    text,
                    encoding,
                    mode,
                } => {
                    let enc = match encoding {
                        Encoding::Utf8 => "",
                        Encoding::Utf16Le => ", UTF-16LE with BOM",
                    };
                    writeln!(f, "write {} (mode {mode:o}{enc}):", path.display())?;
                    for line in text.lines() {
                        if line.is_empty() {
                            writeln!(f)?;
                        } else {
                            writeln!(f, "    {line}")?;
                        }
                    }
                }
                Step::CreateDir { path } => writeln!(f, "create directory {}", path.display())?,
                Step::Remove { path } => writeln!(f, "remove {}", path.display())?,
                Step::Run { argv, .. } => {
                    let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
                    writeln!(f, "run {}", words.join(" "))?;
                }
            }
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{argv, command_error, RecordingRunner};

    #[test]
    fn shell_quote_round_trips_through_sh() {
        for word in ["plain", "a b", "it's", "$HOME", "%i", "", "a\nb"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
        }
    }

    #[test]
    fn apply_writes_runs_tolerates_and_stops_at_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/unit");
        let plan = Plan {
            steps: vec![
                Step::write(file.clone(), "x\n".into()),
                Step::run_tolerating(argv(&["gone"]), &[5]),
                Step::run(argv(&["fails"])),
                Step::Remove { path: file.clone() },
            ],
            warnings: vec![],
        };
        let runner = RecordingRunner::new();
        runner.answer(&["gone"], Output::exit(5, "", "not loaded"));
        runner.answer(&["fails"], Output::exit(1, "", "boom"));
        let err = plan.apply(&runner, &command_error).unwrap_err();
        assert_eq!(err.to_string(), "`fails` failed (exit 1): boom");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x\n");
        assert_eq!(runner.call_lines(), ["gone", "fails"]);
    }

    #[test]
    fn utf16_files_have_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.xml");
        let plan = Plan {
            steps: vec![Step::Write {
                path: file.clone(),
                text: "<é/>".into(),
                encoding: Encoding::Utf16Le,
                mode: 0o600,
            }],
            warnings: vec![],
        };
        plan.apply(&RecordingRunner::new(), &command_error).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..4], &[0xFF, 0xFE, b'<', 0]);
        assert_eq!(bytes.len(), 2 + 4 * 2);
    }
}
