//! The accept loop and per-connection HTTP/1.1 serving.
//!
//! Our own loop (not `axum::serve`) so that every limit is ours to set
//! (the values are [`Limits`]'s defaults):
//!
//! - connection slots ([`Slots`]): a connection beyond the limit is closed
//!   as soon as it is accepted, never queued, and a share of the slots is
//!   kept for root and the daemon's uid, so other users cannot lock the
//!   operator out;
//! - hyper's header-read timeout (which also ends idle keep-alive
//!   connections) and header size cap (431);
//! - a body cap (413; no endpoint reads a body anyway);
//! - a send timeout ([`SendTimeout`]): a client that stops reading its
//!   answer is cut off;
//! - a hang-up check ([`hung_up`]): a client that leaves while its request
//!   is in flight frees its slot even when hyper is not looking (a request
//!   pipelined behind a blocking query);
//! - the peer's credentials, read once per connection and attached to every
//!   request as a [`Peer`] extension.
//!
//! Shutdown: stop accepting, ask every connection to finish its in-flight
//! request and close, wait for them up to a bound.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
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
    /// Largest request body, in bytes: a declared `Content-Length` above it
    /// gets 413 at once; a chunked body is cut off there. No endpoint
    /// takes a body, so this only bounds what a client can make us hold.
    pub max_body_bytes: usize,
    /// How long an answer may make no progress because the client does not
    /// read it; then the connection is closed.
    pub send_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Limits {
    /// Connection slots that peers other than root and the daemon's uid
    /// may hold: all but an eighth (at least one is kept back, unless the
    /// limit is a single connection), so the operator's `hotconf
    /// status`/`reload` gets through even when other users hold every slot
    /// they can.
    pub fn untrusted_connections(&self) -> usize {
        let reserved = (self.max_connections / 8).max(1);
        self.max_connections.saturating_sub(reserved).max(1)
    }

    /// Connection slots one uid other than root and the daemon's may hold:
    /// an eighth of [`Limits::untrusted_connections`], but never fewer than
    /// 8 (a client needs a few: a `watch` and some `get`s), so one user
    /// flooding the socket leaves the rest to the others. Each connection
    /// carries at most one request at a time, so this also caps the
    /// blocking queries one uid can park.
    pub fn per_uid_connections(&self) -> usize {
        let untrusted = self.untrusted_connections();
        (untrusted / 8).max(untrusted.min(8))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024,
            send_timeout: Duration::from_secs(30),
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
    type Io: Stream;
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

/// The connection slots of one listener. Every connection holds one of
/// `all`; a connection of a peer that is not trusted (not root, not the
/// daemon's uid) also holds one of `untrusted`, which has fewer, so such
/// peers can never take the last slots; and one of its uid's share
/// ([`Limits::per_uid_connections`]), so one uid cannot take them all.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    /// One permit per open connection, `max_connections` in all.
    pub all: Arc<Semaphore>,
    /// One permit per open connection of an untrusted peer.
    untrusted: Arc<Semaphore>,
    /// Open connections per untrusted uid (entries removed at zero).
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    /// The most one untrusted uid may hold.
    per_uid_max: usize,
    /// The daemon's uid: its peers (and root) are trusted.
    daemon_uid: u32,
}

/// One connection counted against its uid's share; uncounted on drop.
#[derive(Debug)]
pub(crate) struct UidSlot {
    /// The shared counts.
    counts: Arc<Mutex<HashMap<u32, usize>>>,
    /// Whose share.
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

/// What an accepted connection holds until it closes.
type Held = (
    OwnedSemaphorePermit,
    Option<OwnedSemaphorePermit>,
    Option<UidSlot>,
);

/// Why [`Slots::take`] refused a connection (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Every slot open to this peer is taken.
    Full,
    /// This uid holds its whole share.
    UidShare,
}

impl Slots {
    /// Slots for `limits`, trusting root and `daemon_uid`.
    pub fn new(limits: &Limits, daemon_uid: u32) -> Slots {
        Slots {
            all: Arc::new(Semaphore::new(limits.max_connections)),
            untrusted: Arc::new(Semaphore::new(limits.untrusted_connections())),
            per_uid: Arc::default(),
            per_uid_max: limits.per_uid_connections(),
            daemon_uid,
        }
    }

    /// Counts one more connection for `uid`, unless its share is full.
    fn take_uid(&self, uid: u32) -> Option<UidSlot> {
        let mut counts = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(uid).or_insert(0);
        if *n >= self.per_uid_max {
            return None;
        }
        *n = n.saturating_add(1);
        Some(UidSlot {
            counts: self.per_uid.clone(),
            uid,
        })
    }

    /// A slot for `peer`, or why it must be refused.
    fn take(&self, peer: &Peer) -> Result<Held, Refusal> {
        let (own, share) = if peer.is_trusted(self.daemon_uid) {
            (None, None)
        } else {
            // TCP peers have no uid: the untrusted pool alone bounds them.
            let share = match peer.uid {
                Some(uid) => Some(self.take_uid(uid).ok_or(Refusal::UidShare)?),
                None => None,
            };
            let own = self
                .untrusted
                .clone()
                .try_acquire_owned()
                .map_err(|_| Refusal::Full)?;
            (Some(own), share)
        };
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        Ok((all, own, share))
    }
}

/// The connections of a listener that are idle (waiting for a request),
/// each with whether it has made a request, the time it became idle and a
/// way to close it. Used by the `--metrics-listen` loop: when every slot is
/// taken, a new connection closes one idle connection to take its slot —
/// one that never made a request if there is any, else the one idle the
/// longest. So idle TCP peers (anyone who can reach the port) can never
/// lock a scraper out, and a scraper's keep-alive connection, used at
/// every scrape, stays open across scrape intervals.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    /// Connection id → (has made a request, idle since, closes it).
    conns: Mutex<HashMap<u64, IdleEntry>>,
    /// The next connection id.
    next: std::sync::atomic::AtomicU64,
    /// Whether a new connection is waiting for the slot it made room for:
    /// one at a time, so a flood costs at most one descriptor beyond the
    /// slots.
    evicting: std::sync::atomic::AtomicBool,
    /// Where the evicted connection hands its slot to the one that made
    /// room (so no other new connection can take it in between).
    handoff: Mutex<Option<tokio::sync::oneshot::Sender<Held>>>,
}

