//! The read path every worker takes: `Store::load()` (an `ArcSwap` load)
//! against the obvious baseline, an `RwLock<Arc<Snapshot>>` read, measured
//! in the same run — uncontended, and with a second thread hammering the
//! same structure (the realistic case for a shared config map), and with a
//! writer publishing new snapshots back to back. Then the typed read
//! (`Store::typed`, the `T` built once per version) against deserializing
//! the served JSON on every read, which is what it saves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench fixtures: a panic aborts the bench run, never the daemon"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use criterion::{criterion_group, criterion_main, Criterion};
use hotconf::store::testing::HandWriter;
use hotconf::{ServedDocument, Snapshot, Store};
use serde::Deserialize;

/// A small typed configuration, as a service would register it.
#[derive(Deserialize)]
struct App {
    service: String,
    port: u16,
    workers: u16,
}

fn read_store(store: &Store) -> u64 {
    store.load().generation
}

fn read_rwlock(lock: &RwLock<Arc<Snapshot>>) -> u64 {
    match lock.read() {
        Ok(guard) => guard.generation,
        Err(_) => 0,
    }
}

fn bench(c: &mut Criterion) {
    let store = Arc::new(Store::new("bench".into()));
    let lock = Arc::new(RwLock::new(Arc::new(Snapshot::empty())));

    let mut group = c.benchmark_group("read snapshot, uncontended");
    group.bench_function("hotconf Store::load (ArcSwap)", |b| {
        b.iter(|| read_store(black_box(&store)))
    });
    group.bench_function("baseline RwLock<Arc<Snapshot>>", |b| {
        b.iter(|| read_rwlock(black_box(&lock)))
    });
    group.finish();

    let mut group = c.benchmark_group("read snapshot, one other reader thread");
    with_background(
        || {
            let s = store.clone();
            move || {
                black_box(read_store(&s));
            }
        },
        || {
            group.bench_function("hotconf Store::load (ArcSwap)", |b| {
                b.iter(|| read_store(black_box(&store)))
            });
        },
    );
    with_background(
        || {
            let l = lock.clone();
            move || {
                black_box(read_rwlock(&l));
            }
        },
        || {
            group.bench_function("baseline RwLock<Arc<Snapshot>>", |b| {
                b.iter(|| read_rwlock(black_box(&lock)))
            });
        },
    );
    group.finish();

    // A writer publishing new snapshots back to back (a reload storm): the
    // reader must never wait for it.
    let mut group = c.benchmark_group("read snapshot, writer publishing continuously");
    // The bench stands in for the reloader: it takes the store's one writer.
    let writer = Arc::new(HandWriter::claim(&store).expect("a fresh store's writer"));
    with_background(
        || {
            let w = writer.clone();
            let mut generation = 0u64;
            move || {
                generation = generation.wrapping_add(1);
                w.publish(snapshot_at(generation));
            }
        },
        || {
            group.bench_function("hotconf Store::load (ArcSwap)", |b| {
                b.iter(|| read_store(black_box(&store)))
            });
        },
    );
    with_background(
        || {
            let l = lock.clone();
            let mut generation = 0u64;
            move || {
                generation = generation.wrapping_add(1);
                if let Ok(mut w) = l.write() {
                    *w = Arc::new(snapshot_at(generation));
                }
            }
        },
        || {
            group.bench_function("baseline RwLock<Arc<Snapshot>>", |b| {
                b.iter(|| read_rwlock(black_box(&lock)))
            });
        },
    );
    group.finish();
}

fn snapshot_at(generation: u64) -> Snapshot {
    let mut snap = Snapshot::empty();
    snap.generation = generation;
    snap
}

/// Runs `step` (made by `make`) in a loop on another thread while `measure`
/// runs, then stops and joins it.
fn with_background<F, S>(make: F, measure: impl FnOnce())
where
    F: FnOnce() -> S,
    S: FnMut() + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut step = make();
    let st = stop.clone();
    let t = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            step();
        }
    });
    measure();
    stop.store(true, Ordering::Relaxed);
    let _ = t.join();
}

/// A store serving `app` with its typed value, as the reloader builds it.
fn typed_store() -> Store {
    let value = serde_json::json!({"service": "orders", "port": 8080, "workers": 8});
    let typed: App = match serde_json::from_value(value.clone()) {
        Ok(t) => t,
        Err(e) => panic!("bench fixture: {e}"),
    };
    let value = Arc::new(value);
    let mut snapshot = Snapshot::empty();
    snapshot.generation = 1;
    snapshot.documents.insert(
        "app".into(),
        Arc::new(ServedDocument {
            value: value.clone(),
            redacted: value,
            has_secrets: false,
            sha256: String::new(),
            redacted_sha256: String::new(),
            generation: 1,
            loaded_at: std::time::SystemTime::now(),
            source: "configs/app.toml".into(),
            schema_sha256: String::new(),
            typed: Some(Arc::new(typed)),
            bodies: Default::default(),
        }),
    );
    Store::with_snapshot("bench".into(), snapshot)
}

fn bench_typed(c: &mut Criterion) {
    let store = typed_store();
    let mut group = c.benchmark_group("typed read of one document");
    group.bench_function("hotconf Store::typed (built once per version)", |b| {
        b.iter(|| store.typed::<App>(black_box("app")).map(|a| a.port))
    });
    group.bench_function("baseline: deserialize the served JSON per read", |b| {
        b.iter(|| {
            let snapshot = store.load();
            let doc = snapshot.get(black_box("app"))?;
            App::deserialize(&*doc.value).ok().map(|a| a.port)
        })
    });
    group.finish();
    // Keep every field read, as a service would.
    if let Some(a) = store.typed::<App>("app") {
        black_box((&a.service, a.workers));
    }
}

criterion_group!(benches, bench, bench_typed);
criterion_main!(benches);
