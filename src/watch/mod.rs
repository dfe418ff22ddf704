//! File watching: turns raw inotify events (through `notify`, without its
//! debouncers) into "look again" signals for the reloader, at once when
//! content is final and after `--debounce` of quiet when it may not be.
//!
//! What it does:
//!
//! - Watches the config and schema **directories** (never files, so editor
//!   rename-saves, `sed -i`, delete/recreate and ConfigMap `..data` swaps
//!   never lose the watch).
//! - Keeps a small state machine per path. A rename into place, the creation
//!   of a symlink (or of a directory), a writer closing the file
//!   (`IN_CLOSE_WRITE`) mean the content is complete: the reloader is
//!   signalled immediately, from `notify`'s event callback itself, with no
//!   timer and no thread hop on that path. A bare modification (or the
//!   creation of a regular file) without a close marks the path *unsettled*
//!   in the shared [`Unsettled`] set (implicit reloads skip it) and waits
//!   for `debounce` of quiet, trailing edge; then the path settles and the
//!   reloader is signalled.
//! - Events are hints, never truth: a signal says "look again"; the reloader
//!   re-reads and compares hashes. Events on entries that cannot change what
//!   is served by themselves (editor droppings such as `app.toml~`, `4913`,
//!   `.app.toml.swp`, writers' temp files, removals) are still reasons to look
//!   again, but they are folded into one deferred signal `debounce` later,
//!   so a reload never runs in the middle of an editor's save dance (vim
//!   renames the original away before it writes the new file).
//! - It keeps the barrier of [`Unsettled`] current: it counts the opens of
//!   each watched directory itself, in order with every other event, so an
//!   implicit reload can wait until every write that began before its reads
//!   ended is known (and skip a file it read mid-write).
//! - A queue overflow (`need_rescan`) or a watcher error asks for a full
//!   rescan. A watched directory that is deleted, renamed away or replaced
//!   is re-watched as soon as it reappears (its parent is watched while it
//!   is gone, with a retry timer as a safety net), then a rescan is asked.
//! - When inotify cannot be used (no instance, watch limit reached) the
//!   watcher says so through [`WatchHealth`], logs `watch_degraded` at WARN,
//!   keeps retrying, and the daemon keeps running on the poll.
//!
//! What it deliberately does not do: read files, decide what a document is,
//! or touch the store. It never blocks the reloader; the reloader never
//! waits for it (except, bounded, at the barrier).
//!
//! Threads: events are classified on `notify`'s inotify thread, in the
//! callback, under a short lock (`Core`). One `hotconf-watch` thread owns
//! the `notify` watcher and does what the callback must not (adding and
//! removing watches from inside `notify`'s callback would deadlock): timers,
//! (re-)watching directories, retries, health.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

mod unsettled;

pub use unsettled::Unsettled;

/// How often a lost directory or a failed inotify setup is retried when no
/// event says it can be retried now.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// What the watcher tells its sink. Both mean "re-read and compare"; they
/// differ only in why, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchSignal {
    /// An event says something may have changed.
    Changed,
    /// Events may have been lost (queue overflow, watcher error, a watch
    /// (re-)established, watching degraded or restored): look at everything.
    Rescan,
}

/// Whether file watching works; shared between the watcher (the only
/// writer) and whoever reports status.
///
/// The watcher sends a [`WatchSignal::Rescan`] whenever the health changes;
/// `hotconf run` copies [`WatchHealth::degraded`] into
/// `Status.watch_degraded` then (a status-only write: no generation, no
/// counter, nobody woken).
#[derive(Debug, Default)]
pub struct WatchHealth {
    /// Why watching is degraded; `None` when every directory is watched.
    reason: Mutex<Option<String>>,
}

impl WatchHealth {
    /// A healthy state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Why watching is degraded (the daemon relies on the poll), or `None`.
    pub fn degraded(&self) -> Option<String> {
        self.reason.lock().map(|r| r.clone()).unwrap_or(None)
    }

    /// Sets the reason; returns whether it changed.
    fn set(&self, reason: Option<String>) -> bool {
        match self.reason.lock() {
            Ok(mut r) if *r != reason => {
                *r = reason;
                true
            }
            _ => false,
        }
    }
}

/// Running file watcher. Dropping it stops the watching thread and removes
/// every inotify watch.
#[derive(Debug)]
pub struct Watcher {
    /// Wakes the watcher thread (shares one queue with the callback's
    /// requests).
    tx: Sender<Msg>,
    /// Joined on drop so no signal is sent after the watcher is gone.
    thread: Option<JoinHandle<()>>,
}