/// Ends an eviction (see [`Idle::evicting`]) when dropped.
struct Evicting(Arc<Idle>);

impl Drop for Evicting {
    fn drop(&mut self) {
        self.0
            .evicting
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Idle {
    /// A new connection, idle from now; its id and its close signal.
    fn register(&self) -> (u64, Arc<tokio::sync::Notify>) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let close = Arc::new(tokio::sync::Notify::new());
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.insert(id, (false, Instant::now(), close.clone()));
        (id, close)
    }

    /// `id` has answered a request and waits for the next one.
    fn set_idle(&self, id: u64, close: &Arc<tokio::sync::Notify>) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.insert(id, (true, Instant::now(), close.clone()));
    }

    fn set_busy(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.remove(&id);
    }

    /// Closes an idle connection to make room (never-used first, then the
    /// longest idle), unless an eviction is already under way; the
    /// eviction ends when the returned guard drops.
    fn evict(self: &Arc<Self>) -> Option<(Evicting, tokio::sync::oneshot::Receiver<Held>)> {
        use std::sync::atomic::Ordering;
        if self
            .evicting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        let guard = Evicting(self.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.handoff.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        self.evict_oldest().then_some((guard, rx))
    }

    /// A connection ended: an evicted one hands its slot over to the
    /// connection that made room; any other just releases it.
    fn release(idle: Option<&Arc<Idle>>, evicted: bool, permit: Held) {
        let handoff = idle
            .filter(|_| evicted)
            .and_then(|i| i.handoff.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(tx) = handoff {
            // Err: the newcomer gave up; the slot is simply released.
            let _ = tx.send(permit);
        }
    }

    /// Closes the connection chosen by [`Idle::evict`]; whether there was one.
    fn evict_oldest(&self) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let victim = conns
            .iter()
            .min_by_key(|(_, (served, since, _))| (*served, *since))
            .map(|(id, _)| *id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some((_, _, close)) => {
                close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// One idle connection: has it made a request, since when idle, its close.
type IdleEntry = (bool, Instant, Arc<tokio::sync::Notify>);

/// How long a connection on `--metrics-listen` may wait for its next
/// request once it has made one: longer than any common scrape interval,
/// so a scraper's keep-alive connection is reused (the slot it holds is
/// the first to go if the port is full, see [`Idle`]).
pub const METRICS_KEEP_ALIVE: Duration = Duration::from_secs(600);

/// Rate-limited warning about refused connections: one line when the limit
/// is first hit, then at most one every [`LimitLog::EVERY`] with the count
/// refused meanwhile, so a connection flood cannot flood the logs as well.
#[derive(Debug, Default)]
struct LimitLog {
    /// When the last warning was written.
    last: Option<Instant>,
    /// Connections refused since then.
    refused: u64,
}

impl LimitLog {
    /// Minimum time between two warnings.
    const EVERY: Duration = Duration::from_secs(10);

    /// Notes one refused connection of `peer`, warning if it is time.
    fn refused(&mut self, peer: &Peer, limits: &Limits, why: Refusal) {
        self.refused = self.refused.saturating_add(1);
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < Self::EVERY)
        {
            return;
        }
        tracing::warn!(
            event = "connection_limit_reached",
            limit = limits.max_connections,
            untrusted_limit = limits.untrusted_connections(),
            per_uid_limit = limits.per_uid_connections(),
            uid_share_full = why == Refusal::UidShare,
            refused = self.refused,
            peer_uid = peer.uid,
            peer_pid = peer.pid,
            "control socket: connection limit reached; new connections are closed at once"
        );
        self.last = Some(now);
        self.refused = 0;
    }
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains.
/// `slots` (sized by `limits`) bound the connections; one is held by every
/// open connection.
pub(crate) async fn serve<A: Accept>(
    mut listener: A,
    router: Router,
    limits: Limits,
    slots: Slots,
    idle: Option<Arc<Idle>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut limit_log = LimitLog::default();
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
        let router = router.clone();
        let shutdown = shutdown.clone();
        let permit = match slots.take(&peer) {
            Ok(p) => p,
            Err(why) => {
                // Metrics: make room by closing the longest-idle connection,
                // then take its slot once it is released.
                let eviction = idle
                    .as_ref()
                    .and_then(|i| i.evict().map(|(g, rx)| (i.clone(), g, rx)));
                if let Some((idle, evicting, slot)) = eviction {
                    tokio::spawn(async move {
                        let handed = tokio::time::timeout(EVICTION_WAIT, slot).await;
                        drop(evicting);
                        let Ok(Ok(permit)) = handed else {
                            return;
                        };
                        let conn = Some((idle.clone(), idle.register()));
                        let evicted =
                            serve_connection(io, peer, router, limits, conn, shutdown).await;
                        Idle::release(Some(&idle), evicted, permit);
                    });
                    continue;
                }
                limit_log.refused(&peer, &limits, why);
                drop(io);
                continue;
            }
        };
        let conn = idle.clone().map(|i| {
            let r = i.register();
            (i, r)
        });
        let idle = idle.clone();
        tokio::spawn(async move {
            let evicted = serve_connection(io, peer, router, limits, conn, shutdown).await;
            Idle::release(idle.as_ref(), evicted, permit);
        });
    }
    // Every connection holds a permit: all returned means all finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, slots.all.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("control socket: some connections did not finish in time");
    }
}

/// A connection tracked in an [`Idle`] set: the set, its id, its close signal.
type Tracked = (Arc<Idle>, (u64, Arc<tokio::sync::Notify>));

/// How long a connection that made room (see [`Idle`]) waits for the slot.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

async fn serve_connection<I>(
    io: I,
    peer: Peer,
    router: Router,
    limits: Limits,
    tracked: Option<Tracked>,
    mut shutdown: watch::Receiver<bool>,
) -> bool
where
    I: Stream,
{
    let io = Arc::new(io);
    let probe = io.clone();
    let max_body = limits.max_body_bytes;
    let served_one = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let close = tracked.as_ref().map(|(_, (_, c))| c.clone());
    let track = tracked.clone();
    let seen = served_one.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer);
        let too_large = declares_too_much(&req, max_body);
        let router = router.clone();
        let track = track.clone();
        seen.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some((idle, (id, _))) = &track {
            idle.set_busy(*id);
        }
        async move {
            let resp = if too_large {
                Ok(payload_too_large(max_body))
            } else {
                router
                    .oneshot(req.map(|body| Limited::new(body, max_body)))
                    .await
            };
            if let Some((idle, (id, close))) = &track {
                idle.set_idle(*id, close);
            }
            resp
        }
    });
    // A tracked (metrics) connection may idle between requests up to
    // METRICS_KEEP_ALIVE; its first request must still come within the
    // header-read timeout (checked below).
    let idle_timeout = if tracked.is_some() {
        METRICS_KEEP_ALIVE.max(limits.header_read_timeout)
    } else {
        limits.header_read_timeout
    };
    let first_request = async {
        if tracked.is_none() {
            return std::future::pending::<()>().await;
        }
        tokio::time::sleep(limits.header_read_timeout).await;
        if served_one.load(std::sync::atomic::Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    let evicted = async {
        match &close {
            Some(c) => c.notified().await,
            None => std::future::pending::<()>().await,
        }
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        // Queue the answer's buffers as they are (vectored writes) instead
        // of copying them into a per-connection buffer: a peer that stops
        // reading then holds a reference to the body, never a copy of it.
        .writev(true)
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(SendTimeout::new(Shared(io), limits.send_timeout)),
            service,
        );
    // However it ends, a tracked connection stops being an eviction candidate.
    let _gone = tracked
        .as_ref()
        .map(|(idle, (id, _))| Gone(idle.clone(), *id));
    tokio::pin!(conn);
    tokio::pin!(first_request);
    tokio::pin!(evicted);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "control socket: connection ended with an error");
            }
        }
        () = hung_up(&probe) => {
            tracing::debug!(
                peer_uid = peer.uid,
                peer_pid = peer.pid,
                "control socket: the client hung up; request abandoned"
            );
        }
        () = &mut first_request => {
            tracing::debug!("metrics: no request within the header-read timeout; closed");
        }
        () = &mut evicted => {
            tracing::debug!("metrics: idle the longest while the port was full; closed");
            return true;
        }
        _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    false
}

