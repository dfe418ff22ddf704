//! The store: the current [`Snapshot`] and the [`Status`] that goes with
//! it, published together in one `ArcSwap`, and a notification channel for
//! new generations.
//!
//! Performance model: `load()` is a lock-free `ArcSwap::load` (a few atomic
//! operations, no allocation), so workers may call it on every request.
//! A snapshot and its status are one value ([`Published`]), so a reader can
//! never pair a generation with another reload's status.
//!
//! One writer by construction: the write side is a `StoreWriter`, a
//! crate-private capability that a store hands out once. The reloader
//! takes it when it is spawned; nothing else can publish or change the
//! status. This module does not decide *what* to publish (that is
//! [`crate::reload`]).

pub mod handle;
pub mod snapshot;
pub mod status;
pub mod typed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use std::path::Path;

use crate::pipeline::document;
use crate::pipeline::schema::Schema;
use crate::store::snapshot::{Bodies, ServedDocument, Snapshot};
use crate::store::status::Status;

/// A snapshot and the status that goes with it: what one reload (or one
/// status-only change) left behind. Replaced whole, never mutated.
#[derive(Debug, Clone)]
pub struct Published {
    /// The served snapshot.
    pub snapshot: Arc<Snapshot>,
    /// Its status (per-document state, last reload, counters, health).
    pub status: Arc<Status>,
}

/// Shared, lock-free holder of the served snapshot and its status.
pub struct Store {
    /// The snapshot and its status, swapped together.
    current: ArcSwap<Published>,
    /// Carries the latest generation; wakes async waiters on publish only.
    generation_tx: watch::Sender<u64>,
    /// Set once the write side has been handed out (see `StoreWriter`).
    writer_taken: AtomicBool,
    /// Random id of this daemon start.
    instance: String,
    /// When this store (the daemon) started.
    started_at: SystemTime,
    /// When the store was created, on the monotonic clock: uptime never
    /// goes negative or jumps when the wall clock is set.
    started: std::time::Instant,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("instance", &self.instance)
            .field("generation", &self.current.load().snapshot.generation)
            .finish_non_exhaustive()
    }
}

/// A borrowed view of the current snapshot, returned by [`Store::load`]:
/// dereferences to the [`Snapshot`]; [`SnapshotGuard::status`] is the
/// status published with it. Hold it briefly (use [`Store::load_full`] to
/// keep a snapshot across awaits).
pub struct SnapshotGuard(arc_swap::Guard<Arc<Published>>);

impl SnapshotGuard {
    /// The status published together with this snapshot.
    pub fn status(&self) -> &Arc<Status> {
        &self.0.status
    }
}

impl std::ops::Deref for SnapshotGuard {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.0.snapshot
    }
}

impl std::fmt::Debug for SnapshotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Snapshot::fmt(self, f)
    }
}

impl Store {
    /// A store with a fresh random instance id (see [`new_instance_id`]).
    pub fn with_random_instance() -> Self {
        Self::new(new_instance_id())
    }

    /// A store serving the empty snapshot (generation 0).
    pub fn new(instance: String) -> Self {
        Self::with_snapshot(instance, Snapshot::empty())
    }

    /// A store starting from `snapshot` (e.g. a persisted one).
    pub fn with_snapshot(instance: String, snapshot: Snapshot) -> Self {
        let (generation_tx, _) = watch::channel(snapshot.generation);
        Store {
            current: ArcSwap::from_pointee(Published {
                snapshot: Arc::new(snapshot),
                status: Arc::new(Status::default()),
            }),
            generation_tx,
            writer_taken: AtomicBool::new(false),
            instance,
            started_at: SystemTime::now(),
            started: std::time::Instant::now(),
        }
    }

    /// The current snapshot, lock-free. Hold the guard briefly; use
    /// [`Store::load_full`] to keep it across awaits.
    pub fn load(&self) -> SnapshotGuard {
        SnapshotGuard(self.current.load())
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load().snapshot.clone()
    }

    /// The current status.
    pub fn status(&self) -> Arc<Status> {
        self.current.load().status.clone()
    }

    /// The current snapshot and the status published with it, from one
    /// atomic load: never a generation beside another reload's status.
    pub fn load_with_status(&self) -> (Arc<Snapshot>, Arc<Status>) {
        let p = self.current.load();
        (p.snapshot.clone(), p.status.clone())
    }

