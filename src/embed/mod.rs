//! The embedding API: one [`Builder`] that runs, in-process, what
//! `hotconf run` runs — the store, the reloader (on its own thread), the
//! startup load, the file watcher and the poll backstop, the state
//! directory and observers — and hands out typed [`Handle`]s.
//!
//! `hotconf run` is a user of it: it adds signals, the control socket and
//! systemd (in [`crate::daemon`]) on top of a started [`Hotconf`].
//!
//! Threads: the reloader and the watcher have a thread each, the poll
//! backstop one more; none of them needs an async runtime and no file is
//! read on the caller's async workers. [`Builder::start`] and
//! [`Hotconf::reload`] are futures that wait for the reloader; they run on
//! any executor (the host's tokio runtime, typically).
//!
//! This module does not parse, validate or decide what is served (the
//! pipeline and the reloader do), and has no socket, signal or systemd
//! code.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::observe::logging;
use crate::persist::Persister;
use crate::pipeline::rejection::{Code, Rejection};
use crate::pipeline::{self, Limits};
use crate::reload::{
    ReloadConfig, ReloadHandle, ReloadObserver, Reloader, ReloaderGone, Unsettled,
};
use crate::store::handle::Handle;
use crate::store::snapshot::Snapshot;
use crate::store::status::{DocState, ReloadOutcome, Status, Trigger};
use crate::store::typed::TypeRegistry;
use crate::store::{self, Store};
use crate::watch::{WatchHealth, WatchSignal, Watcher};

/// Configures and starts a [`Hotconf`]. Made by [`Hotconf::builder`].
///
/// Defaults are `hotconf run`'s: watching on, a poll backstop every 30 s,
/// 100 ms debounce, per-document acceptance, 4 MiB files, no state
/// directory, no observers.
pub struct Builder {
    /// Directory of `NAME.toml` documents.
    config_dir: PathBuf,
    /// Directory of `NAME.schema.json` schemas.
    schema_dir: PathBuf,
    /// Types (and handle slots) registered so far.
    types: TypeRegistry,
    /// Names registered through [`Builder::register`]: required at start.
    required: Vec<String>,
    /// Watch the directories.
    watch: bool,
    /// Period of the checksum poll; zero disables it.
    poll_interval: Duration,
    /// Quiet time after a bare modification before it is read.
    debounce: Duration,
    /// One rejected document rejects the whole reload.
    all_or_nothing: bool,
    /// Read limits.
    limits: Limits,
    /// Where the last good snapshot is persisted.
    state_dir: Option<PathBuf>,
    /// Told about every reload, in order.
    observers: Vec<Arc<dyn ReloadObserver>>,
    /// Observers made from the store's first snapshot, added after
    /// `observers`.
    seeded: Vec<SeededObserver>,
    /// Startup findings about unsafe directories, put into the status.
    warnings: Vec<String>,
}

/// Makes an observer from the snapshot the store starts with.
type SeededObserver = Box<dyn FnOnce(Arc<Snapshot>) -> Arc<dyn ReloadObserver> + Send>;

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config_dir", &self.config_dir)
            .field("schema_dir", &self.schema_dir)
            .field("types", &self.types)
            .field("watch", &self.watch)
            .field("poll_interval", &self.poll_interval)
            .field("debounce", &self.debounce)
            .field("all_or_nothing", &self.all_or_nothing)
            .field("state_dir", &self.state_dir)
            .field("observers", &self.observers.len())
            .finish()
    }
}

/// Why [`Builder::start`] did not produce a running [`Hotconf`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Some document is invalid, or a registered one is missing: every
    /// problem, one [`Rejection`] each (print them with
    /// [`Rejection::lines`]).
    #[error("{} invalid document(s)", .0.len())]
    Invalid(Vec<Rejection>),
    /// The reloader could not be started or stopped during startup.
    #[error("{0}")]
    Internal(String),
}

impl StartError {
    /// Every rejection (empty for [`StartError::Internal`]).
    pub fn rejections(&self) -> &[Rejection] {
        match self {
            StartError::Invalid(r) => r,
            StartError::Internal(_) => &[],
        }
    }
}

