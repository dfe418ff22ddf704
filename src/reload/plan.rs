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
    /// Documents an embedding program holds a typed handle to: never
    /// removed, not even by an explicit reload (their last good version
    /// stays served, their state `missing`).
    pub(super) pinned: &'a BTreeSet<String>,
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
        let pinned = served && i.pinned.contains(name.as_str());
        if i.authoritative && blocker.is_none() && !pinned {
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
        let message = if pinned {
            "the file is gone; its last good version is still served \
             (the embedding program holds a handle to it: never removed)"
        } else if served {
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

#[cfg(test)]
mod tests {
    //! One test per SPEC §2 rule, on the plan alone: no files, no clock.

    use super::*;
    use crate::reload::judge::{self, Triage};
    use crate::reload::scan::Scanned;
    use crate::store::typed::TypeRegistry;

    fn path(name: &str) -> PathBuf {
        PathBuf::from(format!("configs/{name}.toml"))
    }

    /// A served (or acceptable) version `v` of `name` under schema `schema`.
    fn doc(name: &str, v: u64, schema: &str) -> Arc<ServedDocument> {
        let value = Arc::new(serde_json::json!({ "v": v }));
        Arc::new(ServedDocument {
            value: value.clone(),
            redacted: value,
            has_secrets: false,
            sha256: format!("{name}-{v}"),
            redacted_sha256: format!("{name}-{v}"),
            generation: 1,
            loaded_at: SystemTime::UNIX_EPOCH,
            source: path(name),
            schema_sha256: schema.into(),
            typed: None,
            bodies: Default::default(),
        })
    }

    /// What a scan of version `v` of `name` under `schema` reads.
    fn scanned(name: &str, v: u64, schema: &str) -> Scanned {
        Scanned {
            path: path(name),
            label: format!("configs/{name}.toml"),
            bytes: Ok(Vec::new()),
            // Only the key matters to the plan.
            schema: Err(Rejection::bare(Code::Io, "unused", "unused")),
            key: Key {
                doc: Ok(format!("{name}-{v}")),
                schema: Ok(schema.into()),
            },
        }
    }

    fn unchanged(name: &str, v: u64) -> Judged {
        Judged {
            name: name.into(),
            scanned: scanned(name, v, "s1"),
            verdict: None,
            fresh: false,
        }
    }

    fn accepted(name: &str, v: u64) -> Judged {
        Judged {
            name: name.into(),
            scanned: scanned(name, v, "s1"),
            verdict: Some(Verdict::Accepted(doc(name, v, "s1"))),
            fresh: true,
        }
    }

    fn rejected(name: &str, v: u64, code: Code) -> Judged {
        let rejection = Rejection::bare(code, format!("configs/{name}.toml"), "bad");
        Judged {
            name: name.into(),
            scanned: scanned(name, v, "s1"),
            verdict: Some(Verdict::Rejected(LastError {
                rejection,
                sha256: Some(format!("{name}-{v}")),
                at: SystemTime::UNIX_EPOCH,
            })),
            fresh: true,
        }
    }

    fn ok_status(name: &str) -> DocStatus {
        DocStatus {
            state: DocState::Ok,
            source: path(name),
            last_error: None,
        }
    }

    /// Everything a plan starts from, with `served` at version 1 each,
    /// all `ok`, all listed.
    struct World {
        trigger: Trigger,
        all_or_nothing: bool,
        authoritative: Option<bool>,
        served: Snapshot,
        status: BTreeMap<String, DocStatus>,
        judged: Vec<Judged>,
        listing: BTreeMap<String, PathBuf>,
        skipped: HashSet<String>,
        vanished: Vec<String>,
        memory: BTreeMap<String, Memory>,
        pinned: BTreeSet<String>,
        debounce: Duration,
        now: Instant,
    }

    impl World {
        fn serving(names: &[&str]) -> World {
            World {
                trigger: Trigger::Watch,
                all_or_nothing: false,
                authoritative: None,
                served: Snapshot {
                    generation: 1,
                    published_at: SystemTime::UNIX_EPOCH,
                    documents: names
                        .iter()
                        .map(|n| (n.to_string(), doc(n, 1, "s1")))
                        .collect(),
                },
                status: names
                    .iter()
                    .map(|n| (n.to_string(), ok_status(n)))
                    .collect(),
                judged: Vec::new(),
                listing: names.iter().map(|n| (n.to_string(), path(n))).collect(),
                skipped: HashSet::new(),
                vanished: Vec::new(),
                memory: BTreeMap::new(),
                pinned: BTreeSet::new(),
                debounce: Duration::from_millis(100),
                now: Instant::now(),
            }
        }

        fn list(mut self, names: &[&str]) -> World {
            self.listing = names.iter().map(|n| (n.to_string(), path(n))).collect();
            self
        }

        fn read(mut self, judged: Vec<Judged>) -> World {
            self.judged = judged;
            self
        }

        fn by(mut self, trigger: Trigger) -> World {
            self.trigger = trigger;
            self
        }

        fn plan(&self) -> Plan {
            let present = self.judged.iter().map(|j| j.name.clone()).collect();
            plan(&Inputs {
                trigger: self.trigger,
                all_or_nothing: self.all_or_nothing,
                authoritative: self
                    .authoritative
                    .unwrap_or_else(|| self.trigger.is_explicit()),
                served: &self.served,
                status: &self.status,
                judged: &self.judged,
                listing: &self.listing,
                present: &present,
                skipped: &self.skipped,
                vanished: &self.vanished,
                memory: &self.memory,
                pinned: &self.pinned,
                config_dir: Path::new("configs"),
                debounce: self.debounce,
                now: self.now,
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            })
        }
    }

    fn state(p: &Plan, name: &str) -> Option<DocState> {
        p.documents.get(name).map(|d| d.state)
    }

    fn served_version(s: &Snapshot, name: &str) -> Option<(u64, u64)> {
        s.get(name)
            .map(|d| (d.value["v"].as_u64().unwrap_or(0), d.generation))
    }

    #[test]
    fn documents_are_accepted_one_by_one() {
        let w = World::serving(&["a", "b"])
            .read(vec![accepted("a", 2), rejected("b", 2, Code::Schema)]);
        let p = w.plan();
        let s = p.snapshot.as_ref().expect("a publishes");
        assert_eq!(s.generation, 2);
        assert_eq!(
            served_version(s, "a"),
            Some((2, 2)),
            "a's new version, new generation"
        );
        assert_eq!(
            served_version(s, "b"),
            Some((1, 1)),
            "b's last good version stays"
        );
        assert_eq!(p.accepted, ["a"]);
        assert_eq!(p.rejected, ["b"]);
        assert_eq!(state(&p, "a"), Some(DocState::Ok));
        assert_eq!(state(&p, "b"), Some(DocState::Error));
        assert!(p.does_something);
    }

    #[test]
    fn all_or_nothing_publishes_nothing_when_anything_is_rejected() {
        let mut w =
            World::serving(&["a", "b"]).read(vec![accepted("a", 2), rejected("b", 2, Code::Parse)]);
        w.all_or_nothing = true;
        let p = w.plan();
        assert!(p.snapshot.is_none(), "nothing published");
        assert!(p.accepted.is_empty());
        assert_eq!(p.rejected, ["a", "b"]);
        let held = p.documents.get("a").and_then(|d| d.last_error.as_ref());
        let held = held.expect("a is held back");
        assert_eq!(held.rejection.code, Code::Parse, "with the blocker's code");
        assert!(
            held.rejection
                .problems
                .iter()
                .any(|pr| pr.message.contains("--all-or-nothing")),
            "{:?}",
            held.rejection
        );
        // The valid candidate is remembered, not judged again.
        assert!(p
            .remember
            .iter()
            .any(|(n, r)| n == "a"
                && matches!(r, Remember::Candidate(Some((_, Verdict::Accepted(_)))))));
        // Without the blocker the same reload publishes a.
        w.all_or_nothing = false;
        assert!(w.plan().snapshot.is_some());
    }

    #[test]
    fn identical_bytes_change_nothing() {
        let w = World::serving(&["a", "b"]).read(vec![unchanged("a", 1), unchanged("b", 1)]);
        let p = w.plan();
        assert!(p.snapshot.is_none());
        assert!(
            !p.does_something,
            "an implicit look that finds nothing is no reload"
        );
        assert!(p.accepted.is_empty() && p.rejected.is_empty() && p.removed.is_empty());
        // Explicit: a reload (it is reported), but still no new generation.
        let p = w.by(Trigger::Api).plan();
        assert!(p.does_something && p.snapshot.is_none());
    }

    #[test]
    fn a_changed_schema_revalidates_and_a_failure_keeps_the_last_good_version() {
        let types = TypeRegistry::default();
        let served = doc("a", 1, "s1");
        let same = scanned("a", 1, "s1");
        assert!(matches!(
            judge::triage(&types, "a", &same, Some(&served), None),
            Triage::Unchanged
        ));
        let new_schema = scanned("a", 1, "s2");
        assert!(
            matches!(
                judge::triage(&types, "a", &new_schema, Some(&served), None),
                Triage::Evaluate
            ),
            "same bytes, new schema: judged again"
        );
        // The same failed candidate is not judged again...
        let mut judged = rejected("a", 1, Code::Schema);
        judged.scanned = new_schema;
        let verdict = judged.verdict.clone().expect("a verdict");
        let memory = Memory {
            candidate: Some((judged.scanned.key.clone(), verdict)),
            absent_since: None,
        };
        assert!(matches!(
            judge::triage(&types, "a", &judged.scanned, Some(&served), Some(&memory)),
            Triage::Known(Verdict::Rejected(_))
        ));
        // ...and failing the new schema keeps the old version served.
        let p = World::serving(&["a"]).read(vec![judged]).plan();
        assert!(p.snapshot.is_none());
        assert_eq!(state(&p, "a"), Some(DocState::Error));
        assert_eq!(p.rejected, ["a"]);
    }

    #[test]
    fn a_known_rejection_is_reported_once() {
        let mut w = World::serving(&["a"]).read(vec![rejected("a", 2, Code::Schema)]);
        let first = w.plan();
        assert_eq!(first.rejected, ["a"]);
        w.status = first.documents;
        w.judged[0].fresh = false;
        let again = w.plan();
        assert!(
            again.rejected.is_empty(),
            "the same candidate, already reported"
        );
        assert!(!again.does_something);
    }

    #[test]
    fn implicit_reloads_never_remove_a_document() {
        let w = World::serving(&["a", "b"])
            .list(&["a"])
            .read(vec![unchanged("a", 1)]);
        // Within the debounce: nothing yet, but a look is due when it ends.
        let p = w.plan();
        assert!(p.snapshot.is_none());
        assert!(p.missing.is_empty() && p.removed.is_empty());
        assert_eq!(p.follow_up, w.now.checked_add(w.debounce));
        assert!(p
            .remember
            .iter()
            .any(|(n, r)| n == "b" && matches!(r, Remember::AbsentSince(t) if *t == w.now)));
        // After it: missing, and its last good version is still served.
        let mut w = w;
        w.memory.insert(
            "b".into(),
            Memory {
                candidate: None,
                absent_since: w.now.checked_sub(Duration::from_secs(1)),
            },
        );
        let p = w.plan();
        assert!(p.snapshot.is_none(), "still served");
        assert_eq!(p.missing, ["b"]);
        assert_eq!(state(&p, "b"), Some(DocState::Missing));
        let e = p.documents.get("b").and_then(|d| d.last_error.as_ref());
        assert_eq!(e.map(|e| e.rejection.code), Some(Code::Missing));
        assert!(p.does_something);
        // Reported once.
        w.status = p.documents;
        assert!(!w.plan().does_something);
    }

    #[test]
    fn explicit_reloads_keep_pinned_documents_as_missing() {
        let mut w = World::serving(&["a", "b"])
            .list(&["a"])
            .read(vec![unchanged("a", 1)])
            .by(Trigger::Signal);
        w.pinned.insert("b".to_string());
        let p = w.plan();
        assert!(p.snapshot.is_none(), "nothing removed, nothing published");
        assert!(p.removed.is_empty());
        assert_eq!(p.missing, ["b"]);
        assert_eq!(p.documents["b"].state, DocState::Missing);
    }

    #[test]
    fn explicit_reloads_remove_what_is_not_listed() {
        let w = World::serving(&["a", "b"])
            .list(&["a"])
            .read(vec![unchanged("a", 1)])
            .by(Trigger::Signal);
        let p = w.plan();
        let s = p.snapshot.as_ref().expect("a removal publishes");
        assert_eq!(s.generation, 2);
        assert!(s.get("b").is_none());
        assert_eq!(served_version(s, "a"), Some((1, 1)), "a untouched");
        assert_eq!(p.removed, ["b"]);
        assert!(!p.documents.contains_key("b"));
        assert!(p
            .remember
            .iter()
            .any(|(n, r)| n == "b" && matches!(r, Remember::Forget)));

        // Not when the directory could not be listed: missing, still served.
        let mut unlisted = World::serving(&["a", "b"]).list(&[]).by(Trigger::Signal);
        unlisted.authoritative = Some(false);
        let p = unlisted.plan();
        assert!(p.snapshot.is_none() && p.removed.is_empty());
        assert_eq!(p.missing, ["a", "b"], "explicit: no debounce");

        // Not when all-or-nothing rejected something in the same reload.
        let mut blocked = World::serving(&["a", "b"])
            .list(&["a"])
            .read(vec![rejected("a", 2, Code::Parse)])
            .by(Trigger::Api);
        blocked.all_or_nothing = true;
        let p = blocked.plan();
        assert!(p.snapshot.is_none() && p.removed.is_empty());
    }

    #[test]
    fn a_never_valid_document_is_an_error_and_not_served() {
        let w = World::serving(&["a"])
            .list(&["a", "c"])
            .read(vec![unchanged("a", 1), rejected("c", 1, Code::Schema)]);
        let p = w.plan();
        assert!(p.snapshot.is_none(), "nothing to publish");
        assert_eq!(state(&p, "c"), Some(DocState::Error));
        assert_eq!(p.rejected, ["c"]);
        // Also at startup, among valid ones.
        let mut w = World::serving(&[])
            .list(&["a", "c"])
            .read(vec![accepted("a", 1), rejected("c", 1, Code::Schema)])
            .by(Trigger::Startup);
        w.status.clear();
        let p = w.plan();
        let s = p.snapshot.as_ref().expect("a is published");
        assert!(s.get("a").is_some() && s.get("c").is_none());
    }

    #[test]
    fn an_invalid_schema_keeps_the_document_served() {
        let w = World::serving(&["a"]).read(vec![rejected("a", 1, Code::SchemaInvalid)]);
        let p = w.plan();
        assert!(p.snapshot.is_none(), "served version unchanged");
        let e = p.documents.get("a").and_then(|d| d.last_error.as_ref());
        assert_eq!(e.map(|e| e.rejection.code), Some(Code::SchemaInvalid));
        assert_eq!(state(&p, "a"), Some(DocState::Error));
    }

    #[test]
    fn matching_what_is_served_again_is_a_recovery() {
        let mut w = World::serving(&["a"]).read(vec![unchanged("a", 1)]);
        w.status.insert(
            "a".into(),
            DocStatus {
                state: DocState::Error,
                ..ok_status("a")
            },
        );
        let p = w.plan();
        assert_eq!(p.recovered, ["a"]);
        assert_eq!(state(&p, "a"), Some(DocState::Ok));
        assert!(p.does_something && p.snapshot.is_none());
        assert!(p
            .remember
            .iter()
            .any(|(n, r)| n == "a" && matches!(r, Remember::Candidate(None))));
    }
}
