//! Reload step 3, *plan*: the SPEC §2 rules as one pure function. From what
//! is served, what the status says, what was read and judged, and what
//! started the reload, it decides what to publish and what every
//! document's status becomes — no files, no clock (the time is an input),
//! no store.
//!
//! The rules: documents are accepted one by one (or none at all with
//! `all_or_nothing` when anything is rejected); identical inputs change
//! nothing; a rejected candidate never unpublishes the last good version
//! (a bad schema included); a never-valid document is an error and not
//! served; an implicit reload never removes a document (a vanished file is
//! `missing` after the debounce, its last good version still served); an
//! explicit one makes the listing authoritative and removes it.
//!
//! It does not tell anyone what it decided (that is [`super::commit`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::pipeline;
use crate::pipeline::rejection::{Code, Rejection};
use crate::store::snapshot::{ServedDocument, Snapshot};
use crate::store::status::{DocState, DocStatus, LastError, Trigger};

use super::judge::{Judged, Verdict};
use super::scan::Key;

/// What the reloader remembers per document beyond the store.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// The last judged candidate that is not what is served, with its
    /// verdict: not judged again while its inputs are unchanged.
    pub(super) candidate: Option<(Key, Verdict)>,
    /// Since when an implicit reload has found the file absent.
    pub(super) absent_since: Option<Instant>,
}

/// A change the plan makes to the reloader's [`Memory`] of a document.
#[derive(Debug)]
pub(super) enum Remember {
    /// The file is there: it is not absent.
    Present,
    /// Remember (or, `None`, forget) the last judged candidate.
    Candidate(Option<(Key, Verdict)>),
    /// The file has been absent since then.
    AbsentSince(Instant),
    /// The document is gone for good: forget everything about it.
    Forget,
}

/// Everything the plan decides from.
pub(super) struct Inputs<'a> {
    /// What started the reload.
    pub(super) trigger: Trigger,
    /// One rejected document rejects the whole reload.
    pub(super) all_or_nothing: bool,
    /// Whether the listing may remove documents (explicit and listed).
    pub(super) authoritative: bool,
    /// What is served.
    pub(super) served: &'a Snapshot,
    /// Every document's status before this reload.
    pub(super) status: &'a BTreeMap<String, DocStatus>,
    /// The documents read, with their verdicts.
    pub(super) judged: &'a [Judged],
    /// Every listed document (name → path).
    pub(super) listing: &'a BTreeMap<String, PathBuf>,
    /// Listed documents found present.
    pub(super) present: &'a BTreeSet<String>,
    /// Listed documents left out as still being written.
    pub(super) skipped: &'a HashSet<String>,
    /// Listed documents deleted between listing and reading.
    pub(super) vanished: &'a [String],
    /// The reloader's memory of every document.
    pub(super) memory: &'a BTreeMap<String, Memory>,
    /// Where a document without a known source would be.
    pub(super) config_dir: &'a Path,
    /// How long a file must be absent before an implicit reload reports it.
    pub(super) debounce: Duration,
    /// Now, for the debounce.
    pub(super) now: Instant,
    /// Now, for timestamps.
    pub(super) wall: SystemTime,
}

/// What one reload does.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Every document's status after this reload.
    pub(super) documents: BTreeMap<String, DocStatus>,
    /// Documents whose new version is published (in the new snapshot).
    pub(super) accepted: Vec<String>,
    /// Documents whose candidate is newly reported rejected.
    pub(super) rejected: Vec<String>,
    /// Documents back to what is served after an error or absence.
    pub(super) recovered: Vec<String>,
    /// Served documents removed (explicit reloads only).
    pub(super) removed: Vec<String>,
    /// Documents newly reported missing.
    pub(super) missing: Vec<String>,
    /// Unserved documents whose status is dropped (explicit reloads only).
    pub(super) forgotten: Vec<String>,
    /// The snapshot to publish, if served content changes.
    pub(super) snapshot: Option<Snapshot>,
    /// Whether observers are told of this reload before judging (it is
    /// explicit, or something was evaluated).
    pub(super) announced: bool,
    /// Whether this is a reload at all (an implicit look that changes
    /// nothing is not).
    pub(super) does_something: bool,
    /// When to look again by itself (a vanished file's debounce).
    pub(super) follow_up: Option<Instant>,
    /// Changes to the reloader's memory, in order.
    pub(super) remember: Vec<(String, Remember)>,
}

/// Whether a reload triggered by `trigger` that evaluates anything iff
/// `evaluates` is announced to observers before it judges.
pub(super) fn announced(trigger: Trigger, evaluates: bool) -> bool {
    trigger.is_explicit() || evaluates
}