/// Removes a tracked connection from its [`Idle`] set when dropped.
struct Gone(Arc<Idle>, u64);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.set_busy(self.1);
    }
}

/// How often a connection checks whether its client has hung up.
const HANGUP_CHECK: Duration = Duration::from_secs(1);

/// Returns once the peer of `fd` has closed the connection (or shut down
/// its sending side, which hyper treats as an aborted request too).
///
/// hyper notices a hang-up only when it reads the connection, and while a
/// request is in flight it reads only if no further request is already
/// buffered: a client that pipelines a request behind a blocking query and
/// leaves would otherwise keep its slot until the query's `wait` ends. A
/// zero-timeout `poll(2)` every [`HANGUP_CHECK`] asks the kernel instead;
/// it never consumes data.
async fn hung_up(stream: &impl AsFd) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    const NOW: Timespec = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let gone = PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR;
    // Not at once: a quick request is answered before the first check.
    let mut tick = tokio::time::interval_at(Instant::now() + HANGUP_CHECK, HANGUP_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut fds = [PollFd::new(stream, PollFlags::RDHUP)];
        if poll(&mut fds, Some(&NOW)).is_ok_and(|n| n > 0)
            && fds.iter().any(|p| p.revents().intersects(gone))
        {
            return;
        }
    }
}

