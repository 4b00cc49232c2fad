//! `hermes-bench register-raw`: the floor of a registration, what any tool
//! must do to add a service to a running s6-svscan and see it supervised,
//! with nothing else: write the service directory (a `down` service and a
//! running s6-log) under a dot name, rename it into the scandir, write
//! `s6-svscanctl -a`'s byte to the control FIFO, and poll until
//! `s6-supervise` runs in it. `bench/create-loop` times it beside
//! `hermes profile create` on a tree of the same size.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

#[derive(clap::Args)]
pub struct Options {
    /// The scandir an s6-svscan runs on.
    #[arg(long)]
    scandir: PathBuf,
    /// Where each service's s6-log writes (a directory per name).
    #[arg(long)]
    log_dir: PathBuf,
    /// The services to add.
    #[arg(required = true)]
    names: Vec<String>,
}

const POLL: Duration = Duration::from_micros(500);
const LIMIT: Duration = Duration::from_secs(30);

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let mut added = Vec::with_capacity(opts.names.len());
    for name in &opts.names {
        added.push(write_service(&opts.scandir, &opts.log_dir, name)?);
    }
    let control = hermes_s6::Scandir::new(&opts.scandir).control();
    fs::OpenOptions::new()
        .write(true)
        .open(&control)
        .and_then(|mut f| f.write_all(b"a"))
        .with_context(|| format!("write to {}", control.display()))?;
    let deadline = Instant::now() + LIMIT;
    for dir in &added {
        while !(hermes_s6::is_supervised(dir) && dir.join("supervise/status").exists()) {
            if Instant::now() > deadline {
                bail!("{} not supervised after {LIMIT:?}", dir.display());
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(true)
}

fn write_service(scandir: &Path, log_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let staging = scandir.join(format!(".{name}.tmp"));
    let dir = scandir.join(name);
    let logs = log_dir.join(name);
    let script = |path: PathBuf, body: String| -> anyhow::Result<()> {
        fs::write(&path, body).with_context(|| format!("write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))
    };
    fs::create_dir_all(staging.join("log"))
        .with_context(|| format!("create {}", staging.display()))?;
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    script(staging.join("run"), "#!/bin/sh\nexec sleep 1000\n".into())?;
    fs::write(staging.join("down"), "")
        .with_context(|| format!("write {}/down", staging.display()))?;
    script(
        staging.join("log/run"),
        format!(
            "#!/bin/sh\nexec s6-log -- n10 s1000000 '{}'\n",
            logs.display()
        ),
    )?;
    fs::rename(&staging, &dir)
        .with_context(|| format!("rename {} to {}", staging.display(), dir.display()))?;
    Ok(dir)
}
