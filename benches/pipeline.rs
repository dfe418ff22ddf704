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

/// A document of about `bytes` bytes: string and integer keys in tables of
/// 50 keys.
fn sized(bytes: usize) -> String {
    let mut out = String::new();
    let mut i = 0usize;
    while out.len() < bytes {
        if i % 50 == 0 {
            out.push_str(&format!("[t{}]\n", i / 50));
        }
        out.push_str(&format!(
            "name_{i} = \"value number {i}\"\nport_{i} = {i}\n"
        ));
        i += 1;
    }
    out
}

/// Parse + validate + build what is published (`served_document`: the
/// hash, the shared value), per document size, beside the `toml` crate's
/// bare parse of the same bytes.
fn bench_sizes(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hotconf-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(dir.join("doc.schema.json"), r#"{"type":"object"}"#).is_err() {
        return;
    }
    let mut cache = SchemaCache::new();
    let Ok(schema) = cache.load(&dir, "doc") else {
        return;
    };
    let path = dir.join("doc.toml");
    let mut group = c.benchmark_group("size");
    group.sample_size(10);
    for (label, bytes) in [("1 KB", 1024), ("50 KB", 50 * 1024), ("1 MB", 1024 * 1024)] {
        let text = sized(bytes);
        group.bench_function(
            format!("baseline toml::from_str::<toml::Table> {label}"),
            |b| b.iter(|| toml::from_str::<toml::Table>(black_box(&text))),
        );
        group.bench_function(format!("parse + validate + publish {label}"), |b| {
            b.iter(|| {
                let parsed = pipeline::evaluate("doc.toml", black_box(text.as_bytes()), &schema);
                parsed.map(|p| {
                    hotconf::store::served_document(&path, text.as_bytes(), p.value, &schema, None)
                })
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench, bench_sizes);
criterion_main!(benches);
