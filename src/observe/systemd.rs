//! systemd integration: `sd_notify(3)` state messages and a watchdog that
//! pings only while the daemon demonstrably works.
//!
//! What systemd is told, and when (SPEC §6):
//!
//! - `READY=1` and `STATUS=` once the startup load is done and the control
//!   socket listens ([`Systemd::ready`]).
//! - `RELOADING=1` with `MONOTONIC_USEC=` in one datagram when a reload that
//!   does something starts, then `READY=1` and a fresh `STATUS=` when it ends,
//!   also when it rejected things ([`Systemd`] is a [`ReloadObserver`]). A
//!   poll that finds nothing is not a reload: the reloader does not call the
//!   observer for it, so systemd hears nothing.
//! - `STOPPING=1` on shutdown ([`Systemd::stopping`]).
//! - `WATCHDOG=1` every half of `WATCHDOG_USEC`, only after every liveness
//!   [`Probe`] (the reloader answers through its queue, the control socket
//!   answers HTTP) has passed in time ([`Systemd::spawn_watchdog`]). A wedged
//!   reloader therefore stops the pings and systemd restarts the service.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. `NOTIFY_SOCKET` may be a
//! path or an abstract socket (`@name`); the `sd-notify` crate connects with
//! `UnixDatagram::connect`, which treats `@name` as a file name, so this
//! module formats messages with `sd-notify` but sends them itself.
//!
//! What it deliberately does not do: socket activation, the fd store, or
//! unsetting `NOTIFY_SOCKET` (hotconf starts no children that could
//! inherit it, and changing the environment of a threaded process is unsound).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::{JoinHandle, JoinSet};

use crate::store::snapshot::Snapshot;
use crate::store::status::ReloadObserver;
use crate::store::status::{DocState, ReloadOutcome, Status, Trigger};

/// How long one notification may wait for room in the notify socket's queue.
/// systemd drains it promptly; a send that cannot complete in this time is
/// dropped (with a warning) rather than stalling the reloader.
const SEND_TIMEOUT: Duration = Duration::from_millis(500);

/// At most this many document names per category in the `STATUS=` line.
const STATUS_NAMES: usize = 5;

