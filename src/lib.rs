//! hotconf — a hot-reloadable configuration daemon.
//!
//! Operators edit TOML files; hotconf parses them, validates them against
//! JSON Schema, rejects bad updates with a precise [`Rejection`] instead of
//! crashing, and atomically publishes an immutable [`Snapshot`] through an
//! `ArcSwap` that every reader loads without locks.
//!
//! Data flows one way, and the modules follow it:
//!
//! ```text
//! triggers (watch, SIGHUP, API, startup)
//!     → one reload queue → reloader (read → parse → validate)
//!     → publish one immutable Snapshot into the ArcSwap store
//!     → readers: in-process workers, the control socket, systemd, metrics
//! ```
//!
//! - [`document`], [`schema`], [`pipeline`]: pure bytes → verdict.
//! - [`limits`]: the map of hard limits; linear-time schema regexes.
//! - [`snapshot`], [`status`], [`store`]: what is served and what is known.
//! - [`reload`]: the queue and the reloader, the one writer of the store.
//! - [`logging`]: the log subscriber and the stable log events.
//! - [`daemon`]: `hotconf run`, wiring everything together.
//! - [`control`]: the HTTP API on the unix socket; [`metrics`]: Prometheus.
//! - [`paths`]: where the socket is, for daemon and client alike;
//!   [`rlimit`]: the open-file limit raised to fit the connections.
//! - [`systemd`]: sd_notify readiness/reload/stop messages and the watchdog.
//! - [`client`]: the CLI talking to a running daemon.
//! - [`cli`]: flag parsing for the `hotconf` binary.
//!
//! # Embedding
//!
//! A Rust service can run the store and the reloader without the binary.
//! The reloader lives on its own thread (file reads never block an async
//! runtime) and needs no runtime of its own; [`ReloadHandle::reload`]'s
//! future runs on any executor, [`ReloadHandle::reload_blocking`] serves
//! synchronous code.
//!
//! ```no_run
//! use std::sync::Arc;
//! use hotconf::{ReloadConfig, Reloader, Store, Trigger};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(Store::with_random_instance());
//! let mut config = ReloadConfig::new("configs", "schemas");
//! config.all_or_nothing = true; // optional: see ReloadConfig's fields
//! // Observers (systemd, metrics, logs: `logging::LogObserver`) are fixed
//! // here, before the reloader starts.
//! let reload = Reloader::spawn(config, store.clone(), Vec::new())?;
//!
//! // The startup load; check `store.status()` to refuse bad files.
//! let outcome = reload.reload_blocking(Trigger::Startup)?;
//! assert!(outcome.rejected.is_empty(), "{:?}", store.status());
//!
//! // Anywhere, on any thread, lock-free:
//! let snapshot = store.load();
//! if let Some(app) = snapshot.get("app") {
//!     println!("generation {}: {}", app.generation, app.value);
//! }
//! // Reload when you like (a file watcher, a timer, an admin endpoint):
//! reload.request(Trigger::Watch);
//! // Async code can wait for new generations: `store.subscribe()`.
//! # Ok(())
//! # }
//! ```
//!
//! Invariants: the reloader is the only writer of the [`Store`]; a
//! [`Snapshot`] never changes once published; the generation moves only
//! when served content changes; dropping the last [`ReloadHandle`] (or
//! [`ReloadHandle::shutdown`]) stops the reloader after its in-flight
//! reload.
//!
//! See `ARCHITECTURE.md` for the invariants.

pub mod cli;
pub mod client;
pub mod control;
pub mod daemon;
pub mod document;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod pipeline;
pub mod rejection;
pub mod reload;
pub mod rlimit;
pub mod schema;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod systemd;

pub use rejection::{Code, Problem, Rejection};
pub use reload::{ReloadConfig, ReloadHandle, ReloadObserver, Reloader};
pub use snapshot::{ServedDocument, Snapshot};
pub use status::Trigger;
pub use store::Store;
