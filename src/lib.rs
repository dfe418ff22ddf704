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
//! - [`document`](pipeline::document), [`schema`](pipeline::schema), [`pipeline`]: pure bytes → verdict.
//! - [`limits`](pipeline::limits): the map of hard limits; linear-time schema regexes.
//! - [`snapshot`](store::snapshot), [`status`](store::status), [`store`]: what is served and what is known.
//! - [`reload`]: the queue and the reloader, the one writer of the store.
//! - [`watch`]: file-system events → "look again" signals for the reloader.
//! - [`typed`](store::typed) and [`handle`](store::handle): Rust types registered for documents (`E_TYPE`), typed reads.
//! - [`persist`]: the state directory: the last good snapshot on disk.
//! - [`output`]: `--outputs`: files rendered, checked and applied for
//!   programs that only read files.
//! - [`logging`](observe::logging): the log subscriber and the stable log events.
//! - [`embed`]: the [`Builder`] and [`Hotconf`]: everything running
//!   in-process, typed [`Handle`]s.
//! - [`daemon`]: `hotconf run`: signals, control socket and systemd on top.
//! - [`control`]: the HTTP API on the unix socket; [`metrics`](observe::metrics): Prometheus.
//! - [`paths`](control::paths): where the socket is, for daemon and client alike;
//!   [`rlimit`](daemon::rlimit): the open-file limit raised to fit the connections.
//! - [`systemd`](observe::systemd): sd_notify readiness/reload/stop messages and the watchdog.
//! - [`history`]: the reload history (key-level diffs) and read-only plans.
//! - [`client`]: the CLI talking to a running daemon.
//! - [`cli`]: flag parsing for the `hotconf` binary.
//!
//! # Embedding
//!
//! [`Hotconf::builder`] runs in-process what `hotconf run` runs: the store,
//! the reloader on its own thread, the startup load, the file watcher with
//! its poll backstop, the state directory and observers. Register a Rust
//! type per document and get a [`Handle`] that reads at the cost of an
//! `ArcSwap` load, or of a pointer compare through a cached [`Reader`]:
//!
//! ```
//! use std::time::Duration;
//! use hotconf::{Handle, Hotconf};
//!
//! #[derive(serde::Deserialize)]
//! struct AppConfig {
//!     workers: u16,
//!     timeout_ms: u64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (configs, schemas) = (dir.path().join("configs"), dir.path().join("schemas"));
//! # std::fs::create_dir(&configs)?;
//! # std::fs::create_dir(&schemas)?;
//! # std::fs::write(schemas.join("app.schema.json"), r#"{"type": "object"}"#)?;
//! std::fs::write(configs.join("app.toml"), "workers = 4\ntimeout_ms = 500\n")?;
//!
//! let mut builder = Hotconf::builder(&configs, &schemas);
//! let app: Handle<AppConfig> = builder.register::<AppConfig>("app");
//! // Every rejection is listed if `app` (or any document) is bad or missing.
//! let hc = builder.start().await?;
//!
//! assert_eq!(app.load().workers, 4); // a guard that derefs to AppConfig
//! let mut reader = app.reader(); // per thread: reader.load() -> &AppConfig
//! assert_eq!(reader.load().timeout_ms, 500);
//!
//! // An edit is picked up by the watcher; `changed()` wakes for `app` only.
//! std::fs::write(configs.join("app.toml"), "workers = 8\ntimeout_ms = 500\n")?;
//! let mut watching = app.clone();
//! let next = tokio::time::timeout(Duration::from_secs(30), watching.changed()).await?;
//! assert_eq!(next.workers, 8);
//! assert_eq!(reader.load().workers, 8);
//!
//! // Unregistered documents (and this one) are in the snapshot as JSON.
//! assert_eq!(hc.snapshot().get("app").map(|d| d.value["workers"].clone()), Some(8.into()));
//! hc.reload().await?; // an explicit reload, and its outcome
//! hc.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Options on the [`Builder`]: `watch` (on), `poll_interval` (30 s),
//! `debounce` (100 ms), `all_or_nothing`, `limits`, `state_dir`,
//! `observer`. [`Builder::start`] is a future because the startup load
//! waits for the reloader thread; [`Builder::start_blocking`] serves
//! synchronous code. A registered document is required at start and never
//! unserved afterwards: a bad version is rejected (`E_TYPE` when it passes
//! its schema but not `T`) and a removal keeps the last good value, the
//! status saying `error` or `missing`.
//!
//! ## Performance model
//!
//! Measured in one run on a shared 2-core machine (BENCHMARKS.md has the
//! table and the command):
//!
//! - [`Reader::load`]: a relaxed pointer load and compare, as cheap as an
//!   `AtomicPtr` load (0.9–4.5 ns measured, 0.7–1.8× the floor in the same
//!   run); nothing shared is written per read. It re-loads (one
//!   `ArcSwap::load_full`) only after a new version. Use it in the hot
//!   loop of a long-lived thread.
//! - [`Handle::load`]: one `ArcSwap::load` (6–25 ns measured, what
//!   `ArcSwap::load` costs beside it with one reader): a guard from a
//!   per-thread debt slot, no name lookup, no shared reference count. Use
//!   it anywhere; hold the guard for one unit of work, not across `.await`
//!   (a task may move threads, and many held guards make a publish fall
//!   back to slower paths): take [`Handle::load_full`]'s `Arc<T>` there.
//! - [`Store::load`] then a JSON field: a lookup by name and a JSON walk
//!   (130–150 ns measured); for documents without a Rust type.
//! - Memory: each published version is one `T` plus its JSON value, kept
//!   alive while a guard, `Arc`, idle [`Reader`] or snapshot still holds
//!   it; the reloader never waits for readers.
//! - A `T` is built once per accepted version on the reloader's thread;
//!   reads never deserialize.
//!
//! The lower layers stay public for those who wire the parts by hand:
//! [`Reloader::spawn`] with a [`ReloadConfig`] on a [`Store`], read with
//! [`Store::typed`] or a [`TypedView`]; `examples/embed.rs` does that.
//! `examples/worker_pool.rs` is a worker pool on the builder.
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
pub mod embed;
pub mod history;
pub mod observe;
pub mod output;
pub mod persist;
pub mod pipeline;
pub mod reload;
pub mod store;
pub mod watch;

pub use embed::{Builder, Hotconf, StartError};
pub use pipeline::rejection::{Code, Problem, Rejection};
pub use reload::{ReloadConfig, ReloadHandle, ReloadObserver, Reloader};
pub use store::handle::{Guard, Handle, OnChange, Reader};
pub use store::snapshot::{ServedDocument, Snapshot};
pub use store::status::Trigger;
pub use store::typed::{TypeRegistry, TypedView};
pub use store::Store;
