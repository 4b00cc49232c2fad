//! A headless Chromium driven through the DevTools protocol over
//! `--remote-debugging-pipe` (fd 3/4, NUL-separated JSON), so no WebDriver or
//! websocket library is needed. The dashboard's browser test and the CLI's use it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// Generous: Chromium's first start on a loaded 2-core machine takes seconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// `$HERMES_CHROMIUM`, else chromium (Debian), chromium-browser or google-chrome on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HERMES_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// [`find_chromium`], or a failure saying how to get one: a missing browser
/// is not a pass.
pub fn chromium() -> PathBuf {
    find_chromium().unwrap_or_else(|| {
        panic!("no chromium on PATH: scripts/test installs it (Debian: apt-get install chromium), or set HERMES_CHROMIUM")
    })
}

pub struct Chrome {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Where the browser's log and screenshots go (kept as test artefacts).
    artefacts: PathBuf,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Start `binary`; its log and screenshots go to `artefacts` (created).
    pub fn launch(binary: &Path, artefacts: &Path) -> Chrome {
        std::fs::create_dir_all(artefacts).unwrap();
        let profile = tempfile::tempdir().unwrap();
        let (cmd_read, cmd_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (ev_read, ev_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (child_in, child_out) = (cmd_read.as_raw_fd(), ev_write.as_raw_fd());
        let log = File::create(artefacts.join("chromium.log")).unwrap();
        let mut cmd = Command::new(binary);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2) on descriptors we own; they put the pipe ends where
        // --remote-debugging-pipe expects them: commands on 3, replies on 4.
        // Duplicating above 10 first keeps a pipe already on 3 or 4 from
        // being clobbered, and dup2 clears close-on-exec on the targets.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(child_in, libc::F_DUPFD, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((cmd_read, ev_write));
        let (tx, rx) = mpsc::channel();
        let reader = File::from(ev_read);
        // A reader thread, so every wait below can have a deadline.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop();
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        let mut chrome = Chrome {
            child,
            to: File::from(cmd_write),
            from: rx,
            next_id: 0,
            session: String::new(),
            artefacts: artefacts.to_path_buf(),
            _profile: profile,
        };
        let target = chrome.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = chrome.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        chrome.session = attached["sessionId"].as_str().unwrap().to_string();
        chrome.viewport(1280, 900, false);
        chrome
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method} within {PATIENCE:?}"));
            if reply["id"] == id {
                if let Some(err) = reply.get("error") {
                    panic!("{method} failed: {err}");
                }
                return reply["result"].clone();
            }
        }
    }

    /// Any DevTools command on the page (network conditions, downloads…).
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params)
    }

    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Poll `expr` in the page until it is `true`; a throw (the page still
    /// loading) counts as not yet.
    pub fn wait_until(&mut self, what: &str, expr: &str) {
        let deadline = Instant::now() + PATIENCE;
        let guarded = format!(
            "(() => {{ try {{ return ({expr}) === true; }} catch (_) {{ return false; }} }})()"
        );
        loop {
            if self.eval(&guarded) == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("timeout.png");
                panic!(
                    "timed out waiting for {what} ({expr}); page: {}; screenshot {}",
                    self.eval("document.body.innerText"),
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    pub fn click(&mut self, selector: &str) {
        let expr = format!(
            "(() => {{ const b = document.querySelector({s}); if (!b || b.disabled) return false; b.click(); return true; }})()",
            s = json!(selector)
        );
        self.wait_until(&format!("{selector} to be clickable"), &expr);
    }

    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let path = self.artefacts.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `document.querySelector('tr[data-profile=P]').dataset.label === L`, for `wait_until`.
pub fn row_label(profile: &str, label: &str) -> String {
    format!("document.querySelector('tr[data-profile=\"{profile}\"]')?.dataset.label === '{label}'")
}
