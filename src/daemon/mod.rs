//! `hotconf run`: wires the store, the reloader, signals, the poll, the
//! file watcher, the control socket and systemd together. Thin: the work
//! lives in the modules it starts.
//!
//! The shape of a run, in [`run`]: install the logger, build the runtime,
//! catch signals (before anything else, so an early SIGHUP cannot kill the
//! process), [`Daemon::start`] (store + reloader + startup load; exit 1 with
//! every error printed when a document is invalid), start the other
//! components from the [`Daemon`]'s parts, `Daemon::serve` until
//! SIGTERM/SIGINT, then [`Daemon::stop`].
//!
//! Signal handlers only enqueue; nothing here reads a file.

mod probe;
pub mod rlimit;
pub mod strict;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::control::{self, BindError, Limits as ConnLimits, Server, ServerOptions, SocketOptions};
use crate::embed::Hotconf;
use crate::history::plan::Planner;
use crate::history::History;
use crate::observe::logging::{self, LogObserver};
use crate::observe::metrics::Metrics;
use crate::observe::systemd::{Probe, Systemd};
use crate::output::Outputs;
use crate::pipeline::Limits;
use crate::reload::{ReloadHandle, ReloadObserver};
use crate::store::status::Trigger;
use crate::store::Store;

pub use crate::observe::logging::LogFormat;

/// Everything `hotconf run` is configured with (flags / `HOTCONF_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory of `NAME.toml` documents.
    pub config_dir: PathBuf,
    /// Directory of `NAME.schema.json` schemas.
    pub schema_dir: PathBuf,
    /// Control socket path; `None` resolves as SPEC §4 says.
    pub socket: Option<PathBuf>,
    /// Quiet time after a bare modification before it is read.
    pub debounce: Duration,
    /// Larger files are rejected unread.
    pub max_file_size: u64,
    /// Period of the checksum poll; zero disables it.
    pub poll_interval: Duration,
    /// One rejected document rejects the whole reload.
    pub all_or_nothing: bool,
    /// Watch the directories for changes (`--no-watch`: poll, SIGHUP and
    /// API only).
    pub watch: bool,
    /// Mode of the control socket.
    pub socket_mode: u32,
    /// Group of the control socket.
    pub socket_group: Option<String>,
    /// TCP address serving `/metrics` only.
    pub metrics_listen: Option<SocketAddr>,
    /// Text or JSON logs.
    pub log_format: LogFormat,
    /// `tracing` filter directive (`info`, `debug`, `hotconf=trace`...).
    pub log_level: String,
    /// Where the last good snapshot is persisted.
    pub state_dir: Option<PathBuf>,
    /// Concurrent connections on the control socket; [`run`] lowers it to
    /// what the open-file limit fits.
    pub max_connections: usize,
    /// The outputs file (`--outputs`): files rendered for programs that
    /// only read files.
    pub outputs: Option<PathBuf>,
    /// How many reloads `GET /v1/history` remembers (`--history`).
    pub history: usize,
    /// Stay dumpable (core dumps, ptrace by the same uid); off by default.
    pub allow_core_dumps: bool,
    /// Serve document symlinks whose target belongs to another uid.
    pub allow_foreign_symlinks: bool,
}

/// Tells long-running components (control socket, watcher) that the daemon
/// is stopping. Cheap to clone; every clone sees the same signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Becomes `true` once, when the daemon stops.
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Waits until the daemon is stopping (returns at once if it is).
    pub async fn wait(&mut self) {
        // Err: the sender is gone, which only happens when stopping.
        let _ = self.rx.wait_for(|stopping| *stopping).await;
    }

    /// Whether the daemon is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }
}

