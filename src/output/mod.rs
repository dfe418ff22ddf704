//! Outputs (`--outputs FILE`): files rendered from the served documents for
//! programs that only read files (nginx, HAProxy), each checked as a
//! candidate before it replaces anything, then applied.
//!
//! Shape: [`Outputs::load`] reads the outputs file (invalid: the daemon
//! does not start). Its [`Outputs::observer`] is a [`ReloadObserver`] that
//! only takes note — a new generation, an explicit reload — and wakes the
//! outputs' own threads, so outputs never delay the reloader or a publish.
//! [`Outputs::start`] starts one manager thread (re-reads the outputs file
//! after every explicit reload; a broken one keeps the previous
//! definition) and one worker thread per output: one run at a time per
//! output, and requests that come during a run coalesce into one more run
//! with the snapshot current when it starts. Each run renders; when the
//! documents it reads did not change since its last run it stops there;
//! byte-identical to the destination → nothing; otherwise candidate, check,
//! rename, apply ([`run`]).
//!
//! State of its own: outputs never write the store. Their status lives in
//! an `ArcSwap<OutputsStatus>` here, which `/v1/status` and `/metrics` read
//! and merge into their answers ([`OutputsStatus::to_json`],
//! [`Outputs::encode_metrics`]).
//!
//! Secrets: no rendered byte is logged or shown; every reason (template
//! error, command stderr) is scrubbed of the secret values of the documents
//! the output reads; the rendered file's hash is shown to trusted peers
//! only when it may hold a secret.

pub mod definition;
pub mod render;
pub mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde_json::{json, Value};

use crate::output::definition::{Definition, Definitions};
use crate::pipeline::document::sha256_hex;
use crate::pipeline::rejection::Rejection;
use crate::store::snapshot::Snapshot;
use crate::store::status::{ReloadObserver, ReloadOutcome, Status, Trigger};
use crate::store::Store;

/// State of one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// Not rendered yet since it was defined.
    Pending,
    /// The destination holds the latest render (and `apply` worked).
    Ok,
    /// The latest run failed (see `last_error`).
    Error,
}

impl OutputState {
    /// `pending`, `ok` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputState::Pending => "pending",
            OutputState::Ok => "ok",
            OutputState::Error => "error",
        }
    }
}

/// What is known about one output.
#[derive(Debug, Clone)]
pub struct OutputStatus {
    /// ok, error or pending.
    pub state: OutputState,
    /// The file written.
    pub destination: PathBuf,
    /// The generation the destination was last rendered from (by this
    /// run of the daemon, or found identical at startup).
    pub generation: Option<u64>,
    /// SHA-256 of the destination's content as last written or found.
    pub sha256: Option<String>,
    /// Whether that content may hold a secret (the hash is then shown to
    /// trusted peers only).
    pub has_secrets: bool,
    /// When `apply` last ran successfully.
    pub applied_at: Option<SystemTime>,
    /// The latest failure (scrubbed of secrets), cleared by a success.
    pub last_error: Option<(String, SystemTime)>,
    /// Renders done.
    pub renders: u64,
    /// Candidates rejected by `check`.
    pub checks_failed: u64,
    /// `apply` failures.
    pub applies_failed: u64,
}

impl OutputStatus {
    fn new(def: &Definition) -> Self {
        OutputStatus {
            state: OutputState::Pending,
            destination: def.destination.clone(),
            generation: None,
            sha256: None,
            has_secrets: false,
            applied_at: None,
            last_error: None,
            renders: 0,
            checks_failed: 0,
            applies_failed: 0,
        }
    }
}

/// Everything the outputs report: per output, and the outputs file's own
/// last problem.
#[derive(Debug, Clone, Default)]
pub struct OutputsStatus {
    /// The outputs file.
    pub file: PathBuf,
    /// Why the last re-read of the outputs file was refused (the previous
    /// definition stays in force), cleared by a good one.
    pub definition_error: Option<(Vec<Rejection>, SystemTime)>,
    /// Each output by name.
    pub outputs: BTreeMap<String, OutputStatus>,
}