/// The plan of one reload (see the module doc for the rules).
pub(super) fn plan(i: &Inputs<'_>) -> Plan {
    let explicit = i.trigger.is_explicit();
    let mut p = Plan {
        documents: i.status.clone(),
        announced: announced(i.trigger, i.judged.iter().any(|j| j.fresh)),
        ..Plan::default()
    };
    for name in i.present {
        p.remember.push((name.clone(), Remember::Present));
    }
    let mut accepted: Vec<(&str, &Arc<ServedDocument>)> = Vec::new();
    let mut state_changed = false;

    let blocker = i.judged.iter().find_map(|j| match &j.verdict {
        Some(Verdict::Rejected(e)) if i.all_or_nothing => Some(e.rejection.clone()),
        _ => None,
    });

    for j in i.judged {
        let old_state = i.status.get(&j.name).map(|d| d.state);
        let ok = DocStatus {
            state: DocState::Ok,
            source: j.scanned.path.clone(),
            last_error: None,
        };
        let (status, candidate, reported) = match &j.verdict {
            None => {
                // A document restored from the state directory has no
                // status yet: matching it is not a recovery.
                if old_state.is_some_and(|s| s != DocState::Ok) {
                    p.recovered.push(j.name.clone());
                }
                (ok, None, false)
            }
            Some(Verdict::Accepted(doc)) => match &blocker {
                None => {
                    accepted.push((&j.name, doc));
                    (ok, None, false)
                }
                Some(b) => {
                    let status = DocStatus {
                        state: DocState::Error,
                        source: j.scanned.path.clone(),
                        last_error: Some(LastError {
                            rejection: held_back(&j.scanned.label, b),
                            sha256: j.scanned.key.doc.as_ref().ok().cloned(),
                            at: i.wall,
                        }),
                    };
                    let candidate = (j.scanned.key.clone(), Verdict::Accepted(doc.clone()));
                    (status, Some(candidate), true)
                }
            },
            Some(Verdict::Rejected(e)) => {
                let status = DocStatus {
                    state: DocState::Error,
                    source: j.scanned.path.clone(),
                    last_error: Some(e.clone()),
                };
                let candidate = (j.scanned.key.clone(), Verdict::Rejected(e.clone()));
                (status, Some(candidate), true)
            }
        };
        // Reported once per candidate: again only when judged afresh.
        if reported && (j.fresh || old_state != Some(DocState::Error)) {
            p.rejected.push(j.name.clone());
        }
        p.remember
            .push((j.name.clone(), Remember::Candidate(candidate)));
        state_changed |= old_state != Some(status.state);
        p.documents.insert(j.name.clone(), status);
    }

    // Documents known but not listed (or vanished while reading).
    let absent: BTreeSet<&String> = i
        .served
        .documents
        .keys()
        .chain(i.status.keys())
        .filter(|n| !i.listing.contains_key(*n) || i.vanished.contains(n))
        .filter(|n| !i.skipped.contains(n.as_str()))
        .collect();
    for name in absent {
        let served = i.served.documents.contains_key(name);
        if i.authoritative && blocker.is_none() {
            if served {
                p.removed.push(name.clone());
            } else {
                p.forgotten.push(name.clone());
            }
            p.documents.remove(name);
            p.remember.push((name.clone(), Remember::Forget));
            continue;
        }
        let since = match i.memory.get(name).and_then(|m| m.absent_since) {
            Some(since) => since,
            None => {
                p.remember
                    .push((name.clone(), Remember::AbsentSince(i.now)));
                i.now
            }
        };
        let due = since.checked_add(i.debounce);
        let overdue = explicit || due.is_none_or(|d| d <= i.now);
        if !overdue {
            if let Some(d) = due {
                p.follow_up = Some(p.follow_up.map_or(d, |f| f.min(d)));
            }
            continue;
        }
        let old = p.documents.get(name);
        if old.is_some_and(|d| d.state == DocState::Missing) {
            continue;
        }
        let source = old
            .map(|d| d.source.clone())
            .or_else(|| i.served.get(name).map(|d| d.source.clone()))
            .unwrap_or_else(|| i.config_dir.join(format!("{name}.toml")));
        let label = pipeline::display_path(&source);
        let message = if served {
            "the file is gone; its last good version is still served \
             (an explicit reload removes it)"
        } else {
            "the file is gone (an explicit reload forgets it)"
        };
        p.documents.insert(
            name.clone(),
            DocStatus {
                state: DocState::Missing,
                source,
                last_error: Some(LastError {
                    rejection: Rejection::bare(Code::Missing, label, message),
                    sha256: None,
                    at: i.wall,
                }),
            },
        );
        p.missing.push(name.clone());
        state_changed = true;
    }

    let publish = !accepted.is_empty() || !p.removed.is_empty();
    p.does_something = p.announced || publish || state_changed || !p.forgotten.is_empty();
    if publish {
        // ok: saturating — a generation from a corrupt state file must not
        // panic; a real one never gets near u64::MAX.
        let generation = i.served.generation.saturating_add(1);
        let mut documents = i.served.documents.clone();
        for name in &p.removed {
            documents.remove(name);
        }
        for (name, doc) in &accepted {
            let mut d = ServedDocument::clone(doc);
            d.generation = generation;
            d.loaded_at = i.wall;
            documents.insert((*name).to_string(), Arc::new(d));
        }
        p.snapshot = Some(Snapshot {
            generation,
            published_at: i.wall,
            documents,
        });
    }
    p.accepted = accepted.iter().map(|(n, _)| (*n).to_string()).collect();
    p
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
