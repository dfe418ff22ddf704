//! The control socket: HTTP/1.1 over a unix socket (SPEC §5), and
//! `/metrics` alone over TCP with `--metrics-listen`.
//!
//! Lifecycle, in the order the daemon uses it:
//!
//! 1. [`Server::bind`] claims the socket path (refusing a live daemon's
//!    socket, replacing a stale one, final mode and group from the first
//!    instant — see [`socket`]) and binds the metrics address. Call it
//!    early: a second daemon should fail before doing any work.
//! 2. [`Server::start`] spawns the accept loops (needs a tokio runtime).
//! 3. [`Running::shutdown`] removes the socket file, stops accepting, lets
//!    in-flight requests finish (blocking queries answer at once), waits for
//!    them up to [`Limits::drain_timeout`].
//!
//! Handlers only *read* the store; `POST /v1/reload` goes through the
//! reloader's queue like every other trigger. What a peer may see and do
//! depends on its credentials ([`Peer`]): root and the daemon's own uid see
//! secrets and may reload; others get redacted values and 403.

mod api;
mod conn;
pub mod paths;
pub mod socket;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use api::{
    ReloadFuture, ReloadService, DEFAULT_WAIT, GENERATION_HEADER, HISTORY_INDEX_HEADER,
    INSTANCE_HEADER, MAX_WAIT,
};
pub use conn::{Limits, Peer};
pub use socket::{BindError, SocketFile, SocketOptions};

use crate::history::plan::Planner;
use crate::history::History;
use crate::observe::metrics::Metrics;
use crate::store::Store;

/// Concurrent connections on `--metrics-listen`. A scraper needs one or
/// two; the cap keeps a flood of a TCP port — reachable from further away
/// than the socket — from using descriptors the reloader needs (they come
/// out of [`crate::daemon::rlimit::RESERVED_FDS`]).
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// Everything needed to bind the control socket and the metrics port.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The unix socket.
    pub socket: SocketOptions,
    /// `--metrics-listen`: also serve `/metrics` (only) over TCP here.
    /// Port 0 picks a free port; see [`Server::metrics_addr`].
    pub metrics_listen: Option<SocketAddr>,
    /// Connection limits.
    pub limits: Limits,
}

/// What the handlers serve from.
#[derive(Clone)]
pub struct Context {
    /// The store to read.
    pub store: Arc<Store>,
    /// Performs explicit reloads (`POST /v1/reload`).
    pub reloader: Arc<dyn ReloadService>,
    /// The metrics to encode at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The outputs (`--outputs`), whose own status `/v1/status` and
    /// `/metrics` merge into their answers.
    pub outputs: Option<crate::output::Outputs>,
    /// The reload history behind `GET /v1/history` (404 without one).
    pub history: Option<Arc<History>>,
    /// Judges `POST /v1/plan` with the daemon's rules (404 without one).
    pub planner: Option<Arc<Planner>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A bound, not yet serving, control socket (and metrics port).
#[derive(Debug)]
pub struct Server {
    /// The listening socket, created by [`socket::claim`].
    listener: std::os::unix::net::UnixListener,
    /// Removes the socket file when dropped.
    file: SocketFile,
    /// The metrics TCP listener, if asked for.
    metrics: Option<std::net::TcpListener>,
    /// Connection limits for both listeners.
    limits: Limits,
}

impl Server {
    /// Claims the socket path and binds the metrics address.
    pub fn bind(opts: &ServerOptions) -> Result<Server, BindError> {
        let (listener, file) = socket::claim(&opts.socket)?;
        let metrics = match opts.metrics_listen {
            None => None,
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .map_err(|source| BindError::Metrics { addr, source })?,
            ),
        };
        Ok(Server {
            listener,
            file,
            metrics,
            limits: opts.limits,
        })
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        self.file.path()
    }

    /// The address `/metrics` is served on over TCP (with the real port
    /// when 0 was asked for).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Starts serving. Must be called inside a tokio runtime.
    pub fn start(self, ctx: Context) -> std::io::Result<Running> {
        let socket_path = self.file.path().to_path_buf();
        let metrics_addr = self.metrics_addr();
        let (stop, stopped) = watch::channel(false);
        let waiting = Arc::new(AtomicUsize::new(0));
        let daemon_uid = crate::control::paths::current_uid();
        let api = Arc::new(api::Api {
            store: ctx.store,
            reloader: ctx.reloader,
            metrics: ctx.metrics,
            outputs: ctx.outputs,
            history: ctx.history,
            planner: ctx.planner,
            daemon_uid,
            shutdown: stopped.clone(),
            waiting: waiting.clone(),
        });
        let limit = self.limits.max_connections;
        let slots = conn::Slots::new(&self.limits, daemon_uid);
        let permits = slots.all.clone();
        self.listener.set_nonblocking(true)?;
        let unix = tokio::net::UnixListener::from_std(self.listener)?;
        let mut tasks = vec![tokio::spawn(conn::serve(
            unix,
            api::router(api.clone()),
            self.limits,
            slots,
            stopped.clone(),
        ))];
        if let Some(tcp) = self.metrics {
            tcp.set_nonblocking(true)?;
            let tcp = tokio::net::TcpListener::from_std(tcp)?;
            let limits = Limits {
                max_connections: METRICS_MAX_CONNECTIONS.min(self.limits.max_connections),
                ..self.limits
            };
            tasks.push(tokio::spawn(conn::serve(
                tcp,
                api::metrics_router(api),
                limits,
                conn::Slots::new(&limits, daemon_uid),
                stopped,
            )));
        }
        tracing::info!(
            socket = %socket_path.display(),
            metrics_addr = metrics_addr.map(|a| a.to_string()),
            "control socket listening"
        );
        Ok(Running {
            stop,
            tasks,
            permits,
            limit,
            waiting,
            file: self.file,
            socket_path,
            metrics_addr,
        })
    }
}

/// A serving control socket; [`Running::shutdown`] stops it cleanly.
/// Dropping it without shutdown still removes the socket file, but leaves
/// the accept loops to die with the runtime.
#[derive(Debug)]
pub struct Running {
    /// Set to true to stop the accept loops and answer blocking queries.
    stop: watch::Sender<bool>,
    /// The accept loops (unix socket, metrics).
    tasks: Vec<JoinHandle<()>>,
    /// The unix socket's connection permits (one per open connection).
    permits: Arc<Semaphore>,
    /// How many permits there are.
    limit: usize,
    /// Blocking queries parked right now.
    waiting: Arc<AtomicUsize>,
    /// The socket file, removed at shutdown.
    file: SocketFile,
    /// Where the socket is.
    socket_path: PathBuf,
    /// Where `/metrics` is served over TCP.
    metrics_addr: Option<SocketAddr>,
}

impl Running {
    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The TCP address of `/metrics`, if served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Connections open on the unix socket right now.
    pub fn open_connections(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// Blocking queries waiting for a new generation right now.
    pub fn waiting_queries(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Removes the socket (new clients see "not running" at once), stops
    /// accepting, lets in-flight requests finish — bounded by
    /// [`Limits::drain_timeout`] — and returns when everything is closed.
    pub async fn shutdown(self) {
        drop(self.file);
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
