//! The store: the current [`Snapshot`] in an `ArcSwap`, the [`Status`]
//! beside it, and a notification channel for new generations.
//!
//! Performance model: `load()` is a lock-free `ArcSwap::load` (a few atomic
//! operations, no allocation), so workers may call it on every request.
//! Exactly one writer — the reloader — calls [`Store::publish`] and
//! [`Store::set_status`]; everything else only loads.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::snapshot::Snapshot;
use crate::status::Status;

/// Shared, lock-free holder of the served snapshot and its status.
pub struct Store {
    /// The served snapshot; replaced whole, never mutated.
    snapshot: ArcSwap<Snapshot>,
    /// Status beside it; replaced whole by the reloader.
    status: ArcSwap<Status>,
    /// Carries the latest generation; wakes async waiters on publish only.
    generation_tx: watch::Sender<u64>,
    /// Random id of this daemon start.
    instance: String,
    /// When this store (the daemon) started.
    started_at: SystemTime,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("instance", &self.instance)
            .field("generation", &self.snapshot.load().generation)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store serving the empty snapshot (generation 0).
    pub fn new(instance: String) -> Self {
        Self::with_snapshot(instance, Snapshot::empty())
    }

    /// A store starting from `snapshot` (e.g. a persisted one).
    pub fn with_snapshot(instance: String, snapshot: Snapshot) -> Self {
        let (generation_tx, _) = watch::channel(snapshot.generation);
        Store {
            snapshot: ArcSwap::from_pointee(snapshot),
            status: ArcSwap::from_pointee(Status::default()),
            generation_tx,
            instance,
            started_at: SystemTime::now(),
        }
    }

    /// The current snapshot, lock-free. Hold the guard briefly; use
    /// [`Store::load_full`] to keep it across awaits.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The current status.
    pub fn status(&self) -> Arc<Status> {
        self.status.load_full()
    }

    /// A receiver that sees every new generation (and only those).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation_tx.subscribe()
    }

    /// This daemon start's random id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// When the daemon started.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Publishes a new snapshot and wakes waiters. Reloader only.
    pub fn publish(&self, snapshot: Snapshot) {
        let generation = snapshot.generation;
        self.snapshot.store(Arc::new(snapshot));
        self.generation_tx.send_replace(generation);
    }

    /// Replaces the status. Wakes nobody. Reloader only.
    pub fn set_status(&self, status: Status) {
        self.status.store(Arc::new(status));
    }
}
