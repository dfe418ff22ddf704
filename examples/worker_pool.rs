//! A worker pool configured live through a hotconf [`Handle`]: the seed's
//! outage (workers reading a configuration map while a reload writes it),
//! done right.
//!
//! ```text
//! cargo run --example worker_pool -- [CONFIG_DIR SCHEMA_DIR]   # watch, Ctrl-C stops
//! cargo run --example worker_pool -- --script                  # fixed scenario, exit 0
//! ```
//!
//! What runs:
//!
//! - a pool of worker threads handling jobs; each reads `timeout_ms`,
//!   `workers` and the `fast_path` flag from its cached [`Reader`] on every
//!   job (no lock, no name lookup, no reference count shared with the
//!   other workers);
//! - a batch job whose interval comes from the configuration and which
//!   never overlaps itself, even when one run is slower than the interval
//!   (the seed's second outage): the next run is scheduled only after the
//!   previous one has finished;
//! - an HTTP-handler-like task reading the configuration per request
//!   (`Handle::load`, a guard held for the request only);
//! - an `on_change` callback printing each accepted version.
//!
//! The file watcher is on: edit `pool.toml` and the workers pick the new
//! values up without a restart; an invalid edit (`timeout_ms = "5000ms"`)
//! is rejected and the workers carry on with the last good values.
//!
//! `--script` does that by itself in a temporary directory: start, a good
//! edit, a bad edit, a slow batch run; it exits 0 when every step was seen
//! and 1 otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "an example: a failed step ends it with a message"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hotconf::store::status::DocState;
use hotconf::{Handle, Hotconf};
use serde::Deserialize;

/// `pool.toml`.
#[derive(Debug, Deserialize)]
struct PoolConfig {
    /// How many of the pool's threads take jobs.
    workers: u32,
    /// Per-job timeout.
    timeout_ms: u64,
    /// A feature flag the workers branch on.
    fast_path: bool,
    /// The scheduled batch job.
    batch: Batch,
}

/// `[batch]`.
#[derive(Debug, Deserialize)]
struct Batch {
    /// Time between the end of one run and the start of the next.
    interval_ms: u64,
    /// How long one run takes (to show a run slower than the interval).
    work_ms: u64,
}

/// The schema of `pool.toml`.
const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "required": ["workers", "timeout_ms", "fast_path", "batch"],
  "properties": {
    "workers": {"type": "integer", "minimum": 1, "maximum": 64},
    "timeout_ms": {"type": "integer", "minimum": 1},
    "fast_path": {"type": "boolean"},
    "batch": {
      "type": "object",
      "additionalProperties": false,
      "required": ["interval_ms", "work_ms"],
      "properties": {
        "interval_ms": {"type": "integer", "minimum": 1},
        "work_ms": {"type": "integer", "minimum": 0}
      }
    }
  }
}"#;

/// `pool.toml` with these values.
fn pool_toml(
    workers: u32,
    timeout: &str,
    fast_path: bool,
    interval_ms: u64,
    work_ms: u64,
) -> String {
    format!(
        "workers = {workers}\ntimeout_ms = {timeout}\nfast_path = {fast_path}\n\n\
         [batch]\ninterval_ms = {interval_ms}\nwork_ms = {work_ms}\n"
    )
}

/// Writes `dir/pool.toml` as an editor does: a temp file renamed over it.
fn save(dir: &Path, text: &str) {
    let tmp = dir.join(".pool.toml.tmp");
    std::fs::write(&tmp, text).expect("write pool.toml");
    std::fs::rename(&tmp, dir.join("pool.toml")).expect("rename pool.toml");
}

/// What the running parts have done, for the script to check.
#[derive(Default)]
struct Counters {
    /// Jobs handled by the pool.
    jobs: AtomicU64,
    /// Jobs handled with the `fast_path` flag on.
    fast_jobs: AtomicU64,
    /// The largest `timeout_ms` a worker has used.
    max_timeout: AtomicU64,
    /// Requests handled by the handler task.
    requests: AtomicU64,
    /// Batch runs finished.
    batch_runs: AtomicU64,
    /// Batch runs that took longer than the interval.
    slow_batch_runs: AtomicU64,
    /// A batch run is in progress.
    batch_running: AtomicBool,
    /// Times a batch run started while another was running (must stay 0).
    overlaps: AtomicU64,
}

