//! The reload queue and the reloader: the only writer of the store.
//!
//! Every trigger (startup, watch, poll, SIGHUP, API) is a request into one
//! queue ([`ReloadHandle`]) consumed by one reloader running on its own
//! thread, so the blocking file work never runs on async workers. Reloads
//! never overlap; requests that arrive during a reload coalesce into exactly
//! one more, explicit if any of them was; a waiter gets the outcome of the
//! reload that served its request.
//!
//! One reload is four steps, one file each:
//! `scan` (list the config directory, read each document and its schema
//! through one long-lived [`SchemaCache`], hash both: what is on disk) →
//! `judge` (a verdict for each document whose inputs differ from what is
//! served and from the last candidate judged) → `plan` (a pure function
//! of what is served, what was read, the verdicts and the trigger: the
//! SPEC §2 rules deciding what to publish and what each status becomes) →
//! `commit` (persist, publish the snapshot with its status in one swap,
//! wake waiters, tell the [`ReloadObserver`]s).
//!
//! The reloader holds the store's write side (`StoreWriter`, taken when
//! it is spawned), so it is the only writer by construction; facts that are
//! not reloads but belong in the status (the watcher's health) reach it
//! through the same queue.
//!
//! This module does not parse or validate (that is [`crate::pipeline`]),
//! does not watch files (the watcher only sends requests and fills
//! [`Unsettled`]) and does not print anything but `tracing` events.

mod commit;
mod judge;
mod plan;
mod queue;
mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use crate::observe::logging;
use crate::persist::Persister;
use crate::pipeline::schema::SchemaCache;
use crate::pipeline::Limits;
use crate::store::status::{ReloadOutcome, Trigger};
use crate::store::typed::TypeRegistry;
use crate::store::{Store, StoreWriter};

pub use crate::store::status::ReloadObserver;
pub use crate::watch::Unsettled;
use queue::{Batch, Queue};

/// What the reloader reads and how it judges. Build it with
/// [`ReloadConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Directory of `NAME.toml` documents.
    pub config_dir: PathBuf,
    /// Directory of `NAME.schema.json` schemas.
    pub schema_dir: PathBuf,
    /// Rust types documents must deserialize into (`E_TYPE` otherwise);
    /// see [`ReloadConfig::register`].
    pub types: TypeRegistry,
    /// Limits applied to every document read (`--max-file-size`).
    pub limits: Limits,
    /// One rejected document rejects the whole reload (`--all-or-nothing`).
    pub all_or_nothing: bool,
    /// How long a file must be absent before an implicit reload reports it
    /// `missing` (`--debounce`).
    pub debounce: Duration,
    /// Files still being written; implicit reloads skip them. Share it with
    /// the watcher.
    pub unsettled: Arc<Unsettled>,
    /// Startup findings about unsafe directories (`daemon::strict`): put
    /// into the status (`warnings`) once, when the reloader starts.
    pub warnings: Vec<String>,
}

impl ReloadConfig {
    /// Defaults: 4 MiB files, per-document acceptance, 100 ms debounce.
    pub fn new(config_dir: impl Into<PathBuf>, schema_dir: impl Into<PathBuf>) -> Self {
        ReloadConfig {
            config_dir: config_dir.into(),
            schema_dir: schema_dir.into(),
            types: TypeRegistry::default(),
            limits: Limits::default(),
            all_or_nothing: false,
            debounce: Duration::from_millis(100),
            unsettled: Arc::default(),
            warnings: Vec::new(),
        }
    }

    /// Registers `T` for document `name` ([`TypeRegistry::register`]): a
    /// version that passes its schema but does not deserialize into `T` is
    /// rejected with `E_TYPE`; every accepted version carries its `T`, built
    /// once (read it with [`Store::typed`] or [`Store::view`]). Registration
    /// is fixed when [`Reloader::spawn`] takes the config.
    pub fn register<T>(&mut self, name: impl Into<String>) -> &mut Self
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.types.register::<T>(name);
        self
    }
}

