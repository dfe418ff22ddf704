//! The store: the current [`Snapshot`] in an `ArcSwap`, the [`Status`]
//! beside it, and a notification channel for new generations.
//!
//! Performance model: `load()` is a lock-free `ArcSwap::load` (a few atomic
//! operations, no allocation), so workers may call it on every request.
//! Exactly one writer — the reloader — calls [`Store::publish`] and
//! [`Store::set_status`]; everything else only loads.

pub mod snapshot;
pub mod status;
pub mod typed;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use std::path::Path;

use crate::pipeline::document;
use crate::pipeline::schema::Schema;
use crate::store::snapshot::{ServedDocument, Snapshot};
use crate::store::status::Status;

/// Shared, lock-free holder of the served snapshot and its status.
pub struct Store {
    /// The served snapshot; replaced whole, never mutated.
    snapshot: ArcSwap<Snapshot>,
    /// Status beside it; replaced whole, never mutated.
    status: ArcSwap<Status>,
    /// Serializes read-modify-write updates of `status` so that the
    /// reloader and, e.g., the watcher (`watch_degraded`) never lose each
    /// other's changes. Readers never take it.
    status_write: Mutex<()>,
    /// Carries the latest generation; wakes async waiters on publish only.
    generation_tx: watch::Sender<u64>,
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
            .field("generation", &self.snapshot.load().generation)
            .finish_non_exhaustive()
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
            snapshot: ArcSwap::from_pointee(snapshot),
            status: ArcSwap::from_pointee(Status::default()),
            status_write: Mutex::new(()),
            generation_tx,
            instance,
            started_at: SystemTime::now(),
            started: std::time::Instant::now(),
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

    /// The current snapshot and the status that goes with it. The reloader
    /// stores a new snapshot and then, at once, its status; a read landing
    /// between the two would pair the new generation with the previous
    /// reload's status, so that window (microseconds) is waited out —
    /// boundedly: a status that never catches up (e.g. a snapshot restored
    /// from the state directory before the startup reload ends) is returned
    /// as it is.
    pub fn load_with_status(&self) -> (Arc<Snapshot>, Arc<Status>) {
        let mut pair = (self.load_full(), self.status());
        for _ in 0..1000 {
            let status_generation = pair.1.last_reload.as_ref().map(|r| r.generation);
            if status_generation.is_none_or(|g| g >= pair.0.generation) {
                break;
            }
            std::thread::yield_now();
            pair = (self.load_full(), self.status());
        }
        pair
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

    /// Publishes a new snapshot and wakes waiters. Reloader only.
    pub fn publish(&self, snapshot: Snapshot) {
        self.publish_arc(Arc::new(snapshot));
    }

    /// [`Store::publish`] for a snapshot the caller keeps a handle to.
    /// Reloader only.
    pub fn publish_arc(&self, snapshot: Arc<Snapshot>) {
        let generation = snapshot.generation;
        self.store_snapshot(snapshot);
        self.notify_generation(generation);
    }

    /// Makes `snapshot` the one every `load()` returns, without waking
    /// anyone yet: the reloader stores the matching status first, then
    /// calls [`Store::notify_generation`]. Reloader only.
    pub fn store_snapshot(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
    }

    /// Wakes blocking queries and subscribers for `generation`, already
    /// stored with [`Store::store_snapshot`]. Reloader only.
    pub fn notify_generation(&self, generation: u64) {
        self.generation_tx.send_replace(generation);
    }

    /// Replaces the status. Wakes nobody. Prefer [`Store::update_status`],
    /// which cannot lose a concurrent update.
    pub fn set_status(&self, status: Status) {
        let _guard = self.status_write.lock().unwrap_or_else(|p| p.into_inner());
        self.status.store(Arc::new(status));
    }

    /// Changes the status with `f` applied to a copy of the current one and
    /// returns the result. Updates are serialized (the reloader owns the
    /// per-document part; other writers such as the watcher touch only
    /// their own fields). Wakes nobody.
    pub fn update_status(&self, f: impl FnOnce(&mut Status)) -> Arc<Status> {
        // A writer that panicked left no partial state (the swap below is
        // the only mutation), so a poisoned lock is safe to reuse.
        let _guard = self.status_write.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = Status::clone(&self.status.load());
        f(&mut status);
        let status = Arc::new(status);
        self.status.store(status.clone());
        status
    }
}

/// A random id for one daemon start: 16 bytes from the OS, hex. Falls back
/// to a hash of the pid, the clock and a stack address if the OS has no
/// randomness to give (still unique enough to tell restarts apart).
pub fn new_instance_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_os {
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
    let (redacted, redacted_sha256) = if has_secrets {
        let r = schema.redact(&value);
        // ok: serializing a `Value` cannot fail (its keys are strings).
        let text = serde_json::to_vec(&r).unwrap_or_default();
        (Arc::new(r), document::sha256_hex(&text))
    } else {
        (value.clone(), sha256.clone())
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
    }
}
