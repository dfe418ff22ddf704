//! Keeps the shared test support compiling and honest.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

#[test]
fn check_runs_on_an_empty_env() {
    let env = common::Env::new();
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config-dir"])
        .arg(&env.configs)
        .arg("--schema-dir")
        .arg(&env.schemas)
        .output()
        .expect("run check");
    // Issue 15: an empty config directory is almost always a wrong
    // --config-dir, so `check` says "no documents found" and exits 1.
    assert_eq!(out.status.code(), Some(1), "empty config dir is reported");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no documents found"));
}
