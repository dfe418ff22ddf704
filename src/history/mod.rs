//! What changed, and what would: the daemon's reload history and plans.
//!
//! [`History`] is a [`ReloadObserver`]: a bounded ring of the last N
//! reloads (default [`DEFAULT_CAPACITY`]), each with its per-document
//! results and, for every accepted document, a key-level [`diff()`] against
//! the version it replaced. It is fed only by what observers are told (the
//! outcome, the status and the snapshot after) plus the snapshot and status
//! it saw after the previous reload — seeded from the store before the
//! reloader starts — so it needs nothing from the reloader's internals.
//! [`plan`] judges candidates the way an explicit reload would, without
//! applying anything.
//!
//! History is not the snapshot: it records rejections and `missing` files
//! too, and its blocking query ([`History::subscribe`]) wakes on every
//! recorded reload, including ones that publish nothing. It is kept in
//! memory only (a restart starts it again) and does not decide anything.

pub mod diff;
pub mod plan;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::pipeline::rejection::Rejection;
use crate::store::snapshot::{ServedDocument, Snapshot};
use crate::store::status::{DocState, ReloadObserver, ReloadOutcome, Status, Trigger};

pub use diff::{diff, Change, ChangeKind, Version};

/// How many reloads the daemon remembers unless told otherwise
/// (`--history`).
pub const DEFAULT_CAPACITY: usize = 64;

/// The name of a trigger in history (unlike status and metrics, a poll is
/// told apart from a file event here: the record is about what happened).
pub fn trigger_name(t: Trigger) -> &'static str {
    match t {
        Trigger::Poll => "poll",
        other => other.as_str(),
    }
}

/// A hash and whether peers who may not see secrets may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hash {
    /// SHA-256 of the source bytes.
    pub sha256: String,
    /// The hash to show everybody else (the redacted value's, for a
    /// document with secrets), or `None` when there is nothing to show.
    pub public: Option<String>,
}

impl Hash {
    /// The hashes of a served version.
    pub fn of_served(d: &ServedDocument) -> Hash {
        Hash {
            sha256: d.sha256.clone(),
            public: Some(d.redacted_sha256.clone()),
        }
    }

    /// What `trusted` may see.
    pub fn visible(&self, trusted: bool) -> Option<&str> {
        if trusted {
            Some(&self.sha256)
        } else {
            self.public.as_deref()
        }
    }
}

/// What one reload did to one document.
#[derive(Debug, Clone)]
pub enum DocResult {
    /// A new version was published.
    Accepted {
        /// Key-level changes against the version it replaced (every key
        /// added for a new document).
        changes: Vec<Change>,
        /// Whether its schema closure changed.
        schema_changed: bool,
        /// Hashes of the replaced version (`None`: a new document).
        before: Option<Hash>,
        /// Hashes of the new version.
        after: Hash,
    },
    /// The candidate was rejected; the last good version (if any) is
    /// still served.
    Rejected {
        /// What was wrong.
        rejection: Rejection,
        /// Hashes of the rejected bytes, if they could be read.
        sha256: Option<Hash>,
    },
    /// An explicit reload stopped serving it (its file is gone).
    Removed {
        /// Hashes of the version that was served.
        before: Hash,
    },
    /// An implicit reload found its file gone; the last good version is
    /// still served.
    Missing,
    /// It was rejected or missing, and the file is again what is served.
    Recovered,
}

impl DocResult {
    /// `accepted|rejected|removed|missing|recovered`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DocResult::Accepted { .. } => "accepted",
            DocResult::Rejected { .. } => "rejected",
            DocResult::Removed { .. } => "removed",
            DocResult::Missing => "missing",
            DocResult::Recovered => "recovered",
        }
    }
}

/// One recorded reload.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1, 2, 3… in the order reloads ended, since the daemon started.
    pub id: u64,
    /// What started it.
    pub trigger: Trigger,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The snapshot generation before it.
    pub generation_before: u64,
    /// The snapshot generation after it.
    pub generation_after: u64,
    /// What it did, per document (only documents it did something to).
    pub documents: BTreeMap<String, DocResult>,
}

impl Entry {
    /// Whether every document it touched ended up fine.
    pub fn ok(&self) -> bool {
        self.documents
            .values()
            .all(|d| !matches!(d, DocResult::Rejected { .. } | DocResult::Missing))
    }

    /// The JSON record `GET /v1/history` serves, as `trusted` may see it:
    /// secret values are `<redacted>` for everyone; source hashes of
    /// documents holding secrets only for trusted peers.
    pub fn to_json(&self, trusted: bool) -> Value {
        let documents: serde_json::Map<String, Value> = self
            .documents
            .iter()
            .map(|(name, d)| (name.clone(), doc_json(d, trusted)))
            .collect();
        json!({
            "id": self.id,
            "trigger": trigger_name(self.trigger),
            "started_at": rfc3339(self.started_at),
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            "generation_before": self.generation_before,
            "generation_after": self.generation_after,
            "ok": self.ok(),
            "documents": documents,
        })
    }
}

