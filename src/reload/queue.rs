//! The reload queue: where every trigger waits for the reloader.
//!
//! It holds at most one pending reload. Requests that arrive while a reload
//! runs merge into that one pending reload (coalescing), which is explicit if
//! any of them was, and every waiter of those requests gets the outcome of
//! the reload that serves them. It also holds the reloader's own follow-up
//! (a check due after `--debounce`, so that a vanished file gets reported
//! even if no event ever comes), and the facts that are not reloads but
//! belong in the status all the same (the watcher's health), so that the
//! reloader stays the store's only writer.
//!
//! It does not run reloads and knows nothing about files: a blocking
//! `Mutex` + `Condvar`, because its consumer is a plain thread.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::store::status::{ReloadOutcome, Trigger};

/// Where a requester waits for the outcome of the reload that serves it.
pub(crate) type Reply = oneshot::Sender<ReloadOutcome>;

/// One reload's worth of coalesced requests.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The merged trigger: explicit if any request was; `None` when only a
    /// fact arrived.
    pub(crate) trigger: Option<Trigger>,
    /// The watcher's latest health, if it reported since the last batch:
    /// why watching is degraded, or `None` when it is fine.
    pub(crate) watch_health: Option<Option<String>>,
    /// Everyone waiting for this reload's outcome.
    pub(crate) waiters: Vec<Reply>,
}

/// The queue's state under its lock.
#[derive(Debug, Default)]
struct State {
    /// The merged trigger of every request not yet taken by a reload.
    pending: Option<Trigger>,
    /// Waiters of those requests.
    waiters: Vec<Reply>,
    /// When the reloader wants to look again by itself (implicit).
    follow_up: Option<Instant>,
    /// The watcher's latest health report not yet taken.
    watch_health: Option<Option<String>>,
    /// Set on shutdown: no more reloads start.
    closed: bool,
}

/// The single queue between every trigger and the reloader.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

/// The trigger of a reload serving both `current` and `new`: the first
/// explicit one if any (explicit wins), else the first one.
pub(crate) fn merge(current: Option<Trigger>, new: Trigger) -> Trigger {
    match current {
        None => new,
        Some(c) if c.is_explicit() => c,
        Some(_) if new.is_explicit() => new,
        Some(c) => c,
    }
}

