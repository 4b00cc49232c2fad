//! `hermes slot-script FILE [ARGS]`: what the kernel runs for a gateway
//! slot's `run` file, whose `#!` line names hermes (see
//! `hermes_s6::run_script`). Its commands are carried out here, in order;
//! when the final `exec` names this same program, the command line it gives
//! is parsed in this process instead of starting hermes a second time.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use hermes_s6::run_script::{self, ParseError, Step};

/// s6's and sh's code for a failed system call.
const SYSTEM_FAILED: u8 = 111;

#[derive(Debug, thiserror::Error)]
pub enum SlotScriptError {
    #[error(transparent)]
    Read(#[from] hermes_core::fsutil::FsError),
    #[error("run script {path}, {source}")]
    Parse { path: PathBuf, source: ParseError },
    #[error("run script {path}: unable to redirect stderr to stdout: {source}")]
    Redirect { path: PathBuf, source: nix::Error },
    #[error("run script {path}: unable to enter {dir}: {source}")]
    Cd {
        path: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("run script {path}: unable to run {program}: {source}")]
    Exec {
        path: PathBuf,
        program: String,
        source: io::Error,
    },
}

impl SlotScriptError {
    /// The code `sh` would have ended the same script with.
    pub fn exit_code(&self) -> u8 {
        match self {
            SlotScriptError::Exec { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => 127,
                io::ErrorKind::PermissionDenied => 126,
                _ => SYSTEM_FAILED,
            },
            _ => SYSTEM_FAILED,
        }
    }
}

/// The command line to parse: `args` itself, unless they are a slot
/// script's (`PROGRAM slot-script FILE ...`), whose commands this carries
/// out. Returns the final `exec`'s argv when it names `args[0]`; execs
/// anything else and returns only if that fails.
pub fn enter(args: Vec<OsString>) -> Result<Vec<OsString>, SlotScriptError> {
    let [program, marker, path, ..] = args.as_slice() else {
        return Ok(args);
    };
    if marker != run_script::INTERPRETER_ARG {
        return Ok(args);
    }
    let path = PathBuf::from(path);
    let script = match read(&path) {
        Ok(script) => script,
        Err(refused) => {
            // What the script's own `exec 2>&1` would have done: a script
            // hermes cannot read is reported in the slot's log like the rest.
            merge_stderr(&path)?;
            return Err(refused);
        }
    };
    for step in script.steps {
        match step {
            Step::MergeStderr => merge_stderr(&path)?,
            Step::Cd(dir) => {
                std::env::set_current_dir(&dir).map_err(|source| SlotScriptError::Cd {
                    path: path.clone(),
                    dir: dir.clone(),
                    source,
                })?;
                // As sh's `cd` does: the gateway's environment stays the same.
                std::env::set_var("PWD", dir);
            }
            // `main` calls this before any thread exists.
            Step::Export(name, value) => std::env::set_var(name, value),
        }
    }
    if script.exec[0] == *program {
        // The kernel named the process after the script (`run`); `ps` and
        // `top` should show hermes, as when a shell exec'd it. Cosmetic: a
        // failure changes nothing else.
        let _ = nix::sys::prctl::set_name(c"hermes");
        Ok(script.exec)
    } else {
        Err(exec(&path, &script.exec))
    }
}

fn read(path: &Path) -> Result<run_script::Script, SlotScriptError> {
    let text = hermes_core::fsutil::read_to_string(path)?;
    run_script::parse(&text).map_err(|source| SlotScriptError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn merge_stderr(path: &Path) -> Result<(), SlotScriptError> {
    nix::unistd::dup2(1, 2)
        .map(drop)
        .map_err(|source| SlotScriptError::Redirect {
            path: path.to_path_buf(),
            source,
        })
}

/// Replace this process with `argv`; returns only why that failed.
fn exec(path: &Path, argv: &[OsString]) -> SlotScriptError {
    let program: &OsStr = &argv[0];
    let source = std::process::Command::new(program).args(&argv[1..]).exec();
    SlotScriptError::Exec {
        path: path.to_path_buf(),
        program: program.to_string_lossy().into_owned(),
        source,
    }
}
