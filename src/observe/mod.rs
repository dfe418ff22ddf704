//! Observers of reloads: what the outside world is told about them.
//!
//! Logs ([`logging`]), Prometheus metrics ([`metrics`]) and systemd's
//! notifications and watchdog ([`systemd`]). Each of them reads the outcome
//! of a reload, the status and the snapshot after it; none of them decides
//! anything about what is served, and none of them writes the store.

pub mod logging;
#[cfg(feature = "daemon")]
#[doc(hidden)]
pub mod metrics;
#[cfg(feature = "daemon")]
#[doc(hidden)]
pub mod systemd;
