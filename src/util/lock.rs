//! One process per folder: an OS file lock on a lock file whose text names the holder
//! (`pid@host`). The OS drops the lock when the process dies, so a lock file left by a killed
//! process is taken over (and named, so the caller can say so).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

/// Held while the value lives; the lock file goes with it.
pub struct FolderLock {
    file: std::fs::File,
    path: PathBuf,
    /// The holder named by a lock file that was left behind, when there was one.
    pub stale: Option<String>,
}

/// What a lock guards, for its error: the flag naming the folder and the command holding it.
#[derive(Clone, Copy)]
pub struct Guard {
    pub file: &'static str,
    pub flag: &'static str,
    pub command: &'static str,
}

impl Guard {
    /// The holder (`pid@host`) of `folder`'s lock when a live process holds it; touches nothing.
    pub fn holder(self, folder: &Path) -> Option<String> {
        let path = folder.join(self.file);
        let file = std::fs::File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(read_holder(&path)),
        }
    }

    /// Fails when another live process holds the lock of `folder`; touches nothing.
    pub fn check_free(self, folder: &Path) -> Result<()> {
        match self.holder(folder) {
            Some(holder) => Err(self.busy(folder, &holder)),
            None => Ok(()),
        }
    }

    fn busy(self, folder: &Path, holder: &str) -> anyhow::Error {
        anyhow!(
            "{} {}: another pac-wgpu {} is running there (process {holder}); wait for it to end or choose another {}",
            self.flag,
            folder.display(),
            self.command,
            self.flag
        )
    }

    /// Takes the lock of `folder` (which must exist), or fails at once naming its holder.
    pub fn acquire(self, folder: &Path) -> Result<FolderLock> {
        let path = folder.join(self.file);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot create the lock", path.display()))?;
        if file.try_lock().is_err() {
            return Err(self.busy(folder, &read_holder(&path)));
        }
        let left = read_holder(&path);
        let stale = (!left.is_empty()).then_some(left);
        let holder = format!("{}@{}", std::process::id(), host_name());
        file.set_len(0)
            .and_then(|()| std::io::Write::write_all(&mut &file, holder.as_bytes()))
            .with_context(|| format!("{}: cannot write the lock", path.display()))?;
        Ok(FolderLock { file, path, stale })
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn read_holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The process id in a holder `pid@host` when the host is this one.
pub fn local_pid(holder: &str) -> Option<u32> {
    let (pid, host) = holder.split_once('@')?;
    (host == host_name()).then(|| pid.parse().ok()).flatten()
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}
