//! What one configuration read costs a worker, for every way of holding a
//! configuration that a service might use, in one run so that the ratios
//! are comparable: the floor (`AtomicPtr` load + deref), `arc_swap::Cache`,
//! `ArcSwap::load`, `RwLock<Arc<T>>` read + clone, `Mutex<Arc<T>>` lock +
//! clone, and hotconf's `Handle::load`, cached `Reader` and JSON snapshot
//! read. Each with one reader thread and with two (the second reads the
//! same structure in a loop on another thread while the first is
//! measured), without and with a writer publishing every millisecond —
//! for hotconf a real file rewrite and reload through the real reloader,
//! for the others a store of a new value.
//!
//! ```text
//! cargo bench --bench read
//! ```
//!
//! BENCHMARKS.md has the table; `HOTCONF_BENCH_TABLE=1` prints it from
//! criterion's estimates at the end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench fixtures: a panic aborts the bench run, never the daemon"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use criterion::{criterion_group, criterion_main, Criterion};
use hotconf::store::status::Trigger;
use hotconf::{Handle, Hotconf};
use serde::Deserialize;

/// The configuration read.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "a realistic shape; only `port` is read")]
struct Cfg {
    port: u64,
    workers: u64,
    name: String,
}

fn cfg(port: u64) -> Cfg {
    Cfg {
        port,
        workers: 4,
        name: "bench".into(),
    }
}

/// Every structure under test, shared by readers and writers.
struct Subjects {
    floor: AtomicPtr<Cfg>,
    /// The two values the floor alternates between (never freed while read).
    floor_values: [*mut Cfg; 2],
    swap: Arc<ArcSwap<Cfg>>,
    rwlock: RwLock<Arc<Cfg>>,
    mutex: Mutex<Arc<Cfg>>,
    handle: Handle<Cfg>,
    hc: Hotconf,
    config_dir: PathBuf,
    _dir: tempfile::TempDir,
}

// The raw pointers point at leaked boxes that live for the whole run.
unsafe impl Send for Subjects {}
unsafe impl Sync for Subjects {}

fn subjects() -> Subjects {
    let dir = tempfile::tempdir().unwrap();
    let (configs, schemas) = (dir.path().join("configs"), dir.path().join("schemas"));
    std::fs::create_dir(&configs).unwrap();
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(schemas.join("app.schema.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(configs.join("app.toml"), doc(1)).unwrap();
    let mut builder = Hotconf::builder(&configs, &schemas)
        .watch(false)
        .poll_interval(Duration::ZERO);
    let handle = builder.register::<Cfg>("app");
    let hc = builder.start_blocking().unwrap();
    let floor_values = [
        Box::into_raw(Box::new(cfg(1))),
        Box::into_raw(Box::new(cfg(2))),
    ];
    Subjects {
        floor: AtomicPtr::new(floor_values[0]),
        floor_values,
        swap: Arc::new(ArcSwap::from_pointee(cfg(1))),
        rwlock: RwLock::new(Arc::new(cfg(1))),
        mutex: Mutex::new(Arc::new(cfg(1))),
        handle,
        hc,
        config_dir: configs,
        _dir: dir,
    }
}

fn doc(port: u64) -> String {
    format!("port = {port}\nworkers = 4\nname = \"bench\"\n")
}

/// The readers, each a loop body returning something read.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Floor,
    Cache,
    ArcSwapLoad,
    RwLock,
    Mutex,
    HandleLoad,
    HandleReader,
    Json,
}

const KINDS: [(Kind, &str); 8] = [
    (Kind::Floor, "floor: AtomicPtr load + deref"),
    (Kind::Cache, "arc_swap::Cache::load"),
    (Kind::ArcSwapLoad, "ArcSwap::load (guard)"),
    (Kind::RwLock, "RwLock<Arc<T>> read + clone"),
    (Kind::Mutex, "Mutex<Arc<T>> lock + clone"),
    (Kind::HandleLoad, "hotconf Handle::load"),
    (Kind::HandleReader, "hotconf Reader::load (cached)"),
    (Kind::Json, "hotconf Store::load().get + JSON field"),
];

/// Runs `n` reads of `kind`; returns a sum so nothing is optimized away.
/// Monomorphic per kind: the measured loop has no indirect call.
fn reads(s: &Subjects, kind: Kind, n: u64, stop: Option<&AtomicBool>) -> u64 {
    let mut sum = 0u64;
    let mut i = 0u64;
    let more = |i: u64| match stop {
        Some(flag) => i % 1024 != 0 || !flag.load(Ordering::Relaxed),
        None => i < n,
    };
    macro_rules! run {
        ($read:expr) => {{
            while more(i) {
                sum = sum.wrapping_add(black_box($read));
                i += 1;
            }
        }};
    }
    match kind {
        Kind::Floor => run!(unsafe { (*s.floor.load(Ordering::Acquire)).port }),
        Kind::Cache => {
            let mut cache = Cache::new(s.swap.clone());
            run!(cache.load().port)
        }
        Kind::ArcSwapLoad => run!(s.swap.load().port),
        Kind::RwLock => run!(s.rwlock.read().unwrap().clone().port),
        Kind::Mutex => run!(s.mutex.lock().unwrap().clone().port),
        Kind::HandleLoad => run!(s.handle.load().port),
        Kind::HandleReader => {
            let mut reader = s.handle.reader();
            run!(reader.load().port)
        }
        Kind::Json => run!(s
            .hc
            .store()
            .load()
            .get("app")
            .and_then(|d| d.value.get("port").and_then(|p| p.as_u64()))
            .unwrap_or(0)),
    }
    sum
}

/// The writers: every millisecond, a new value in every structure, and a
/// file rewrite + explicit reload through hotconf's reloader.
fn start_writers(s: &'static Subjects, stop: &'static AtomicBool) -> Vec<JoinHandle<()>> {
    let plain = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let v = n % 2;
            s.floor.store(s.floor_values[v as usize], Ordering::Release);
            s.swap.store(Arc::new(cfg(v)));
            *s.rwlock.write().unwrap() = Arc::new(cfg(v));
            *s.mutex.lock().unwrap() = Arc::new(cfg(v));
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let hotconf = std::thread::spawn(move || {
        let mut n = 0u64;
        let reload = s.hc.reload_handle().clone();
        let path = s.config_dir.join("app.toml");
        let tmp = s.config_dir.join(".app.toml.tmp");
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            std::fs::write(&tmp, doc(n)).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            let _ = reload.reload_blocking(Trigger::Api);
            next += Duration::from_millis(1);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                next = Instant::now();
            }
        }
    });
    vec![plain, hotconf]
}

fn bench(c: &mut Criterion) {
    let s: &'static Subjects = Box::leak(Box::new(subjects()));
    for (writer, wname) in [(false, ""), (true, "+W")] {
        let wstop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let writers = if writer {
            start_writers(s, wstop)
        } else {
            Vec::new()
        };
        for readers in [1, 2] {
            let mut group = c.benchmark_group(format!("read {readers}R{wname}"));
            for (kind, name) in KINDS {
                let rstop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
                let other = (readers == 2).then(|| {
                    std::thread::spawn(move || {
                        black_box(reads(s, kind, 0, Some(rstop)));
                    })
                });
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        black_box(reads(s, kind, iters, None));
                        start.elapsed()
                    })
                });
                rstop.store(true, Ordering::Relaxed);
                if let Some(t) = other {
                    t.join().unwrap();
                }
            }
            group.finish();
        }
        wstop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
