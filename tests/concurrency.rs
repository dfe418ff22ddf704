//! The concurrency proof: reader threads load snapshots in a tight loop
//! while the reloader applies 10,000 updates, half of them invalid. The
//! schema ties two fields together (`a == b`, through an `anyOf` of
//! `{a: k, b: k}` pairs), which no half-applied or unvalidated update can
//! satisfy by accident. Every snapshot any reader sees must be valid, keep
//! the pairing, and generations must never go backwards for a reader.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hotconf::reload::{ReloadConfig, Reloader};
use hotconf::store::status::Trigger;
use hotconf::Store;
use serde_json::{json, Value};

const UPDATES: u64 = 10_000;
const READERS: usize = 3;
const PAIRS: u64 = 8;

fn paired_schema() -> Value {
    let branches: Vec<Value> = (0..PAIRS)
        .map(|k| json!({"properties": {"a": {"const": k}, "b": {"const": k}}}))
        .collect();
    json!({
        "type": "object",
        "required": ["a", "b", "seq"],
        "additionalProperties": false,
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "integer"},
            "seq": {"type": "integer"}
        },
        "anyOf": branches,
    })
}

/// Update `i`: even ones valid (`a == b`), odd ones invalid — mostly a
/// broken pairing, sometimes a syntax error or a value out of range.
fn update(i: u64) -> String {
    let k = i % PAIRS;
    if i % 2 == 0 {
        format!("seq = {i}\na = {k}\nb = {k}\n")
    } else {
        match i % 10 {
            1 => format!("seq = {i}\na = {k}\nb = [\n"),
            3 => format!("seq = {i}\na = {}\nb = {}\n", PAIRS + 1, PAIRS + 1),
            _ => format!("seq = {i}\na = {k}\nb = {}\n", (k + 1) % PAIRS),
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    distinct_generations: u64,
}

#[test]
fn readers_only_ever_see_complete_valid_snapshots_with_monotonic_generations() {
    let env = common::Env::new();
    let schema = paired_schema();
    env.write_schema("pair", &schema);
    env.write_doc("pair", &update(0));

    let store = Arc::new(Store::with_random_instance());
    let handle = Reloader::spawn(
        ReloadConfig::new(&env.configs, &env.schemas),
        store.clone(),
        Vec::new(),
    )
    .expect("spawn reloader");
    handle.reload_blocking(Trigger::Startup).expect("startup");
    assert_eq!(store.load().generation, 1);

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let store = store.clone();
            let stop = stop.clone();
            let schema = schema.clone();
            std::thread::spawn(move || -> Result<Seen, String> {
                let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
                let mut seen = Seen::default();
                let mut last_generation = 0u64;
                let mut last_doc_generation = 0u64;
                let mut last_seq = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let snap = store.load();
                    seen.reads += 1;
                    if snap.generation < last_generation {
                        return Err(format!(
                            "generation went back: {} after {last_generation}",
                            snap.generation
                        ));
                    }
                    let doc = snap.get("pair").ok_or("pair not served")?;
                    if doc.generation > snap.generation || doc.generation < last_doc_generation {
                        return Err(format!(
                            "document generation {} (snapshot {}, before {last_doc_generation})",
                            doc.generation, snap.generation
                        ));
                    }
                    let v = &*doc.value;
                    let (a, b) = (&v["a"], &v["b"]);
                    if a != b || a.as_u64().is_none_or(|a| a >= PAIRS) {
                        return Err(format!(
                            "pairing broken in generation {}: {v}",
                            snap.generation
                        ));
                    }
                    if snap.generation != last_generation {
                        // Full schema check once per generation a reader sees.
                        if !validator.is_valid(v) {
                            return Err(format!("invalid value served: {v}"));
                        }
                        let seq = v["seq"].as_i64().ok_or("no seq")?;
                        if seq < last_seq {
                            return Err(format!("content went back: seq {seq} after {last_seq}"));
                        }
                        last_seq = seq;
                        seen.distinct_generations += 1;
                    }
                    last_generation = snap.generation;
                    last_doc_generation = doc.generation;
                    drop(snap);
                    if seen.reads % 4096 == 0 {
                        // On a 2-core machine, let the reloader run too.
                        std::thread::yield_now();
                    }
                }
                Ok(seen)
            })
        })
        .collect();

    let path = env.configs.join("pair.toml");
    let mut rejected = 0u64;
    for i in 1..=UPDATES {
        std::fs::write(&path, update(i)).expect("write update");
        let out = handle.reload_blocking(Trigger::Api).expect("reload");
        rejected += out.rejected.len() as u64;
    }
    stop.store(true, Ordering::Relaxed);

    let publishes = store.load().generation - 1;
    let mut reads = 0;
    for (n, r) in readers.into_iter().enumerate() {
        let seen = r
            .join()
            .expect("reader thread")
            .expect("reader saw only valid snapshots");
        println!(
            "reader {n}: {} reads, {} distinct generations",
            seen.reads, seen.distinct_generations
        );
        reads += seen.reads;
    }
    println!("{UPDATES} updates: {publishes} publishes, {rejected} rejected, {reads} reads");
    assert_eq!(publishes, UPDATES / 2, "every valid update published");
    assert_eq!(rejected, UPDATES / 2, "every invalid update rejected");
    let served = store.load_full();
    let doc = served.get("pair").expect("served");
    assert_eq!(doc.value["seq"], json!(UPDATES), "the last valid update");
}