impl OutputsStatus {
    /// The `outputs` member of `/v1/status` (`{NAME: {state, destination,
    /// generation, sha256, applied_at, last_error}}`) and the outputs
    /// file's own state (`outputs_file`: `{path, ok, last_error}`).
    pub fn to_json(&self, trusted: bool) -> (Value, Value) {
        let outputs: serde_json::Map<String, Value> = self
            .outputs
            .iter()
            .map(|(name, o)| {
                let sha256 = if trusted || !o.has_secrets {
                    o.sha256.clone()
                } else {
                    None
                };
                (
                    name.clone(),
                    json!({
                        "state": o.state.as_str(),
                        "destination": o.destination.display().to_string(),
                        "generation": o.generation,
                        "sha256": sha256,
                        "applied_at": o.applied_at.and_then(rfc3339),
                        "last_error": o.last_error.as_ref().map(|(message, at)| json!({
                            "message": message,
                            "at": rfc3339(*at),
                        })),
                    }),
                )
            })
            .collect();
        let file = json!({
            "path": self.file.display().to_string(),
            "ok": self.definition_error.is_none(),
            "last_error": self.definition_error.as_ref().map(|(rejections, at)| json!({
                "problems": rejections.iter().flat_map(|r| r.flat()).collect::<Vec<_>>(),
                "at": rfc3339(*at),
            })),
        });
        (Value::Object(outputs), file)
    }

    /// Whether every output is `ok` and the outputs file was accepted.
    pub fn all_ok(&self) -> bool {
        self.definition_error.is_none() && self.outputs.values().all(|o| o.state == OutputState::Ok)
    }
}

fn rfc3339(t: SystemTime) -> Option<String> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + d).to_string())
}

/// What the manager thread is asked to do.
#[derive(Debug, Default)]
struct Requests {
    /// A new generation was published.
    publish: bool,
    /// An explicit reload ended: re-read the outputs file.
    reread: bool,
    /// The daemon is stopping.
    stop: bool,
}

/// What one worker is asked to do.
#[derive(Debug, Default)]
struct WorkerRequests {
    /// Run again (coalesces: many requests, one run).
    run: bool,
    /// An explicit reload: a run that failed is tried again even when its
    /// inputs did not change (the program's other files may have).
    retry: bool,
    /// Stop after the current run.
    stop: bool,
}

/// A worker's mailbox.
#[derive(Debug, Default)]
struct Mailbox<T> {
    state: Mutex<T>,
    wake: Condvar,
}

impl<T: Default> Mailbox<T> {
    fn update(&self, f: impl FnOnce(&mut T)) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        self.wake.notify_all();
    }

    /// Waits until `ready` holds, then takes the requests (leaving
    /// defaults).
    fn take(&self, ready: impl Fn(&T) -> bool) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !ready(&s) {
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut *s)
    }
}

/// Shared between the handle, the observer and the threads.
#[derive(Debug)]
struct Shared {
    /// The outputs file.
    file: PathBuf,
    /// What `/v1/status` shows.
    status: ArcSwap<OutputsStatus>,
    /// Serializes read-modify-write updates of `status`.
    status_write: Mutex<()>,
    /// The manager's requests.
    manager: Mailbox<Requests>,
    /// The definitions in force until the manager starts.
    initial: Mutex<Option<Definitions>>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut OutputsStatus)) {
        let _guard = self.status_write.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = OutputsStatus::clone(&self.status.load());
        f(&mut status);
        self.status.store(Arc::new(status));
    }

    fn update_output(&self, name: &str, f: impl FnOnce(&mut OutputStatus)) {
        self.update(|s| {
            if let Some(o) = s.outputs.get_mut(name) {
                f(o);
            }
        });
    }
}

/// The outputs of one daemon: load, observe, start, read status, stop.
#[derive(Debug, Clone)]
pub struct Outputs {
    shared: Arc<Shared>,
}

