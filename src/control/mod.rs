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
mod refusals;
pub mod socket;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// How often the daemon checks that its socket is still at its path: a
/// removed socket (or socket directory) is otherwise invisible, since the
/// listening descriptor keeps working for nobody.
pub const SOCKET_CHECK_EVERY: Duration = Duration::from_secs(1);

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
    /// How the socket was claimed, to claim it again if it is removed.
    socket_opts: SocketOptions,
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
            socket_opts: opts.socket.clone(),
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
            reload_refusals: refusals::RefusalLog::default(),
        });
        let limit = self.limits.max_connections;
        let slots = conn::Slots::new(&self.limits, daemon_uid);
        let permits = slots.all.clone();
        self.listener.set_nonblocking(true)?;
        let unix = tokio::net::UnixListener::from_std(self.listener)?;
        let file = Arc::new(Mutex::new(Some(self.file)));
        let mut tasks = vec![
            tokio::spawn(conn::serve(
                unix,
                api::router(api.clone()),
                self.limits,
                slots.clone(),
                None,
                stopped.clone(),
            )),
            tokio::spawn(keep_socket(
                self.socket_opts,
                file.clone(),
                api::router(api.clone()),
                self.limits,
                slots,
                stopped.clone(),
            )),
        ];
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
                Some(Arc::new(conn::Idle::default())),
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
            file,
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
    /// The socket file (replaced when it is recreated), removed at
    /// shutdown.
    file: Arc<Mutex<Option<SocketFile>>>,
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
        if let Ok(mut file) = self.file.lock() {
            drop(file.take());
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Watches the socket's path every [`SOCKET_CHECK_EVERY`]: when our socket
/// is gone (the file removed or replaced, or its directory deleted) it says
/// so loudly once (ERROR `socket_lost`), and as soon as the directory exists
/// again it claims the path anew (same mode and group) and serves it too
/// (WARN `socket_restored`). A missing directory is not created: it may be
/// gone on purpose (systemd's `RuntimeDirectory=` at stop), and creating
/// directories elsewhere is the operator's call.
async fn keep_socket(
    opts: SocketOptions,
    file: Arc<Mutex<Option<SocketFile>>>,
    router: axum::Router,
    limits: Limits,
    slots: conn::Slots,
    mut stopped: watch::Receiver<bool>,
) {
    let path = opts.path.display().to_string();
    let mut lost = false;
    let mut last_failure: Option<String> = None;
    let mut loops: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SOCKET_CHECK_EVERY) => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
        let in_place = file
            .lock()
            .map(|f| f.as_ref().is_some_and(SocketFile::in_place))
            .unwrap_or(true);
        if in_place {
            continue;
        }
        if !lost {
            lost = true;
            tracing::error!(
                event = "socket_lost",
                socket = %path,
                "control socket {path} is gone (removed, replaced, or its directory deleted): \
                 new clients cannot connect; it is recreated as soon as its directory exists"
            );
        }
        if !opts.path.parent().is_some_and(Path::is_dir) {
            continue;
        }
        let claimed = socket::claim(&opts)
            .map_err(|e| e.to_string())
            .and_then(|(l, f)| {
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                let l = tokio::net::UnixListener::from_std(l).map_err(|e| e.to_string())?;
                Ok((l, f))
            });
        match claimed {
            Ok((listener, new_file)) => {
                loops.push(tokio::spawn(conn::serve(
                    listener,
                    router.clone(),
                    limits,
                    slots.clone(),
                    None,
                    stopped.clone(),
                )));
                // The old file's drop leaves the new socket alone (it checks
                // the inode).
                if let Ok(mut f) = file.lock() {
                    *f = Some(new_file);
                }
                lost = false;
                last_failure = None;
                tracing::warn!(
                    event = "socket_restored",
                    socket = %path,
                    "control socket {path} recreated; clients can connect again"
                );
            }
            Err(e) => {
                if last_failure.as_deref() != Some(e.as_str()) {
                    tracing::error!(
                        event = "socket_lost",
                        socket = %path,
                        reason = %e,
                        "control socket {path} cannot be recreated yet: {e}"
                    );
                    last_failure = Some(e);
                }
            }
        }
    }
    for l in loops {
        let _ = l.await;
    }
}

/// Runs the request path's hand-written parsing on one untrusted request
/// (target, then `Content-Length` value) and checks its promises; for the
/// fuzz targets in `fuzz/`, not part of the API.
#[doc(hidden)]
pub fn fuzz_request(target: &[u8], content_length: &[u8], value: &serde_json::Value) {
    if let Ok(uri) = axum::http::Uri::try_from(target) {
        api::fuzz_request(&uri, value);
    }
    if let Ok(v) = axum::http::HeaderValue::from_bytes(content_length) {
        if let Ok(req) = axum::http::Request::builder()
            .header(axum::http::header::CONTENT_LENGTH, v)
            .body(())
        {
            let _ = conn::declares_too_much(&req, 64 * 1024);
        }
    }
}
