//! The embedding API driven in-process: `Hotconf::builder`, typed
//! `Handle`s fed by the real reloader and watcher, start failures, change
//! notification and callbacks. Every wait is a condition with a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hotconf::pipeline::rejection::Code;
use hotconf::store::status::DocState;
use hotconf::{Handle, Hotconf, StartError};
use serde::Deserialize;
use serde_json::json;

use common::{strict_schema, Env};

/// What the service expects of `app`.
#[derive(Debug, Deserialize, PartialEq)]
struct App {
    name: String,
    port: u16,
}

/// The schema lets `port` be any integer: `u16` is stricter (`E_TYPE`).
fn app_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "port"],
        "properties": {
            "name": {"type": "string"},
            "port": {"type": "integer"}
        }
    })
}

fn app(name: &str, port: u32) -> String {
    format!("name = \"{name}\"\nport = {port}\n")
}

const LONG: Duration = Duration::from_secs(20);

/// An env with `app` (and its schema) and `other` written.
fn env_with_app() -> Env {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_schema("other", &strict_schema(json!({"v": {"type": "integer"}})));
    env.write_doc("app", &app("first", 1));
    env.write_doc("other", "v = 1\n");
    env
}

/// A builder for `env` with a fast debounce and the poll off, so that
/// every change seen comes from the watcher (or an explicit reload).
fn builder(env: &Env) -> hotconf::Builder {
    Hotconf::builder(&env.configs, &env.schemas)
        .debounce(Duration::from_millis(20))
        .poll_interval(Duration::ZERO)
}

async fn start(env: &Env) -> (Hotconf, Handle<App>) {
    start_with(builder(env)).await
}

/// Started without the watcher: explicit reloads see every change (no
/// watch-triggered reload takes it first).
async fn start_unwatched(env: &Env) -> (Hotconf, Handle<App>) {
    start_with(builder(env).watch(false)).await
}

async fn start_with(mut b: hotconf::Builder) -> (Hotconf, Handle<App>) {
    let handle = b.register::<App>("app");
    let hc = b.start().await.expect("start");
    (hc, handle)
}

/// Waits (without blocking the runtime) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_serves_the_registered_type() {
    let env = env_with_app();
    let (hc, handle) = start(&env).await;
    assert_eq!(
        *handle.load(),
        App {
            name: "first".into(),
            port: 1
        }
    );
    let mut reader = handle.reader();
    assert_eq!(reader.load().name, "first");
    assert!(
        hc.snapshot().get("other").is_some(),
        "unregistered document served as JSON"
    );
    assert_eq!(hc.snapshot().get("other").unwrap().value["v"], 1);
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_listing_every_rejection() {
    let env = env_with_app();
    // Registered and E_TYPE, an unregistered schema violation, and a
    // registered document that is not there at all.
    env.write_doc("app", &app("x", 70000));
    env.write_doc("other", "v = \"no\"\n");
    let mut b = builder(&env);
    let _app = b.register::<App>("app");
    let _gone = b.register::<App>("gone");
    let err = b.start().await.expect_err("must not start");
    let StartError::Invalid(rejections) = &err else {
        panic!("not Invalid: {err}");
    };
    let codes: Vec<(String, Code)> = rejections
        .iter()
        .map(|r| (r.file.clone(), r.code))
        .collect();
    let has = |file: &str, code: Code| codes.iter().any(|(f, c)| f.ends_with(file) && *c == code);
    assert!(has("app.toml", Code::Type), "{codes:?}");
    assert!(has("other.toml", Code::Schema), "{codes:?}");
    assert!(has("gone.toml", Code::Missing), "{codes:?}");
    assert_eq!(err.rejections().len(), 3, "{codes:?}");
}

