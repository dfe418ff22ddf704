//! Reload step 4, *commit*: carries out a [`Plan`]. Logs what it decided,
//! persists the new snapshot (before anyone is told the reload finished),
//! publishes the snapshot together with its status in one swap, wakes
//! blocking queries and subscribers, and tells the observers.
//!
//! It decides nothing (that was [`super::plan`]); it is the only place that
//! writes the store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::observe::logging;
use crate::persist::Persister;
use crate::store::snapshot::Snapshot;
use crate::store::status::{Counters, DocState, DocStatus, ReloadOutcome, Status, Trigger};

use super::judge::Judged;
use super::plan::Plan;
use super::Reloader;

/// When and why a reload ran, and what it started from.
pub(super) struct Context<'a> {
    /// What started it.
    pub(super) trigger: Trigger,
    /// When it started (wall clock).
    pub(super) at: SystemTime,
    /// When it started (for its duration).
    pub(super) started: Instant,
    /// What was served when it started.
    pub(super) current: &'a Arc<Snapshot>,
    /// The documents read and judged.
    pub(super) judged: &'a [Judged],
    /// Explicit reloads: documents still being written when it began,
    /// waited for, then read complete.
    pub(super) waited: Vec<String>,
    /// Explicit reloads: documents still being written after waiting up
    /// to `--debounce`; left as they were, for the follow-up reload.
    pub(super) deferred: Vec<String>,
}

impl Reloader {
    /// Carries out `plan`; returns the reload's outcome.
    pub(super) fn commit(&mut self, cx: &Context<'_>, plan: Plan) -> ReloadOutcome {
        let Context {
            trigger,
            at,
            started,
            current,
            judged,
            ..
        } = *cx;
        if let Some(at) = plan.follow_up {
            self.queue.follow_up(at);
        }
        if !plan.does_something {
            // Not a reload, but a failed persist is retried (the disk may
            // have been freed since).
            if self.persist(current) {
                let persist = self.persister.as_ref().map(Persister::status);
                self.writer.update_status(|s| s.persist = persist);
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
                waited: cx.waited.clone(),
                deferred: cx.deferred.clone(),
            };
        }
        if !plan.announced {
            // No evaluation, but a publish or a state change: still a reload.
            for o in &self.observers {
                o.reload_started(trigger);
            }
        }

        for name in &plan.rejected {
            if let Some(DocStatus {
                last_error: Some(e),
                ..
            }) = plan.documents.get(name)
            {
                logging::document_rejected(
                    name,
                    &e.rejection,
                    current.get(name).map(|d| d.generation),
                );
            }
        }
        for name in &plan.missing {
            logging::document_missing(name, current.get(name).map(|d| d.generation));
        }
        for name in &plan.recovered {
            logging::document_recovered(name, current.get(name).map(|d| d.generation));
        }

        let publish = plan.snapshot.is_some();
        let snapshot = match plan.snapshot {
            Some(s) => {
                if let Some(p) = &mut self.persister {
                    // The exact inputs of what was just published, for the state.
                    let names: HashSet<&str> = plan.accepted.iter().map(String::as_str).collect();
                    for j in judged.iter().filter(|j| names.contains(j.name.as_str())) {
                        if let (Ok(bytes), Ok(schema)) = (&j.scanned.bytes, &j.scanned.schema) {
                            p.accepted(&j.name, bytes, schema);
                        }
                    }
                }
                Arc::new(s)
            }
            None => current.clone(),
        };
        // Part of the reload: done before anyone is told it finished.
        let refused_startup =
            trigger == Trigger::Startup && plan.documents.values().any(|d| d.state != DocState::Ok);
        let refused = refused_startup && !self.persister.as_ref().is_some_and(Persister::restored);
        if !refused {
            self.persist(&snapshot);
        }

        let outcome = ReloadOutcome {
            trigger,
            at,
            duration: started.elapsed(),
            accepted: plan.accepted,
            rejected: plan.rejected,
            removed: plan.removed,
            generation: snapshot.generation,
            waited: cx.waited.clone(),
            deferred: cx.deferred.clone(),
        };
        let status = {
            let mut s = Status::clone(&self.writer.current().status);
            s.documents = plan.documents;
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
            s
        };
        // The snapshot and its status in one swap; waiters are woken only
        // after the publish is logged.
        let status = self.writer.publish(snapshot.clone(), status);
        // A refused startup is never served: saying "published" before the
        // daemon's "not starting" would be a lie in the log.
        if publish && !refused {
            let generation = snapshot.generation;
            for name in &outcome.accepted {
                if let Some(doc) = snapshot.get(name) {
                    // The redacted hash (the source hash without secrets):
                    // logs reach more readers than the socket's trusted peers.
                    logging::document_accepted(name, &doc.source, generation, &doc.redacted_sha256);
                }
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
            // Typed handles first: whoever the wake reaches reads the new value.
            crate::store::handle::fill(self.config.types.sinks(), &snapshot);
            self.writer.wake();
        }
        for o in &self.observers {
            o.reload_finished(&outcome, &status, &snapshot);
        }
        outcome
    }

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