/// The manager thread, once started; joined by [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outputs {
    /// Reads and validates the outputs file: every problem with line:col,
    /// or outputs ready to observe and start.
    pub fn load(file: &Path) -> Result<Outputs, Vec<Rejection>> {
        let defs = definition::load(file)?;
        let status = OutputsStatus {
            file: file.to_path_buf(),
            definition_error: None,
            outputs: defs
                .outputs
                .iter()
                .map(|(n, d)| (n.clone(), OutputStatus::new(d)))
                .collect(),
        };
        Ok(Outputs {
            shared: Arc::new(Shared {
                file: file.to_path_buf(),
                status: ArcSwap::from_pointee(status),
                status_write: Mutex::new(()),
                manager: Mailbox::default(),
                initial: Mutex::new(Some(defs)),
            }),
        })
    }

    /// The observer to give the reloader: notes publishes and explicit
    /// reloads; never blocks (a mutex held only to set a flag).
    pub fn observer(&self) -> Arc<dyn ReloadObserver> {
        Arc::new(Observer {
            shared: self.shared.clone(),
            seen: Mutex::new(None),
        })
    }

    /// The current status.
    pub fn status(&self) -> Arc<OutputsStatus> {
        self.shared.status.load_full()
    }

    /// Starts the outputs' threads on `store`; the first thing each output
    /// does is render from the current snapshot and compare with its
    /// destination, so a restart reloads nothing that did not change.
    pub fn start(&self, store: Arc<Store>) -> std::io::Result<Running> {
        let defs = self
            .shared
            .initial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("hotconf-outputs".into())
            .spawn(move || manage(shared, store, defs))?;
        Ok(Running {
            shared: self.shared.clone(),
            thread: Some(thread),
        })
    }

    /// The outputs' Prometheus families (`hotconf_output_renders_total`,
    /// `hotconf_output_checks_failed_total`,
    /// `hotconf_output_applies_failed_total`, `hotconf_output_ok`, by
    /// `output`), in the text format without the closing `# EOF`.
    pub fn encode_metrics(&self) -> String {
        use prometheus_client::encoding::EncodeLabelSet;
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;

        #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Labels {
            output: String,
        }
        let status = self.status();
        let renders = Family::<Labels, Counter>::default();
        let checks = Family::<Labels, Counter>::default();
        let applies = Family::<Labels, Counter>::default();
        let ok = Family::<Labels, Gauge>::default();
        for (name, o) in &status.outputs {
            let l = Labels {
                output: name.clone(),
            };
            renders.get_or_create(&l).inc_by(o.renders);
            checks.get_or_create(&l).inc_by(o.checks_failed);
            applies.get_or_create(&l).inc_by(o.applies_failed);
            ok.get_or_create(&l)
                .set(i64::from(o.state == OutputState::Ok));
        }
        let mut r = prometheus_client::registry::Registry::with_prefix("hotconf_output");
        r.register("renders", "Renders of the output", renders);
        r.register("checks_failed", "Candidates its check rejected", checks);
        r.register("applies_failed", "Failures of its apply command", applies);
        r.register("ok", "1 when the output is ok", ok);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out.strip_suffix("# EOF\n").unwrap_or(&out).to_string()
    }
}

impl Running {
    /// Stops every output after its current run (bounded by its command
    /// timeout) and waits for them.
    pub fn stop(mut self) {
        self.shared.manager.update(|r| r.stop = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.manager.update(|r| r.stop = true);
    }
}

/// Takes note of publishes and explicit reloads for the manager.
struct Observer {
    shared: Arc<Shared>,
    /// The last generation it saw.
    seen: Mutex<Option<u64>>,
}

impl ReloadObserver for Observer {
    fn reload_finished(&self, outcome: &ReloadOutcome, _status: &Status, snapshot: &Snapshot) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let published = *seen != Some(snapshot.generation);
        *seen = Some(snapshot.generation);
        drop(seen);
        let reread = outcome.trigger.is_explicit() && outcome.trigger != Trigger::Startup;
        if published || reread {
            self.shared.manager.update(|r| {
                r.publish |= published;
                r.reread |= reread;
            });
        }
    }
}

/// One worker: its definition, its mailbox, its thread.
struct Worker {
    def: Definition,
    mailbox: Arc<Mailbox<WorkerRequests>>,
    thread: std::thread::JoinHandle<()>,
}

fn spawn_worker(shared: &Arc<Shared>, store: &Arc<Store>, def: Definition) -> Option<Worker> {
    let mailbox = Arc::new(Mailbox::<WorkerRequests>::default());
    mailbox.update(|r| r.run = true);
    let (s, st, d, m) = (shared.clone(), store.clone(), def.clone(), mailbox.clone());
    let thread = std::thread::Builder::new()
        .name(format!("hotconf-output-{}", def.name))
        .spawn(move || work(s, st, d, m));
    match thread {
        Ok(thread) => Some(Worker {
            def,
            mailbox,
            thread,
        }),
        Err(e) => {
            let reason = format!("cannot start its thread: {e}");
            tracing::warn!(event = "output_failed", output = %def.name, stage = "start", reason = %reason, "output not started");
            shared.update_output(&def.name, |o| {
                o.state = OutputState::Error;
                o.last_error = Some((reason, SystemTime::now()));
            });
            None
        }
    }
}

fn stop_worker(w: Worker) {
    w.mailbox.update(|r| r.stop = true);
    let _ = w.thread.join();
}

