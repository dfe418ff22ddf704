//! A service that embeds hotconf and reads its configuration as a Rust type.
//!
//! ```text
//! cargo run --example embed -- [CONFIG_DIR] [SCHEMA_DIR]    # default: configs schemas
//! ```
//!
//! It registers `AppConfig` for the document `app` (the repository's
//! `configs/app.toml`), loads once (refusing to start on a bad file), then
//! runs:
//!
//! - request workers on plain threads, which read the typed configuration
//!   at the start of every request (lock-free, no deserialization) and keep
//!   that one `Arc` for the whole request;
//! - an async task that waits for new versions of `app` and reacts (here:
//!   it says what changed);
//! - a poll that asks for a reload every second (a real service would use a
//!   file watcher or an admin endpoint; SIGHUP reloads explicitly here).
//!
//! Try it: set `listen = "localhost:8080"` in `configs/app.toml`. The schema
//! allows a host name, but this service needs an IP address
//! (`std::net::SocketAddr`), so the edit is rejected with `E_TYPE` and the
//! workers keep the last good configuration. Ctrl-C stops it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hotconf::observe::logging::LogObserver;
use hotconf::{ReloadConfig, Reloader, Store, Trigger, TypedView};
use serde::Deserialize;

/// The part of `app.toml` this service uses. Fields the type does not name
/// are ignored; what the type needs beyond the schema (an IP address, a
/// `u16`) is what `E_TYPE` checks.
#[derive(Debug, Deserialize)]
struct AppConfig {
    /// The service's name.
    service: String,
    /// Where to listen and how long to wait.
    server: Server,
    /// How many workers to run.
    workers: Workers,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
struct Server {
    /// Must be an IP socket address: a host name is `E_TYPE`.
    listen: SocketAddr,
    /// Request timeout.
    timeout_ms: u64,
}

/// `[workers]`.
#[derive(Debug, Deserialize)]
struct Workers {
    /// Worker count.
    count: u16,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config_dir = args.next().unwrap_or_else(|| "configs".into());
    let schema_dir = args.next().unwrap_or_else(|| "schemas".into());
    // The program owns its subscriber; hotconf only emits `tracing` events.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();

    let store = Arc::new(Store::with_random_instance());
    let mut config = ReloadConfig::new(config_dir, schema_dir);
    config.register::<AppConfig>("app");
    let reload = Reloader::spawn(config, store.clone(), vec![Arc::new(LogObserver)])?;

    // Refuse to start on a bad configuration, as `hotconf run` does.
    reload.reload(Trigger::Startup).await?;
    let status = store.status();
    if !status.all_ok() {
        for doc in status.documents.values() {
            if let Some(e) = &doc.last_error {
                eprintln!("{}", e.rejection);
            }
        }
        return Err("invalid configuration".into());
    }
    let Some(first) = store.typed::<AppConfig>("app") else {
        return Err("no app.toml".into());
    };
    println!(
        "{} listening on {} with {} workers",
        first.service, first.server.listen, first.workers.count
    );

    // Request workers: plain threads reading the store on every request.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|id| {
            let view: TypedView<AppConfig> = store.view("app");
            let stop = stop.clone();
            std::thread::spawn(move || worker(id, &view, &stop))
        })
        .collect();

    // React to new versions of `app` only.
    let mut view: TypedView<AppConfig> = store.view("app");
    let watcher = tokio::spawn(async move {
        while let Some(app) = view.changed().await {
            println!(
                "app changed: listen {}, timeout {} ms, {} workers",
                app.server.listen, app.server.timeout_ms, app.workers.count
            );
        }
        println!("app is no longer served");
    });

    // Reload triggers: a 1 s poll, SIGHUP; Ctrl-C stops.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = poll.tick() => reload.request(Trigger::Poll),
            _ = hup.recv() => reload.request(Trigger::Signal),
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    watcher.abort();
    reload.shutdown().await;
    Ok(())
}

/// One request worker: takes the configuration once per request, so a
/// request never sees two versions; notices a new version by pointer.
fn worker(id: usize, view: &TypedView<AppConfig>, stop: &AtomicBool) {
    let mut current: Option<Arc<AppConfig>> = None;
    while !stop.load(Ordering::Relaxed) {
        // A lock-free load; the same `Arc` until a new version is accepted.
        let Some(config) = view.load() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &config)) {
            println!(
                "worker {id}: serving with timeout {} ms",
                config.server.timeout_ms
            );
            current = Some(config.clone());
        }
        handle_request(&config);
    }
}

/// Stands in for real work done under one configuration.
fn handle_request(config: &AppConfig) {
    let budget = Duration::from_millis(config.server.timeout_ms.min(50));
    std::thread::sleep(budget);
}
