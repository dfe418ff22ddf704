//! The reload queue and the reloader: the only writer of the store.
//!
//! Every trigger (startup, watch, poll, SIGHUP, API) is a request into one
//! queue ([`ReloadHandle`]) consumed by one reloader running on its own
//! thread, so the blocking file work never runs on async workers. Reloads
//! never overlap; requests that arrive during a reload coalesce into exactly
//! one more, explicit if any of them was; a waiter gets the outcome of the
//! reload that served its request.
//!
//! One reload: list the config directory, load each document's schema
//! (through one long-lived [`SchemaCache`]), read each file, and compare
//! (document sha256, schema-closure sha256) with what is served and with the
//! last candidate judged. Only changed documents are evaluated. Accepted
//! changes are published in one atomic swap (or none at all with
//! `all_or_nothing` when anything is rejected); then the status is updated
//! and the [`ReloadObserver`]s are told.
//!
//! This module does not parse or validate (that is [`crate::pipeline`]),
//! does not watch files (the watcher only sends requests and fills
//! [`Unsettled`]) and does not print anything but `tracing` events.

mod queue;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use crate::observe::logging;
use crate::persist::Persister;
use crate::pipeline::document;
use crate::pipeline::rejection::{Code, Problem, Rejection};
use crate::pipeline::schema::{Schema, SchemaCache};
use crate::pipeline::{self, Limits};
use crate::store::snapshot::{ServedDocument, Snapshot};
use crate::store::status::{Counters, DocState, DocStatus, LastError, ReloadOutcome, Trigger};
use crate::store::typed::TypeRegistry;
use crate::store::Store;

use queue::{Batch, Queue};

use crate::store::served_document;
pub use crate::store::status::ReloadObserver;
pub use crate::watch::Unsettled;

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
    /// What it publishes into.
    store: Arc<Store>,
    /// Told when a reload starts and ends.
    observers: Vec<Arc<dyn ReloadObserver>>,
    /// Compiled schemas, kept across reloads (compile once per closure).
    schemas: SchemaCache,
    /// What the reloader remembers per document beyond the store.
    memory: BTreeMap<String, Memory>,
    /// Where its requests come from (and its follow-ups go).
    queue: Arc<Queue>,
    /// Writes each published snapshot to the state directory, if any.
    persister: Option<Persister>,
}

/// Per-document memory of the reloader.
#[derive(Default)]
struct Memory {
    /// The last judged candidate that is not what is served, with its
    /// verdict: not judged again while its inputs are unchanged.
    candidate: Option<(Key, Verdict)>,
    /// Since when an implicit reload has found the file absent.
    absent_since: Option<Instant>,
}

/// What a verdict depends on: the document's bytes and its schema closure
/// (or why either could not be had).
#[derive(Debug, Clone, PartialEq)]
struct Key {
    /// SHA-256 of the bytes, or why they could not be read.
    doc: Result<String, Rejection>,
    /// SHA-256 of the schema closure, or why it could not be loaded.
    schema: Result<String, Rejection>,
}

impl Key {
    /// The key of what is served.
    fn of_served(d: &ServedDocument) -> Key {
        Key {
            doc: Ok(d.sha256.clone()),
            schema: Ok(d.schema_sha256.clone()),
        }
    }
}

/// The judgement of one candidate.
#[derive(Clone)]
enum Verdict {
    /// Valid; this is what would be served (generation filled at publish).
    Accepted(Arc<ServedDocument>),
    /// Invalid; this is what its status says.
    Rejected(LastError),
}

/// One listed document as read by phase 1 of a reload.
struct Scanned {
    /// Where it was listed.
    path: PathBuf,
    /// The file as the operator sees it in messages.
    label: String,
    /// Its bytes, or why they could not be read.
    bytes: Result<Vec<u8>, Rejection>,
    /// Its schema, or why it could not be loaded.
    schema: Result<Arc<Schema>, Rejection>,
    /// Both hashes, for comparison.
    key: Key,
}