    /// The current [`Published`] pair as an owned `Arc`.
    pub fn load_published(&self) -> Arc<Published> {
        self.current.load_full()
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

    /// How long the store has existed, on the monotonic clock.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The write side of this store, the first time it is asked for;
    /// `None` ever after, so a store has at most one writer.
    pub(crate) fn take_writer(self: &Arc<Self>) -> Option<StoreWriter> {
        let taken = self.writer_taken.swap(true, Ordering::AcqRel);
        (!taken).then(|| StoreWriter {
            store: self.clone(),
        })
    }
}

/// The write side of a [`Store`]: the only way to publish a snapshot or
/// change the status. A store hands it out once
/// (`Store::take_writer`); the reloader holds it. Being the only writer,
/// it needs no lock for its read-modify-write updates.
pub(crate) struct StoreWriter {
    /// The store it writes.
    store: Arc<Store>,
}

impl StoreWriter {
    /// What is published now (this writer is the only one that changes it).
    pub(crate) fn current(&self) -> Arc<Published> {
        self.store.current.load_full()
    }

    /// Publishes `snapshot` together with `status` in one swap. Wakes
    /// nobody yet: call `StoreWriter::wake` once the publish is logged.
    pub(crate) fn publish(&self, snapshot: Arc<Snapshot>, status: Status) -> Arc<Status> {
        let status = Arc::new(status);
        self.store.current.store(Arc::new(Published {
            snapshot,
            status: status.clone(),
        }));
        status
    }

    /// Wakes blocking queries and subscribers if the published generation
    /// moved since the last wake (a status-only change wakes nobody).
    pub(crate) fn wake(&self) {
        let generation = self.store.current.load().snapshot.generation;
        self.store.generation_tx.send_if_modified(|g| {
            let moved = *g != generation;
            *g = generation;
            moved
        });
    }

    /// Changes the status with `f` applied to a copy of the current one,
    /// keeping the snapshot; wakes nobody. Returns the new status.
    pub(crate) fn update_status(&self, f: impl FnOnce(&mut Status)) -> Arc<Status> {
        let current = self.current();
        let mut status = Status::clone(&current.status);
        f(&mut status);
        self.publish(current.snapshot.clone(), status)
    }
}

/// Hand-publishing for tests of the read side (the control API's views)
/// that need snapshots and statuses no reload would produce. It claims the
/// store's one write side, so a store written by hand can never also have
/// a reloader. Not part of the API.
#[doc(hidden)]
pub mod testing {
    use super::{Snapshot, Status, Store, StoreWriter};
    use std::sync::Arc;

    /// Publishes by hand into a store that has no reloader.
    pub struct HandWriter(StoreWriter);

    impl HandWriter {
        /// The store's write side; `None` if it was already taken.
        pub fn claim(store: &Arc<Store>) -> Option<HandWriter> {
            store.take_writer().map(HandWriter)
        }

        /// Publishes `snapshot`, keeping the status.
        pub fn publish(&self, snapshot: Snapshot) {
            let status = Status::clone(&self.0.current().status);
            self.0.publish(Arc::new(snapshot), status);
            self.0.wake();
        }

        /// Replaces the status, keeping the snapshot.
        pub fn set_status(&self, status: Status) {
            self.0.update_status(|s| *s = status);
        }
    }
}

/// A random id for one daemon start: 16 bytes from the OS, hex. Falls back
/// to a hash of the pid, the clock and a stack address if the OS has no
/// randomness to give (still unique enough to tell restarts apart).
pub fn new_instance_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!("{}:{}:{:p}", std::process::id(), nanos, &bytes);
        let digest = crate::pipeline::document::sha256_hex(seed.as_bytes());
        return digest.chars().take(32).collect();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What would be served for a valid document (also what a restore from
/// the state directory builds).
pub fn served_document(
    path: &Path,
    bytes: &[u8],
    value: serde_json::Value,
    schema: &Schema,
    typed: Option<crate::store::typed::AnyTyped>,
) -> ServedDocument {
    let sha256 = document::sha256_hex(bytes);
    let value = Arc::new(value);
    let has_secrets = schema.has_secrets();
    let (redacted, redacted_sha256, bodies) = if has_secrets {
        let r = schema.redact(&value);
        // ok: serializing a `Value` cannot fail (its keys are strings).
        let text = serde_json::to_vec(&r).unwrap_or_default();
        let hash = document::sha256_hex(&text);
        // The text just hashed is the redacted body: keep it, not a re-run.
        (Arc::new(r), hash, Bodies::with_redacted(text))
    } else {
        (value.clone(), sha256.clone(), Bodies::default())
    };
    ServedDocument {
        value,
        redacted,
        has_secrets,
        sha256,
        redacted_sha256,
        generation: 0,
        loaded_at: SystemTime::now(),
        source: path.to_path_buf(),
        schema_sha256: schema.sha256.clone(),
        typed,
        bodies,
    }
}
