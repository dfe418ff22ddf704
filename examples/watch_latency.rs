//! Measures how long an edit takes to be served: from the syscall that makes
//! the new content final (the `rename` of a rename-save, the `close` of an
//! in-place write, the `rename` of a ConfigMap `..data` swap) to the new
//! generation being published in the store. The watcher and the reloader
//! are wired exactly as `hotconf run` wires them (the watcher's sink
//! requests a `Trigger::Watch` reload); publication is observed in process
//! by a reload observer, which the reloader calls right after the swap.
//!
//! ```text
//! cargo run --release --example watch_latency -- [TRIALS]
//! ```
//!
//! Also reports the watcher alone (syscall → its signal) and, as the floor,
//! a bare `notify` callback that only takes the time (syscall → callback).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotconf::reload::{ReloadConfig, ReloadObserver, Reloader, Unsettled};
use hotconf::store::snapshot::Snapshot;
use hotconf::store::status::{ReloadOutcome, Status, Trigger};
use hotconf::watch::{WatchHealth, WatchSignal, Watcher};
use hotconf::Store;

/// Debounce used here: short, so the deferred looks of one trial are over
/// before the next starts.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Pause between trials (longer than the debounce).
const GAP: Duration = Duration::from_millis(60);

/// Sends the instant of each publish.
struct Published(Mutex<Sender<(Instant, u64)>>);

impl ReloadObserver for Published {
    fn reload_finished(&self, outcome: &ReloadOutcome, _: &Status, snapshot: &Snapshot) {
        let now = Instant::now();
        if !outcome.accepted.is_empty() {
            if let Ok(tx) = self.0.lock() {
                let _ = tx.send((now, snapshot.generation));
            }
        }
    }
}

struct Bench {
    _tmp: tempfile::TempDir,
    configs: PathBuf,
    published: Receiver<(Instant, u64)>,
    signals: Receiver<Instant>,
    _watcher: Watcher,
}

const SCHEMA: &str = r#"{"type":"object","properties":{"v":{"type":"integer"},"name":{"type":"string"}},"required":["v"],"additionalProperties":false}"#;

fn setup(configmap: bool) -> Result<Bench, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let configs = tmp.path().join("configs");
    let schemas = tmp.path().join("schemas");
    std::fs::create_dir(&configs)?;
    std::fs::create_dir(&schemas)?;
    std::fs::write(schemas.join("app.schema.json"), SCHEMA)?;
    if configmap {
        configmap_version(&configs, 0)?;
        std::os::unix::fs::symlink("..data/app.toml", configs.join("app.toml"))?;
    } else {
        std::fs::write(configs.join("app.toml"), "v = 0\n")?;
    }
    let store = Arc::new(Store::with_random_instance());
    let unsettled = Arc::new(Unsettled::default());
    let mut config = ReloadConfig::new(&configs, &schemas);
    config.debounce = DEBOUNCE;
    config.unsettled = unsettled.clone();
    let (ptx, published) = channel();
    let reload = Reloader::spawn(
        config,
        store.clone(),
        vec![Arc::new(Published(Mutex::new(ptx)))],
    )?;
    reload
        .reload_blocking(Trigger::Startup)
        .map_err(|e| e.to_string())?;
    let _ = published.recv_timeout(Duration::from_secs(5));
    let (stx, signals) = channel();
    let watcher = Watcher::start(
        &[configs.clone(), schemas],
        DEBOUNCE,
        unsettled,
        Arc::new(WatchHealth::new()),
        move |s| {
            if s == WatchSignal::Changed {
                let _ = stx.send(Instant::now());
            }
            reload.request(Trigger::Watch);
        },
    )?;
    std::thread::sleep(GAP);
    while published.try_recv().is_ok() {}
    while signals.try_recv().is_ok() {}
    Ok(Bench {
        _tmp: tmp,
        configs,
        published,
        signals,
        _watcher: watcher,
    })
}

fn ts(i: usize) -> String {
    format!("..2026_11_26_10_00_00.{i:09}")
}

/// Writes ConfigMap version `i` and swaps it in; returns the instant just
/// before the swap's rename.
fn configmap_version(dir: &Path, i: usize) -> std::io::Result<Instant> {
    let d = dir.join(ts(i));
    std::fs::create_dir(&d)?;
    std::fs::write(d.join("app.toml"), format!("v = {i}\n"))?;
    std::os::unix::fs::symlink(ts(i), dir.join("..data_tmp"))?;
    let t = Instant::now();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data"))?;
    if i > 0 {
        std::fs::remove_dir_all(dir.join(ts(i - 1)))?;
    }
    Ok(t)
}