/// What the watcher thread receives.
#[derive(Debug)]
enum Msg {
    /// Watched directory `i` itself disappeared (removed, renamed away).
    DirLost(usize),
    /// Something appeared at watched directory `i`'s path.
    DirAppeared(usize),
    /// Retry the inotify setup now (an error said the limits bit).
    Setup,
    /// A symlink (or something links resolve through) changed: resolve the
    /// links again and watch their targets' directories.
    Relink,
    /// A timer became due earlier than the thread was sleeping for.
    Wake,
    /// Shut down.
    Stop,
}

/// The sink, callable from both threads.
type Sink = Arc<Mutex<Box<dyn Fn(WatchSignal) + Send>>>;

/// Calls the sink.
fn emit(sink: &Sink, s: Option<WatchSignal>) {
    if let Some(s) = s {
        tracing::trace!(signal = ?s, "watch signal");
        if let Ok(f) = sink.lock() {
            f(s);
        }
    }
}

impl Watcher {
    /// Starts watching `dirs` (non-recursively); `sink` is called on
    /// `notify`'s thread or on the watcher thread, must be quick, and must
    /// not block (in the daemon it calls `ReloadHandle::request`).
    ///
    /// Never fails because of inotify: if watching cannot be set up, that is
    /// reported through `health` and retried. Fails only if the thread
    /// cannot be spawned.
    pub fn start(
        dirs: &[PathBuf],
        debounce: Duration,
        unsettled: Arc<Unsettled>,
        health: Arc<WatchHealth>,
        sink: impl Fn(WatchSignal) + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let (tx, rx) = mpsc::channel();
        let sink: Sink = Arc::new(Mutex::new(Box::new(sink)));
        let mut thread = WatchThread::new(dirs, debounce, unsettled, health, sink, tx.clone());
        let handle = std::thread::Builder::new()
            .name("hotconf-watch".into())
            .spawn(move || thread.run(rx))?;
        Ok(Watcher {
            tx,
            thread: Some(handle),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What an event on a directory entry means for that entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Reader activity (open, close without write): not a change. Ignoring
    /// it matters: the reloader's own reads would otherwise trigger reloads.
    Ignore,
    /// The entry is being written and nobody said it is complete.
    Unsettle,
    /// The entry's content is complete now.
    Final,
    /// The entry is gone (removed, renamed away).
    Gone,
    /// Something else changed (metadata, an unknown kind).
    Hint,
}

/// Classifies an event kind on a directory entry. `lstat` tells, for a
/// creation, what was created (`None`: it is already gone).
fn classify(kind: &EventKind, lstat: impl FnOnce() -> Option<std::fs::FileType>) -> Action {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Action::Final,
        EventKind::Access(_) => Action::Ignore,
        EventKind::Create(CreateKind::Folder) => Action::Final,
        EventKind::Create(_) => match lstat() {
            // A symlink (or hard-to-classify entry) is complete the moment
            // it exists; a new regular file is about to be written.
            Some(t) if t.is_file() => Action::Unsettle,
            Some(_) => Action::Final,
            None => Action::Gone,
        },
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
            Action::Unsettle
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Action::Final,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Action::Gone,
        // `notify` also reports both halves separately (From, To).
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Action::Ignore,
        EventKind::Modify(ModifyKind::Name(_) | ModifyKind::Metadata(_)) => Action::Hint,
        EventKind::Remove(_) => Action::Gone,
        EventKind::Any | EventKind::Other => Action::Hint,
    }
}

/// Whether an entry can change what is served by itself: a TOML or JSON
/// file that is not hidden, a symlink or directory that is not hidden, or a
/// hidden symlink or directory renamed into place (the ConfigMap `..data`
/// swap, through which documents resolve). Everything else (editor
/// droppings, temp files, the ConfigMap's new `..TIMESTAMP` directory and
/// `..data_tmp` link before the swap) is looked at later. `lstat` is what
/// the entry is, when the caller already knows.
fn is_relevant(
    name: &OsStr,
    path: &Path,
    lstat: Option<std::fs::FileType>,
    renamed_into_place: bool,
) -> bool {
    let name = name.to_string_lossy();
    let hidden = name.starts_with('.');
    if !hidden && (name.ends_with(".toml") || name.ends_with(".json")) {
        return true;
    }
    if hidden && !renamed_into_place {
        return false;
    }
    let t = lstat.or_else(|| std::fs::symlink_metadata(path).ok().map(|m| m.file_type()));
    t.is_some_and(|t| t.is_symlink() || t.is_dir())
}

/// A watched directory as the event callback sees it.
#[derive(Debug)]
struct DirView {
    /// As configured: unsettled paths are `given.join(name)`, the paths the
    /// reloader reads.
    given: PathBuf,
    /// Absolute form: what `notify` reports event paths under.
    abs: PathBuf,
    /// inotify watches it now (entry events are trusted).
    watching: bool,
}

/// The per-path state machine, shared by `notify`'s callback (events) and
/// the watcher thread (timers). Locked briefly; never held across a call
/// into `notify` or into the sink.
struct Core {
    /// The configured directories (deduplicated by absolute path).
    dirs: Vec<DirView>,
    /// Quiet time before a bare modification is considered complete.
    debounce: Duration,
    /// Paths a writer is still producing, shared with the reloader.
    unsettled: Arc<Unsettled>,
    /// Unsettled entries and when they settle (`None`: never by time).
    pending: HashMap<PathBuf, Option<Instant>>,
    /// When to send the deferred "look again" (droppings, removals).
    deferred: Option<Instant>,
    /// Until when the watcher thread sleeps (`None`: until a message).
    armed: Option<Instant>,
    /// Symlinks in watched directories: absolute path → key (the path the
    /// reloader reads).
    links: HashMap<PathBuf, PathBuf>,
    /// Where those links lead, for links to files outside the watched
    /// directories: target directory → target file name → keys. Events
    /// there are events on the links (notify-rs/notify#381).
    targets: HashMap<PathBuf, HashMap<OsString, Vec<PathBuf>>>,
}

/// What the callback must do after releasing the lock.
#[derive(Debug, Default)]
struct After {
    /// Signal to send.
    signal: Option<WatchSignal>,
    /// Messages for the watcher thread.
    msgs: Vec<Msg>,
}

impl After {
    /// Records a signal (a rescan supersedes a change).
    fn want(&mut self, s: WatchSignal) {
        self.signal = match (self.signal, s) {
            (Some(WatchSignal::Rescan), _) | (_, WatchSignal::Rescan) => Some(WatchSignal::Rescan),
            _ => Some(WatchSignal::Changed),
        };
    }
}

impl Core {
    /// The earliest timer, if any.
    fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .flatten()
            .copied()
            .chain(self.deferred)
            .min()
    }

    /// Asks for a "look again" `debounce` from now unless one is already
    /// due earlier (leading edge: a steady stream of droppings cannot
    /// postpone it forever).
    fn defer(&mut self, now: Instant) {
        if self.deferred.is_none() {
            self.deferred = Some(now.checked_add(self.debounce).unwrap_or(now));
        }
    }

    /// Marks `key` complete.
    fn settle(&mut self, key: &Path) {
        if self.pending.remove(key).is_some() {
            self.unsettled.remove(key);
        }
    }

    /// Forgets every pending entry of directory `i` (it is gone).
    fn forget_dir(&mut self, i: usize) {
        let Some(given) = self.dirs.get(i).map(|d| d.given.clone()) else {
            return;
        };
        let gone: Vec<PathBuf> = self
            .pending
            .keys()
            .filter(|p| p.parent() == Some(given.as_path()))
            .cloned()
            .collect();
        for p in gone {
            self.settle(&p);
        }
        self.links
            .retain(|_, key| key.parent() != Some(given.as_path()));
    }

    /// Handles one raw event from `notify` (on its thread).
    fn on_event(&mut self, res: notify::Result<notify::Event>, now: Instant) -> After {
        let mut after = After::default();
        let ev = match res {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(event = "watch_error", error = %e, "file watch error; rescanning");
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    after.msgs.push(Msg::Setup);
                }
                after.want(WatchSignal::Rescan);
                return after;
            }
        };
        if ev.need_rescan() {
            tracing::warn!(
                event = "watch_overflow",
                "inotify queue overflowed; rescanning"
            );
            after.want(WatchSignal::Rescan);
            return after;
        }
        for path in &ev.paths {
            self.on_path(&ev.kind, path, now, &mut after);
        }
        // The watcher thread sleeps until `armed`: wake it if a timer is
        // due earlier (a trailing-edge reset only moves timers later).
        if let Some(next) = self.next_deadline() {
            if self.armed.is_none_or(|armed| next < armed) {
                self.armed = Some(next);
                after.msgs.push(Msg::Wake);
            }
        }
        after
    }

    /// Handles an event about `path`, which may be a watched directory
    /// itself, an entry of one, or both (a directory inside another).
    fn on_path(&mut self, kind: &EventKind, path: &Path, now: Instant, after: &mut After) {
        if let Some(i) = self.dirs.iter().position(|d| d.abs == path) {
            self.on_dir_self(i, kind, now, after);
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let Some(given) = self
            .dirs
            .iter()
            .find(|d| d.abs == parent && d.watching)
            .map(|d| d.given.clone())
        else {
            // A symlink target's directory: the event is about the links.
            let keys = self
                .targets
                .get(parent)
                .and_then(|names| names.get(name))
                .cloned()
                .unwrap_or_default();
            for key in keys {
                let action = classify(kind, || {
                    std::fs::symlink_metadata(path).ok().map(|m| m.file_type())
                });
                if matches!(action, Action::Gone | Action::Final) {
                    // The target was replaced or removed: resolve again.
                    after.msgs.push(Msg::Relink);
                }
                self.apply(key, action, true, now, after);
            }
            // Otherwise seen through a parent watch, about another entry.
            return;
        };
        let key = given.join(name);
        // What the entry is now: one lstat, only when it matters (a
        // creation or a rename; the callback's cost delays later events).
        let structural = matches!(
            kind,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
        ) || matches!(kind, EventKind::Remove(_));
        let lstat = match kind {
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                std::fs::symlink_metadata(path).ok().map(|m| m.file_type())
            }
            _ => None,
        };
        let action = classify(kind, || lstat);
        if action == Action::Ignore {
            return;
        }
        // Keep the set of links current; a link, or a directory links may
        // resolve through (`..data`), changing means resolving again.
        if structural {
            let is_link = lstat.is_some_and(|t| t.is_symlink());
            let was_link = if is_link {
                self.links.insert(path.to_path_buf(), key.clone()).is_some()
            } else {
                self.links.remove(path).is_some()
            };
            if is_link || was_link || lstat.is_some_and(|t| t.is_dir()) {
                after.msgs.push(Msg::Relink);
            }
        }
        let renamed_into_place = *kind == EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let relevant = action != Action::Gone && is_relevant(name, path, lstat, renamed_into_place);
        tracing::trace!(path = %key.display(), ?kind, ?action, relevant, "watch event");
        self.apply(key, action, relevant, now, after);
    }

    /// Applies `action` to the entry read as `key`.
    fn apply(
        &mut self,
        key: PathBuf,
        action: Action,
        relevant: bool,
        now: Instant,
        after: &mut After,
    ) {
        match action {
            Action::Ignore => {}
            Action::Unsettle if relevant => {
                self.unsettled.insert(&key);
                self.pending.insert(key, now.checked_add(self.debounce));
            }
            Action::Unsettle => self.defer(now),
            Action::Final if relevant => {
                self.settle(&key);
                after.want(WatchSignal::Changed);
            }
            // Metadata of a file still being written (vim sets its ACL
            // before it closes): its close or its debounce will signal.
            Action::Hint if relevant && self.pending.contains_key(&key) => {}
            Action::Hint if relevant => after.want(WatchSignal::Changed),
            Action::Final | Action::Hint => {
                self.settle(&key);
                self.defer(now);
            }
            Action::Gone => {
                // Watch reloads never remove; a missing file is reported
                // after `debounce` of absence: look then, not mid-save.
                self.settle(&key);
                self.defer(now);
            }
        }
    }

    /// An event about watched directory `i` itself.
    fn on_dir_self(&mut self, i: usize, kind: &EventKind, now: Instant, after: &mut After) {
        match kind {
            EventKind::Access(AccessKind::Open(_)) => {
                // Every event before this open has been handled.
                if let Some(d) = self.dirs.get(i).filter(|d| d.watching) {
                    self.unsettled.dir_opened(&d.given);
                }
            }
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                if let Some(d) = self.dirs.get_mut(i) {
                    d.watching = false;
                    self.unsettled.set_watched(&d.given, false);
                }
                self.forget_dir(i);
                // Everything in it is gone: look again once things calm down.
                self.defer(now);
                after.msgs.push(Msg::DirLost(i));
            }
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                // Recreated, renamed or re-linked into place: whatever was
                // watched under this path before is not it any more.
                if let Some(d) = self.dirs.get_mut(i) {
                    d.watching = false;
                    self.unsettled.set_watched(&d.given, false);
                }
                self.forget_dir(i);
                after.msgs.push(Msg::DirAppeared(i));
            }
            _ => {}
        }
    }

    /// Fires every timer that is due; returns the signal to send.
    fn on_timers(&mut self, now: Instant) -> Option<WatchSignal> {
        let mut signal = None;
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, at)| at.is_some_and(|at| at <= now))
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            tracing::debug!(path = %p.display(), "modification settled after debounce");
            self.settle(&p);
            signal = Some(WatchSignal::Changed);
        }
        if self.deferred.is_some_and(|at| at <= now) {
            self.deferred = None;
            signal = Some(WatchSignal::Changed);
        }
        signal
    }
}

