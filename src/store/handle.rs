//! Typed handles: one document's registered Rust type, read at the cost of
//! an `ArcSwap` load (or less, through a cached [`Reader`]).
//!
//! A [`Handle<T>`] is made when its type is registered
//! ([`TypeRegistry::handle`](crate::store::typed::TypeRegistry::handle),
//! or `hotconf::Builder::register`) and points at its own slot: an
//! `ArcSwap<T>` holding the document's last accepted `T`, plus a
//! `tokio::sync::watch` carrying the generation of that version. The
//! reloader's commit step stores each newly accepted version into the slot
//! *before* it wakes anyone, so a task woken by a publish reads the new
//! value. Nothing else writes a slot.
//!
//! A read never looks a name up and never touches a reference count other
//! readers share: [`Handle::load`] is one `ArcSwap::load` (a guard from a
//! thread-local debt slot), [`Reader::load`] one relaxed pointer compare
//! against a value the reader keeps.
//!
//! A slot keeps the last good value forever: a document that is removed
//! from disk, or whose new version is rejected, goes on being served to
//! handles as it last was (its state in the status says `missing` or
//! `error`).
//!
//! This module does not deserialize (that is [`crate::store::typed`]) and
//! does not decide what is accepted (that is the reloader).

use std::any::Any;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::{ArcSwap, Cache};
use tokio::sync::watch;

use crate::store::snapshot::Snapshot;

/// The writer's side of a slot, without its type: what the registry keeps
/// so the reloader can fill slots of any `T`.
pub(crate) trait SlotSink: Send + Sync {
    /// Stores `typed` (a `T` erased) as the version of `generation`, if it
    /// is newer than what the slot holds, and wakes its waiters. Returns
    /// whether it stored.
    fn offer(&self, typed: &Arc<dyn Any + Send + Sync>, generation: u64) -> bool;

    /// Whether the slot holds a value yet.
    fn is_filled(&self) -> bool;

    /// Marks the version held now as the startup version: handles made
    /// before start do not see it as a change.
    fn mark_started(&self);
}

/// Stores the typed value of every document in `snapshot` that has a slot
/// into that slot, when it is newer than what the slot holds. Called by the
/// reloader after each publish and before it wakes anyone.
pub(crate) fn fill<'a>(
    sinks: impl Iterator<Item = (&'a str, &'a Arc<dyn SlotSink>)>,
    snapshot: &Snapshot,
) {
    for (name, sink) in sinks {
        if let Some(doc) = snapshot.get(name) {
            if let Some(typed) = &doc.typed {
                sink.offer(typed, doc.generation);
            }
        }
    }
}

/// One document's slot: its last accepted `T` and the generation of it.
pub(crate) struct Slot<T> {
    /// The document's name (for `Debug` and messages).
    name: Arc<str>,
    /// The value, once the first version was accepted. An `Arc` so that a
    /// [`Reader`] can own it without borrowing the slot.
    value: OnceLock<Arc<ArcSwap<T>>>,
    /// The generation of the value (0: none yet); wakes `changed()`.
    version: watch::Sender<u64>,
    /// The generation served when the `Hotconf` started; `changed()`
    /// returns only later ones.
    baseline: AtomicU64,
    /// Serializes writers (the reloader, and the builder's check after
    /// the startup load); readers never take it.
    write: Mutex<()>,
}

impl<T: Send + Sync + 'static> SlotSink for Slot<T> {
    fn offer(&self, typed: &Arc<dyn Any + Send + Sync>, generation: u64) -> bool {
        let Ok(value) = typed.clone().downcast::<T>() else {
            return false;
        };
        // A poisoned lock only means a writer panicked; the data is an Arc.
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if *self.version.borrow() >= generation && self.value.get().is_some() {
            return false;
        }
        match self.value.get() {
            Some(swap) => swap.store(value),
            None => {
                let _ = self.value.set(Arc::new(ArcSwap::new(value)));
            }
        }
        // The value first, then the wake: a woken waiter sees it.
        self.version.send_replace(generation);
        true
    }

    fn is_filled(&self) -> bool {
        self.value.get().is_some()
    }

    fn mark_started(&self) {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        self.baseline
            .store(*self.version.borrow(), Ordering::Release);
    }
}