/// Sends `sd_notify` datagrams to the socket named by `NOTIFY_SOCKET`, or
/// does nothing when there is none.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// The resolved `NOTIFY_SOCKET`; `None` makes every send a no-op.
    addr: Option<SocketAddr>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`. An unusable value (neither an absolute path nor
    /// `@abstract`, or too long for a socket address) is logged and ignored.
    pub fn from_env() -> Self {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Notifier::disabled(),
            Some(raw) => match notify_address(&raw) {
                Ok(addr) => Notifier { addr: Some(addr) },
                Err(e) => {
                    tracing::warn!(
                        event = "systemd_notify_unusable",
                        notify_socket = %raw.to_string_lossy(),
                        "ignoring NOTIFY_SOCKET: {e}"
                    );
                    Notifier::disabled()
                }
            },
        }
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Self {
        Notifier { addr: None }
    }

    /// Whether messages are actually sent somewhere.
    pub fn is_enabled(&self) -> bool {
        self.addr.is_some()
    }

    /// Sends `states` as one datagram (one `KEY=VALUE` line each).
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(addr) = &self.addr else {
            return Ok(());
        };
        let mut msg = String::new();
        for state in states {
            // ok: writing into a String cannot fail.
            let _ = writeln!(msg, "{state}");
        }
        let sock = UnixDatagram::unbound()?;
        sock.set_write_timeout(Some(SEND_TIMEOUT))?;
        sock.connect_addr(addr)?;
        let sent = sock.send(msg.as_bytes())?;
        if sent != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification truncated",
            ));
        }
        Ok(())
    }

    /// [`Notifier::send`], logging (not returning) a failure: systemd being
    /// unreachable must never take the daemon down.
    fn send_logged(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = self.send(states) {
            tracing::warn!(
                event = "systemd_notify_failed",
                "could not notify systemd: {e}"
            );
        }
    }
}

/// Resolves a `NOTIFY_SOCKET` value: an absolute path, or `@name` for a
/// socket in the abstract namespace.
fn notify_address(raw: &OsStr) -> io::Result<SocketAddr> {
    let bytes = raw.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        if name.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty abstract socket name",
            ));
        }
        return SocketAddr::from_abstract_name(name);
    }
    if bytes.first() == Some(&b'/') {
        return SocketAddr::from_pathname(Path::new(raw));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not an absolute path or an @abstract name",
    ))
}

/// Where the service is in systemd's eyes; decides which messages make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `READY=1`: reloads are part of starting up, not announced.
    Starting,
    /// `READY=1` sent, no reload announced.
    Ready,
    /// `RELOADING=1` sent; `READY=1` is owed.
    Reloading,
    /// `STOPPING=1` sent; nothing else is said.
    Stopping,
}

/// The daemon's link to systemd: tells it about readiness, reloads and
/// shutdown, and runs the watchdog. Register it as a [`ReloadObserver`].
#[derive(Debug)]
pub struct Systemd {
    /// Where messages go (or nowhere).
    notifier: Notifier,
    /// Serialises messages so systemd sees them in a consistent order.
    phase: Mutex<Phase>,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET` from the environment.
    pub fn from_env() -> Arc<Self> {
        Arc::new(Systemd::with_notifier(Notifier::from_env()))
    }

    /// A link sending through `notifier`.
    pub fn with_notifier(notifier: Notifier) -> Self {
        Systemd {
            notifier,
            phase: Mutex::new(Phase::Starting),
        }
    }

    /// The notifier this link sends through.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // A panic while holding this lock cannot leave the phase half-written
        // (it is a Copy enum), so a poisoned lock is still good.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Startup is done (documents loaded, control socket listening): sends
    /// `READY=1` and the status line. Only the first call does anything.
    pub fn ready(&self, status: &Status, snapshot: &Snapshot) {
        let mut phase = self.phase();
        if *phase != Phase::Starting {
            return;
        }
        let line = status_line(status, snapshot);
        self.notifier
            .send_logged(&[NotifyState::Ready, NotifyState::Status(&line)]);
        *phase = Phase::Ready;
    }

    /// Shutdown has begun: sends `STOPPING=1`. Later reload notifications
    /// are suppressed (an in-flight reload may still finish).
    pub fn stopping(&self) {
        let mut phase = self.phase();
        if *phase == Phase::Stopping {
            return;
        }
        self.notifier
            .send_logged(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        *phase = Phase::Stopping;
    }

    /// Whether [`Systemd::stopping`] has been called.
    pub fn is_stopping(&self) -> bool {
        *self.phase() == Phase::Stopping
    }

    /// Starts the watchdog task if systemd asked for one (`WATCHDOG_USEC`
    /// set, and `WATCHDOG_PID` unset or ours) and notifications go somewhere.
    /// Every half of `WATCHDOG_USEC` it runs every probe concurrently, each
    /// bounded by a quarter of `WATCHDOG_USEC`, and sends `WATCHDOG=1` only
    /// if all passed. Must be called inside a tokio runtime.
    pub fn spawn_watchdog(self: &Arc<Self>, probes: Vec<Probe>) -> Option<JoinHandle<()>> {
        if !self.notifier.is_enabled() {
            return None;
        }
        let period = watchdog_period()?;
        tracing::info!(
            event = "watchdog_started",
            period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            probes = %probes.iter().map(|p| p.name).collect::<Vec<_>>().join(","),
            "systemd watchdog enabled"
        );
        Some(tokio::spawn(watchdog_loop(self.clone(), period, probes)))
    }
}

impl ReloadObserver for Systemd {
    fn reload_started(&self, trigger: Trigger) {
        let mut phase = self.phase();
        // The startup load is announced by READY=1 itself; before READY and
        // after STOPPING a reload is nothing systemd should hear about.
        if trigger == Trigger::Startup || *phase != Phase::Ready {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => {
                // One datagram: systemd ≥ 253 requires MONOTONIC_USEC with
                // RELOADING=1 to tell this reload from an earlier one.
                self.notifier.send_logged(&[
                    NotifyState::Reloading,
                    now,
                    NotifyState::Status("reloading"),
                ]);
                *phase = Phase::Reloading;
            }
            Err(e) => {
                // Without the timestamp a notify-reload unit would fail the
                // reload; better to say nothing.
                tracing::warn!(
                    event = "systemd_notify_failed",
                    "cannot read CLOCK_MONOTONIC, not announcing reload: {e}"
                );
            }
        }
    }