/// One trial of `op`; returns the instant of the finalizing syscall.
fn trial(op: &str, dir: &Path, i: usize) -> std::io::Result<Instant> {
    let path = dir.join("app.toml");
    match op {
        "rename-save" => {
            let tmp = dir.join(".app.toml.tmp");
            std::fs::write(&tmp, format!("v = {i}\n"))?;
            let t = Instant::now();
            std::fs::rename(&tmp, &path)?;
            Ok(t)
        }
        "in-place write+close" => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)?;
            f.write_all(format!("v = {i}\n").as_bytes())?;
            let t = Instant::now();
            drop(f);
            Ok(t)
        }
        _ => configmap_version(dir, i),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    let last = sorted.len().saturating_sub(1);
    sorted
        .get(rank.min(last))
        .copied()
        .unwrap_or(Duration::ZERO)
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{what:<45} n={:<4} p50={:>8.1} µs  p99={:>8.1} µs  max={:>8.1} µs",
        v.len(),
        us(percentile(&v, 0.50)),
        us(percentile(&v, 0.99)),
        us(v.last().copied().unwrap_or_default()),
    );
}

/// The floor: the same operations seen by a bare `notify` callback that
/// does nothing but take the time (syscall → callback).
fn baseline(op: &str, trials: usize) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    use notify::Watcher as _;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    if op.starts_with("ConfigMap") {
        configmap_version(&dir, 0)?;
        std::os::unix::fs::symlink("..data/app.toml", dir.join("app.toml"))?;
    } else {
        std::fs::write(dir.join("app.toml"), "v = 0\n")?;
    }
    let (tx, rx) = channel::<(Instant, notify::EventKind, Option<std::ffi::OsString>)>();
    let mut w = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
        let now = Instant::now();
        if let Ok(e) = r {
            let name = e
                .paths
                .first()
                .and_then(|p| p.file_name())
                .map(|n| n.to_os_string());
            let _ = tx.send((now, e.kind, name));
        }
    })?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    let mut out = Vec::new();
    for i in 1..=trials {
        let t = trial(op, &dir, i)?;
        let t_end = t + Duration::from_secs(10);
        loop {
            let (at, kind, name) =
                rx.recv_timeout(t_end.saturating_duration_since(Instant::now()))?;
            let done = match op {
                "in-place write+close" => {
                    kind == notify::EventKind::Access(notify::event::AccessKind::Close(
                        notify::event::AccessMode::Write,
                    ))
                }
                "rename-save" => {
                    kind == notify::EventKind::Modify(notify::event::ModifyKind::Name(
                        notify::event::RenameMode::To,
                    )) && name.as_deref() == Some(std::ffi::OsStr::new("app.toml"))
                }
                _ => {
                    kind == notify::EventKind::Modify(notify::event::ModifyKind::Name(
                        notify::event::RenameMode::To,
                    )) && name.as_deref() == Some(std::ffi::OsStr::new("..data"))
                }
            };
            if done && at >= t {
                out.push(at.saturating_duration_since(t));
                break;
            }
        }
        std::thread::sleep(GAP);
        while rx.try_recv().is_ok() {}
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trials: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    println!("{trials} trials per operation; time from the finalizing syscall");
    for op in [
        "rename-save",
        "in-place write+close",
        "ConfigMap ..data swap",
    ] {
        let bench = setup(op.starts_with("ConfigMap"))?;
        let mut to_signal = Vec::new();
        let mut to_publish = Vec::new();
        for i in 1..=trials {
            let t = trial(op, &bench.configs, i)?;
            let (p, _) = bench
                .published
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| format!("{op}: trial {i} was not published"))?;
            to_publish.push(p.saturating_duration_since(t));
            // The first signal at or after the syscall is this trial's.
            while let Ok(s) = bench.signals.try_recv() {
                if s >= t {
                    to_signal.push(s.saturating_duration_since(t));
                    break;
                }
            }
            std::thread::sleep(GAP);
            while bench.published.try_recv().is_ok() {}
            while bench.signals.try_recv().is_ok() {}
        }
        report(&format!("{op}: → published"), to_publish);
        report(&format!("{op}: → watcher signal"), to_signal);
        report(
            &format!("{op}: → bare notify callback"),
            baseline(op, trials)?,
        );
    }
    Ok(())
}