impl Builder {
    /// Registers `T` for document `name` and returns its [`Handle`].
    ///
    /// The document is then required: [`Builder::start`] fails if it is
    /// missing, invalid under its schema, or does not deserialize into `T`
    /// (`E_TYPE`). Once started the handle always has a value: a later
    /// version that does not fit is rejected with `E_TYPE` (the last good
    /// `T` stays), and a removal from disk keeps the last good `T` too (the
    /// status then says `missing`; the JSON snapshot follows SPEC §2 and
    /// drops it on an explicit reload).
    pub fn register<T>(&mut self, name: &str) -> Handle<T>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.required.retain(|n| n != name);
        self.required.push(name.to_string());
        self.types.handle::<T>(name)
    }

    /// Watch the directories for changes (default on). Off: changes are
    /// found by the poll and [`Hotconf::reload`] only.
    pub fn watch(mut self, on: bool) -> Self {
        self.watch = on;
        self
    }

    /// Period of the checksum poll, the backstop for events the watcher
    /// misses (default 30 s); zero disables it.
    pub fn poll_interval(mut self, period: Duration) -> Self {
        self.poll_interval = period;
        self
    }

    /// Quiet time after a bare modification before it is read, and how
    /// long a file must be absent before it is `missing` (default 100 ms).
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// One rejected document rejects the whole reload (default off).
    pub fn all_or_nothing(mut self, on: bool) -> Self {
        self.all_or_nothing = on;
        self
    }

    /// Read limits (default: 4 MiB files).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Warnings to show in the status (`warnings`) from the start: what
    /// `hotconf run` found unsafe about the directories.
    pub fn warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// Persist the last good snapshot in `dir` and start from it (as
    /// `--state-dir`): with a persisted snapshot, invalid unregistered
    /// documents do not fail the start (they are `error`, their persisted
    /// version served); registered documents must still be valid.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Adds an observer, told about every reload that does something, on
    /// the reloader's thread (so it must be quick), in the order added.
    pub fn observer(mut self, observer: Arc<dyn ReloadObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Adds an observer made from the snapshot the store starts with (the
    /// persisted one, or the empty one), before the reloader starts: for
    /// observers that compare each reload with what came before (the
    /// daemon's history). Added after those of [`Builder::observer`].
    pub fn seeded_observer<O, F>(mut self, make: F) -> Self
    where
        O: ReloadObserver + 'static,
        F: FnOnce(Arc<Snapshot>) -> Arc<O> + Send + 'static,
    {
        self.seeded.push(Box::new(move |s| {
            let o: Arc<dyn ReloadObserver> = make(s);
            o
        }));
        self
    }

    /// Starts everything and does the startup load; see [`Builder::start`].
    /// For synchronous code: must not be called from inside an async
    /// runtime (it blocks the thread).
    pub fn start_blocking(self) -> Result<Hotconf, StartError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hotconf-start".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map_err(|e| StartError::Internal(format!("cannot start: {e}")))
                    .and_then(|rt| rt.block_on(self.start()));
                let _ = tx.send(result);
            })
            .map_err(|e| StartError::Internal(format!("cannot start: {e}")))?;
        let result = rx
            .recv()
            .map_err(|_| StartError::Internal("the start thread failed".into()));
        let _ = thread.join();
        result?
    }

    /// Starts the reloader, does the startup load, then starts the watcher
    /// and the poll. Fails with every rejection when a document is invalid
    /// (SPEC §2 "Startup") or a registered one is missing or does not fit
    /// its type; everything started is stopped again then. Never panics,
    /// never exits the process.
    ///
    /// An `async fn` rather than a blocking one because the startup load
    /// waits for the reloader thread, which must not block an async worker;
    /// synchronous code calls [`Builder::start_blocking`].
    pub async fn start(self) -> Result<Hotconf, StartError> {
        let mut running = self.start_core().await?;
        if running.watch {
            running.watcher = start_watcher(&running);
            if running.watcher.is_none() {
                // The failure went through the queue: let it land in the
                // status before start returns.
                let _ = running.reload.reload(Trigger::Watch).await;
            }
        }
        running.poll = start_poll(&running.reload, running.poll_interval);
        Ok(running)
    }

    /// Store, reloader and startup load, without watcher or poll.
    async fn start_core(mut self) -> Result<Hotconf, StartError> {
        // Random per start, with or without a persisted snapshot (SPEC §2).
        let instance = store::new_instance_id();
        logging::startup(
            &instance,
            &self.config_dir,
            &self.schema_dir,
            self.all_or_nothing,
        );
        // The persisted snapshot seeds the store before the reloader, its
        // only writer, starts. It reads files: off the async workers.
        let (persister, restored) = match &self.state_dir {
            Some(dir) => {
                // Another user's or a shared state directory could forge
                // what is served: refused before anything is read.
                crate::persist::check_state_dir(dir).map_err(StartError::Internal)?;
                let (dir, config_dir, schema_dir, limits) = (
                    dir.clone(),
                    self.config_dir.clone(),
                    self.schema_dir.clone(),
                    self.limits,
                );
                let (p, r) =
                    blocking(move || Persister::open(&dir, &config_dir, &schema_dir, limits))
                        .await
                        .map_err(|e| {
                            StartError::Internal(format!("cannot read the state dir: {e}"))
                        })?;
                // Two daemons on one state directory would overwrite each other.
                if let Some(reason) = p.in_use() {
                    return Err(StartError::Internal(format!("not starting: {reason}")));
                }
                (Some(p), r)
            }
            None => (None, None),
        };
        let restored_generation = restored.as_ref().map(|s| s.generation);
        let store = Arc::new(match restored {
            Some(snapshot) => Store::with_snapshot(instance, snapshot),
            None => Store::new(instance),
        });
        let unsettled = Arc::new(Unsettled::default());
        let types = self.types.clone();
        let config = ReloadConfig {
            config_dir: self.config_dir.clone(),
            schema_dir: self.schema_dir.clone(),
            types: self.types.clone(),
            limits: self.limits,
            all_or_nothing: self.all_or_nothing,
            debounce: self.debounce,
            unsettled: unsettled.clone(),
            warnings: std::mem::take(&mut self.warnings),
        };
        // The reloader never removes anything when it cannot list the
        // directory; at startup that must be an error, as `check` says.
        let dir = self.config_dir.clone();
        let listed = blocking(move || pipeline::list_documents(&dir).map(|d| d.is_empty())).await;
        if let Ok(Ok(true)) = &listed {
            logging::no_documents(&self.config_dir);
        }
        if let Err(e) = listed.and_then(|r| r.map_err(|e| e.to_string())) {
            return Err(StartError::Invalid(vec![Rejection::bare(
                Code::Io,
                pipeline::display_path(&self.config_dir),
                format!("cannot list the config directory: {e}"),
            )]));
        }
        let state_dir = persister.as_ref().map(|p| p.dir().to_path_buf());
        let mut observers = self.observers.clone();
        for make in std::mem::take(&mut self.seeded) {
            observers.push(make(store.load_full()));
        }
        let reload = match persister {
            Some(p) => Reloader::spawn_persisting(config, store.clone(), observers, p),
            None => Reloader::spawn(config, store.clone(), observers),
        }
        .map_err(|e| StartError::Internal(format!("cannot start the reloader: {e}")))?;
        if reload.reload(Trigger::Startup).await.is_err() {
            return Err(StartError::Internal(
                "the reloader stopped during startup".into(),
            ));
        }
        let (snapshot, status) = store.load_with_status();
        // A version restored and unchanged may not have been published
        // again: fill the handles from what is served.
        crate::store::handle::fill(types.sinks(), &snapshot);
        let required = self.required_problems(&snapshot, &status);
        let bad_unregistered = !status.all_ok();
        if !required.is_empty() || (bad_unregistered && restored_generation.is_none()) {
            reload.shutdown().await;
            let mut invalid = if bad_unregistered {
                self.check_rejections(&status).await
            } else {
                Vec::new()
            };
            // Registered documents' problems not already said (a missing
            // file, E_TYPE, which `check` does not know about).
            for r in required {
                if !invalid.iter().any(|i| i.file == r.file && i.code == r.code) {
                    invalid.push(r);
                }
            }
            return Err(StartError::Invalid(invalid));
        }
        if let (true, Some(generation), Some(dir)) =
            (bad_unregistered, restored_generation, &state_dir)
        {
            // SPEC §2 "Startup": a persisted last-good snapshot exists, so
            // run on it rather than refuse to start, and say so loudly.
            let (served, not_served): (Vec<String>, Vec<String>) = status
                .documents
                .iter()
                .filter(|(_, d)| d.state != DocState::Ok)
                .map(|(name, _)| name.clone())
                .partition(|name| snapshot.documents.contains_key(name));
            logging::serving_persisted(dir, generation, &served, &not_served);
        }
        for (_, sink) in types.sinks() {
            sink.mark_started();
        }
        Ok(Hotconf {
            store,
            reload,
            unsettled,
            watcher: None,
            poll: None,
            watch: self.watch,
            poll_interval: self.poll_interval,
            debounce: self.debounce,
            dirs: [self.config_dir, self.schema_dir],
        })
    }

    /// What is wrong with the registered documents after the startup load.
    fn required_problems(&self, snapshot: &Snapshot, status: &Status) -> Vec<Rejection> {
        let mut problems = Vec::new();
        for name in &self.required {
            let doc_status = status.documents.get(name);
            let served = snapshot.get(name).is_some()
                && self
                    .types
                    .sinks()
                    .any(|(n, sink)| n == name && sink.is_filled());
            let ok = doc_status.is_some_and(|d| d.state == DocState::Ok);
            if served && ok {
                continue;
            }
            match doc_status.and_then(|d| d.last_error.as_ref()) {
                Some(e) => problems.push(e.rejection.clone()),
                None => problems.push(Rejection::bare(
                    Code::Missing,
                    pipeline::display_path(&self.config_dir.join(format!("{name}.toml"))),
                    format!(
                        "registered document `{name}` is not there (type {})",
                        self.types.type_name(name).unwrap_or("?")
                    ),
                )),
            }
        }
        problems
    }

    /// Every rejection, as `hotconf check` would print them (it also
    /// reports a broken schema once, and both a parse error and a bad
    /// schema); the reloader's view is the fallback if the files were
    /// fixed in between.
    async fn check_rejections(&self, status: &Status) -> Vec<Rejection> {
        let (config_dir, schema_dir, limits) = (
            self.config_dir.clone(),
            self.schema_dir.clone(),
            self.limits,
        );
        let mut invalid = blocking(move || pipeline::check(&config_dir, &schema_dir, &[], limits))
            .await
            .unwrap_or_default();
        if invalid.is_empty() {
            invalid = status
                .documents
                .values()
                .filter(|d| d.state != DocState::Ok)
                .filter_map(|d| d.last_error.as_ref().map(|e| e.rejection.clone()))
                .collect();
        }
        invalid
    }
}

