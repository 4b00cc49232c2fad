//! A small tmpfs mounted for a test (a full disk on demand); unmounted on drop.
//! Mounting needs root: tests that use it are `#[ignore]`d, and `scripts/test`
//! runs them when it runs as root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs with `options` (`mount -o`, e.g. `size=64k`) over `dir`, creating it.
    pub fn mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o {options} tmpfs {}: {} ({})",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fill the filesystem, leaving about `free` bytes.
    pub fn fill(&self, free: u64) {
        let filler = self.0.join(".filler");
        let _ = std::fs::remove_file(&filler);
        let st = nix::sys::statvfs::statvfs(&self.0).expect("statvfs of the tmpfs");
        let avail = st.blocks_available() * st.fragment_size();
        let size = avail.saturating_sub(free) as usize;
        let _ = std::fs::write(&filler, vec![0u8; size]);
    }

    pub fn unfill(&self) {
        let _ = std::fs::remove_file(self.0.join(".filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