/// State of one watched directory, as the watcher thread knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirState {
    /// inotify watches it.
    Watching,
    /// It does not exist (or is not a directory): waiting for it.
    Missing,
    /// It exists but cannot be watched (limits, errors): why.
    Failed(String),
}

/// One configured directory, as the watcher thread knows it.
#[derive(Debug)]
struct Dir {
    /// As configured (see [`DirView::given`]).
    given: PathBuf,
    /// Absolute form (see [`DirView::abs`]).
    abs: PathBuf,
    /// Watched or not, and why not.
    state: DirState,
    /// The configured path is a symlink: its parent is watched too, so a
    /// swap of the link itself is seen.
    link: bool,
}

/// The `hotconf-watch` thread: owns the `notify` watcher; (re-)watches
/// directories, runs timers and retries, keeps the health.
struct WatchThread {
    /// The configured directories, in the same order as `Core::dirs`.
    dirs: Vec<Dir>,
    /// Shared with `notify`'s callback.
    core: Arc<Mutex<Core>>,
    /// Degradation reason, shared with the status.
    health: Arc<WatchHealth>,
    /// Where signals go.
    sink: Sink,
    /// Given to `notify`'s callback to reach this thread.
    tx: Sender<Msg>,
    /// The inotify watcher; `None` when it cannot be created.
    notify: Option<RecommendedWatcher>,
    /// Why the inotify watcher cannot be created.
    notify_error: Option<String>,
    /// Parents watched while a directory is missing or is a symlink.
    parents: HashSet<PathBuf>,
    /// Directories watched because symlinked documents lead there.
    target_dirs: HashSet<PathBuf>,
    /// When to retry what failed (inotify setup, lost directories).
    retry_at: Option<Instant>,
    /// The signal to send after the current round.
    outgoing: Option<WatchSignal>,
}

