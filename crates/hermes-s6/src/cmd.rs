//! Running the s6 programs. Every failure carries the argv, exit code and stderr.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use hermes_core::service::ServiceError;

/// The captured result of one s6 program.
#[derive(Debug)]
pub struct Ran {
    pub argv: Vec<String>,
    pub output: Output,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn into_error(self) -> ServiceError {
        ServiceError::Command {
            code: self.code(),
            stderr: String::from_utf8_lossy(&self.output.stderr).into_owned(),
            argv: self.argv,
        }
    }

    /// The run as a result: `Ok` only on exit 0.
    pub fn checked(self) -> Result<Ran, ServiceError> {
        if self.output.status.success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }
}

/// Run `program args…` with no stdin, capturing stdout and stderr.
pub fn run<I, S>(program: &str, args: I) -> Result<Ran, ServiceError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut argv = vec![program.to_string()];
    argv.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let output = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| spawn_error(program, source))?;
    Ok(Ran { argv, output })
}

pub fn spawn_error(program: &str, source: io::Error) -> ServiceError {
    if source.kind() == io::ErrorKind::NotFound {
        ServiceError::NotInstalled {
            program: program.to_string(),
        }
    } else {
        ServiceError::Spawn {
            program: program.to_string(),
            source,
        }
    }
}

pub fn path_arg(path: &Path) -> &OsStr {
    path.as_os_str()
}