/// RFC 3339 with milliseconds, `None` for a broken clock's time.
pub fn rfc3339(t: SystemTime) -> Option<String> {
    // humantime cannot print past 9999-12-31T23:59:59Z.
    const MAX_SECS: u64 = 253_402_300_799;
    let since = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    (since.as_secs() <= MAX_SECS).then(|| humantime::format_rfc3339_millis(t).to_string())
}

/// The first problem of a rejection as `{file, line, column, pointer,
/// message}`, plus the code and the number of problems.
pub fn rejection_json(r: &Rejection) -> Value {
    let first = r.problems.first();
    json!({
        "code": r.code.as_str(),
        "file": r.file,
        "line": first.and_then(|p| p.line),
        "column": first.and_then(|p| p.column),
        "pointer": first.map(|p| p.pointer.as_str()),
        "message": first.map(|p| p.message.as_str()),
        "problems": r.problems.len(),
    })
}

/// One document's result as JSON.
fn doc_json(d: &DocResult, trusted: bool) -> Value {
    let hash = |h: &Option<Hash>| {
        h.as_ref()
            .and_then(|h| h.visible(trusted))
            .map(str::to_owned)
    };
    match d {
        DocResult::Accepted {
            changes,
            schema_changed,
            before,
            after,
        } => json!({
            "result": d.as_str(),
            "sha256_before": hash(before),
            "sha256": after.visible(trusted),
            "schema_changed": schema_changed,
            "changes": changes,
        }),
        DocResult::Rejected { rejection, sha256 } => json!({
            "result": d.as_str(),
            "sha256": hash(sha256),
            "error": rejection_json(rejection),
        }),
        DocResult::Removed { before } => json!({
            "result": d.as_str(),
            "sha256_before": before.visible(trusted),
        }),
        DocResult::Missing | DocResult::Recovered => json!({"result": d.as_str()}),
    }
}

/// What the ring remembers between reloads.
struct Inner {
    /// Newest last; at most `capacity` entries.
    ring: VecDeque<Arc<Entry>>,
    /// The id of the next entry.
    next_id: u64,
    /// The snapshot after the last reload (before the next one).
    snapshot: Arc<Snapshot>,
    /// The status after the last reload.
    status: Arc<Status>,
}

/// The bounded reload history. Register it as a [`ReloadObserver`] of the
/// reloader and read it from anywhere.
pub struct History {
    /// How many entries are kept (0: none).
    capacity: usize,
    /// The ring and what the next entry is compared with.
    inner: Mutex<Inner>,
    /// The id of the newest entry (0: none yet); wakes blocking queries.
    latest: watch::Sender<u64>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("capacity", &self.capacity)
            .field("latest", &*self.latest.borrow())
            .finish_non_exhaustive()
    }
}