impl WatchThread {
    fn new(
        dirs: &[PathBuf],
        debounce: Duration,
        unsettled: Arc<Unsettled>,
        health: Arc<WatchHealth>,
        sink: Sink,
        tx: Sender<Msg>,
    ) -> WatchThread {
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut out: Vec<Dir> = Vec::new();
        for d in dirs {
            let abs = if d.is_absolute() {
                d.clone()
            } else {
                cwd.join(d)
            };
            if out.iter().all(|x| x.abs != abs) {
                out.push(Dir {
                    given: d.clone(),
                    abs,
                    state: DirState::Missing,
                    link: false,
                });
            }
        }
        let core = Core {
            dirs: out
                .iter()
                .map(|d| DirView {
                    given: d.given.clone(),
                    abs: d.abs.clone(),
                    watching: false,
                })
                .collect(),
            debounce,
            unsettled,
            pending: HashMap::new(),
            deferred: None,
            armed: None,
            links: HashMap::new(),
            targets: HashMap::new(),
        };
        WatchThread {
            dirs: out,
            core: Arc::new(Mutex::new(core)),
            health,
            sink,
            tx,
            notify: None,
            notify_error: None,
            parents: HashSet::new(),
            target_dirs: HashSet::new(),
            retry_at: None,
            outgoing: None,
        }
    }