/// A stream tokio can read and write through `&self` (readiness, then a
/// non-blocking `try_` call), which is what lets hyper and the hang-up
/// check share one connection without a lock or a second descriptor.
pub(crate) trait Stream: AsFd + Send + Sync + 'static {
    /// Waits until the stream may be readable.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is there without waiting (`WouldBlock` when nothing is).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Waits until the stream may be writable.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Writes what fits without waiting (`WouldBlock` when nothing does).
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize>;
}

/// Implements [`Stream`] with the inherent methods of the same names.
macro_rules! stream {
    ($t:ty) => {
        impl Stream for $t {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$t>::try_read(self, buf)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_write_ready(self, cx)
            }
            fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
                <$t>::try_write_vectored(self, bufs)
            }
        }
    };
}
stream!(tokio::net::UnixStream);
stream!(tokio::net::TcpStream);

/// The connection as hyper sees it, while [`hung_up`] holds another `Arc`
/// of the same stream. The descriptor closes when both are dropped, at the
/// end of [`serve_connection`].
struct Shared<S>(Arc<S>);

impl<S: Stream> AsyncRead for Shared<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            // A spurious readiness is cleared by the `WouldBlock`, so the
            // next `poll_read_ready` waits again.
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<S: Stream> AsyncWrite for Shared<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket; there is no buffer to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What tokio's own streams do: end the sending side, keep reading.
        let done = match rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Write) {
            Err(rustix::io::Errno::NOTCONN) => Ok(()),
            other => other.map_err(io::Error::from),
        };
        Poll::Ready(done)
    }
}

/// Whether a request declares a body larger than `max` bytes.
pub(super) fn declares_too_much<B>(req: &Request<B>, max: usize) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
}