impl History {
    /// A history of at most `capacity` reloads, comparing the first one
    /// with `seed`: the store's snapshot before the reloader starts (the
    /// empty one, or what the state directory restored).
    pub fn new(capacity: usize, seed: Arc<Snapshot>) -> History {
        History {
            capacity,
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY)),
                next_id: 1,
                snapshot: seed,
                status: Arc::new(Status::default()),
            }),
            latest: watch::channel(0).0,
        }
    }

    /// How many reloads are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The id of the newest entry recorded (0 before the first). Ids keep
    /// counting when old entries are dropped.
    pub fn latest_id(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Wakes on every recorded reload (rejections included), with its id.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Up to `limit` entries newer than id `since`, newest first.
    pub fn entries(&self, limit: usize, since: u64) -> Vec<Arc<Entry>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .ring
            .iter()
            .rev()
            .filter(|e| e.id > since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Builds the entry of one reload from what it was before and after.
    fn entry(
        id: u64,
        outcome: &ReloadOutcome,
        before: (&Snapshot, &Status),
        after: (&Snapshot, &Status),
    ) -> Entry {
        let (old, old_status) = before;
        let (new, status) = after;
        let mut documents = BTreeMap::new();
        for name in &outcome.accepted {
            let Some(doc) = new.get(name) else { continue };
            let prev = old.get(name);
            let changes = diff(
                prev.map(|p| Version {
                    value: &p.value,
                    redacted: &p.redacted,
                }),
                Version {
                    value: &doc.value,
                    redacted: &doc.redacted,
                },
            );
            documents.insert(
                name.clone(),
                DocResult::Accepted {
                    changes,
                    schema_changed: prev.is_some_and(|p| p.schema_sha256 != doc.schema_sha256),
                    before: prev.map(|p| Hash::of_served(p)),
                    after: Hash::of_served(doc),
                },
            );
        }
        for name in &outcome.rejected {
            let Some(e) = status
                .documents
                .get(name)
                .and_then(|d| d.last_error.as_ref())
            else {
                continue;
            };
            // As the status shows it: a rejected candidate's hash is as
            // sensitive as the served document's source hash.
            let public_ok = old.get(name).is_some_and(|d| !d.has_secrets);
            documents.insert(
                name.clone(),
                DocResult::Rejected {
                    rejection: e.rejection.clone(),
                    sha256: e.sha256.clone().map(|sha256| Hash {
                        public: public_ok.then(|| sha256.clone()),
                        sha256,
                    }),
                },
            );
        }
        for name in &outcome.removed {
            if let Some(prev) = old.get(name) {
                documents.insert(
                    name.clone(),
                    DocResult::Removed {
                        before: Hash::of_served(prev),
                    },
                );
            }
        }
        for (name, d) in &status.documents {
            if documents.contains_key(name) {
                continue;
            }
            let was = old_status.documents.get(name).map(|d| d.state);
            match d.state {
                DocState::Missing if was != Some(DocState::Missing) => {
                    documents.insert(name.clone(), DocResult::Missing);
                }
                DocState::Ok if was.is_some_and(|s| s != DocState::Ok) => {
                    documents.insert(name.clone(), DocResult::Recovered);
                }
                _ => {}
            }
        }
        Entry {
            id,
            trigger: outcome.trigger,
            started_at: outcome.at,
            duration: outcome.duration,
            generation_before: old.generation,
            generation_after: new.generation,
            documents,
        }
    }
}

impl ReloadObserver for History {
    fn reload_finished(&self, outcome: &ReloadOutcome, status: &Status, snapshot: &Snapshot) {
        let id = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let id = inner.next_id;
            let entry = Self::entry(
                id,
                outcome,
                (&inner.snapshot, &inner.status),
                (snapshot, status),
            );
            inner.next_id = id.saturating_add(1);
            // The observer gets references; keeping the next "before" costs
            // one shallow clone (documents are shared `Arc`s).
            inner.snapshot = Arc::new(snapshot.clone());
            inner.status = Arc::new(status.clone());
            if self.capacity > 0 {
                while inner.ring.len() >= self.capacity {
                    inner.ring.pop_front();
                }
                inner.ring.push_back(Arc::new(entry));
            }
            id
        };
        self.latest.send_replace(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn served(value: Value, sha: &str) -> Arc<ServedDocument> {
        let value = Arc::new(value);
        Arc::new(ServedDocument {
            redacted: value.clone(),
            value,
            has_secrets: false,
            sha256: sha.into(),
            redacted_sha256: sha.into(),
            generation: 1,
            loaded_at: SystemTime::now(),
            source: PathBuf::from("c/app.toml"),
            schema_sha256: "s".into(),
            typed: None,
            bodies: Default::default(),
        })
    }

    fn snapshot(generation: u64, docs: &[(&str, Arc<ServedDocument>)]) -> Snapshot {
        Snapshot {
            generation,
            published_at: SystemTime::now(),
            documents: docs
                .iter()
                .map(|(n, d)| (n.to_string(), d.clone()))
                .collect(),
        }
    }

    fn outcome(accepted: &[&str], generation: u64) -> ReloadOutcome {
        ReloadOutcome {
            trigger: Trigger::Api,
            at: SystemTime::now(),
            duration: Duration::from_millis(1),
            accepted: accepted.iter().map(|s| s.to_string()).collect(),
            rejected: vec![],
            removed: vec![],
            generation,
            waited: vec![],
            deferred: vec![],
        }
    }

    #[test]
    fn records_diffs_against_the_previous_reload_and_drops_the_oldest() {
        let h = History::new(2, Arc::new(Snapshot::empty()));
        let st = Status::default();
        let s1 = snapshot(1, &[("app", served(json!({"port": 1}), "a"))]);
        h.reload_finished(&outcome(&["app"], 1), &st, &s1);
        let s2 = snapshot(2, &[("app", served(json!({"port": 2}), "b"))]);
        h.reload_finished(&outcome(&["app"], 2), &st, &s2);
        let s3 = snapshot(3, &[("app", served(json!({"port": 3}), "c"))]);
        h.reload_finished(&outcome(&["app"], 3), &st, &s3);
        let all = h.entries(10, 0);
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(all[0].generation_before, 2);
        let DocResult::Accepted { changes, .. } = &all[0].documents["app"] else {
            panic!("not accepted");
        };
        assert_eq!(changes[0].old, Some(json!(2)));
        assert_eq!(changes[0].new, Some(json!(3)));
        assert_eq!(h.entries(10, 2).len(), 1);
        assert_eq!(h.entries(1, 0)[0].id, 3);
        assert_eq!(h.latest_id(), 3);
    }

    #[test]
    fn capacity_zero_keeps_nothing_but_still_counts() {
        let h = History::new(0, Arc::new(Snapshot::empty()));
        h.reload_finished(&outcome(&[], 0), &Status::default(), &Snapshot::empty());
        assert!(h.entries(10, 0).is_empty());
        assert_eq!(h.latest_id(), 1);
    }
}