    /// The thread's main loop: messages and timers until told to stop.
    fn run(&mut self, rx: Receiver<Msg>) {
        self.setup();
        // Whatever happened before the watches existed is unknown.
        self.want(WatchSignal::Rescan);
        emit(&self.sink, self.outgoing.take());
        loop {
            let deadline = {
                let Ok(mut core) = self.core.lock() else {
                    return;
                };
                let next = core.next_deadline().into_iter().chain(self.retry_at).min();
                core.armed = next;
                next
            };
            let msg = match deadline {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
            };
            let mut relink = false;
            let mut next = msg;
            while let Some(m) = next {
                match m {
                    Msg::Stop => return,
                    Msg::DirLost(i) => self.dir_lost(i),
                    Msg::DirAppeared(i) => self.dir_maybe_back(i),
                    Msg::Setup => self.setup(),
                    Msg::Relink => relink = true,
                    Msg::Wake => {}
                }
                next = rx.try_recv().ok();
            }
            if relink {
                self.relink();
            }
            let now = Instant::now();
            let fired = self.core.lock().ok().and_then(|mut c| c.on_timers(now));
            if let Some(s) = fired {
                self.want(s);
            }
            if self.retry_at.is_some_and(|at| at <= now) {
                self.retry_at = None;
                self.setup();
            }
            emit(&self.sink, self.outgoing.take());
        }
    }

    /// Records that a signal should be sent after this round.
    fn want(&mut self, s: WatchSignal) {
        let mut a = After {
            signal: self.outgoing,
            msgs: Vec::new(),
        };
        a.want(s);
        self.outgoing = a.signal;
    }

    // ---- setup and (re-)watching ------------------------------------------

    /// Creates the inotify watcher if needed and watches what is not
    /// watched yet. Called at start and on retries.
    fn setup(&mut self) {
        if self.notify.is_none() {
            match RecommendedWatcher::new(self.callback(), notify::Config::default()) {
                Ok(w) => {
                    self.notify = Some(w);
                    self.notify_error = None;
                }
                Err(e) => self.notify_error = Some(instance_error(&e)),
            }
        }
        for i in 0..self.dirs.len() {
            if self.dirs.get(i).map(|d| d.state != DirState::Watching) == Some(true) {
                self.try_watch(i);
            }
        }
        self.reconcile_parents();
        self.update_health();
        self.schedule_retry();
    }