/// 413 with a JSON error; the connection is closed after it, since the
/// body it announced is never read.
fn payload_too_large(max: usize) -> Response {
    let body = serde_json::json!({
        "code": "payload_too_large",
        "message": format!("request bodies are limited to {max} bytes"),
    });
    let mut resp = (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A connection whose writes fail with `TimedOut` once the peer has taken
/// no byte for `timeout`: a client that stops reading its answer cannot
/// hold a connection (and the answer's memory) forever. Reads are left
/// alone: hyper's header-read timeout bounds them, and a blocking query
/// legitimately reads nothing for minutes.
pub(crate) struct SendTimeout<I> {
    /// The connection.
    io: I,
    /// How long a write may make no progress.
    timeout: Duration,
    /// Armed when a write first returns `Pending`; cleared by progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> SendTimeout<I> {
    /// Wraps `io`.
    pub(crate) fn new(io: I, timeout: Duration) -> Self {
        SendTimeout {
            io,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's result on: progress disarms the timer, `Pending`
    /// arms it (or fails once it has run out).
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(cx, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn an_eighth_of_the_slots_is_kept_for_trusted_peers() {
        let limits = |n| Limits {
            max_connections: n,
            ..Limits::default()
        };
        assert_eq!(limits(4096).untrusted_connections(), 3584);
        assert_eq!(limits(8).untrusted_connections(), 7);
        assert_eq!(limits(2).untrusted_connections(), 1);
        assert_eq!(limits(1).untrusted_connections(), 1);
    }

    #[test]
    fn slots_refuse_untrusted_peers_first() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let slots = Slots::new(&limits, 1000);
        let other = Peer {
            uid: Some(65534),
            gid: None,
            pid: None,
        };
        let own = Peer {
            uid: Some(1000),
            ..other
        };
        let first = slots.take(&other).expect("first untrusted");
        assert!(slots.take(&other).is_err(), "the last slot is kept");
        assert!(slots.take(&Peer::UNKNOWN).is_err());
        let second = slots.take(&own).expect("trusted gets the kept slot");
        assert!(slots.take(&own).is_err(), "full");
        drop((first, second));
        assert!(slots.take(&other).is_ok());
    }

    #[test]
    fn one_uid_holds_at_most_its_share() {
        let limits = Limits {
            max_connections: 800,
            ..Limits::default()
        };
        assert_eq!(limits.untrusted_connections(), 700);
        assert_eq!(limits.per_uid_connections(), 87);
        assert_eq!(Limits::default().per_uid_connections(), 448);
        let slots = Slots::new(&limits, 1000);
        let peer = |uid| Peer {
            uid: Some(uid),
            gid: None,
            pid: None,
        };
        let a: Vec<_> = (0..87).map(|_| slots.take(&peer(5)).expect("a")).collect();
        assert_eq!(slots.take(&peer(5)).err(), Some(Refusal::UidShare));
        let b = slots.take(&peer(6)).expect("another uid is still served");
        assert!(slots.take(&peer(1000)).is_ok(), "trusted");
        drop(a);
        assert!(slots.take(&peer(5)).is_ok(), "share returned on close");
        drop(b);
        assert!(slots.per_uid.lock().expect("lock").len() <= 1);
    }

    #[test]
    fn body_length_cap() {
        let req = |len: &str| {
            Request::builder()
                .header(header::CONTENT_LENGTH, len)
                .body(())
                .expect("request")
        };
        assert!(!declares_too_much(&req("65536"), 65536));
        assert!(declares_too_much(&req("65537"), 65536));
        // Unparsable lengths are hyper's to refuse (400) before we see them.
        assert!(!declares_too_much(&req("99999999999999999999"), 65536));
        assert!(!declares_too_much(&Request::new(()), 65536));
    }

    #[tokio::test]
    async fn a_write_the_peer_never_takes_times_out() {
        // The peer stays connected but never reads.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = SendTimeout::new(ours, Duration::from_millis(100));
        let err = io
            .write_all(&[0u8; 1024])
            .await
            .expect_err("the peer never reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // A peer that keeps reading keeps the connection, however long the
        // whole answer takes (here about 640 ms against a 500 ms timeout).
        let (ours, mut theirs) = tokio::io::duplex(32);
        let mut io = SendTimeout::new(ours, Duration::from_millis(500));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 32];
            while got.len() < 1024 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got.len()
        });
        io.write_all(&[1u8; 1024]).await.expect("slow but steady");
        assert_eq!(reader.await.expect("reader"), 1024);
    }
}