#[test]
fn start_blocking_fails_on_a_missing_registered_document() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    let mut b = builder(&env);
    let _app = b.register::<App>("app");
    let err = b.start_blocking().expect_err("must not start");
    assert_eq!(err.rejections().len(), 1, "{err:?}");
    assert_eq!(err.rejections()[0].code, Code::Missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_sees_rename_save_in_place_write_and_symlink_swap() {
    let env = env_with_app();
    let (hc, handle) = start(&env).await;
    let port = |h: &Handle<App>| h.load().port;

    // Rename-save (temp file + rename), no reload call.
    env.write_doc("app", &app("renamed", 2));
    eventually("rename-save", || port(&handle) == 2).await;

    // In-place write (truncate + write, as `echo >` does).
    std::fs::write(env.configs.join("app.toml"), app("in place", 3)).unwrap();
    eventually("in-place write", || port(&handle) == 3).await;

    // Symlink swap: app.toml becomes a link, then the link is replaced
    // atomically by another pointing elsewhere.
    let data = env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("v4.toml"), app("link", 4)).unwrap();
    std::fs::write(data.join("v5.toml"), app("link", 5)).unwrap();
    let tmp = env.configs.join(".app.link");
    std::os::unix::fs::symlink(data.join("v4.toml"), &tmp).unwrap();
    std::fs::rename(&tmp, env.configs.join("app.toml")).unwrap();
    eventually("symlink to v4", || port(&handle) == 4).await;
    std::os::unix::fs::symlink(data.join("v5.toml"), &tmp).unwrap();
    std::fs::rename(&tmp, env.configs.join("app.toml")).unwrap();
    eventually("symlink swap to v5", || port(&handle) == 5).await;
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_failing_the_type_keeps_the_last_good_value() {
    let env = env_with_app();
    let (hc, handle) = start_unwatched(&env).await;
    env.write_doc("app", &app("too big", 70000));
    let outcome = hc.reload().await.unwrap();
    assert_eq!(outcome.rejected, vec!["app".to_string()]);
    assert_eq!(
        *handle.load(),
        App {
            name: "first".into(),
            port: 1
        }
    );
    let status = hc.status();
    let doc = &status.documents["app"];
    assert_eq!(doc.state, DocState::Error);
    assert_eq!(doc.last_error.as_ref().unwrap().rejection.code, Code::Type);
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_wakes_for_its_document_only_and_never_ends() {
    let env = env_with_app();
    let mut b = builder(&env).watch(false);
    let mut handle = b.register::<App>("app");
    let hc = b.start().await.expect("start");
    // The startup version is not a change.
    let not_yet = tokio::time::timeout(Duration::from_millis(50), handle.changed()).await;
    assert!(not_yet.is_err(), "startup version reported as a change");

    // Another document's publish and a rejection of this one: no wake.
    env.write_doc("other", "v = 2\n");
    env.write_doc("app", &app("bad", 70000));
    let outcome = hc.reload().await.unwrap();
    assert_eq!(outcome.accepted, vec!["other".to_string()]);
    assert_eq!(outcome.rejected, vec!["app".to_string()]);
    let mut probe = handle.clone();
    let woke = tokio::time::timeout(Duration::from_millis(50), probe.changed()).await;
    assert!(woke.is_err(), "woken by another document or a rejection");

    // Its own accepted version: wakes with the new value.
    let waiter = {
        let mut h = handle.clone();
        tokio::spawn(async move { h.changed().await })
    };
    env.write_doc("app", &app("second", 2));
    hc.reload().await.unwrap();
    assert_eq!(waiter.await.unwrap().port, 2);
    assert_eq!(handle.changed().await.port, 2);

    // Delete + explicit reload: last good kept, state missing, no wake.
    std::fs::remove_file(env.configs.join("app.toml")).unwrap();
    hc.reload().await.unwrap();
    assert_eq!(hc.status().documents["app"].state, DocState::Missing);
    assert_eq!(handle.load().port, 2, "last good value kept");
    assert!(
        hc.snapshot().get("app").is_some(),
        "a registered document is never unserved"
    );
    let mut probe = handle.clone();
    let woke = tokio::time::timeout(Duration::from_millis(50), probe.changed()).await;
    assert!(woke.is_err(), "a removal is not a new version");

    // Recreate: the same loop goes on.
    let waiter = {
        let mut h = handle.clone();
        tokio::spawn(async move { h.changed().await })
    };
    env.write_doc("app", &app("again", 3));
    hc.reload().await.unwrap();
    assert_eq!(waiter.await.unwrap().port, 3);
    assert_eq!(handle.changed().await.port, 3);
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_sees_every_publish() {
    let env = env_with_app();
    let (hc, _handle) = start_unwatched(&env).await;
    let mut rx = hc.subscribe();
    let before = *rx.borrow_and_update();
    env.write_doc("other", "v = 3\n");
    hc.reload().await.unwrap();
    tokio::time::timeout(LONG, rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(*rx.borrow() > before);
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_on_change_callback_does_not_delay_publishes() {
    let env = env_with_app();
    let (hc, handle) = start_unwatched(&env).await;
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    // The first call blocks until the test lets it go (a callback slower
    // than any number of publishes, without a timed assertion), then
    // sleeps 2 s as a slow callback would.
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let _cb = handle
        .on_change(move |app| {
            seen.store(u64::from(app.port), Ordering::SeqCst);
            if app.port == 11 {
                let _ = gate_rx.recv();
                std::thread::sleep(Duration::from_secs(2));
            }
        })
        .unwrap();
    env.write_doc("app", &app("one", 11));
    hc.reload().await.unwrap();
    eventually("callback called", || calls.load(Ordering::SeqCst) == 11).await;
    // The callback is stuck on port 11; edits go on being published.
    for port in 12..=15 {
        env.write_doc("app", &app("more", port));
        let outcome = hc.reload().await.unwrap();
        assert_eq!(outcome.accepted, vec!["app".to_string()]);
        assert_eq!(u32::from(handle.load().port), port);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        11,
        "the callback ran twice at once"
    );
    gate_tx.send(()).unwrap();
    // After its 2 s sleep it catches up with the latest version.
    eventually("callback caught up", || calls.load(Ordering::SeqCst) == 15).await;
    hc.shutdown().await;
}

#[test]
fn worker_pool_script_passes() {
    // Through cargo, so the example is built when this test binary was
    // built without it (`cargo test --test embed`).
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--offline",
            "--example",
            "worker_pool",
            "--",
            "--script",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "worker_pool --script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
}