/// The manager: starts workers, re-reads the outputs file after explicit
/// reloads, forwards publishes, stops everything at the end.
fn manage(shared: Arc<Shared>, store: Arc<Store>, defs: Definitions) {
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    for (name, def) in defs.outputs {
        if let Some(w) = spawn_worker(&shared, &store, def) {
            workers.insert(name, w);
        }
    }
    loop {
        let req = shared.manager.take(|r| r.publish || r.reread || r.stop);
        if req.stop {
            break;
        }
        if req.reread {
            match definition::load(&shared.file) {
                Err(rejections) => {
                    let lines: Vec<String> = rejections.iter().flat_map(|r| r.lines()).collect();
                    tracing::warn!(
                        event = "outputs_rejected",
                        file = %shared.file.display(),
                        problems = %lines.join("; "),
                        "the outputs file is invalid; keeping the previous outputs"
                    );
                    shared.update(|s| s.definition_error = Some((rejections, SystemTime::now())));
                }
                Ok(new) => {
                    let changed: Vec<String> = workers
                        .iter()
                        .filter(|(n, w)| new.outputs.get(*n) != Some(&w.def))
                        .map(|(n, _)| n.clone())
                        .collect();
                    for name in changed {
                        if let Some(w) = workers.remove(&name) {
                            stop_worker(w);
                        }
                    }
                    shared.update(|s| {
                        s.definition_error = None;
                        s.outputs.retain(|n, _| workers.contains_key(n));
                        for (n, d) in &new.outputs {
                            if !workers.contains_key(n) {
                                s.outputs.insert(n.clone(), OutputStatus::new(d));
                            }
                        }
                    });
                    for (name, def) in new.outputs {
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            workers.entry(name)
                        {
                            if let Some(w) = spawn_worker(&shared, &store, def) {
                                slot.insert(w);
                            }
                        }
                    }
                }
            }
        }
        for w in workers.values() {
            w.mailbox.update(|r| {
                r.run = true;
                r.retry |= req.reread;
            });
        }
    }
    for (_, w) in std::mem::take(&mut workers) {
        stop_worker(w);
    }
}

/// What a run's render depended on: the served hash of every document the
/// output reads, and the generation when the template reads it.
type Inputs = (BTreeMap<String, Option<String>>, Option<u64>);

fn inputs(def: &Definition, snapshot: &Snapshot) -> Inputs {
    let docs = def
        .documents
        .iter()
        .map(|n| (n.clone(), snapshot.get(n).map(|d| d.sha256.clone())))
        .collect();
    (docs, def.uses_generation.then_some(snapshot.generation))
}

/// One output's thread: a run per (coalesced) request.
fn work(
    shared: Arc<Shared>,
    store: Arc<Store>,
    def: Definition,
    mailbox: Arc<Mailbox<WorkerRequests>>,
) {
    let mut last: Option<Inputs> = None;
    let mut last_ok = false;
    loop {
        let req = mailbox.take(|r| r.run || r.stop);
        if req.stop {
            return;
        }
        if req.retry && !last_ok {
            last = None;
        }
        let snapshot = store.load_full();
        let now = inputs(&def, &snapshot);
        if last.as_ref() == Some(&now) {
            // Nothing this output reads changed: no render.
            shared.update_output(&def.name, |o| {
                if o.state == OutputState::Ok {
                    o.generation = Some(snapshot.generation);
                }
            });
            continue;
        }
        last = Some(now);
        last_ok = run_output(&shared, &def, &snapshot);
    }
}