/// Runs `f` on a thread of its own and waits for it without blocking the
/// caller's executor (whatever it is: no tokio runtime is required).
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("hotconf-io".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|_| "the worker thread failed".to_string())
}

/// A running hotconf: store, reloader, watcher and poll. Made by
/// [`Builder::start`]; stop it with [`Hotconf::shutdown`] (dropping it
/// stops the watcher and the poll, and the reloader after its in-flight
/// reload).
pub struct Hotconf {
    /// The served snapshot and status.
    store: Arc<Store>,
    /// Requests reloads.
    reload: ReloadHandle,
    /// Files being written: the watcher fills it, implicit reloads skip them.
    unsettled: Arc<Unsettled>,
    /// The file watcher, when on and started.
    watcher: Option<Watcher>,
    /// Stops the poll thread when dropped.
    poll: Option<mpsc::Sender<()>>,
    /// Whether to watch (from the builder).
    watch: bool,
    /// Poll period (from the builder).
    poll_interval: Duration,
    /// Debounce (from the builder).
    debounce: Duration,
    /// Config and schema directories.
    dirs: [PathBuf; 2],
}

impl std::fmt::Debug for Hotconf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hotconf")
            .field("store", &self.store)
            .field("watching", &self.watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl Hotconf {
    /// A builder reading `NAME.toml` from `config_dir`, validated against
    /// `NAME.schema.json` from `schema_dir`.
    pub fn builder(config_dir: impl Into<PathBuf>, schema_dir: impl Into<PathBuf>) -> Builder {
        Builder {
            config_dir: config_dir.into(),
            schema_dir: schema_dir.into(),
            types: TypeRegistry::default(),
            required: Vec::new(),
            watch: true,
            poll_interval: Duration::from_secs(30),
            debounce: Duration::from_millis(100),
            all_or_nothing: false,
            limits: Limits::default(),
            state_dir: None,
            observers: Vec::new(),
            seeded: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The store: every document as JSON ([`Store::load`]), the status,
    /// subscriptions. For registered documents prefer their [`Handle`].
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The served snapshot (all documents as JSON values), owned.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.load_full()
    }

    /// The current status (per-document state, last reload, counters).
    pub fn status(&self) -> Arc<Status> {
        self.store.status()
    }

    /// A receiver woken by every publish (any document); it carries the
    /// snapshot generation.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.subscribe()
    }

    /// An explicit reload (as SIGHUP): waits for it and returns its
    /// outcome.
    pub async fn reload(&self) -> Result<ReloadOutcome, ReloaderGone> {
        self.reload.reload(Trigger::Api).await
    }

    /// The reload queue, to request reloads from other code (any trigger).
    pub fn reload_handle(&self) -> &ReloadHandle {
        &self.reload
    }

    /// Files being written right now (shared by watcher and reloader).
    pub fn unsettled(&self) -> &Arc<Unsettled> {
        &self.unsettled
    }

    /// Stops the watcher and the poll, then the reloader once its in-flight
    /// reload has published. Handles keep their last value.
    pub async fn shutdown(mut self) {
        self.stop_triggers();
        self.reload.shutdown().await;
    }

    /// Stops the watcher and the poll (no more implicit requests).
    pub fn stop_triggers(&mut self) {
        self.poll = None;
        self.watcher = None;
    }
}

/// Starts the file watcher on both directories; its signals request
/// implicit reloads and carry its health through the queue. `None`
/// (logged, and said in the status) when its thread cannot start.
fn start_watcher(hc: &Hotconf) -> Option<Watcher> {
    let health = Arc::new(WatchHealth::new());
    let reload = hc.reload.clone();
    let seen = health.clone();
    let started = Watcher::start(
        &hc.dirs,
        hc.debounce,
        hc.unsettled.clone(),
        health,
        move |signal| {
            if signal == WatchSignal::Rescan {
                // Through the queue, like every fact: the reloader is the
                // store's only writer (it ignores a report of no change).
                reload.report_watch_health(seen.degraded());
            }
            reload.request(Trigger::Watch);
        },
    );
    match started {
        Ok(w) => Some(w),
        Err(e) => {
            let reason =
                format!("cannot start the file watcher: {e}; changes are found by the poll only");
            tracing::warn!(event = "watch_degraded", reason = %reason, "file watching degraded");
            hc.reload.report_watch_health(Some(reason));
            None
        }
    }
}

/// Starts the poll thread (`None` when the period is zero or the thread
/// cannot start): an implicit request every `period` until its sender is
/// dropped.
fn start_poll(reload: &ReloadHandle, period: Duration) -> Option<mpsc::Sender<()>> {
    if period.is_zero() {
        return None;
    }
    let (tx, rx) = mpsc::channel::<()>();
    let reload = reload.clone();
    let spawned = std::thread::Builder::new()
        .name("hotconf-poll".into())
        .spawn(move || {
            // Disconnected (the Hotconf dropped its sender) ends the loop.
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period) {
                reload.request(Trigger::Poll);
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(event = "poll_disabled", error = %e, "cannot start the poll thread");
            None
        }
    }
}