impl Queue {
    /// The state, even if a panicking thread poisoned the lock: every update
    /// below leaves it consistent, so recovering is safe.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a request. Returns `false` (and drops `reply`, so its waiter
    /// sees the reloader gone) when the queue is closed.
    pub(crate) fn push(&self, trigger: Trigger, reply: Option<Reply>) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.pending = Some(merge(s.pending, trigger));
        if let Some(r) = reply {
            s.waiters.push(r);
        }
        drop(s);
        self.wake.notify_all();
        true
    }

    /// Records the watcher's health (the latest report wins). Returns
    /// `false` when the queue is closed.
    pub(crate) fn watch_health(&self, degraded: Option<String>) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.watch_health = Some(degraded);
        drop(s);
        self.wake.notify_all();
        true
    }

    /// Asks for an implicit look at `at` (the earliest request wins).
    pub(crate) fn follow_up(&self, at: Instant) {
        let mut s = self.lock();
        s.follow_up = Some(match s.follow_up {
            Some(old) if old <= at => old,
            _ => at,
        });
        drop(s);
        self.wake.notify_all();
    }

    /// Stops the queue: no reload starts after this; pending waiters are
    /// dropped (they see the reloader gone).
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.pending = None;
        s.waiters.clear();
        drop(s);
        self.wake.notify_all();
    }

    /// Whether [`Queue::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Takes the pending requests without waiting, if any (or a due
    /// follow-up, as an implicit `Watch` request).
    #[cfg(test)]
    pub(crate) fn try_take(&self) -> Option<Batch> {
        let mut s = self.lock();
        Self::take_locked(&mut s, Instant::now())
    }

    fn take_locked(s: &mut State, now: Instant) -> Option<Batch> {
        if s.closed {
            return None;
        }
        if let Some(at) = s.follow_up {
            if at <= now {
                s.follow_up = None;
                s.pending = Some(merge(s.pending, Trigger::Watch));
            }
        }
        if s.pending.is_none() && s.watch_health.is_none() {
            return None;
        }
        Some(Batch {
            trigger: s.pending.take(),
            watch_health: s.watch_health.take(),
            waiters: std::mem::take(&mut s.waiters),
        })
    }

    /// Blocks until there is something to do; `None` once closed.
    pub(crate) fn next(&self) -> Option<Batch> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            let now = Instant::now();
            if let Some(batch) = Self::take_locked(&mut s, now) {
                return Some(batch);
            }
            s = match s.follow_up {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.wake
                        .wait_timeout(s, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0)
                }
                None => self.wake.wait(s).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn n_triggers_during_a_reload_make_exactly_one_more() {
        let q = Queue::default();
        q.push(Trigger::Startup, None);
        let first = q.try_take();
        assert_eq!(first.and_then(|b| b.trigger), Some(Trigger::Startup));
        // A reload is now "running": everything that arrives coalesces.
        let mut receivers = Vec::new();
        for _ in 0..50 {
            let (tx, rx) = oneshot::channel();
            assert!(q.push(Trigger::Watch, Some(tx)));
            receivers.push(rx);
        }
        let second = q.try_take().expect("one more reload");
        assert_eq!(second.trigger, Some(Trigger::Watch));
        assert_eq!(second.waiters.len(), 50, "every waiter is served by it");
        assert!(q.try_take().is_none(), "exactly one more");
    }

    #[test]
    fn explicit_wins_over_watch() {
        let q = Queue::default();
        q.push(Trigger::Watch, None);
        q.push(Trigger::Poll, None);
        q.push(Trigger::Signal, None);
        q.push(Trigger::Watch, None);
        q.push(Trigger::Api, None);
        let b = q.try_take().expect("a reload");
        assert_eq!(b.trigger, Some(Trigger::Signal));
        assert!(b.trigger.is_some_and(Trigger::is_explicit));
        assert_eq!(merge(Some(Trigger::Poll), Trigger::Watch), Trigger::Poll);
        assert_eq!(merge(Some(Trigger::Watch), Trigger::Api), Trigger::Api);
        assert_eq!(merge(Some(Trigger::Api), Trigger::Watch), Trigger::Api);
    }

    #[test]
    fn follow_up_becomes_an_implicit_reload_when_due() {
        let q = Queue::default();
        q.follow_up(Instant::now() + Duration::from_millis(20));
        assert!(q.try_take().is_none(), "not due yet");
        let b = q.next().expect("due");
        assert_eq!(b.trigger, Some(Trigger::Watch));
        // Merged with an explicit request, the explicit one wins.
        q.follow_up(Instant::now());
        q.push(Trigger::Api, None);
        assert_eq!(q.try_take().and_then(|b| b.trigger), Some(Trigger::Api));
    }

    #[test]
    fn a_health_report_is_taken_alone_and_the_latest_wins() {
        let q = Queue::default();
        assert!(q.watch_health(Some("inotify limit".into())));
        assert!(q.watch_health(None));
        let b = q.try_take().expect("a batch for the fact");
        assert_eq!(b.trigger, None, "a fact is not a reload");
        assert_eq!(b.watch_health, Some(None));
        assert!(q.try_take().is_none());
        q.close();
        assert!(!q.watch_health(None));
    }

    #[test]
    fn close_drops_waiters_and_refuses_requests() {
        let q = Queue::default();
        let (tx, mut rx) = oneshot::channel();
        q.push(Trigger::Api, Some(tx));
        q.close();
        assert!(rx.try_recv().is_err(), "waiter sees the reloader gone");
        assert!(!q.push(Trigger::Api, None));
        assert!(q.next().is_none());
    }
}
