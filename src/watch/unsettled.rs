//! The set of files a writer has not finished, and the barrier that makes
//! checking it exact.
//!
//! The watcher fills it; the reloader asks it before trusting what it read.
//! It does not watch anything itself and decides nothing about reloads.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Paths a writer is still producing (a bare modification without a close,
/// inside its debounce window). The watcher inserts and removes them; an
/// implicit reload (watch, poll) skips them so a half-written file is never
/// read; an explicit reload waits for them to settle
/// ([`Unsettled::wait_settled`], up to the debounce) and skips those that
/// do not.
///
/// It is also the barrier that makes that check exact. Events reach the
/// watcher a little after the write that caused them, so an implicit reload
/// could read a file a writer has just truncated before the watcher has
/// marked it. The watcher counts the opens of each watched directory
/// itself that it has processed (in order with every other event); after
/// reading, the reloader opens the directory once more and waits
/// ([`Unsettled::catch_up`]) until the watcher has processed that open:
/// every write that began before the reads ended is then reflected here,
/// and the reloader checks again.
#[derive(Debug, Default)]
pub struct Unsettled {
    /// The paths being written (`config_dir.join(file_name)`).
    paths: Mutex<HashSet<PathBuf>>,
    /// Per watched directory (as configured): opens of the directory itself
    /// the watcher has processed. Absent: not watched, no barrier.
    opens: Mutex<HashMap<PathBuf, u64>>,
    /// Wakes [`Unsettled::catch_up`] when `opens` moves.
    opened: Condvar,
    /// Wakes [`Unsettled::wait_settled`] when a path leaves `paths`.
    settled: Condvar,
}

impl Unsettled {
    /// Marks `path` as being written.
    pub fn insert(&self, path: &Path) {
        if let Ok(mut set) = self.paths.lock() {
            set.insert(path.to_path_buf());
        }
    }

    /// Marks `path` as complete.
    pub fn remove(&self, path: &Path) {
        if let Ok(mut set) = self.paths.lock() {
            set.remove(path);
        }
        self.settled.notify_all();
    }

    /// Reloader (explicit reloads): waits until none of `paths` is being
    /// written any more, up to `timeout`. Returns those still being written.
    pub fn wait_settled(&self, paths: &[PathBuf], timeout: Duration) -> Vec<PathBuf> {
        let Ok(guard) = self.paths.lock() else {
            return Vec::new();
        };
        let waited = self
            .settled
            .wait_timeout_while(guard, timeout, |set| paths.iter().any(|p| set.contains(p)));
        match waited {
            Ok((set, _)) => paths.iter().filter(|p| set.contains(*p)).cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether `path` is still being written.
    pub fn contains(&self, path: &Path) -> bool {
        self.paths.lock().map(|s| s.contains(path)).unwrap_or(false)
    }

    /// Watcher: `dir` (as configured) is watched now, or not any more.
    pub fn set_watched(&self, dir: &Path, watched: bool) {
        if let Ok(mut opens) = self.opens.lock() {
            if watched {
                opens.entry(dir.to_path_buf()).or_insert(0);
            } else {
                opens.remove(dir);
            }
        }
        self.opened.notify_all();
        self.settled.notify_all();
    }

    /// Watcher: it has processed an open of `dir` itself, and every event
    /// queued before it.
    pub fn dir_opened(&self, dir: &Path) {
        if let Ok(mut opens) = self.opens.lock() {
            if let Some(n) = opens.get_mut(dir) {
                // ok: wrapping — a u64 of opens does not wrap in practice,
                // and a wrap only ends one barrier early.
                *n = n.wrapping_add(1);
            }
        }
        self.opened.notify_all();
    }

    /// Reloader: a ticket for [`Unsettled::catch_up`], taken before it lists
    /// `dir`. `None` when `dir` is not watched (there is no barrier).
    pub fn ticket(&self, dir: &Path) -> Option<u64> {
        self.opens.lock().ok().and_then(|o| o.get(dir).copied())
    }

    /// Reloader, after listing `dir` (one open) and reading its files:
    /// opens `dir` once more and waits, up to `timeout`, until the watcher
    /// has processed both opens. Returns whether it has (then
    /// [`Unsettled::contains`] reflects every write that began before
    /// this call). Returns at once when `dir` stops being watched.
    pub fn catch_up(&self, dir: &Path, ticket: u64, timeout: Duration) -> bool {
        // Opening a directory read-only is an inotify IN_OPEN on it.
        if std::fs::File::open(dir).is_err() {
            return false;
        }
        let Ok(guard) = self.opens.lock() else {
            return false;
        };
        let waited = self.opened.wait_timeout_while(guard, timeout, |opens| {
            // Keep waiting while watched and not there yet.
            opens.get(dir).is_some_and(|n| n.wrapping_sub(ticket) < 2)
        });
        match waited {
            Ok((opens, _)) => opens.get(dir).is_some_and(|n| n.wrapping_sub(ticket) >= 2),
            Err(_) => false,
        }
    }
}