/// The signals `hotconf run` reacts to. Installed first thing, so that a
/// SIGHUP arriving during startup is queued instead of killing the process.
struct Signals {
    /// Explicit reload.
    hup: Signal,
    /// Graceful stop (systemd).
    term: Signal,
    /// Graceful stop (Ctrl-C).
    int: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// A started daemon: a running [`Hotconf`] (store, reloader, watcher,
/// poll) plus what only the daemon has. The control socket needs `store`
/// and `reload`; all components take a clone of `shutdown`.
pub struct Daemon {
    /// What it was started with.
    pub settings: Settings,
    /// The served snapshot and status (readers only; the reloader writes).
    pub store: Arc<Store>,
    /// Requests reloads (signals, poll, watcher, `POST /v1/reload`).
    pub reload: ReloadHandle,
    /// Handed to components so they stop with the daemon.
    pub shutdown: Shutdown,
    /// The last reloads (`GET /v1/history`), startup included.
    pub history: Arc<History>,
    /// The embedded core: store, reloader, watcher and poll.
    core: Hotconf,
    /// The serving control socket, once [`Daemon::serve_control`] started it.
    control: Option<control::Running>,
    /// Fires `shutdown`.
    shutdown_tx: watch::Sender<bool>,
}

pub use crate::embed::StartError;

impl Daemon {
    /// Starts the library's [`Hotconf`] with the daemon's settings and
    /// `observers` (called in order after each reload): store, reloader,
    /// startup load, then the watcher and the poll. Fails with every
    /// rejection when any document is invalid (SPEC §2 "Startup").
    ///
    /// With a state directory, the store starts from the persisted snapshot
    /// (if one is there and intact) and the startup load is compared with
    /// it like any reload: unchanged documents keep their generation, good
    /// edits get the next one, and invalid documents keep their persisted
    /// version. Then invalid documents do not stop the daemon: it runs,
    /// says so (WARN `serving_persisted`), and they are `error`.
    pub async fn start(
        settings: Settings,
        observers: Vec<Arc<dyn ReloadObserver>>,
    ) -> Result<Daemon, StartError> {
        // The binary serves JSON only: no Rust types registered.
        let mut builder =
            Hotconf::builder(settings.config_dir.clone(), settings.schema_dir.clone())
                .watch(settings.watch)
                .poll_interval(settings.poll_interval)
                .debounce(settings.debounce)
                .all_or_nothing(settings.all_or_nothing)
                .limits(config_limits(&settings))
                .warnings(directory_warnings(&settings));
        if let Some(dir) = &settings.state_dir {
            builder = builder.state_dir(dir.clone());
        }
        for o in observers {
            builder = builder.observer(o);
        }
        // Seeded with the store's first snapshot, before the reloader (the
        // only writer) starts: the history compares its first reload with
        // exactly that snapshot.
        let history_slot: Arc<std::sync::OnceLock<Arc<History>>> = Arc::default();
        let (slot, keep) = (history_slot.clone(), settings.history);
        builder = builder.seeded_observer(move |snapshot| {
            let history = Arc::new(History::new(keep, snapshot));
            let _ = slot.set(history.clone());
            history
        });
        let core = builder.start().await?;
        let history = history_slot
            .get()
            .cloned()
            .ok_or_else(|| StartError::Internal("the history was not set up".into()))?;
        // After the startup load, as before: whoever sees it may rely on
        // the startup reload having finished.
        if !settings.watch {
            tracing::info!(
                event = "watch_disabled",
                "--no-watch: changes are found by the poll, SIGHUP and the API only"
            );
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        Ok(Daemon {
            settings,
            store: core.store().clone(),
            reload: core.reload_handle().clone(),
            shutdown: Shutdown { rx: shutdown_rx },
            history,
            core,
            control: None,
            shutdown_tx,
        })
    }

    /// What the systemd watchdog checks before each ping: the reloader takes
    /// a request from its queue and finishes it (an implicit look, which
    /// is silent when nothing changed) and the control socket answers
    /// `GET /v1/status`.
    fn watchdog_probes(&self) -> Vec<Probe> {
        let reload = self.reload.clone();
        let reloader = Probe::new("reloader", move || {
            let reload = reload.clone();
            async move {
                reload
                    .reload(Trigger::Poll)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
        let mut probes = vec![reloader];
        if let Some(control) = &self.control {
            probes.push(probe::control_socket(control.socket_path().to_path_buf()));
        }
        probes
    }

    /// Reacts to signals until SIGTERM/SIGINT (the poll and the watcher
    /// run in the core). Returns the name of the signal that stopped it.
    async fn serve(&self, signals: &mut Signals) -> &'static str {
        loop {
            tokio::select! {
                _ = signals.hup.recv() => self.reload.request(Trigger::Signal),
                _ = signals.term.recv() => return "SIGTERM",
                _ = signals.int.recv() => return "SIGINT",
            }
        }
    }

    /// Starts serving the control socket bound earlier (see [`run`]: it is
    /// bound before the startup load so that a second daemon fails fast),
    /// with `metrics` (the reload observer) behind `/metrics`.
    pub fn serve_control(
        &mut self,
        server: Server,
        metrics: Arc<Metrics>,
        outputs: Option<Outputs>,
    ) -> std::io::Result<()> {
        let running = server.start(control::Context {
            store: self.store.clone(),
            reloader: Arc::new(self.reload.clone()),
            metrics,
            outputs,
            history: Some(self.history.clone()),
            planner: Some(Arc::new(Planner::new(
                self.settings.config_dir.clone(),
                self.settings.schema_dir.clone(),
                config_limits(&self.settings),
                self.settings.all_or_nothing,
            ))),
        })?;
        self.control = Some(running);
        Ok(())
    }

    /// Stops: tells every component, lets the in-flight reload finish and
    /// the control socket drain (bounded; it removes its socket file), logs
    /// `shutdown`.
    pub async fn stop(self, reason: &str) {
        self.shutdown_tx.send_replace(true);
        // Concurrently: an in-flight `POST /v1/reload` waits for the reload.
        let control = async {
            if let Some(c) = self.control {
                c.shutdown().await;
            }
        };
        let store = self.store.clone();
        tokio::join!(self.core.shutdown(), control);
        logging::shutdown(reason, store.load().generation);
    }
}

/// The read limits `settings` ask for.
fn config_limits(settings: &Settings) -> Limits {
    Limits {
        max_file_size: settings.max_file_size,
        allow_foreign_symlinks: settings.allow_foreign_symlinks,
    }
}

/// Worker threads of the daemon's async runtime, whatever the number of
/// CPUs (tokio's default is one per CPU, which on a large host is dozens of
/// idle threads, each with its own stack and allocator arena).
pub const WORKER_THREADS: usize = 2;

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code: 0
/// after a graceful stop, 1 when startup fails (every error printed to
/// stderr compiler style, as `hotconf check` does), 2 for a bad
/// `--log-level`.
pub fn run(settings: Settings) -> i32 {
    if let Err(e) = logging::init(settings.log_format, &settings.log_level) {
        eprintln!("hotconf run: {e}");
        return 2;
    }
    if !settings.allow_core_dumps {
        if let Err(e) = forbid_core_dumps() {
            tracing::warn!(error = %e, "cannot mark the process non-dumpable");
        }
    }
    let mut settings = settings;
    settings.max_connections = fit_connections(settings.max_connections);
    // Sized to the work, not to the machine: the API answers from
    // immutable snapshots and never blocks, so two workers keep one slow
    // peer from stalling the rest; blocking work is a startup restore only.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(2)
        .thread_name("hotconf")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hotconf run: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run_async(settings))
}

/// Marks the process non-dumpable (`PR_SET_DUMPABLE` 0): no core dump, no
/// ptrace or `/proc/PID/mem` by other processes of the same uid — each would
/// expose every secret the daemon holds. Done before any document is read.
fn forbid_core_dumps() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(std::io::Error::from)
}

/// What is unsafe about the config and schema directories (see
/// [`strict`]), each logged as WARN `unsafe_directory`.
fn directory_warnings(settings: &Settings) -> Vec<String> {
    let warnings = strict::directory_warnings(
        &settings.config_dir,
        &settings.schema_dir,
        control::paths::current_uid(),
    );
    for w in &warnings {
        tracing::warn!(event = "unsafe_directory", "{w}");
    }
    warnings
}

/// Raises the open-file limit so that `wanted` connections fit beside the
/// files the daemon opens, and returns how many connections do fit (fewer
/// when the hard limit is too low, so that a connection flood can never
/// starve the reloader of descriptors). Logs the outcome as `limits`.
fn fit_connections(wanted: usize) -> usize {
    let needed = u64::try_from(wanted)
        .unwrap_or(u64::MAX)
        .saturating_add(rlimit::RESERVED_FDS);
    let lim = match rlimit::raise_nofile(needed) {
        Ok(lim) => lim,
        Err(e) => {
            tracing::warn!(
                event = "limits",
                error = %e,
                max_connections = wanted,
                "cannot read the open-file limit; keeping the connection limit"
            );
            return wanted;
        }
    };
    // At least one connection, however low the limit: the operator's.
    let fits = rlimit::connections_that_fit(lim.soft, wanted).max(1);
    if fits < wanted {
        tracing::warn!(
            event = "limits",
            nofile_before = lim.before,
            nofile = lim.soft,
            nofile_hard = lim.hard,
            max_connections = fits,
            wanted_connections = wanted,
            "the open-file limit fits only {fits} control connections (wanted {wanted}); \
             raise LimitNOFILE"
        );
    } else {
        tracing::info!(
            event = "limits",
            nofile_before = lim.before,
            nofile = lim.soft,
            nofile_hard = lim.hard,
            max_connections = fits,
            "open-file limit {} (was {}), up to {fits} control connections",
            lim.soft,
            lim.before
        );
    }
    fits
}

async fn run_async(settings: Settings) -> i32 {
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hotconf run: cannot install signal handlers: {e}");
            return 1;
        }
    };
    // Claim the socket before the startup load: a second daemon on a live
    // socket must fail at once, naming it, without doing any work.
    let server = match server_options(&settings).and_then(|o| Server::bind(&o)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hotconf run: {e}");
            return 1;
        }
    };
    // The outputs file is part of the configuration: invalid, no start.
    let outputs = match &settings.outputs {
        None => None,
        Some(file) => match Outputs::load(file) {
            Ok(o) => Some(o),
            Err(rejections) => {
                let lines: Vec<String> = rejections.iter().flat_map(|r| r.lines()).collect();
                for line in &lines {
                    eprintln!("{line}");
                }
                eprintln!(
                    "hotconf run: not starting: the outputs file has {} error(s)",
                    lines.len()
                );
                return 1;
            }
        },
    };
    // Observers are fixed before the reloader starts; each is told about
    // every reload that does something, in this order.
    let metrics = Arc::new(Metrics::new());
    // No-op without NOTIFY_SOCKET.
    let systemd = Systemd::from_env();
    let mut observers: Vec<Arc<dyn ReloadObserver>> = vec![Arc::new(LogObserver), metrics.clone()];
    // Only takes note and wakes the outputs' own threads.
    observers.extend(outputs.as_ref().map(Outputs::observer));
    // RELOADING=1 + MONOTONIC_USEC, then READY=1 + STATUS=; last, so
    // that whoever hears READY=1 finds the counters already moved.
    observers.push(systemd.clone());
    let mut daemon = match Daemon::start(settings, observers).await {
        Ok(d) => d,
        Err(StartError::Invalid(rejections)) => {
            let lines: Vec<String> = rejections.iter().flat_map(|r| r.lines()).collect();
            for line in &lines {
                eprintln!("{line}");
            }
            eprintln!(
                "hotconf run: not starting: the configuration has {} error(s)",
                lines.len()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("hotconf run: {e}");
            return 1;
        }
    };

    // The first render of each output compares with what is on disk, so a
    // restart applies nothing that did not change.
    let running_outputs = match outputs.as_ref().map(|o| o.start(daemon.store.clone())) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            eprintln!("hotconf run: cannot start the outputs: {e}");
            daemon.stop("outputs failed").await;
            return 1;
        }
    };
    if let Err(e) = daemon.serve_control(server, metrics, outputs) {
        eprintln!("hotconf run: cannot serve the control socket: {e}");
        daemon.stop("control socket failed").await;
        return 1;
    }
    // The startup load is done and every component is listening.
    systemd.ready(&daemon.store.status(), &daemon.store.load());
    systemd.spawn_watchdog(daemon.watchdog_probes());

    let reason = daemon.serve(&mut signals).await;
    // Before draining: systemd must not expect a READY=1 for a reload
    // that is still finishing, nor ping the watchdog any more.
    systemd.stopping();
    // No more watch- or poll-triggered requests once stopping.
    daemon.core.stop_triggers();
    daemon.stop(reason).await;
    // After the reloader: no publish can come any more. A run in flight
    // ends first (bounded by its command timeout).
    if let Some(r) = running_outputs {
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    0
}

/// Options from the daemon's settings: resolves the socket path (SPEC
/// §4, creating the private `/tmp` fallback directory if it comes to
/// that).
fn server_options(settings: &Settings) -> Result<ServerOptions, BindError> {
    let resolved = crate::control::paths::resolve_socket(
        settings.socket.as_deref(),
        crate::control::paths::Role::Daemon,
    );
    crate::control::paths::prepare_socket_dir(&resolved).map_err(|source| BindError::Io {
        path: resolved.path.clone(),
        source,
    })?;
    let path = resolved.path;
    Ok(ServerOptions {
        socket: SocketOptions {
            path,
            mode: settings.socket_mode,
            group: settings.socket_group.clone(),
        },
        metrics_listen: settings.metrics_listen,
        limits: ConnLimits {
            max_connections: settings.max_connections,
            ..ConnLimits::default()
        },
    })
}
