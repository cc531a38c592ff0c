//! Temporary uploads on local disk, and which process owns them.
//!
//! Every process that opens the payload store writes its temporaries under
//! `tmp/{instance}/`, `instance` being an id fresh for the process. On local disk the
//! process also holds an exclusive OS lock on `tmp/{instance}.lock` while its store is open;
//! the kernel drops the lock when the process ends, however it ends (`kill -9` included).
//! A lock that can be taken therefore names a directory no running process owns: a server
//! starting and the sweep remove such a directory at once, together with the staging files
//! (`{name}#{n}`) that object_store's local store writes next to a temporary and never
//! lists. Processes sharing a blob directory (a server and `cpm-nms sweep`, or two servers)
//! never touch each other's live temporaries this way.
//!
//! The lock file is created under another name, locked, and only then renamed into place,
//! so a `{instance}.lock` is never seen unlocked while its process lives. Everything else
//! under `tmp/` (a live process's own temporaries, a directory without a lock, a file of an
//! older layout) is removed only once older than the grace period, and so are the
//! temporaries of an instance whose lock cannot be tested (a filesystem whose locks fail):
//! whether its process lives is unknown, so it is treated as alive.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

const LOCK_SUFFIX: &str = ".lock";

/// This process's temporary directory on local disk, owned for as long as it lives.
#[derive(Debug)]
pub(super) struct LocalTemp {
    instance: String,
    dir: PathBuf,
    lock_path: PathBuf,
    /// Held, never read: the lock lives as long as this open file.
    _lock: File,
    /// A sweep found a lock it could not test (and said so).
    lock_untestable: AtomicBool,
}

impl LocalTemp {
    /// Claim `root/{instance}/` (root: the blob store's `tmp` directory on disk).
    pub(super) fn claim(root: &Path, instance: &str) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let claiming = root.join(format!("{instance}{LOCK_SUFFIX}.new"));
        let lock = File::options().write(true).create_new(true).open(&claiming)?;
        lock.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => io::Error::other("a fresh lock file is locked"),
        })?;
        let lock_path = root.join(format!("{instance}{LOCK_SUFFIX}"));
        fs::rename(&claiming, &lock_path)?;
        let dir = root.join(instance);
        fs::create_dir(&dir)?;
        Ok(Self {
            instance: instance.to_string(),
            dir,
            lock_path,
            _lock: lock,
            lock_untestable: AtomicBool::new(false),
        })
    }

    /// The directory this process's temporaries go to.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remove what object_store may have left of temporary `name` after a failed upload:
    /// its staging files `{name}#{n}` (the local store leaves one behind when publishing it
    /// fails) and the file itself.
    pub(super) fn remove_leftovers(&self, name: &str) -> usize {
        let staging = format!("{name}#");
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let mut removed = 0;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if (file_name == name || file_name.starts_with(&staging)) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Sweep the `tmp` directory: the directories of processes that are gone at once,
    /// everything else once older than `cutoff`. Returns how many files were removed.
    pub(super) fn sweep(&self, cutoff: SystemTime) -> io::Result<usize> {
        let root = self.dir.parent().unwrap_or(&self.dir);
        let mut removed = 0;
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type()?.is_dir();
            if let Some(instance) = name.strip_suffix(LOCK_SUFFIX).filter(|_| !is_dir) {
                if instance == self.instance {
                    removed += remove_older(&self.dir, Some(cutoff), false);
                } else {
                    removed += self.sweep_instance(root, instance, &path, cutoff);
                }
            } else if is_dir {
                // A lock file is claimed before its directory exists and removed after it:
                // a directory without one belongs to nobody (or to an older layout).
                if !root.join(format!("{name}{LOCK_SUFFIX}")).exists() {
                    removed += remove_older(&path, Some(cutoff), true);
                }
            } else if modified_before(&entry, cutoff) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Another process's instance: its whole directory if its lock is free (the process is
    /// gone), else its temporaries older than `cutoff`, as when its lock cannot be tested.
    fn sweep_instance(&self, root: &Path, instance: &str, lock_path: &Path, cutoff: SystemTime) -> usize {
        let dir = root.join(instance);
        match probe(lock_path) {
            Liveness::Gone(_lock) => {
                let removed = remove_older(&dir, None, true);
                fs::remove_file(lock_path).ok();
                removed
            }
            Liveness::Alive => remove_older(&dir, Some(cutoff), false),
            Liveness::Removed => 0,
            Liveness::Unknown(e) => {
                // The filesystem, not the instance, is the cause: say so once per process.
                if !self.lock_untestable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(lock = %lock_path.display(), error = %e,
                        "cannot test the locks of temporary directories; the temporaries of \
                         processes that are gone wait for the grace period");
                }
                remove_older(&dir, Some(cutoff), false)
            }
        }
    }
}

impl Drop for LocalTemp {
    /// The store is closed: its temporaries are of no use to anyone. The directory goes
    /// before the lock file (the lock itself is released when the file closes, after this).
    fn drop(&mut self) {
        fs::remove_dir_all(&self.dir).ok();
        fs::remove_file(&self.lock_path).ok();
    }
}