/// Renders and runs `def` once from `snapshot`, recording the result.
/// Returns whether it ended `ok`.
fn run_output(shared: &Shared, def: &Definition, snapshot: &Snapshot) -> bool {
    let secrets = render::secrets(def, snapshot);
    let has_secrets = render::reads_secrets(def, snapshot);
    let generation = snapshot.generation;
    let name = def.name.as_str();
    let rendered = render::render(def, snapshot);
    shared.update_output(name, |o| o.renders = o.renders.saturating_add(1));
    let rendered = match rendered {
        Ok(bytes) => bytes,
        Err(reason) => {
            fail(
                shared,
                name,
                "render",
                &render::scrub(&reason, &secrets),
                generation,
            );
            return false;
        }
    };
    let sha256 = sha256_hex(&rendered);
    match run::run(def, &rendered, false) {
        Ok(run::Outcome::Unchanged) | Ok(run::Outcome::Checked) => {
            shared.update_output(name, |o| {
                o.state = OutputState::Ok;
                o.generation = Some(generation);
                o.sha256 = Some(sha256);
                o.has_secrets = has_secrets;
                o.last_error = None;
            });
            true
        }
        Ok(run::Outcome::Replaced { apply }) => {
            let now = SystemTime::now();
            shared.update_output(name, |o| {
                o.generation = Some(generation);
                o.sha256 = Some(sha256);
                o.has_secrets = has_secrets;
            });
            match apply {
                Ok(()) => {
                    tracing::info!(
                        event = "output_applied",
                        output = %name,
                        destination = %def.destination.display(),
                        generation,
                        "output {name} written and applied"
                    );
                    shared.update_output(name, |o| {
                        o.state = OutputState::Ok;
                        o.applied_at = def.apply.is_some().then_some(now).or(o.applied_at);
                        o.last_error = None;
                    });
                    true
                }
                Err(reason) => {
                    shared.update_output(name, |o| {
                        o.applies_failed = o.applies_failed.saturating_add(1)
                    });
                    let reason = format!(
                        "the file was replaced but apply failed: {}",
                        render::scrub(&reason, &secrets)
                    );
                    fail(shared, name, "apply", &reason, generation);
                    false
                }
            }
        }
        Err(failure) => {
            if failure.stage == "check" {
                shared.update_output(name, |o| {
                    o.checks_failed = o.checks_failed.saturating_add(1)
                });
            }
            let reason = format!(
                "{} failed, the old file is kept: {}",
                failure.stage,
                render::scrub(&failure.reason, &secrets)
            );
            fail(shared, name, failure.stage, &reason, generation);
            false
        }
    }
}

/// Marks `name` `error` with a (scrubbed) reason and logs it.
fn fail(shared: &Shared, name: &str, stage: &str, reason: &str, generation: u64) {
    tracing::warn!(
        event = "output_failed",
        output = %name,
        stage,
        generation,
        reason = %reason,
        "output {name}: {reason}"
    );
    shared.update_output(name, |o| {
        o.state = OutputState::Error;
        o.last_error = Some((reason.to_string(), SystemTime::now()));
    });
}

/// One output's dry-run result: its name, and why it failed if it did.
pub type DryRun = (String, Result<(), String>);

/// `hotconf check --outputs FILE`: loads the outputs file, renders every
/// output from `values` (the documents of the config directory, already
/// validated), writes each candidate beside its destination and runs its
/// `check` — without replacing or applying anything. One line per output
/// on the returned list: `Ok` names what passed, `Err` why not.
pub fn dry_run(file: &Path, snapshot: &Snapshot) -> Result<Vec<DryRun>, Vec<Rejection>> {
    let defs = definition::load(file)?;
    let mut out = Vec::new();
    for (name, def) in defs.outputs {
        let secrets = render::secrets(&def, snapshot);
        let result = render::render(&def, snapshot)
            .map_err(|e| format!("render failed: {e}"))
            .and_then(|bytes| {
                run::run(&def, &bytes, true)
                    .map(|_| ())
                    .map_err(|f| format!("{} failed: {}", f.stage, f.reason))
            })
            .map_err(|e| render::scrub(&e, &secrets));
        out.push((name, result));
    }
    Ok(out)
}

/// The snapshot `hotconf check --outputs` renders from: every document of
/// `config_dir`, validated as the daemon would (generation 0). Any invalid
/// document is an error: the dry run renders only what would be served.
pub fn snapshot_from_dirs(
    config_dir: &Path,
    schema_dir: &Path,
    limits: crate::pipeline::Limits,
) -> Result<Snapshot, Vec<Rejection>> {
    let rejections = crate::pipeline::check(config_dir, schema_dir, &[], limits);
    if !rejections.is_empty() {
        return Err(rejections);
    }
    let mut snapshot = Snapshot::empty();
    let mut cache = crate::pipeline::schema::SchemaCache::new();
    let docs = crate::pipeline::list_documents(config_dir).map_err(|e| {
        vec![Rejection::bare(
            crate::pipeline::rejection::Code::Io,
            crate::pipeline::display_path(config_dir),
            format!("cannot list the config directory: {e}"),
        )]
    })?;
    for (name, path) in docs {
        let label = crate::pipeline::display_path(&path);
        let bytes = crate::pipeline::document::read_capped(&path, limits.max_file_size, &label)
            .map_err(|r| vec![r])?;
        let schema = cache.load(schema_dir, &name).map_err(|r| vec![r])?;
        let parsed = crate::pipeline::evaluate(&label, &bytes, &schema).map_err(|r| vec![r])?;
        let served = crate::store::served_document(&path, &bytes, parsed.value, &schema, None);
        snapshot.documents.insert(name, Arc::new(served));
    }
    Ok(snapshot)
}
