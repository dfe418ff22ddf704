//! How long one document takes through the pipeline: parse alone, parse and
//! validate (the reloader's per-document cost), and the rejection path
//! (locating every violation in the source).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench fixtures: a panic aborts the bench run, never the daemon"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use hotconf::pipeline;
use hotconf::pipeline::document;
use hotconf::pipeline::schema::SchemaCache;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas = root.join("schemas");
    let Ok(text) = std::fs::read_to_string(root.join("configs/app.toml")) else {
        return;
    };
    let mut cache = SchemaCache::new();
    let Ok(schema) = cache.load(&schemas, "app") else {
        return;
    };
    let broken = text.replacen("timeout_ms = 5000", "timeout_ms = \"5000ms\"", 1);

    // Baseline: the toml crate alone, parsing into its own tree.
    c.bench_function("baseline toml::from_str::<toml::Table> app.toml", |b| {
        b.iter(|| toml::from_str::<toml::Table>(black_box(&text)))
    });
    c.bench_function("parse app.toml", |b| {
        b.iter(|| document::parse("app.toml", black_box(text.as_bytes())))
    });
    c.bench_function("evaluate app.toml (valid)", |b| {
        b.iter(|| pipeline::evaluate("app.toml", black_box(text.as_bytes()), &schema))
    });
    c.bench_function("evaluate app.toml (rejected)", |b| {
        b.iter(|| pipeline::evaluate("app.toml", black_box(broken.as_bytes()), &schema))
    });
    c.bench_function("schema cache hit", |b| {
        b.iter(|| cache.load(black_box(&schemas), "app"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