    /// `notify`'s event callback: classify under the lock, then signal and
    /// forward what needs this thread.
    fn callback(&self) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
        let core = self.core.clone();
        let sink = self.sink.clone();
        let tx = self.tx.clone();
        let roots: Vec<PathBuf> = self.dirs.iter().map(|d| d.abs.clone()).collect();
        move |res: notify::Result<notify::Event>| {
            // Reads (the reloader's own included) are not changes; drop
            // them before they cost anything. Except the opens of a watched
            // directory itself: they are the barrier (`Unsettled::catch_up`).
            if let Ok(ev) = &res {
                let barrier = matches!(ev.kind, EventKind::Access(AccessKind::Open(_)))
                    && ev.paths.first().is_some_and(|p| roots.contains(p));
                if matches!(ev.kind, EventKind::Access(_))
                    && ev.kind != EventKind::Access(AccessKind::Close(AccessMode::Write))
                    && !barrier
                {
                    return;
                }
            }
            let after = match core.lock() {
                Ok(mut c) => c.on_event(res, Instant::now()),
                Err(_) => return,
            };
            emit(&sink, after.signal);
            for m in after.msgs {
                let _ = tx.send(m);
            }
        }
    }

    /// Tries to watch directory `i`; updates its state (here and in the
    /// core). Returns whether it is watched now.
    fn try_watch(&mut self, i: usize) -> bool {
        let Some(dir) = self.dirs.get(i) else {
            return false;
        };
        let abs = dir.abs.clone();
        let was = dir.state.clone();
        let link = std::fs::symlink_metadata(&abs)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        // The links already there (listed before the watch exists, so the
        // listing is not an event).
        let links = if was == DirState::Watching {
            None
        } else {
            Some(list_links(&abs, &dir.given))
        };
        let state = if !abs.is_dir() {
            DirState::Missing
        } else if let Some(w) = self.notify.as_mut() {
            // A stale watch (the directory was renamed away or replaced)
            // would keep reporting the old directory under this path.
            let _ = w.unwatch(&abs);
            match w.watch(&abs, RecursiveMode::NonRecursive) {
                Ok(()) => DirState::Watching,
                Err(e) => match e.kind {
                    notify::ErrorKind::PathNotFound => DirState::Missing,
                    notify::ErrorKind::MaxFilesWatch => DirState::Failed(format!(
                        "cannot watch {}: inotify watch limit reached (fs.inotify.max_user_watches)",
                        abs.display()
                    )),
                    _ => DirState::Failed(format!("cannot watch {}: {e}", abs.display())),
                },
            }
        } else {
            DirState::Failed(format!(
                "cannot watch {}: no inotify instance",
                abs.display()
            ))
        };
        let watching = state == DirState::Watching;
        if let Ok(mut guard) = self.core.lock() {
            let core = &mut *guard;
            if let Some(d) = core.dirs.get_mut(i) {
                d.watching = watching;
                core.unsettled.set_watched(&d.given, watching);
            }
            if let (true, Some(links)) = (watching, links) {
                core.links.extend(links);
            }
        }
        if watching && was != DirState::Watching {
            self.relink();
        }
        if watching && was != DirState::Watching {
            tracing::info!(event = "watch_started", dir = %abs.display(), "watching directory");
            // Whatever happened while it was not watched is unknown.
            self.want(WatchSignal::Rescan);
        }
        if let Some(d) = self.dirs.get_mut(i) {
            d.state = state;
            d.link = link;
        }
        watching
    }

    /// Directory `i` was deleted or renamed away (the core already stopped
    /// trusting its events): drop its watch, then re-watch whatever is at
    /// its path now.
    fn dir_lost(&mut self, i: usize) {
        let Some(dir) = self.dirs.get_mut(i) else {
            return;
        };
        dir.state = DirState::Missing;
        let abs = dir.abs.clone();
        if let Some(w) = self.notify.as_mut() {
            let _ = w.unwatch(&abs);
        }
        self.dir_maybe_back(i);
        if self.dirs.get(i).map(|d| d.state == DirState::Missing) == Some(true) {
            tracing::warn!(
                event = "watch_dir_missing",
                dir = %abs.display(),
                "watched directory is gone; watching for it to come back"
            );
        }
    }

    /// Something appeared at directory `i`'s path (or may have): watch it.
    fn dir_maybe_back(&mut self, i: usize) {
        if let Some(d) = self.dirs.get_mut(i) {
            // Whatever was watched under this path may not be it any more.
            if d.state == DirState::Watching {
                d.state = DirState::Missing;
            }
        }
        if !self.try_watch(i) {
            self.reconcile_parents();
            // It may have come back before the parent watch existed.
            self.try_watch(i);
        }
        self.reconcile_parents();
        self.update_health();
        self.schedule_retry();
    }

    /// Watches the parents of missing directories and of directories
    /// configured through a symlink (and only those): the parent sees the
    /// directory being recreated, renamed or re-linked into place.
    fn reconcile_parents(&mut self) {
        let Some(w) = self.notify.as_mut() else {
            self.parents.clear();
            return;
        };
        let own: HashSet<&PathBuf> = self.dirs.iter().map(|d| &d.abs).collect();
        let desired: HashSet<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.state == DirState::Missing || d.link)
            .filter_map(|d| d.abs.parent().map(Path::to_path_buf))
            .filter(|p| !own.contains(p))
            .collect();
        let stale: Vec<PathBuf> = self.parents.difference(&desired).cloned().collect();
        for p in stale {
            if !self.target_dirs.contains(&p) {
                let _ = w.unwatch(&p);
            }
            self.parents.remove(&p);
        }
        for p in desired {
            if !self.parents.contains(&p) && w.watch(&p, RecursiveMode::NonRecursive).is_ok() {
                self.parents.insert(p);
            }
        }
    }

    /// Resolves every known link and watches the directories of targets
    /// outside the watched directories (and only those), so an in-place
    /// edit or a rename-save of a link's target is seen.
    fn relink(&mut self) {
        let links: Vec<(PathBuf, PathBuf)> = match self.core.lock() {
            Ok(c) => c
                .links
                .iter()
                .map(|(a, k)| (a.clone(), k.clone()))
                .collect(),
            Err(_) => return,
        };
        let own: HashSet<&PathBuf> = self.dirs.iter().map(|d| &d.abs).collect();
        let mut wanted: HashMap<PathBuf, HashMap<OsString, Vec<PathBuf>>> = HashMap::new();
        for (abs, key) in links {
            let Ok(target) = std::fs::canonicalize(&abs) else {
                continue;
            };
            if !target.is_file() {
                continue;
            }
            if let (Some(dir), Some(name)) = (target.parent(), target.file_name()) {
                if !own.contains(&dir.to_path_buf()) {
                    wanted
                        .entry(dir.to_path_buf())
                        .or_default()
                        .entry(name.to_os_string())
                        .or_default()
                        .push(key);
                }
            }
        }
        if let Some(w) = self.notify.as_mut() {
            let stale: Vec<PathBuf> = self
                .target_dirs
                .iter()
                .filter(|d| !wanted.contains_key(*d))
                .cloned()
                .collect();
            for d in stale {
                if !self.parents.contains(&d) {
                    let _ = w.unwatch(&d);
                }
                self.target_dirs.remove(&d);
            }
            let mut failed = Vec::new();
            for d in wanted.keys() {
                if !self.target_dirs.contains(d) {
                    if w.watch(d, RecursiveMode::NonRecursive).is_ok() {
                        self.target_dirs.insert(d.clone());
                    } else {
                        failed.push(d.clone());
                    }
                }
            }
            for d in failed {
                // Not watched: such a target is seen by the poll only.
                tracing::debug!(dir = %d.display(), "cannot watch a symlink target's directory");
                wanted.remove(&d);
            }
        } else {
            wanted.clear();
        }
        if let Ok(mut c) = self.core.lock() {
            c.targets = wanted;
        }
    }

    /// Arms the retry timer while anything is not watched.
    fn schedule_retry(&mut self) {
        let all_ok =
            self.notify.is_some() && self.dirs.iter().all(|d| d.state == DirState::Watching);
        self.retry_at = if all_ok {
            None
        } else {
            self.retry_at
                .or_else(|| Instant::now().checked_add(RETRY_INTERVAL))
        };
    }

    /// Recomputes the degradation reason; logs and asks for a rescan when it
    /// changes.
    fn update_health(&mut self) {
        let mut reasons: Vec<String> = Vec::new();
        if let Some(e) = &self.notify_error {
            // Every directory fails for this one reason.
            reasons.push(e.clone());
        } else {
            for d in &self.dirs {
                if let DirState::Failed(r) = &d.state {
                    reasons.push(r.clone());
                }
            }
        }
        let reason = if reasons.is_empty() {
            None
        } else {
            Some(format!(
                "{}; changes are found by the poll only",
                reasons.join("; ")
            ))
        };
        if self.health.set(reason.clone()) {
            match &reason {
                Some(r) => {
                    tracing::warn!(event = "watch_degraded", reason = %r, "file watching degraded")
                }
                None => tracing::info!(event = "watch_restored", "file watching restored"),
            }
            self.want(WatchSignal::Rescan);
        }
    }
}