/// A registered document read as its Rust type `T`.
///
/// Made once, when `T` is registered, and valid for reads once the
/// `Hotconf` that owns it has started (`Builder::start` returned `Ok`, which
/// it does only when the document was loaded and fits `T`). From then on it
/// always holds a value: the last accepted version of the document.
///
/// Cheap to clone (one `Arc`); each clone has its own notion of which
/// version it has seen for [`Handle::changed`].
///
/// # Cost of a read
///
/// - [`Handle::load`]: one `ArcSwap::load`, what `ArcSwap::load` costs on
///   its own (6–25 ns measured on a loaded 2-core machine, see
///   BENCHMARKS.md); the guard is for short use on one thread.
/// - [`Handle::reader`] then [`Reader::load`]: a plain pointer load and
///   compare (0.9–4.5 ns measured) when nothing changed; worth it on hot
///   paths of long-lived threads.
/// - [`Handle::load_full`]: an `Arc<T>` (one shared reference-count
///   increment), to keep a version across `.await` points or threads.
pub struct Handle<T> {
    /// The document's slot, shared with the reloader.
    slot: Arc<Slot<T>>,
    /// The generation this handle has seen, for [`Handle::changed`].
    seen: watch::Receiver<u64>,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            slot: self.slot.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.slot.name)
            .field("type", &std::any::type_name::<T>())
            .field("generation", &*self.slot.version.borrow())
            .finish()
    }
}

/// What [`Handle::load`] returns: dereferences to `T`. Hold it briefly and
/// on one thread (as an `arc_swap::Guard`); keep [`Handle::load_full`]'s
/// `Arc` instead across `.await` points.
pub struct Guard<T>(arc_swap::Guard<Arc<T>>);

impl<T> Deref for Guard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Guard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        T::fmt(self, f)
    }
}

/// A per-thread cached reader of a [`Handle`] (an `arc_swap::Cache`):
/// [`Reader::load`] compares one pointer with the slot's and returns the
/// value it keeps when they match. It keeps the version it last returned
/// alive until its next `load` (or its drop), so an idle reader pins one
/// old version in memory.
pub struct Reader<T> {
    /// The cache over the slot's `ArcSwap`.
    cache: Cache<Arc<ArcSwap<T>>, Arc<T>>,
}

impl<T> Reader<T> {
    /// The current value: the one this reader holds when it is still
    /// current, else a fresh load.
    #[inline]
    pub fn load(&mut self) -> &T {
        self.cache.load()
    }
}

impl<T> std::fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// What a handle's value is before it has one.
const NOT_STARTED: &str =
    "hotconf: a Handle was read before its Hotconf started (Builder::start returned Ok)";