/// Cloneable handle to request reloads. Cheap to clone; every clone feeds
/// the same queue. When the last clone is dropped the reloader stops after
/// its in-flight reload.
#[derive(Clone)]
pub struct ReloadHandle {
    inner: Arc<HandleInner>,
}

/// Shared by every clone of a handle; closes the queue when the last goes.
struct HandleInner {
    /// The one queue of the one reloader.
    queue: Arc<Queue>,
    /// Becomes `true` when the reloader thread has finished.
    stopped: watch::Receiver<bool>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle")
            .field("closed", &self.inner.queue.is_closed())
            .finish()
    }
}

/// The reloader has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the reloader has stopped")]
pub struct ReloaderGone;

impl ReloadHandle {
    /// Requests a reload without waiting for it. Never blocks; safe to call
    /// from a signal-handling task.
    pub fn request(&self, trigger: Trigger) {
        self.inner.queue.push(trigger, None);
    }

    /// Requests a reload and waits for the reload that serves it; returns
    /// its outcome. The request is queued when this is *called*, not when
    /// the future is first polled, so the order of calls is the order of
    /// requests. A request that arrives during a reload is served by the
    /// next one, so the outcome always reflects the files as they were
    /// after the request was made. An implicit request that finds nothing
    /// changed gets an outcome with empty lists (it was not a reload).
    pub fn reload(
        &self,
        trigger: Trigger,
    ) -> impl std::future::Future<Output = Result<ReloadOutcome, ReloaderGone>> + Send + 'static
    {
        let (tx, rx) = oneshot::channel();
        let queued = self.inner.queue.push(trigger, Some(tx));
        async move {
            if !queued {
                return Err(ReloaderGone);
            }
            rx.await.map_err(|_| ReloaderGone)
        }
    }

    /// [`ReloadHandle::reload`] for synchronous callers. Must not be called
    /// from inside an async runtime (it blocks the thread).
    pub fn reload_blocking(&self, trigger: Trigger) -> Result<ReloadOutcome, ReloaderGone> {
        let (tx, rx) = oneshot::channel();
        if !self.inner.queue.push(trigger, Some(tx)) {
            return Err(ReloaderGone);
        }
        rx.blocking_recv().map_err(|_| ReloaderGone)
    }

    /// Tells the reloader the file watcher's health: why watching is
    /// degraded (the daemon runs on the poll), or `None` when it works. It
    /// goes into the status (`watch_degraded`) in queue order, like every
    /// other fact; it is not a reload (no generation, no counter, no
    /// waiter woken). Never blocks.
    pub fn report_watch_health(&self, degraded: Option<String>) {
        self.inner.queue.watch_health(degraded);
    }

    /// Stops the reloader: no new reload starts, pending requests get
    /// [`ReloaderGone`], and this returns once the in-flight reload (if
    /// any) has finished — its snapshot published and its observers told.
    pub async fn shutdown(&self) {
        self.inner.queue.close();
        let mut stopped = self.inner.stopped.clone();
        // Err means the thread dropped its sender: it has stopped too.
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// Whether the reloader thread has finished.
    pub fn is_stopped(&self) -> bool {
        *self.inner.stopped.borrow()
    }
}

/// The one writer of a [`Store`]. Only its constructor is public: it lives
/// on its own thread and is reached through its [`ReloadHandle`].
pub struct Reloader {
    /// Where to read and how to judge.
    config: ReloadConfig,
    /// The store's write side, taken at spawn: no one else has it.
    writer: StoreWriter,
    /// Told when a reload starts and ends.
    observers: Vec<Arc<dyn ReloadObserver>>,
    /// Compiled schemas, kept across reloads (compile once per closure).
    schemas: SchemaCache,
    /// What the reloader remembers per document beyond the store.
    memory: BTreeMap<String, plan::Memory>,
    /// Where its requests come from (and its follow-ups go).
    queue: Arc<Queue>,
    /// Writes each published snapshot to the state directory, if any.
    persister: Option<Persister>,
}

impl Reloader {
    /// Starts the reloader for `store` on its own thread and returns the
    /// handle that feeds it. Nothing is loaded until the first request:
    /// send `Trigger::Startup` (and await it) to do the initial load.
    /// `observers` are called on the reloader thread after each reload that
    /// did something. Needs no async runtime; [`ReloadHandle::reload`]'s
    /// future works on any executor. A store has one writer: spawning a
    /// second reloader for the same store fails (`AlreadyExists`).
    pub fn spawn(
        config: ReloadConfig,
        store: Arc<Store>,
        observers: Vec<Arc<dyn ReloadObserver>>,
    ) -> std::io::Result<ReloadHandle> {
        Self::start(config, store, observers, None)
    }

