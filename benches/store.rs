//! The read path every worker takes: `Store::load()` (an `ArcSwap` load)
//! against the obvious baseline, an `RwLock<Arc<Snapshot>>` read, measured
//! in the same run — uncontended, and with a second thread hammering the
//! same structure (the realistic case for a shared config map), and with a
//! writer publishing new snapshots back to back.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use criterion::{criterion_group, criterion_main, Criterion};
use hotconf::{Snapshot, Store};

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

    // A second thread reads the same structure in a tight loop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut group = c.benchmark_group("read snapshot, one other reader thread");
    {
        let (s, st) = (store.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                black_box(read_store(&s));
            }
        });
        group.bench_function("hotconf Store::load (ArcSwap)", |b| {
            b.iter(|| read_store(black_box(&store)))
        });
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }
    stop.store(false, Ordering::Relaxed);
    {
        let (l, st) = (lock.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                black_box(read_rwlock(&l));
            }
        });
        group.bench_function("baseline RwLock<Arc<Snapshot>>", |b| {
            b.iter(|| read_rwlock(black_box(&lock)))
        });
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }
    group.finish();

    // A writer publishing new snapshots back to back (a reload storm): the
    // reader must never wait for it.
    stop.store(false, Ordering::Relaxed);
    let mut group = c.benchmark_group("read snapshot, writer publishing continuously");
    {
        let (s, st) = (store.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            let mut generation = 0u64;
            while !st.load(Ordering::Relaxed) {
                generation = generation.wrapping_add(1);
                let mut snap = Snapshot::empty();
                snap.generation = generation;
                s.publish(snap);
            }
        });
        group.bench_function("hotconf Store::load (ArcSwap)", |b| {
            b.iter(|| read_store(black_box(&store)))
        });
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }
    stop.store(false, Ordering::Relaxed);
    {
        let (l, st) = (lock.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            let mut generation = 0u64;
            while !st.load(Ordering::Relaxed) {
                generation = generation.wrapping_add(1);
                let mut snap = Snapshot::empty();
                snap.generation = generation;
                if let Ok(mut w) = l.write() {
                    *w = Arc::new(snap);
                }
            }
        });
        group.bench_function("baseline RwLock<Arc<Snapshot>>", |b| {
            b.iter(|| read_rwlock(black_box(&lock)))
        });
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
