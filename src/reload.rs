//! The reload queue and the reloader: the only writer of the store.
//!
//! Every trigger (startup, watch, poll, SIGHUP, API) is a request into one
//! queue consumed by one task. Reloads never overlap; requests that arrive
//! during a reload coalesce into exactly one more, explicit if any of them
//! was. (Implemented by the daemon-core work.)

use crate::status::{ReloadOutcome, Trigger};

/// Cloneable handle to request reloads.
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    _private: (),
}

/// The reloader has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the reloader has stopped")]
pub struct ReloaderGone;

impl ReloadHandle {
    /// Requests a reload without waiting for it.
    pub fn request(&self, trigger: Trigger) {
        let _ = trigger;
    }

    /// Requests a reload and waits for the reload that serves it; returns
    /// its outcome.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadOutcome, ReloaderGone> {
        let _ = trigger;
        Err(ReloaderGone)
    }
}