/// What the lock file of another process's instance says about that process.
enum Liveness {
    /// The lock was free and is now held by this probe: the process is gone.
    Gone(File),
    /// Someone holds the lock: the process is alive.
    Alive,
    /// The lock file was removed meanwhile (by its owner or another sweep).
    Removed,
    /// The lock cannot be tested here.
    Unknown(io::Error),
}

/// Try to take the lock at `lock_path`. The file is opened for writing: where `flock` is
/// emulated with POSIX locks (NFS), an exclusive lock needs a descriptor open for writing.
fn probe(lock_path: &Path) -> Liveness {
    let lock = match File::options().read(true).write(true).open(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::Removed,
        Err(e) => return Liveness::Unknown(e),
    };
    match lock.try_lock() {
        Ok(()) => Liveness::Gone(lock),
        Err(TryLockError::WouldBlock) => Liveness::Alive,
        Err(TryLockError::Error(e)) => Liveness::Unknown(e),
    }
}

/// Remove the files under `dir` older than `cutoff` (all without one); with `prune`, then
/// the directories left empty, `dir` included. Returns how many files were removed.
fn remove_older(dir: &Path, cutoff: Option<SystemTime>, prune: bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += remove_older(&path, cutoff, true);
        } else if cutoff.is_none_or(|c| modified_before(&entry, c)) && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    if prune {
        // Fails, harmlessly, while something is left in it.
        fs::remove_dir(dir).ok();
    }
    removed
}

fn modified_before(entry: &fs::DirEntry, cutoff: SystemTime) -> bool {
    entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_live_instance_keeps_its_directory_and_a_dead_one_loses_it_at_once() {
        let root = tempfile::tempdir().unwrap();
        let me = LocalTemp::claim(root.path(), "me").unwrap();
        fs::write(me.dir.join("mine"), b"in flight").unwrap();
        // What a process killed mid-upload leaves: its lock file, unlocked, and its directory.
        fs::write(root.path().join("other.lock"), b"").unwrap();
        fs::create_dir(root.path().join("other")).unwrap();
        fs::write(root.path().join("other/upload#1"), b"staged").unwrap();
        let long_ago = SystemTime::UNIX_EPOCH;
        assert_eq!(files(root.path()), ["me", "me.lock", "other", "other.lock"]);
        assert_eq!(me.sweep(long_ago).unwrap(), 1);
        assert_eq!(files(root.path()), ["me", "me.lock"]);
        assert_eq!(files(&me.dir), ["mine"]);
        // Closing the store removes its own directory and lock.
        drop(me);
        assert!(files(root.path()).is_empty());
    }

    #[test]
    fn an_instance_held_by_another_open_file_is_alive() {
        let root = tempfile::tempdir().unwrap();
        let a = LocalTemp::claim(root.path(), "a").unwrap();
        let b = LocalTemp::claim(root.path(), "b").unwrap();
        fs::write(a.dir.join("x#2"), b"staged").unwrap();
        assert_eq!(b.sweep(SystemTime::UNIX_EPOCH).unwrap(), 0);
        assert_eq!(files(&a.dir), ["x#2"]);
        assert_eq!(a.remove_leftovers("x"), 1);
        assert!(files(&a.dir).is_empty());
    }

    #[test]
    fn an_instance_whose_lock_cannot_be_tested_loses_only_its_old_temporaries() {
        let root = tempfile::tempdir().unwrap();
        let me = LocalTemp::claim(root.path(), "me").unwrap();
        // A lock the probe cannot take: here a directory no one can open for writing; on
        // NFS, a lock file whose emulated lock fails.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("other.lock")).unwrap();
        fs::create_dir(root.path().join("other")).unwrap();
        for name in ["old", "old#1", "young"] {
            fs::write(root.path().join("other").join(name), b"upload").unwrap();
        }
        let long_ago = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        for name in ["old", "old#1"] {
            File::options()
                .write(true)
                .open(root.path().join("other").join(name))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        let cutoff = SystemTime::now() - std::time::Duration::from_secs(3600);
        // Maybe alive: only what is older than the grace period goes, again on every sweep.
        assert_eq!(me.sweep(cutoff).unwrap(), 2);
        assert_eq!(files(&root.path().join("other")), ["young"]);
        assert_eq!(me.sweep(cutoff).unwrap(), 0);
        assert_eq!(files(root.path()), ["me", "me.lock", "other", "other.lock"]);
    }

    #[test]
    fn other_leftovers_go_after_the_grace_period() {
        let root = tempfile::tempdir().unwrap();
        let me = LocalTemp::claim(root.path(), "me").unwrap();
        fs::write(root.path().join("legacy"), b"old layout").unwrap();
        fs::write(root.path().join("legacy#1"), b"old staging").unwrap();
        fs::create_dir(root.path().join("orphan")).unwrap();
        fs::write(root.path().join("orphan/t"), b"no lock").unwrap();
        assert_eq!(me.sweep(SystemTime::UNIX_EPOCH).unwrap(), 0);
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(me.sweep(later).unwrap(), 3);
        assert_eq!(files(root.path()), ["me", "me.lock"]);
    }
}
