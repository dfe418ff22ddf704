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
//! - [`reload`]: the queue and the one writer of the store.
//! - [`daemon`]: `hotconf run`, wiring everything together.
//! - [`client`]: the CLI talking to a running daemon.
//! - [`cli`]: flag parsing for the `hotconf` binary.
//!
//! See `ARCHITECTURE.md` for the invariants.

pub mod cli;
pub mod client;
pub mod daemon;
pub mod document;
pub mod limits;
pub mod pipeline;
pub mod rejection;
pub mod reload;
pub mod schema;
pub mod snapshot;
pub mod status;
pub mod store;

pub use rejection::{Code, Problem, Rejection};
pub use snapshot::{ServedDocument, Snapshot};
pub use store::Store;
