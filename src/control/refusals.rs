//! Rate-limited warnings about refused requests, per peer uid: the first
//! refusal of a uid is logged at once, later ones at most once every
//! [`RefusalLog::EVERY`] as one line with the count refused meanwhile. So a
//! peer that repeats a forbidden request cannot flood the journal (and push
//! real rejection lines past journald's rate limit).
//!
//! It only decides *whether* to log now; the caller writes the line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most uids remembered; beyond it the oldest entries are forgotten (a
/// forgotten uid is simply logged again at once).
const MAX_UIDS: usize = 1024;

/// Per-uid state of one kind of refusal.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    /// uid (`None`: unknown) → (when last logged, refusals since).
    seen: Mutex<HashMap<Option<u32>, (Instant, u64)>>,
}

impl RefusalLog {
    /// Minimum time between two lines for one uid.
    pub(crate) const EVERY: Duration = Duration::from_secs(10);

    /// Notes one refusal of `uid`. `Some(n)` when a line is due now, `n`
    /// being the refusals it stands for (this one included); `None` when
    /// it is counted for a later line.
    pub(crate) fn note(&self, uid: Option<u32>) -> Option<u64> {
        self.note_at(uid, Instant::now())
    }

    fn note_at(&self, uid: Option<u32>, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((last, count)) = seen.get_mut(&uid) {
            *count = count.saturating_add(1);
            if now.saturating_duration_since(*last) < Self::EVERY {
                return None;
            }
            let n = *count;
            *last = now;
            *count = 0;
            return Some(n);
        }
        if seen.len() >= MAX_UIDS {
            seen.retain(|_, (last, _)| now.saturating_duration_since(*last) < Self::EVERY);
            if seen.len() >= MAX_UIDS {
                seen.clear();
            }
        }
        seen.insert(uid, (now, 0));
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_uid_and_period_with_a_count() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note_at(Some(5), t0), Some(1));
        for _ in 0..999 {
            assert_eq!(log.note_at(Some(5), t0), None);
        }
        // Another uid is not silenced by the first one's flood.
        assert_eq!(log.note_at(Some(6), t0), Some(1));
        let later = t0 + RefusalLog::EVERY;
        assert_eq!(log.note_at(Some(5), later), Some(1000));
        assert_eq!(log.note_at(Some(5), later), None);
    }
}
