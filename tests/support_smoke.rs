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
    assert_eq!(out.status.code(), Some(0), "empty config dir is valid");
}