/// The symlinks in `dir` (absolute path → `given.join(name)`).
fn list_links(dir: &Path, given: &Path) -> HashMap<PathBuf, PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .map(|e| (e.path(), given.join(e.file_name())))
        .collect()
}

impl Drop for WatchThread {
    fn drop(&mut self) {
        // No barrier may wait for a watcher that is gone.
        if let Ok(core) = self.core.lock() {
            for d in &core.dirs {
                core.unsettled.set_watched(&d.given, false);
            }
        }
    }
}

/// Whether this process has (nearly) all the descriptors `RLIMIT_NOFILE`
/// allows open; false when either cannot be read.
fn near_nofile_limit() -> bool {
    let Some(soft) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current else {
        return false;
    };
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    u64::try_from(open).unwrap_or(u64::MAX).saturating_add(8) >= soft
}

/// Why no inotify instance could be created, naming the limit to raise:
/// `EMFILE` from `inotify_init1` means the per-user instance limit
/// (`fs.inotify.max_user_instances`) unless the process really is out of
/// descriptors, which the OS's own wording ("Too many open files") would
/// wrongly suggest every time.
fn instance_error(e: &notify::Error) -> String {
    let emfile = matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()));
    if !emfile {
        return format!("cannot create an inotify instance: {e}");
    }
    if near_nofile_limit() {
        "cannot create an inotify instance: out of file descriptors (RLIMIT_NOFILE)".to_string()
    } else {
        "cannot create an inotify instance: per-user instance limit reached (fs.inotify.max_user_instances)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, MetadataKind, RemoveKind};

    fn file_type_of(path: &Path) -> Option<std::fs::FileType> {
        std::fs::symlink_metadata(path).ok().map(|m| m.file_type())
    }

    #[test]
    fn close_after_write_and_rename_into_place_are_final() {
        let none = || None;
        assert_eq!(
            classify(
                &EventKind::Access(AccessKind::Close(AccessMode::Write)),
                none
            ),
            Action::Final
        );
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Name(RenameMode::To)), none),
            Action::Final
        );
        assert_eq!(
            classify(&EventKind::Create(CreateKind::Folder), none),
            Action::Final
        );
    }

    #[test]
    fn bare_modification_and_new_regular_file_are_unsettled() {
        let here = Path::new(file!());
        assert_eq!(
            classify(
                &EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                || None
            ),
            Action::Unsettle
        );
        assert_eq!(
            classify(&EventKind::Create(CreateKind::File), || file_type_of(here)),
            Action::Unsettle
        );
    }

    #[test]
    fn reads_are_ignored_and_removals_are_gone() {
        let none = || None;
        assert_eq!(
            classify(&EventKind::Access(AccessKind::Open(AccessMode::Any)), none),
            Action::Ignore
        );
        assert_eq!(
            classify(
                &EventKind::Access(AccessKind::Close(AccessMode::Read)),
                none
            ),
            Action::Ignore
        );
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Name(RenameMode::Both)), none),
            Action::Ignore
        );
        assert_eq!(
            classify(&EventKind::Remove(RemoveKind::File), none),
            Action::Gone
        );
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Name(RenameMode::From)), none),
            Action::Gone
        );
        // Created and already gone again.
        assert_eq!(
            classify(&EventKind::Create(CreateKind::File), none),
            Action::Gone
        );
        assert_eq!(
            classify(
                &EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                none
            ),
            Action::Hint
        );
    }

    #[test]
    fn relevance_by_name() {
        let nowhere = Path::new("/nonexistent/hotconf/x");
        for name in ["app.toml", "app.schema.json", "common.json"] {
            assert!(
                is_relevant(OsStr::new(name), nowhere, None, false),
                "{name}"
            );
        }
        for name in [
            "app.toml~",
            "4913",
            ".app.toml.swp",
            ".app.toml.tmp",
            "sedAb12Cd",
        ] {
            assert!(
                !is_relevant(OsStr::new(name), nowhere, None, false),
                "{name}"
            );
        }
        // `..data` matters when it is a symlink or a directory renamed into
        // place; its creation (as `..data_tmp`) is looked at later.
        assert!(is_relevant(
            OsStr::new("..data"),
            Path::new("/"),
            None,
            true
        ));
        assert!(!is_relevant(
            OsStr::new("..data_tmp"),
            Path::new("/"),
            None,
            false
        ));
    }

    #[test]
    fn health_reports_changes_only() {
        let h = WatchHealth::new();
        assert_eq!(h.degraded(), None);
        assert!(h.set(Some("x".into())));
        assert!(!h.set(Some("x".into())));
        assert_eq!(h.degraded().as_deref(), Some("x"));
        assert!(h.set(None));
    }
}
