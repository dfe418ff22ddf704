//! The reload queue and the reloader: the only writer of the store.
//!
//! Every trigger (startup, watch, poll, SIGHUP, API) is a request into one
//! queue consumed by one task. Reloads never overlap; requests that arrive
//! during a reload coalesce into exactly one more, explicit if any of them
//! was. (Implemented by the daemon-core work.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::snapshot::Snapshot;
use crate::status::{ReloadOutcome, Status, Trigger};

/// Something that wants to know when reloads start and end (systemd
/// notifications, metrics, logs). Called on the reloader's task: must be
/// quick and must not block.
pub trait ReloadObserver: Send + Sync {
    /// A reload that will do something has started: it is explicit, or a
    /// change was found. Not called for a poll or rescan that finds nothing.
    fn reload_started(&self, trigger: Trigger) {
        let _ = trigger;
    }

    /// That reload has ended (its snapshot, if any, is published and
    /// persisted). `status` and `snapshot` are the state after it.
    fn reload_finished(&self, outcome: &ReloadOutcome, status: &Status, snapshot: &Snapshot) {
        let _ = (outcome, status, snapshot);
    }
}

/// Paths a writer is still producing (a bare modification without a close,
/// inside its debounce window). The watcher inserts and removes them; an
/// implicit reload (watch, poll) skips them so a half-written file is never
/// read; an explicit reload reads everything.
#[derive(Debug, Default)]
pub struct Unsettled {
    paths: Mutex<HashSet<PathBuf>>,
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
    }

    /// Whether `path` is still being written.
    pub fn contains(&self, path: &Path) -> bool {
        self.paths.lock().map(|s| s.contains(path)).unwrap_or(false)
    }
}

/// Cloneable handle to request reloads.
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    _private: (),
}

/// The reloader has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the reloader has stopped")]
pub struct ReloaderGone;

impl ReloadHandle {
    /// Requests a reload without waiting for it.
    pub fn request(&self, trigger: Trigger) {
        let _ = trigger;
    }

    /// Requests a reload and waits for the reload that serves it; returns
    /// its outcome.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadOutcome, ReloaderGone> {
        let _ = trigger;
        Err(ReloaderGone)
    }
}
