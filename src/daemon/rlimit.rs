//! The open-file limit (`RLIMIT_NOFILE`): raised at start so that the
//! control socket's connection limit actually fits in the process.
//!
//! Every connection is a descriptor, and so is every file the reloader
//! opens. Distributions commonly start services with a soft limit of 1024,
//! far below the 2,048+ concurrent connections hotconf promises, while the
//! hard limit is much higher. [`raise_nofile`] lifts the soft limit to what
//! is needed (never above the hard limit, never lowering it), and
//! [`connections_that_fit`] says how many connections may be accepted while
//! still leaving [`RESERVED_FDS`] descriptors for the reloader, the watcher
//! and the logs — so a connection flood can never make a reload fail to
//! open a file.
//!
//! What this module does not do: log, or decide the connection limit. The
//! daemon does both with what these functions return.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept free for everything that is not a control-socket
/// connection: config and schema files being read, inotify, the state
/// directory, stdio, the runtime's own descriptors, and the `/metrics` TCP
/// port's few connections (`control::METRICS_MAX_CONNECTIONS`, 64).
pub const RESERVED_FDS: u64 = 256;

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the ceiling for an unprivileged raise).
    pub hard: u64,
}

impl NofileLimit {
    /// Whether the soft limit was changed.
    pub fn raised(&self) -> bool {
        self.soft != self.before
    }
}

/// The soft limit to ask for: at least `wanted`, never below the current
/// soft limit (a generous operator setting is kept), never above the hard
/// limit (`RLIM_INFINITY` is a very large number here, so `wanted` wins).
pub fn target_soft(soft: u64, hard: u64, wanted: u64) -> u64 {
    soft.max(wanted).min(hard)
}

/// Connections that fit under a soft limit of `soft` descriptors while
/// keeping [`RESERVED_FDS`] free, capped at `wanted`.
pub fn connections_that_fit(soft: u64, wanted: usize) -> usize {
    let room = soft.saturating_sub(RESERVED_FDS);
    usize::try_from(room).map_or(wanted, |room| room.min(wanted))
}

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` descriptors, within
/// the hard limit. Returns the limits before and after; an error only when
/// the limits cannot even be read (a failed raise is reported as an
/// unchanged soft limit, which the caller compares with what it wanted).
pub fn raise_nofile(wanted: u64) -> io::Result<NofileLimit> {
    // rustix (already the crate for every other system call here) does what
    // the `rlimit` crate would, without another dependency; `None` is
    // `RLIM_INFINITY`, which the arithmetic below treats as `u64::MAX`.
    let lim = getrlimit(Resource::Nofile);
    let before = lim.current.unwrap_or(u64::MAX);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let target = target_soft(before, hard, wanted);
    if target == before {
        return Ok(NofileLimit {
            before,
            soft: before,
            hard,
        });
    }
    let new = Rlimit {
        current: (target != u64::MAX).then_some(target),
        maximum: lim.maximum,
    };
    let soft = match setrlimit(Resource::Nofile, new) {
        Ok(()) => target,
        Err(_) => before,
    };
    Ok(NofileLimit { before, soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_raises_within_the_hard_limit_and_never_lowers() {
        assert_eq!(target_soft(1024, 524_288, 4352), 4352);
        assert_eq!(target_soft(1024, 2048, 4352), 2048, "capped by hard");
        assert_eq!(target_soft(65_536, 524_288, 4352), 65_536, "kept");
        assert_eq!(target_soft(1024, u64::MAX, 4352), 4352, "infinite hard");
    }

    #[test]
    fn connections_leave_room_for_files() {
        assert_eq!(connections_that_fit(20_000, 4096), 4096);
        assert_eq!(connections_that_fit(1024, 4096), 768);
        assert_eq!(connections_that_fit(100, 4096), 0);
    }

    #[test]
    fn raising_to_the_current_limit_changes_nothing() {
        let now = raise_nofile(0).expect("getrlimit");
        assert!(!now.raised());
        assert!(now.soft <= now.hard);
        // Asking for more than the hard limit ends at the hard limit (a
        // raise within the hard limit is allowed to any process).
        let up = raise_nofile(u64::MAX).expect("getrlimit");
        assert_eq!(up.soft, up.hard);
    }
}