/// Starts `threads` pool threads taking jobs from `jobs`.
fn start_pool(
    threads: u32,
    handle: &Handle<PoolConfig>,
    jobs: mpsc::Receiver<u64>,
    c: &Arc<Counters>,
) {
    let jobs = Arc::new(Mutex::new(jobs));
    for id in 0..threads {
        let (handle, jobs, c) = (handle.clone(), jobs.clone(), c.clone());
        std::thread::spawn(move || {
            let mut config = handle.reader();
            loop {
                let job = match jobs.lock().map(|rx| rx.recv()) {
                    Ok(Ok(job)) => job,
                    _ => return,
                };
                // Read on every job: a good edit applies to the next job.
                let cfg = config.load();
                if id >= cfg.workers {
                    // This thread is parked by the configuration: hand back.
                    std::thread::sleep(Duration::from_millis(1));
                }
                c.max_timeout.fetch_max(cfg.timeout_ms, Ordering::Relaxed);
                if cfg.fast_path {
                    c.fast_jobs.fetch_add(1, Ordering::Relaxed);
                }
                let _ = job;
                c.jobs.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// The scheduled batch job: never overlapping, interval from the config.
async fn batch_loop(handle: Handle<PoolConfig>, c: Arc<Counters>, log: bool) {
    loop {
        let (interval, work) = {
            let cfg = handle.load();
            (cfg.batch.interval_ms, cfg.batch.work_ms)
        };
        tokio::time::sleep(Duration::from_millis(interval)).await;
        // One run at a time: the loop awaits the run before it schedules
        // the next, so a slow run delays the next instead of overlapping.
        if c.batch_running.swap(true, Ordering::SeqCst) {
            c.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let started = Instant::now();
        let _ =
            tokio::task::spawn_blocking(move || std::thread::sleep(Duration::from_millis(work)))
                .await;
        c.batch_running.store(false, Ordering::SeqCst);
        if started.elapsed() > Duration::from_millis(interval) {
            c.slow_batch_runs.fetch_add(1, Ordering::SeqCst);
            if log {
                println!(
                    "batch: a run took {} ms, longer than its {interval} ms interval; the next waits for it",
                    started.elapsed().as_millis()
                );
            }
        }
        c.batch_runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// An HTTP-handler-like task: one configuration read per request.
async fn handler_loop(handle: Handle<PoolConfig>, c: Arc<Counters>) {
    loop {
        {
            // Held for this request only, never across an await.
            let cfg = handle.load();
            let _deadline = Duration::from_millis(cfg.timeout_ms);
        }
        c.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `cond` holds; `false` after `timeout`.
async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Says whether a step passed; remembers failures.
fn step(ok: bool, what: &str, failed: &mut bool) {
    println!("[{}] {what}", if ok { "ok" } else { "FAILED" });
    *failed |= !ok;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let script = args.iter().any(|a| a == "--script");
    let temp = tempfile::tempdir().expect("temp dir");
    let (configs, schemas) = if script || args.len() < 2 {
        let (c, s) = (temp.path().join("configs"), temp.path().join("schemas"));
        std::fs::create_dir_all(&c).expect("mkdir");
        std::fs::create_dir_all(&s).expect("mkdir");
        std::fs::write(s.join("pool.schema.json"), SCHEMA).expect("write schema");
        save(&c, &pool_toml(4, "200", false, 50, 0));
        (c, s)
    } else {
        (PathBuf::from(&args[0]), PathBuf::from(&args[1]))
    };
    println!("configuration in {}", configs.display());

    let mut builder = Hotconf::builder(&configs, &schemas).debounce(Duration::from_millis(20));
    let pool: Handle<PoolConfig> = builder.register::<PoolConfig>("pool");
    let hc = match builder.start().await {
        Ok(hc) => hc,
        Err(e) => {
            for line in e.rejections().iter().flat_map(|r| r.lines()) {
                eprintln!("{line}");
            }
            eprintln!("worker_pool: not starting: {e}");
            std::process::exit(1);
        }
    };
    let first = pool.load();
    println!(
        "started: {} workers, timeout {} ms, fast_path {}, batch every {} ms",
        first.workers, first.timeout_ms, first.fast_path, first.batch.interval_ms
    );
    drop(first);

    let counters = Arc::new(Counters::default());
    let (job_tx, job_rx) = mpsc::channel();
    start_pool(8, &pool, job_rx, &counters);
    tokio::spawn(batch_loop(pool.clone(), counters.clone(), true));
    tokio::spawn(handler_loop(pool.clone(), counters.clone()));
    let _printer = pool
        .on_change(|cfg| {
            println!(
                "new configuration: {} workers, timeout {} ms, fast_path {}, batch every {} ms ({} ms of work)",
                cfg.workers, cfg.timeout_ms, cfg.fast_path, cfg.batch.interval_ms, cfg.batch.work_ms
            );
        })
        .expect("on_change thread");
    // The job source: a job every millisecond.
    std::thread::spawn(move || {
        for n in 0.. {
            if job_tx.send(n).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });

    if !script {
        println!("edit {}/pool.toml; Ctrl-C stops", configs.display());
        let _ = tokio::signal::ctrl_c().await;
        hc.shutdown().await;
        return;
    }

    let long = Duration::from_secs(30);
    let mut failed = false;
    let c = &counters;
    step(
        wait_for(long, || {
            c.jobs.load(Ordering::Relaxed) > 50 && c.requests.load(Ordering::Relaxed) > 5
        })
        .await,
        "workers and the handler run on the startup configuration",
        &mut failed,
    );

    // A good edit, seen by the watcher (no reload call).
    save(&configs, &pool_toml(2, "500", true, 50, 0));
    step(
        wait_for(long, || pool.load().timeout_ms == 500).await,
        "good edit applied live: timeout 500 ms, fast_path on",
        &mut failed,
    );
    step(
        wait_for(long, || {
            c.max_timeout.load(Ordering::Relaxed) == 500 && c.fast_jobs.load(Ordering::Relaxed) > 0
        })
        .await,
        "workers use the new values on their next jobs",
        &mut failed,
    );

    // A bad edit: rejected, the last good values stay.
    save(&configs, &pool_toml(2, "\"5000ms\"", true, 50, 0));
    let rejected = wait_for(long, || {
        hc.status()
            .documents
            .get("pool")
            .is_some_and(|d| d.state == DocState::Error)
    })
    .await;
    if let Some(e) = hc
        .status()
        .documents
        .get("pool")
        .and_then(|d| d.last_error.clone())
    {
        for line in e.rejection.lines() {
            println!("rejected: {line}");
        }
    }
    step(
        rejected,
        "bad edit `timeout_ms = \"5000ms\"` rejected",
        &mut failed,
    );
    let jobs = c.jobs.load(Ordering::Relaxed);
    step(
        wait_for(long, || c.jobs.load(Ordering::Relaxed) > jobs + 50).await
            && pool.load().timeout_ms == 500,
        "workers carry on with the last good configuration",
        &mut failed,
    );

    // A batch run slower than its interval: delayed, never overlapping.
    save(&configs, &pool_toml(2, "500", true, 20, 120));
    let slow = c.slow_batch_runs.load(Ordering::SeqCst);
    step(
        wait_for(long, || {
            c.slow_batch_runs.load(Ordering::SeqCst) >= slow + 2
        })
        .await,
        "batch runs slower than their interval",
        &mut failed,
    );
    step(
        c.overlaps.load(Ordering::SeqCst) == 0,
        "the batch job never overlapped itself",
        &mut failed,
    );

    hc.shutdown().await;
    if failed {
        println!("worker_pool script: FAILED");
        std::process::exit(1);
    }
    println!("worker_pool script: all steps passed");
}
