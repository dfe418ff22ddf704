//! Status kept beside the snapshot: per-document state, the last reload's
//! outcome and counters. Status changes never create a generation and never
//! wake blocking queries or subscribers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::pipeline::rejection::Rejection;
use crate::store::snapshot::Snapshot;

/// What started a reload. `Poll` and `Watch` are implicit; the others are
/// explicit (they make the directory listing authoritative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// The daemon's first load.
    Startup,
    /// A file-system event.
    Watch,
    /// The periodic checksum poll (reported as `watch`: it is implicit too).
    Poll,
    /// SIGHUP.
    Signal,
    /// `POST /v1/reload` (and `hotconf reload`).
    Api,
}

impl Trigger {
    /// Whether this trigger makes the listing authoritative (removals).
    pub fn is_explicit(self) -> bool {
        matches!(self, Trigger::Startup | Trigger::Signal | Trigger::Api)
    }

    /// The name in logs: as [`Trigger::as_str`], except that the poll is
    /// `poll`, so an operator can tell what found a change.
    pub fn log_name(self) -> &'static str {
        match self {
            Trigger::Poll => "poll",
            other => other.as_str(),
        }
    }

    /// The name used in status and metrics (`startup|watch|signal|api`).
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Watch | Trigger::Poll => "watch",
            Trigger::Signal => "signal",
            Trigger::Api => "api",
        }
    }
}

/// State of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocState {
    /// Served, and the file on disk is what is served.
    Ok,
    /// The latest candidate was rejected (the last good version, if any,
    /// is still served).
    Error,
    /// The file is gone (watch-triggered); the last good version is served.
    Missing,
}

impl DocState {
    /// `ok`, `error` or `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocState::Ok => "ok",
            DocState::Error => "error",
            DocState::Missing => "missing",
        }
    }
}

/// The most recent rejection of a document.
#[derive(Debug, Clone)]
pub struct LastError {
    /// What was wrong (already free of secrets and source lines).
    pub rejection: Rejection,
    /// SHA-256 of the rejected candidate's bytes, if it could be read.
    pub sha256: Option<String>,
    /// When it was rejected.
    pub at: SystemTime,
}

/// Status of one document (served or not).
#[derive(Debug, Clone)]
pub struct DocStatus {
    /// ok, error or missing.
    pub state: DocState,
    /// The file the document is read from.
    pub source: std::path::PathBuf,
    /// The last rejection, cleared when a version is accepted.
    pub last_error: Option<LastError>,
}

/// What one reload did.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// What started it (the explicit one if several coalesced).
    pub trigger: Trigger,
    /// When it started.
    pub at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Documents whose new version was published by this reload.
    pub accepted: Vec<String>,
    /// Documents whose candidate this reload rejected.
    pub rejected: Vec<String>,
    /// Documents this (explicit) reload removed.
    pub removed: Vec<String>,
    /// The snapshot generation after this reload.
    pub generation: u64,
    /// Explicit reloads: documents a writer was still producing when the
    /// reload began; it waited for them to settle and read them complete.
    pub waited: Vec<String>,
    /// Explicit reloads: documents still being written after waiting up to
    /// `--debounce`; not read (their served version stays) — the reload the
    /// watcher asks for once they settle reads them.
    pub deferred: Vec<String>,
}

/// Monotonic counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Reloads that did something (found a change or were explicit).
    pub reloads: u64,
    /// Document rejections.
    pub rejections: u64,
}

/// Everything that is not served content.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Per-document status by name (served, rejected or missing documents).
    pub documents: BTreeMap<String, DocStatus>,
    /// The last reload that did something.
    pub last_reload: Option<ReloadOutcome>,
    /// Counters since start.
    pub counters: Counters,
    /// When the last reload after which every document was `ok` ended.
    pub last_success_at: Option<SystemTime>,
    /// Set when file watching is degraded (the daemon runs on the poll);
    /// says why.
    pub watch_degraded: Option<String>,
    /// The state directory (`--state-dir`), if there is one: what was
    /// restored from it and whether the last persist worked.
    pub persist: Option<PersistStatus>,
    /// Found at startup: config or schema directories other users may
    /// write to (see `daemon::strict`). Shown in `/v1/status` `warnings`.
    pub warnings: Vec<String>,
}

/// What the state directory (`--state-dir`) holds and whether writing it
/// works. A failed persist never unpublishes anything; it shows here (and
/// in the `persist_failed` ERROR log) until a later persist succeeds.
#[derive(Debug, Clone, Default)]
pub struct PersistStatus {
    /// The state directory.
    pub dir: std::path::PathBuf,
    /// The generation restored from it at startup; `None` when there was no
    /// usable persisted state (absent, corrupt, or another config set's).
    pub restored_generation: Option<u64>,
    /// The last generation written to it successfully by this run (or the
    /// restored one, which is already there).
    pub persisted_generation: Option<u64>,
    /// The last persist failure, cleared by the next success.
    pub last_error: Option<(String, SystemTime)>,
}

impl Status {
    /// Whether every document is `ok`.
    pub fn all_ok(&self) -> bool {
        self.documents.values().all(|d| d.state == DocState::Ok)
    }
}

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
