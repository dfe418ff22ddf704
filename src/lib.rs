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
//! - [`watch`]: file-system events → "look again" signals for the reloader.
//! - [`typed`]: Rust types registered for documents (`E_TYPE`), typed reads.
//! - [`persist`]: the state directory: the last good snapshot on disk.
//! - [`output`]: `--outputs`: files rendered, checked and applied for
//!   programs that only read files.
//! - [`logging`]: the log subscriber and the stable log events.
//! - [`daemon`]: `hotconf run`, wiring everything together.
//! - [`control`]: the HTTP API on the unix socket; [`metrics`]: Prometheus.
//! - [`paths`]: where the socket is, for daemon and client alike;
//!   [`rlimit`]: the open-file limit raised to fit the connections.
//! - [`systemd`]: sd_notify readiness/reload/stop messages and the watchdog.
//! - [`history`]: the reload history (key-level diffs) and read-only plans.
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
//! A service that wants its configuration as a Rust type registers the type
//! for the document *before* the reloader starts. A version that passes its
//! schema but does not deserialize into the type is then rejected with
//! `E_TYPE` like any other rejection (the last good value stays served), and
//! every accepted version carries its value of the type, built once:
//! readers get an `Arc<T>` without locks and without deserializing
//! ([`typed`] explains the performance model). `examples/embed.rs` is a
//! complete service.
//!
//! ```no_run
//! use std::sync::Arc;
//! use hotconf::{ReloadConfig, Reloader, Store, Trigger, TypedView};
//!
//! #[derive(serde::Deserialize)]
//! struct AppConfig {
//!     service: String,
//!     workers: Workers,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Workers {
//!     count: u16,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(Store::with_random_instance());
//! let mut config = ReloadConfig::new("configs", "schemas");
//! config.register::<AppConfig>("app"); // before spawn: E_TYPE if it does not fit
//! config.all_or_nothing = true; // optional: see ReloadConfig's fields
//! // Observers (systemd, metrics, logs: `logging::LogObserver`) are fixed
//! // here, before the reloader starts.
//! let reload = Reloader::spawn(config, store.clone(), Vec::new())?;
//!
//! // The startup load; check `store.status()` to refuse bad files.
//! let outcome = reload.reload_blocking(Trigger::Startup)?;
//! assert!(outcome.rejected.is_empty(), "{:?}", store.status());
//!
//! // Anywhere, on any thread, lock-free, no deserialization:
//! if let Some(app) = store.typed::<AppConfig>("app") {
//!     println!("{} runs {} workers", app.service, app.workers.count);
//! }
//! // The JSON value is served too, with its generation:
//! if let Some(doc) = store.load().get("app") {
//!     println!("generation {}: {}", doc.generation, doc.value);
//! }
//! // Reload when you like (a file watcher, a timer, an admin endpoint):
//! reload.request(Trigger::Watch);
//!
//! // Async code waits for new versions of one document (other documents'
//! // changes and rejections do not wake it):
//! let mut view: TypedView<AppConfig> = store.view("app");
//! # let _ = async move {
//! while let Some(app) = view.changed().await {
//!     println!("now {} workers", app.workers.count);
//! }
//! # };
//! # Ok(())
//! # }
//! ```
//!
//! To keep the last good snapshot across restarts (as `--state-dir` does),
//! open a [`persist::Persister`] first, build the store from the snapshot
//! it restored ([`Store::with_snapshot`]), and start the reloader with
//! [`Reloader::spawn_persisting`]; `daemon::Daemon::start` shows the whole
//! sequence.
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
pub mod history;
pub mod observe;
pub mod output;
pub mod persist;
pub mod pipeline;
pub mod reload;
pub mod store;
pub mod watch;

pub use pipeline::rejection::{Code, Problem, Rejection};
pub use reload::{ReloadConfig, ReloadHandle, ReloadObserver, Reloader};
pub use store::snapshot::{ServedDocument, Snapshot};
pub use store::status::Trigger;
pub use store::typed::{TypeRegistry, TypedView};
pub use store::Store;
