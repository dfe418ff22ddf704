//! The accept loop and per-connection HTTP/1.1 serving.
//!
//! Our own loop (not `axum::serve`) so that every limit is ours to set:
//! a connection semaphore (a connection beyond it is closed at once, not
//! queued), hyper's header-read timeout and buffer cap, and the peer's
//! credentials read once per connection and attached to every request as a
//! [`Peer`] extension. Shutdown: stop accepting, ask every connection to
//! finish its in-flight request and close, wait for them up to a bound.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Limits applied to every connection. The defaults hold against slow and
/// hostile clients without troubling normal ones.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time a client has to send a complete request head; it also bounds
    /// how long an idle keep-alive connection may wait for its next
    /// request (hyper starts the timer when it starts waiting for a head).
    pub header_read_timeout: Duration,
    /// Largest request head (start line and headers), in bytes; larger
    /// gets 431 and the connection is closed. Also the read buffer size
    /// (at least 8 KiB, hyper's minimum).
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Who is on the other end of a connection, from `SO_PEERCRED`. Every
/// request carries one as an extension; TCP connections (metrics only)
/// carry [`Peer::UNKNOWN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's uid, if known.
    pub uid: Option<u32>,
    /// The peer's gid, if known.
    pub gid: Option<u32>,
    /// The peer's pid, if known.
    pub pid: Option<i32>,
}

impl Peer {
    /// A peer whose credentials are unknown (TCP): trusted with nothing.
    pub const UNKNOWN: Peer = Peer {
        uid: None,
        gid: None,
        pid: None,
    };

    /// Whether this peer is root or runs as `daemon_uid`: it may reload and
    /// see secrets.
    pub fn is_trusted(&self, daemon_uid: u32) -> bool {
        matches!(self.uid, Some(uid) if uid == 0 || uid == daemon_uid)
    }
}

/// A listener our accept loop can drive.
pub(crate) trait Accept: Send + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Accepts one connection and says who it is.
    fn accept_peer(&mut self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;
}

impl Accept for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_peer(&mut self) -> io::Result<(Self::Io, Peer)> {
        let (stream, _) = self.accept().await?;
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
                pid: c.pid(),
            },
            Err(_) => Peer::UNKNOWN,
        };
        Ok((stream, peer))
    }
}

impl Accept for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_peer(&mut self) -> io::Result<(Self::Io, Peer)> {
        let (stream, _) = self.accept().await?;
        Ok((stream, Peer::UNKNOWN))
    }
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains.
/// `permits` (sized `limits.max_connections`) bounds the connections; one
/// is held by every open connection.
pub(crate) async fn serve<A: Accept>(
    mut listener: A,
    router: Router,
    limits: Limits,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => break,
            accepted = listener.accept_peer() => accepted,
        };
        let (io, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(
                uid = peer.uid,
                pid = peer.pid,
                limit = limits.max_connections,
                "control socket: connection limit reached, closing new connection"
            );
            drop(io);
            continue;
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(io, peer, router, limits, shutdown).await;
            drop(permit);
        });
    }
    // Every connection holds a permit: all returned means all finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("control socket: some connections did not finish in time");
    }
}

async fn serve_connection<I>(
    io: I,
    peer: Peer,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer);
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "control socket: connection ended with an error");
            }
        }
        _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