    fn reload_finished(&self, outcome: &ReloadOutcome, status: &Status, snapshot: &Snapshot) {
        let _ = outcome;
        let mut phase = self.phase();
        let line = status_line(status, snapshot);
        match *phase {
            Phase::Reloading => {
                self.notifier
                    .send_logged(&[NotifyState::Ready, NotifyState::Status(&line)]);
                *phase = Phase::Ready;
            }
            // A reload whose start was not announced (it began before
            // READY=1): refresh the status line only.
            Phase::Ready => self.notifier.send_logged(&[NotifyState::Status(&line)]),
            Phase::Starting | Phase::Stopping => {}
        }
    }
}

/// The one-line summary systemd shows in `systemctl status`, e.g.
/// `generation 3 · 2 documents · all ok` or
/// `generation 3 · 2 documents · rejected: app (E_SCHEMA) · missing: db`.
pub fn status_line(status: &Status, snapshot: &Snapshot) -> String {
    let served = snapshot.documents.len();
    let mut line = format!(
        "generation {} · {} document{}",
        snapshot.generation,
        served,
        if served == 1 { "" } else { "s" }
    );
    let mut rejected = Vec::new();
    let mut missing = Vec::new();
    for (name, doc) in &status.documents {
        match doc.state {
            DocState::Ok => {}
            DocState::Error => {
                let code = doc
                    .last_error
                    .as_ref()
                    .map(|e| e.rejection.code.as_str())
                    .unwrap_or("error");
                rejected.push(format!("{name} ({code})"));
            }
            DocState::Missing => missing.push(name.clone()),
        }
    }
    if rejected.is_empty() && missing.is_empty() {
        line.push_str(" · all ok");
    }
    if !rejected.is_empty() {
        line.push_str(" · rejected: ");
        line.push_str(&name_list(&rejected));
    }
    if !missing.is_empty() {
        line.push_str(" · missing: ");
        line.push_str(&name_list(&missing));
    }
    if status.watch_degraded.is_some() {
        line.push_str(" · file watching degraded, polling");
    }
    // STATUS= is one line of the datagram; names are restricted to
    // [A-Za-z0-9_-] but be safe anyway.
    line.replace(['\n', '\r'], " ")
}

/// `a, b, c` — at most [`STATUS_NAMES`] of them, then `+N more`.
fn name_list(names: &[String]) -> String {
    let shown: Vec<&str> = names
        .iter()
        .take(STATUS_NAMES)
        .map(String::as_str)
        .collect();
    let mut out = shown.join(", ");
    let rest = names.len().saturating_sub(STATUS_NAMES);
    if rest > 0 {
        let _ = write!(out, " +{rest} more");
    }
    out
}

/// Half of `WATCHDOG_USEC` when systemd enabled the watchdog for this
/// process (`WATCHDOG_PID` unset or equal to our pid); `None` otherwise.
pub fn watchdog_period() -> Option<Duration> {
    let timeout = sd_notify::watchdog_enabled()?;
    // ok: dividing a Duration by a non-zero constant cannot panic.
    let period = timeout / 2;
    (!period.is_zero()).then_some(period)
}

/// The future a [`Probe`] returns: `Err` says what is wrong.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One liveness check the watchdog runs before each ping.
pub struct Probe {
    /// Names the check in logs (`reloader`, `control_socket`).
    name: &'static str,
    /// Starts one check.
    check: Box<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("name", &self.name).finish()
    }
}

impl Probe {
    /// A probe named `name` that runs `check` each time; the check passes
    /// when its future resolves to `Ok` within the watchdog's deadline.
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Probe {
            name,
            check: Box::new(move || Box::pin(check())),
        }
    }

    /// Starts one check (what the watchdog does before each ping).
    pub fn check(&self) -> ProbeFuture {
        (self.check)()
    }
}

/// Pings systemd every `period` while every probe passes; stops once the
/// daemon is stopping.
async fn watchdog_loop(systemd: Arc<Systemd>, period: Duration, probes: Vec<Probe>) {
    let probes: Vec<Arc<Probe>> = probes.into_iter().map(Arc::new).collect();
    // Probes must finish well inside the period so that a ping that is due
    // is never later than systemd's deadline (2 × period).
    // ok: non-zero constant divisor.
    let deadline = period / 2;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        ticker.tick().await;
        if systemd.is_stopping() {
            return;
        }
        let failures = run_probes(&probes, deadline).await;
        if systemd.is_stopping() {
            return;
        }
        if failures.is_empty() {
            systemd.notifier.send_logged(&[NotifyState::Watchdog]);
            if !healthy {
                tracing::info!(event = "watchdog_resumed", "liveness probes pass again");
                healthy = true;
            }
        } else {
            if healthy {
                tracing::error!(
                    event = "watchdog_withheld",
                    failing = %failures.join("; "),
                    "liveness probe failed: not pinging the systemd watchdog"
                );
            }
            healthy = false;
        }
    }
}