    /// [`Reloader::spawn`] with a state directory: every published snapshot
    /// is persisted by `persister` before its reload counts as finished
    /// (before waiters and observers are told). Seed `store` with the
    /// snapshot [`Persister::open`] restored.
    pub fn spawn_persisting(
        config: ReloadConfig,
        store: Arc<Store>,
        observers: Vec<Arc<dyn ReloadObserver>>,
        persister: Persister,
    ) -> std::io::Result<ReloadHandle> {
        Self::start(config, store, observers, Some(persister))
    }

    /// Starts the reloader thread.
    fn start(
        config: ReloadConfig,
        store: Arc<Store>,
        observers: Vec<Arc<dyn ReloadObserver>>,
        persister: Option<Persister>,
    ) -> std::io::Result<ReloadHandle> {
        let writer = store.take_writer().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "this store already has a writer (a reloader)",
            )
        })?;
        if !config.warnings.is_empty() {
            // A status-only fact, before any reload: no generation moves.
            let warnings = config.warnings.clone();
            writer.update_status(|s| s.warnings = warnings);
        }
        let queue = Arc::new(Queue::default());
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let mut reloader = Reloader {
            config,
            writer,
            observers,
            schemas: SchemaCache::new(),
            memory: BTreeMap::new(),
            queue: queue.clone(),
            persister,
        };
        std::thread::Builder::new()
            .name("hotconf-reloader".into())
            .spawn(move || {
                while let Some(batch) = reloader.queue.next() {
                    #[cfg(debug_assertions)]
                    test_hooks::wedge_if_requested();
                    // A bug in one reload must not stop all future ones: the
                    // store is never half-written (publish is one swap), so
                    // serving on is safe. Its waiters see the reloader gone.
                    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        reloader.serve(batch)
                    }));
                    if served.is_err() {
                        logging::reload_panicked();
                    }
                }
                reloader.queue.close();
                stopped_tx.send_replace(true);
            })?;
        Ok(ReloadHandle {
            inner: Arc::new(HandleInner {
                queue,
                stopped: stopped_rx,
            }),
        })
    }

    /// Applies the facts of `batch`, runs its reload (if it asks for one)
    /// and answers everyone who waited for it.
    fn serve(&mut self, batch: Batch) {
        if let Some(degraded) = batch.watch_health {
            // A status-only change: no generation, no waiter woken.
            if self.writer.current().status.watch_degraded != degraded {
                self.writer.update_status(|s| s.watch_degraded = degraded);
            }
        }
        let Some(trigger) = batch.trigger else {
            return;
        };
        let outcome = self.reload(trigger);
        for w in batch.waiters {
            // A waiter that gave up is not an error.
            let _ = w.send(outcome.clone());
        }
    }

    /// One reload: scan → judge → plan → commit. Returns its outcome, which
    /// is also recorded in the status unless this was an implicit look that
    /// found nothing to do.
    fn reload(&mut self, trigger: Trigger) -> ReloadOutcome {
        let started = Instant::now();
        let at = SystemTime::now();
        let explicit = trigger.is_explicit();
        let published = self.writer.current();
        let current = published.snapshot.clone();

        let sources = scan::Sources {
            config_dir: &self.config.config_dir,
            schema_dir: &self.config.schema_dir,
            limits: &self.config.limits,
            unsettled: &self.config.unsettled,
            trust_schema_stat: trigger == Trigger::Watch,
            debounce: self.config.debounce,
        };
        let found = scan::scan(&sources, &mut self.schemas, explicit);
        // Explicit reloads only: what they waited for, what they left out.
        let waited = found.waited.clone();
        let deferred: Vec<String> = if explicit {
            let mut d: Vec<String> = found.skipped.iter().cloned().collect();
            d.sort();
            d
        } else {
            Vec::new()
        };

        let types = &self.config.types;
        let triaged: Vec<_> = found
            .read
            .into_iter()
            .map(|(name, s)| {
                let t = judge::triage(types, &name, &s, current.get(&name), self.memory.get(&name));
                (name, s, t)
            })
            .collect();
        let evaluates = triaged
            .iter()
            .any(|(_, _, t)| matches!(t, judge::Triage::Evaluate));
        if plan::announced(trigger, evaluates) {
            for o in &self.observers {
                o.reload_started(trigger);
            }
        }
        let judged: Vec<judge::Judged> = triaged
            .into_iter()
            .map(|(name, s, t)| {
                let served = current.get(&name);
                judge::judge(types, name, s, t, served)
            })
            .collect();

        let pinned: BTreeSet<String> = types.sinks().map(|(n, _)| n.to_string()).collect();
        let mut plan = plan::plan(&plan::Inputs {
            trigger,
            all_or_nothing: self.config.all_or_nothing,
            authoritative: found.authoritative,
            served: &current,
            status: &published.status.documents,
            judged: &judged,
            listing: &found.listing,
            present: &found.present,
            skipped: &found.skipped,
            vanished: &found.vanished,
            memory: &self.memory,
            pinned: &pinned,
            config_dir: &self.config.config_dir,
            debounce: self.config.debounce,
            now: Instant::now(),
            wall: SystemTime::now(),
        });
        self.remember(std::mem::take(&mut plan.remember));
        let cx = commit::Context {
            trigger,
            at,
            started,
            current: &current,
            judged: &judged,
            waited,
            deferred,
        };
        self.commit(&cx, plan)
    }

    /// Applies the plan's changes to the reloader's memory.
    fn remember(&mut self, changes: Vec<(String, plan::Remember)>) {
        for (name, change) in changes {
            match change {
                plan::Remember::Forget => {
                    self.memory.remove(&name);
                }
                plan::Remember::Present => {
                    self.memory.entry(name).or_default().absent_since = None;
                }
                plan::Remember::Candidate(c) => {
                    self.memory.entry(name).or_default().candidate = c;
                }
                plan::Remember::AbsentSince(at) => {
                    self.memory.entry(name).or_default().absent_since = Some(at);
                }
            }
        }
    }
}

/// Fault injection for integration tests, compiled into debug builds only.
#[cfg(debug_assertions)]
mod test_hooks {
    /// Names a file; once it exists, the reloader hangs forever at the next
    /// request it takes, as a deadlocked reloader would. Lets tests prove
    /// that a wedged reloader stops the systemd watchdog pings.
    const WEDGE_ENV: &str = "HOTCONF_TEST_WEDGE_RELOADER";

    /// Hangs the calling (reloader) thread when [`WEDGE_ENV`] asks for it.
    pub(super) fn wedge_if_requested() {
        let Some(path) = std::env::var_os(WEDGE_ENV) else {
            return;
        };
        if std::path::Path::new(&path).exists() {
            tracing::warn!(event = "test_wedge", "{WEDGE_ENV}: wedging the reloader");
            loop {
                std::thread::park();
            }
        }
    }
}
