//! The embeddable library is lean: built without the `daemon` feature, its
//! dependency tree holds none of the daemon's crates.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

use std::collections::BTreeSet;
use std::process::Command;

/// Crates only `hotconf run` and the CLI need (feature `daemon`).
const DAEMON_ONLY: &[&str] = &[
    "axum",
    "clap",
    "humantime",
    "hyper",
    "hyper-util",
    "http-body-util",
    "nix",
    "prometheus-client",
    "sd-notify",
    "tempfile",
    "tower",
    "tracing-subscriber",
];

#[test]
fn the_library_without_the_daemon_has_none_of_its_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("utf-8");
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("hotconf"), "{tree}");
    assert!(crates.contains("arc-swap"), "{tree}");
    let found: Vec<&&str> = DAEMON_ONLY
        .iter()
        .filter(|c| crates.contains(**c))
        .collect();
    assert!(
        found.is_empty(),
        "daemon-only crates in the lean library: {found:?}\n{tree}"
    );
}