/// Runs every probe concurrently, each bounded by `deadline`; returns a
/// description of each failure.
async fn run_probes(probes: &[Arc<Probe>], deadline: Duration) -> Vec<String> {
    let mut set = JoinSet::new();
    for probe in probes {
        let probe = Arc::clone(probe);
        set.spawn(async move {
            let verdict = match tokio::time::timeout(deadline, (probe.check)()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {deadline:?}")),
            };
            verdict.map_err(|why| format!("{}: {why}", probe.name))
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(why),
            Err(e) => failures.push(format!("probe task failed: {e}")),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::rejection::{Code, Rejection};
    use crate::store::status::{DocStatus, LastError};
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::SystemTime;

    /// A bound datagram socket standing in for systemd.
    struct Manager {
        sock: UnixDatagram,
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Manager {
        fn new() -> Manager {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Manager {
                sock,
                _dir: dir,
                path,
            }
        }

        fn notifier(&self) -> Notifier {
            Notifier {
                addr: Some(notify_address(self.path.as_os_str()).unwrap()),
            }
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }

        fn nothing_pending(&self) -> bool {
            self.sock.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            let r = self.sock.recv(&mut buf);
            self.sock.set_nonblocking(false).unwrap();
            r.is_err()
        }
    }

    fn served(names: &[&str], generation: u64) -> Snapshot {
        let mut snap = Snapshot::empty();
        snap.generation = generation;
        for name in names {
            let value = Arc::new(serde_json::json!({}));
            snap.documents.insert(
                name.to_string(),
                Arc::new(crate::store::snapshot::ServedDocument {
                    value: value.clone(),
                    redacted: value,
                    has_secrets: false,
                    sha256: String::new(),
                    redacted_sha256: String::new(),
                    generation,
                    loaded_at: SystemTime::now(),
                    source: PathBuf::from(format!("{name}.toml")),
                    schema_sha256: String::new(),
                    typed: None,
                    bodies: Default::default(),
                }),
            );
        }
        snap
    }

    fn doc(state: DocState, code: Option<Code>) -> DocStatus {
        DocStatus {
            state,
            source: PathBuf::from("x.toml"),
            last_error: code.map(|c| LastError {
                rejection: Rejection::bare(c, "x.toml", "bad"),
                sha256: None,
                at: SystemTime::now(),
            }),
        }
    }

    fn status_of(docs: &[(&str, DocState, Option<Code>)]) -> Status {
        let mut documents = BTreeMap::new();
        for (name, state, code) in docs {
            documents.insert(name.to_string(), doc(*state, *code));
        }
        Status {
            documents,
            ..Status::default()
        }
    }

    fn outcome() -> ReloadOutcome {
        ReloadOutcome {
            trigger: Trigger::Signal,
            at: SystemTime::now(),
            duration: Duration::ZERO,
            accepted: vec![],
            rejected: vec![],
            removed: vec![],
            generation: 1,
            waited: vec![],
            deferred: vec![],
        }
    }

    #[test]
    fn notify_socket_forms() {
        assert!(notify_address(OsStr::new("/run/systemd/notify")).is_ok());
        let abs = notify_address(OsStr::new("@hotconf-test")).unwrap();
        assert_eq!(abs.as_abstract_name(), Some(&b"hotconf-test"[..]));
        assert!(notify_address(OsStr::new("@")).is_err());
        assert!(notify_address(OsStr::new("relative/path")).is_err());
        assert!(notify_address(OsStr::new("")).is_err());
        let long = format!("/{}", "x".repeat(200));
        assert!(notify_address(OsStr::new(&long)).is_err());
    }

    #[test]
    fn disabled_notifier_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.send(&[NotifyState::Ready]).unwrap();
    }

    #[test]
    fn status_line_all_ok() {
        let status = status_of(&[("app", DocState::Ok, None), ("db", DocState::Ok, None)]);
        assert_eq!(
            status_line(&status, &served(&["app", "db"], 3)),
            "generation 3 · 2 documents · all ok"
        );
        assert_eq!(
            status_line(&Status::default(), &served(&["one"], 1)),
            "generation 1 · 1 document · all ok"
        );
    }

    #[test]
    fn status_line_names_what_is_wrong() {
        let status = status_of(&[
            ("app", DocState::Error, Some(Code::Schema)),
            ("cache", DocState::Missing, Some(Code::Missing)),
            ("db", DocState::Ok, None),
            ("new", DocState::Error, Some(Code::Parse)),
        ]);
        assert_eq!(
            status_line(&status, &served(&["app", "cache", "db"], 7)),
            "generation 7 · 3 documents · rejected: app (E_SCHEMA), new (E_PARSE) · missing: cache"
        );
    }

    #[test]
    fn status_line_caps_long_lists() {
        let names: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
        let docs: Vec<(&str, DocState, Option<Code>)> = names
            .iter()
            .map(|n| (n.as_str(), DocState::Error, Some(Code::Parse)))
            .collect();
        let mut status = status_of(&docs);
        status.watch_degraded = Some("inotify limit\nreached".into());
        let line = status_line(&status, &served(&[], 0));
        assert!(
            line.ends_with("d4 (E_PARSE) +3 more · file watching degraded, polling"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn lifecycle_sends_the_documented_sequence() {
        let m = Manager::new();
        let sd = Systemd::with_notifier(m.notifier());
        let ok = status_of(&[("app", DocState::Ok, None)]);
        let snap = served(&["app"], 1);

        // Startup reloads are covered by READY=1, not announced.
        sd.reload_started(Trigger::Startup);
        sd.reload_finished(&outcome(), &ok, &snap);
        assert!(m.nothing_pending());

        sd.ready(&ok, &snap);
        assert_eq!(
            m.recv(),
            "READY=1\nSTATUS=generation 1 · 1 document · all ok\n"
        );
        sd.ready(&ok, &snap);
        assert!(m.nothing_pending());

        sd.reload_started(Trigger::Signal);
        let msg = m.recv();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 3, "{msg}");
        assert_eq!(lines[0], "RELOADING=1");
        let usec: i128 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        assert_eq!(lines[2], "STATUS=reloading");

        let bad = status_of(&[("app", DocState::Error, Some(Code::Schema))]);
        sd.reload_finished(&outcome(), &bad, &snap);
        assert_eq!(
            m.recv(),
            "READY=1\nSTATUS=generation 1 · 1 document · rejected: app (E_SCHEMA)\n"
        );

        sd.stopping();
        assert_eq!(m.recv(), "STOPPING=1\nSTATUS=stopping\n");
        assert!(sd.is_stopping());
        // An in-flight reload finishing during shutdown says nothing.
        sd.reload_started(Trigger::Watch);
        sd.reload_finished(&outcome(), &ok, &snap);
        sd.stopping();
        assert!(m.nothing_pending());
    }

    #[test]
    fn abstract_socket_receives() {
        let name = format!("hotconf-unit-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = Notifier {
            addr: Some(notify_address(OsStr::new(&format!("@{name}"))).unwrap()),
        };
        n.send(&[NotifyState::Stopping]).unwrap();
        let mut buf = [0u8; 64];
        let len = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchdog_pings_only_while_probes_pass() {
        let m = Manager::new();
        let sd = Arc::new(Systemd::with_notifier(m.notifier()));
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let probe = Probe::new("test", move || {
            let alive = flag.load(Ordering::SeqCst);
            async move {
                if alive {
                    Ok(())
                } else {
                    // A wedged component: never answers.
                    std::future::pending::<()>().await;
                    Ok(())
                }
            }
        });
        let period = Duration::from_millis(100);
        let task = tokio::spawn(watchdog_loop(sd.clone(), period, vec![probe]));
        let sock = m.sock.try_clone().unwrap();
        let got = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 64];
            let n = sock.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .await
        .unwrap();
        assert_eq!(got, b"WATCHDOG=1\n");

        alive.store(false, Ordering::SeqCst);
        // Drain pings whose probe had already passed, then expect silence
        // for several periods.
        let sock = m.sock.try_clone().unwrap();
        let silent = tokio::task::spawn_blocking(move || {
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = [0u8; 64];
            let drain_until = std::time::Instant::now() + Duration::from_millis(300);
            while std::time::Instant::now() < drain_until {
                let _ = sock.recv(&mut buf);
            }
            sock.set_read_timeout(Some(Duration::from_millis(600)))
                .unwrap();
            sock.recv(&mut buf).is_err()
        })
        .await
        .unwrap();
        assert!(silent, "a wedged probe must stop the pings");

        sd.stopping();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