impl<T: Send + Sync + 'static> Handle<T> {
    /// A handle with an empty slot, and the slot's writer side.
    pub(crate) fn new(name: &str) -> (Handle<T>, Arc<dyn SlotSink>) {
        let (version, seen) = watch::channel(0);
        let slot = Arc::new(Slot {
            name: name.into(),
            value: OnceLock::new(),
            version,
            baseline: AtomicU64::new(0),
            write: Mutex::new(()),
        });
        let sink: Arc<dyn SlotSink> = slot.clone();
        (Handle { slot, seen }, sink)
    }

    /// The slot's value; only `None` before start.
    #[inline]
    fn swap(&self) -> Option<&Arc<ArcSwap<T>>> {
        self.slot.value.get()
    }

    /// The document's name.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// The current value, lock-free, as a guard that dereferences to `T`.
    ///
    /// # Panics
    ///
    /// If called before the `Hotconf` owning this handle started (a
    /// programming error: `start()` returning `Ok` guarantees a value).
    #[inline]
    #[allow(
        clippy::expect_used,
        reason = "use before start is a programming error, documented"
    )]
    pub fn load(&self) -> Guard<T> {
        // ok: panics only when the program reads before `start()` succeeded (a
        // programming error, documented); never on file, socket or clock input.
        Guard(self.swap().expect(NOT_STARTED).load())
    }

    /// The current value as an owned `Arc<T>` (one shared reference-count
    /// increment): to keep one version across `.await` points or threads.
    ///
    /// # Panics
    ///
    /// As [`Handle::load`].
    #[allow(
        clippy::expect_used,
        reason = "use before start is a programming error, documented"
    )]
    pub fn load_full(&self) -> Arc<T> {
        // ok: panics only when the program reads before `start()` succeeded (a
        // programming error, documented); never on file, socket or clock input.
        self.swap().expect(NOT_STARTED).load_full()
    }

    /// The current value, or `None` before start. Never panics.
    pub fn try_load_full(&self) -> Option<Arc<T>> {
        self.swap().map(|s| s.load_full())
    }

    /// The generation in which the current value was accepted (0 before
    /// start).
    pub fn generation(&self) -> u64 {
        *self.slot.version.borrow()
    }

    /// A cached reader for one thread (see [`Reader`]).
    ///
    /// # Panics
    ///
    /// As [`Handle::load`].
    #[allow(
        clippy::expect_used,
        reason = "use before start is a programming error, documented"
    )]
    pub fn reader(&self) -> Reader<T> {
        Reader {
            // ok: as in `load`: only a read before `start()` succeeded panics.
            cache: Cache::new(self.swap().expect(NOT_STARTED).clone()),
        }
    }

    /// Waits for the next accepted version of this document that this
    /// handle has not seen yet and returns it.
    ///
    /// Wakes only for this document's accepted versions: other documents'
    /// publishes, rejections and removals do not wake it (a removal keeps
    /// the last good value, so there is nothing new to return). Never ends
    /// while the handle exists. Versions accepted faster than the caller
    /// loops are coalesced: it returns the latest, as `tokio::sync::watch`
    /// does. A new handle (and each clone) has seen the version current
    /// when it was made. Cancel-safe.
    pub async fn changed(&mut self) -> Arc<T> {
        loop {
            if self.seen.changed().await.is_err() {
                // The sender is in the slot this handle holds: unreachable,
                // but if it happened nothing could change any more.
                std::future::pending::<()>().await;
            }
            let generation = *self.seen.borrow_and_update();
            if generation <= self.slot.baseline.load(Ordering::Acquire) {
                // The startup version, seen by whoever started.
                continue;
            }
            if let Some(swap) = self.swap() {
                return swap.load_full();
            }
        }
    }

    /// Runs `f` with every accepted version of this document, on a thread
    /// of its own: never on the reloader's thread nor on the caller's async
    /// workers, so a slow callback delays only later calls of itself (they
    /// coalesce to the latest version) and never a publish. Stops when the
    /// returned [`OnChange`] is dropped (after the call in progress).
    pub fn on_change<F>(&self, mut f: F) -> std::io::Result<OnChange>
    where
        F: FnMut(Arc<T>) + Send + 'static,
    {
        let mut handle = self.clone();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        std::thread::Builder::new()
            .name(format!("hotconf-on-change-{}", self.slot.name))
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            value = handle.changed() => f(value),
                            _ = stop_rx.wait_for(|s| *s) => return,
                        }
                    }
                });
            })?;
        Ok(OnChange { stop: stop_tx })
    }
}

/// A running [`Handle::on_change`] callback; dropping it stops the
/// callback's thread once the call in progress (if any) returns.
#[derive(Debug)]
pub struct OnChange {
    /// Tells the thread to stop.
    stop: watch::Sender<bool>,
}

impl Drop for OnChange {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