/// What phase 1 decided for a listed document.
enum Plan {
    /// On disk is what is served.
    Unchanged,
    /// Same inputs as the last judged candidate: reuse its verdict.
    Known(Verdict),
    /// New inputs: must be evaluated.
    Evaluate,
}

impl Reloader {
    /// Starts the reloader for `store` on its own thread and returns the
    /// handle that feeds it. Nothing is loaded until the first request:
    /// send `Trigger::Startup` (and await it) to do the initial load.
    /// `observers` are called on the reloader thread after each reload that
    /// did something. Needs no async runtime; [`ReloadHandle::reload`]'s
    /// future works on any executor.
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
        let queue = Arc::new(Queue::default());
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let mut reloader = Reloader {
            config,
            store,
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

    /// Runs one reload and answers everyone who waited for it.
    fn serve(&mut self, batch: Batch) {
        let outcome = self.reload(batch.trigger);
        for w in batch.waiters {
            // A waiter that gave up is not an error.
            let _ = w.send(outcome.clone());
        }
    }

    /// Reads one listed document and its schema (phase 1: no evaluation).
    fn scan(&mut self, name: &str, path: &Path) -> Scanned {
        let label = pipeline::display_path(path);
        let schema = self
            .schemas
            .load(&self.config.schema_dir, name)
            .map_err(|mut r| {
                if r.code == Code::NoSchema {
                    // As `check` says it: on the document, which lacks something.
                    r.file = label.clone();
                }
                r
            });
        let bytes = document::read_capped(path, self.config.limits.max_file_size, &label);
        let key = Key {
            doc: match &bytes {
                Ok(b) => Ok(document::sha256_hex(b)),
                Err(r) => Err(r.clone()),
            },
            schema: match &schema {
                Ok(s) => Ok(s.sha256.clone()),
                Err(r) => Err(r.clone()),
            },
        };
        Scanned {
            path: path.to_path_buf(),
            label,
            bytes,
            schema,
            key,
        }
    }

    /// Judges one candidate (phase 2): parse, validate, then build the
    /// registered type's value (`E_TYPE` if it does not fit). Pure apart
    /// from the clock.
    fn evaluate(
        types: &TypeRegistry,
        name: &str,
        s: &Scanned,
        served: Option<&Arc<ServedDocument>>,
    ) -> Verdict {
        let judged = match (&s.bytes, &s.schema) {
            (Err(r), _) | (Ok(_), Err(r)) => Err(r.clone()),
            (Ok(bytes), Ok(schema)) => {
                pipeline::evaluate(&s.label, bytes, schema).and_then(|parsed| {
                    let typed = types.build(name, &s.label, &parsed, schema)?;
                    Ok(served_document(&s.path, bytes, parsed.value, schema, typed))
                })
            }
        };
        match judged {
            Ok(doc) => Verdict::Accepted(Arc::new(doc)),
            Err(mut rejection) => {
                let sha256 = s.key.doc.as_ref().ok().cloned();
                let same_bytes = served.is_some_and(|d| Some(&d.sha256) == sha256.as_ref());
                if same_bytes && rejection.code == Code::Schema {
                    // Only the schema moved: say that nothing was applied.
                    rejection.problems.push(Problem::bare(
                        "its schema changed and this document does not satisfy the new one; \
                         its last good value and schema stay in force",
                    ));
                }
                Verdict::Rejected(LastError {
                    rejection,
                    sha256,
                    at: SystemTime::now(),
                })
            }
        }
    }

    /// One reload. Returns its outcome, which is also recorded in the status
    /// unless this was an implicit look that found nothing to do.
    fn reload(&mut self, trigger: Trigger) -> ReloadOutcome {
        let started = Instant::now();
        let at = SystemTime::now();
        let explicit = trigger.is_explicit();
        let current = self.store.load_full();
        let old_status = self.store.status();

        // Implicit reloads skip files still being written; the barrier that
        // makes that exact starts before the listing opens the directory.
        let ticket = if explicit {
            None
        } else {
            self.config.unsettled.ticket(&self.config.config_dir)
        };
        // An unreadable directory never removes anything: it is more likely
        // a mount or permission problem than an operator's decision.
        let (listing, authoritative, listing_ok) =
            match pipeline::list_documents(&self.config.config_dir) {
                Ok(listing) => (listing, explicit, true),
                Err(e) => {
                    logging::config_dir_unreadable(&self.config.config_dir, &e, explicit);
                    (BTreeMap::new(), false, false)
                }
            };

        // Schemas of documents that are gone need not stay compiled.
        let listed: HashSet<String> = listing.keys().cloned().collect();
        self.schemas.retain(&listed);

        // Phase 1: read everything, decide what needs judging. If a file
        // was replaced while the set was being read (a ConfigMap `..data`
        // swap, a rename-save, a shared schema rewritten), the reads may mix
        // before and after: read the set again, so a reload never sees a
        // mix that never existed.
        let mut scans = 0u32;
        let (mut scanned, mut skipped, vanished) = loop {
            let before = identities(&listing, &self.config.schema_dir);
            let mut scanned: Vec<(String, Scanned, Plan)> = Vec::new();
            let mut skipped: HashSet<&str> = HashSet::new();
            let mut vanished: Vec<String> = Vec::new();
            for (name, path) in &listing {
                if !explicit && self.config.unsettled.contains(path) {
                    skipped.insert(name);
                    continue;
                }
                let s = self.scan(name, path);
                if s.bytes.as_ref().is_err_and(|r| r.code == Code::Io)
                    && std::fs::symlink_metadata(path).is_err()
                {
                    // Deleted between listing and reading: absent, not broken.
                    vanished.push(name.clone());
                    continue;
                }
                let mem = self.memory.entry(name.clone()).or_default();
                mem.absent_since = None;
                // A served version without its registered typed value
                // (restored from disk) is judged again, so typed readers
                // get one.
                let plan = if current.get(name).is_some_and(|d| {
                    Key::of_served(d) == s.key && self.config.types.is_satisfied_by(name, d)
                }) {
                    Plan::Unchanged
                } else {
                    match &mem.candidate {
                        Some((k, v)) if *k == s.key => Plan::Known(v.clone()),
                        _ => Plan::Evaluate,
                    }
                };
                scanned.push((name.clone(), s, plan));
            }
            scans = scans.saturating_add(1);
            if scans >= MAX_SCANS || identities(&listing, &self.config.schema_dir) == before {
                break (scanned, skipped, vanished);
            }
        };

        // The barrier: once the watcher has caught up with every event
        // before the end of the reads, a file it now knows to be mid-write
        // was read mid-write: skip it like any unsettled file.
        if let Some(ticket) = ticket.filter(|_| listing_ok) {
            let unsettled = &self.config.unsettled;
            if unsettled.catch_up(&self.config.config_dir, ticket, CATCH_UP_TIMEOUT) {
                scanned.retain(|(name, s, _)| {
                    if !unsettled.contains(&s.path) {
                        return true;
                    }
                    if let Some((k, _)) = listing.get_key_value(name) {
                        skipped.insert(k.as_str());
                    }
                    false
                });
            }
        }

        let announced = explicit || scanned.iter().any(|(_, _, p)| matches!(p, Plan::Evaluate));
        if announced {
            for o in &self.observers {
                o.reload_started(trigger);
            }
        }

        // Phase 2: judge what changed.
        struct Judged {
            name: String,
            scanned: Scanned,
            /// `None`: on disk is what is served.
            verdict: Option<Verdict>,
            /// Judged by this reload (not remembered from an earlier one).
            fresh: bool,
        }
        let judged: Vec<Judged> = scanned
            .into_iter()
            .map(|(name, s, plan)| {
                let (verdict, fresh) = match plan {
                    Plan::Unchanged => (None, false),
                    Plan::Known(v) => (Some(v), false),
                    Plan::Evaluate => {
                        let verdict =
                            Self::evaluate(&self.config.types, &name, &s, current.get(&name));
                        (Some(verdict), true)
                    }
                };
                Judged {
                    name,
                    scanned: s,
                    verdict,
                    fresh,
                }
            })
            .collect();

        let blocker = judged.iter().find_map(|j| match &j.verdict {
            Some(Verdict::Rejected(e)) if self.config.all_or_nothing => Some(e.rejection.clone()),
            _ => None,
        });

        // Phase 3: what this reload does to the served set and the status.
        let now = SystemTime::now();
        let mut docs: BTreeMap<String, DocStatus> = old_status.documents.clone();
        let mut accepted: Vec<(String, Arc<ServedDocument>)> = Vec::new();
        let mut rejected: Vec<String> = Vec::new();
        let mut recovered: Vec<String> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        let mut forgotten: Vec<String> = Vec::new();
        let mut state_changed = false;

        for j in &judged {
            let old_state = docs.get(&j.name).map(|d| d.state);
            let mem = self.memory.entry(j.name.clone()).or_default();
            let status = match &j.verdict {
                None => {
                    mem.candidate = None;
                    // A document restored from the state directory has no
                    // status yet: matching it is not a recovery.
                    if old_state.is_some_and(|s| s != DocState::Ok) {
                        recovered.push(j.name.clone());
                    }
                    DocStatus {
                        state: DocState::Ok,
                        source: j.scanned.path.clone(),
                        last_error: None,
                    }
                }
                Some(Verdict::Accepted(doc)) => match &blocker {
                    None => {
                        mem.candidate = None;
                        accepted.push((j.name.clone(), doc.clone()));
                        DocStatus {
                            state: DocState::Ok,
                            source: j.scanned.path.clone(),
                            last_error: None,
                        }
                    }
                    Some(b) => {
                        mem.candidate =
                            Some((j.scanned.key.clone(), Verdict::Accepted(doc.clone())));
                        if j.fresh || old_state != Some(DocState::Error) {
                            rejected.push(j.name.clone());
                        }
                        DocStatus {
                            state: DocState::Error,
                            source: j.scanned.path.clone(),
                            last_error: Some(LastError {
                                rejection: held_back(&j.scanned.label, b),
                                sha256: j.scanned.key.doc.as_ref().ok().cloned(),
                                at: now,
                            }),
                        }
                    }
                },
                Some(Verdict::Rejected(e)) => {
                    mem.candidate = Some((j.scanned.key.clone(), Verdict::Rejected(e.clone())));
                    if j.fresh || old_state != Some(DocState::Error) {
                        rejected.push(j.name.clone());
                    }
                    DocStatus {
                        state: DocState::Error,
                        source: j.scanned.path.clone(),
                        last_error: Some(e.clone()),
                    }
                }
            };
            state_changed |= old_state != Some(status.state);
            docs.insert(j.name.clone(), status);
        }

        // Documents known but not listed (or vanished while reading).
        let absent: BTreeSet<String> = current
            .documents
            .keys()
            .chain(old_status.documents.keys())
            .filter(|n| !listing.contains_key(*n) || vanished.contains(n))
            .filter(|n| !skipped.contains(n.as_str()))
            .cloned()
            .collect();
        for name in absent {
            if authoritative && blocker.is_none() {
                if current.documents.contains_key(&name) {
                    removed.push(name.clone());
                } else {
                    forgotten.push(name.clone());
                }
                docs.remove(&name);
                self.memory.remove(&name);
                continue;
            }
            let mem = self.memory.entry(name.clone()).or_default();
            let since = *mem.absent_since.get_or_insert_with(Instant::now);
            let due = since.checked_add(self.config.debounce);
            let overdue = explicit || due.is_none_or(|d| d <= Instant::now());
            if !overdue {
                if let Some(d) = due {
                    self.queue.follow_up(d);
                }
                continue;
            }
            let old = docs.get(&name);
            if old.is_some_and(|d| d.state == DocState::Missing) {
                continue;
            }
            let source = old
                .map(|d| d.source.clone())
                .or_else(|| current.get(&name).map(|d| d.source.clone()))
                .unwrap_or_else(|| self.config.config_dir.join(format!("{name}.toml")));
            let label = pipeline::display_path(&source);
            let served = current.documents.contains_key(&name);
            let message = if served {
                "the file is gone; its last good version is still served \
                 (an explicit reload removes it)"
            } else {
                "the file is gone (an explicit reload forgets it)"
            };
            docs.insert(
                name.clone(),
                DocStatus {
                    state: DocState::Missing,
                    source,
                    last_error: Some(LastError {
                        rejection: Rejection::bare(Code::Missing, label, message),
                        sha256: None,
                        at: now,
                    }),
                },
            );
            missing.push(name);
            state_changed = true;
        }

        let publish = !accepted.is_empty() || !removed.is_empty();
        let does_something = announced || publish || state_changed || !forgotten.is_empty();
        if !does_something {
            // Not a reload, but a failed persist is retried (the disk may
            // have been freed since).
            if self.persist(&current) {
                let persist = self.persister.as_ref().map(Persister::status);
                self.store.update_status(|s| s.persist = persist);
            }
            logging::nothing_changed(trigger);
            return ReloadOutcome {
                trigger,
                at,
                duration: started.elapsed(),
                accepted: Vec::new(),
                rejected: Vec::new(),
                removed: Vec::new(),
                generation: current.generation,
            };
        }
        if !announced {
            // No evaluation, but a publish or a state change: still a reload.
            for o in &self.observers {
                o.reload_started(trigger);
            }
        }

        // Phase 4: tell, publish, record.
        for j in judged.iter().filter(|j| rejected.contains(&j.name)) {
            if let Some(DocStatus {
                last_error: Some(e),
                ..
            }) = docs.get(&j.name)
            {
                logging::document_rejected(
                    &j.name,
                    &e.rejection,
                    current.get(&j.name).map(|d| d.generation),
                );
            }
        }
        for name in &missing {
            logging::document_missing(name, current.get(name).map(|d| d.generation));
        }
        for name in &recovered {
            logging::document_recovered(name, current.get(name).map(|d| d.generation));
        }

        let snapshot = if publish {
            // ok: saturating — a generation from a corrupt state file must
            // not panic; a real one never gets near u64::MAX.
            let generation = current.generation.saturating_add(1);
            let mut documents = current.documents.clone();
            for name in &removed {
                documents.remove(name);
            }
            for (name, doc) in &accepted {
                let mut d = ServedDocument::clone(doc);
                d.generation = generation;
                d.loaded_at = now;
                documents.insert(name.clone(), Arc::new(d));
            }
            let snapshot = Arc::new(Snapshot {
                generation,
                published_at: now,
                documents,
            });
            if let Some(p) = &mut self.persister {
                // The exact inputs of what was just published, for the state.
                let names: HashSet<&str> = accepted.iter().map(|(n, _)| n.as_str()).collect();
                for j in judged.iter().filter(|j| names.contains(j.name.as_str())) {
                    if let (Ok(bytes), Ok(schema)) = (&j.scanned.bytes, &j.scanned.schema) {
                        p.accepted(&j.name, bytes, schema);
                    }
                }
            }
            snapshot
        } else {
            current.clone()
        };
        // Part of the reload: done before anyone is told it finished.
        let refused_startup =
            trigger == Trigger::Startup && docs.values().any(|d| d.state != DocState::Ok);
        let refused = refused_startup && !self.persister.as_ref().is_some_and(Persister::restored);
        if !refused {
            self.persist(&snapshot);
        }

        // Publish: the snapshot, then at once the status that goes with it,
        // and only then wake blocking queries and subscribers, so that what
        // they read after waking is the snapshot *and* the status of this
        // reload (never the new generation beside the last reload's status).
        if publish {
            self.store.store_snapshot(snapshot.clone());
        }

        let outcome = ReloadOutcome {
            trigger,
            at,
            duration: started.elapsed(),
            accepted: accepted.iter().map(|(n, _)| n.clone()).collect(),
            rejected,
            removed,
            generation: snapshot.generation,
        };
        let status = self.store.update_status(|s| {
            s.documents = docs;
            s.counters = Counters {
                reloads: s.counters.reloads.saturating_add(1),
                rejections: s
                    .counters
                    .rejections
                    .saturating_add(u64::try_from(outcome.rejected.len()).unwrap_or(u64::MAX)),
            };
            s.last_reload = Some(outcome.clone());
            s.persist = self.persister.as_ref().map(Persister::status);
            if s.all_ok() {
                s.last_success_at = Some(SystemTime::now());
            }
        });
        // A refused startup is never served: saying "published" before the
        // daemon's "not starting" would be a lie in the log.
        if publish && !refused {
            let generation = snapshot.generation;
            for (name, doc) in &accepted {
                logging::document_accepted(name, &doc.source, generation, &doc.sha256);
            }
            for name in &outcome.removed {
                let source = current
                    .get(name)
                    .map(|d| d.source.clone())
                    .unwrap_or_default();
                logging::document_removed(name, &source);
            }
            logging::snapshot_published(generation, &outcome.accepted, &outcome.removed);
        }
        if publish {
            self.store.notify_generation(snapshot.generation);
        }
        for o in &self.observers {
            o.reload_finished(&outcome, &status, &snapshot);
        }
        outcome
    }
}

impl Reloader {
    /// Persists `snapshot` to the state directory unless it is there
    /// already. Not called after a startup that leaves a document invalid
    /// when nothing was restored: `hotconf run` refuses to start then (SPEC
    /// §2), and what it published, never served, must not become a last
    /// good state that the next start would run on. Returns whether
    /// anything was attempted (its result is in the persister's status and
    /// the logs; a failure never unpublishes).
    fn persist(&mut self, snapshot: &Snapshot) -> bool {
        self.persister
            .as_mut()
            .and_then(|p| p.persist(snapshot))
            .is_some()
    }
}

/// How many times one reload reads the document set while files keep
/// being replaced under it, before it settles for the last read.
const MAX_SCANS: u32 = 5;

/// How long an implicit reload waits for the watcher to catch up with the
/// events before its reads ended (normally tens of microseconds).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// What each listed file is (device, inode; symlinks followed): a change
/// means it was replaced.
fn identities(listing: &BTreeMap<String, PathBuf>, schema_dir: &Path) -> Identities {
    use std::os::unix::fs::MetadataExt;
    let documents = listing
        .values()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        .collect();
    // Schema files are shared by many documents and each document's
    // closure is read separately, so a swap or an in-place rewrite of a
    // shared file in the middle of the reads must be noticed too: identity
    // plus size and modification time, for every file of the directory.
    let mut schemas: Vec<SchemaIdentity> = std::fs::read_dir(schema_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let meta = std::fs::metadata(e.path())
                        .ok()
                        .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
                    (e.file_name(), meta)
                })
                .collect()
        })
        .unwrap_or_default();
    schemas.sort();
    Identities { documents, schemas }
}

/// One schema directory entry's name and (dev, inode, size, mtime s, ns).
type SchemaIdentity = (std::ffi::OsString, Option<(u64, u64, u64, i64, i64)>);

/// What must not change while a reload reads its inputs (see phase 1).
#[derive(Debug, PartialEq, Eq)]
struct Identities {
    /// Each listed document's (device, inode), in listing order.
    documents: Vec<Option<(u64, u64)>>,
    /// Every schema directory entry, sorted by name.
    schemas: Vec<SchemaIdentity>,
}

/// The rejection of a valid document held back because `blocker` was
/// rejected in the same all-or-nothing reload.
fn held_back(label: &str, blocker: &Rejection) -> Rejection {
    Rejection::bare(
        blocker.code,
        label,
        format!(
            "valid, but not applied: --all-or-nothing and {} was rejected",
            blocker.file
        ),
    )
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
