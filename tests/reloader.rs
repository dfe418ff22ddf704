//! The reloader driven in-process through the library API: the rules of
//! SPEC §2 that are about *served values* (what `Store::load` returns), and
//! the coalescing of requests during a reload.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotconf::pipeline::rejection::Code;
use hotconf::reload::{ReloadConfig, ReloadHandle, ReloadObserver, Reloader};
use hotconf::store::snapshot::Snapshot;
use hotconf::store::status::{DocState, ReloadOutcome, Status, Trigger};
use hotconf::Store;
use serde_json::json;

use common::{strict_schema, Env};

fn port_schema() -> serde_json::Value {
    strict_schema(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}))
}

fn start(env: &Env, tweak: impl FnOnce(&mut ReloadConfig)) -> (Arc<Store>, ReloadHandle) {
    start_observed(env, tweak, Vec::new())
}

fn start_observed(
    env: &Env,
    tweak: impl FnOnce(&mut ReloadConfig),
    observers: Vec<Arc<dyn ReloadObserver>>,
) -> (Arc<Store>, ReloadHandle) {
    let store = Arc::new(Store::with_random_instance());
    let mut config = ReloadConfig::new(&env.configs, &env.schemas);
    tweak(&mut config);
    let handle = Reloader::spawn(config, store.clone(), observers).expect("spawn reloader");
    (store, handle)
}

fn reload(handle: &ReloadHandle, trigger: Trigger) -> ReloadOutcome {
    handle.reload_blocking(trigger).expect("reloader alive")
}

fn value(store: &Store, name: &str) -> Option<serde_json::Value> {
    store.load().get(name).map(|d| (*d.value).clone())
}

#[test]
fn per_document_acceptance_publishes_the_good_and_keeps_the_last_good_of_the_bad() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 2\n");
    let (store, handle) = start(&env, |_| {});
    let out = reload(&handle, Trigger::Startup);
    assert_eq!(out.accepted, vec!["a", "b"]);
    assert_eq!(store.load().generation, 1);

    env.write_doc("a", "port = \"nope\"\n");
    env.write_doc("b", "port = 3\n");
    let out = reload(&handle, Trigger::Api);
    assert_eq!(out.accepted, vec!["b"]);
    assert_eq!(out.rejected, vec!["a"]);
    let snap = store.load_full();
    assert_eq!(snap.generation, 2, "one atomic publish");
    assert_eq!(
        value(&store, "a"),
        Some(json!({"port": 1})),
        "last good kept"
    );
    assert_eq!(value(&store, "b"), Some(json!({"port": 3})));
    assert_eq!(snap.get("a").map(|d| d.generation), Some(1));
    assert_eq!(snap.get("b").map(|d| d.generation), Some(2));

    let status = store.status();
    let a = &status.documents["a"];
    assert_eq!(a.state, DocState::Error);
    let err = a.last_error.as_ref().expect("last error");
    assert_eq!(err.rejection.code, Code::Schema);
    assert_eq!(
        err.sha256.as_deref(),
        Some(hotconf::pipeline::document::sha256_hex(b"port = \"nope\"\n").as_str()),
        "sha256 of the rejected bytes"
    );
    assert_eq!(status.counters.rejections, 1);
}

#[test]
fn all_or_nothing_rejects_the_whole_reload_then_applies_the_set() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 2\n");
    let (store, handle) = start(&env, |c| c.all_or_nothing = true);
    reload(&handle, Trigger::Startup);

    env.write_doc("a", "port = 0\n");
    env.write_doc("b", "port = 3\n");
    let out = reload(&handle, Trigger::Api);
    assert!(out.accepted.is_empty());
    assert_eq!(out.rejected, vec!["a", "b"]);
    assert_eq!(store.load().generation, 1, "nothing changes");
    assert_eq!(value(&store, "b"), Some(json!({"port": 2})));

    // Nothing changed on disk: an implicit look is not a reload.
    let reloads = store.status().counters.reloads;
    reload(&handle, Trigger::Watch);
    assert_eq!(store.status().counters.reloads, reloads);

    env.write_doc("a", "port = 4\n");
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(
        out.accepted,
        vec!["a", "b"],
        "the held-back document comes along"
    );
    assert_eq!(store.load().generation, 2);
    assert_eq!(value(&store, "b"), Some(json!({"port": 3})));
    assert!(store.status().all_ok());
}

#[test]
fn identical_bytes_make_no_generation() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);
    let before = store.status().counters.reloads;

    env.write_doc("a", "port = 1\n");
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(out.generation, 1);
    assert_eq!(store.load().generation, 1);
    assert_eq!(
        store.status().counters.reloads,
        before,
        "an implicit look that finds nothing is not a reload"
    );

    let out = reload(&handle, Trigger::Signal);
    assert!(out.accepted.is_empty());
    assert_eq!(
        store.load().generation,
        1,
        "explicit: a reload, no generation"
    );
    assert_eq!(store.status().counters.reloads, before + 1);
}

#[test]
fn schema_change_revalidates_and_a_failing_document_keeps_value_and_schema() {
    let env = Env::new();
    let shared =
        |max: u64| json!({"$defs": {"port": {"type": "integer", "minimum": 1, "maximum": max}}});
    let user = strict_schema(json!({"port": {"$ref": "shared.schema.json#/$defs/port"}}));
    env.write_schema_file("shared.schema.json", &shared(65535).to_string());
    env.write_schema("a", &user);
    env.write_schema("b", &user);
    env.write_doc("a", "port = 8080\n");
    env.write_doc("b", "port = 80\n");
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);
    let old_schema = store.load().get("a").map(|d| d.schema_sha256.clone());

    env.write_schema_file("shared.schema.json", &shared(1024).to_string());
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(out.rejected, vec!["a"]);
    assert_eq!(out.accepted, vec!["b"], "b passes the new schema");
    let snap = store.load_full();
    let a = snap.get("a").expect("a still served");
    assert_eq!(*a.value, json!({"port": 8080}));
    assert_eq!(
        Some(a.schema_sha256.clone()),
        old_schema,
        "old schema in force"
    );
    assert_eq!(a.generation, 1);
    let b = snap.get("b").expect("b");
    assert_ne!(Some(b.schema_sha256.clone()), old_schema, "b moved on");
    let status = store.status();
    let err = status.documents["a"].last_error.as_ref().expect("error");
    assert_eq!(err.rejection.code, Code::Schema);
    assert!(
        err.rejection
            .to_string()
            .contains("last good value and schema"),
        "the rejection says so: {}",
        err.rejection
    );
}

#[test]
fn invalid_schema_is_an_error_and_the_document_is_still_served() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);

    env.write_schema_file("a.schema.json", "{ not json");
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(out.rejected, vec!["a"]);
    assert_eq!(store.load().generation, 1);
    assert_eq!(value(&store, "a"), Some(json!({"port": 1})));
    let status = store.status();
    assert_eq!(status.documents["a"].state, DocState::Error);
    assert_eq!(
        status.documents["a"]
            .last_error
            .as_ref()
            .map(|e| e.rejection.code),
        Some(Code::SchemaInvalid)
    );

    // Fixing the schema back makes it ok again without a generation.
    env.write_schema("a", &port_schema());
    reload(&handle, Trigger::Watch);
    assert!(store.status().all_ok());
    assert_eq!(store.load().generation, 1);
}

#[test]
fn never_valid_document_is_error_and_not_served() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = [\n");
    let (store, handle) = start(&env, |_| {});
    let out = reload(&handle, Trigger::Startup);
    assert_eq!(out.rejected, vec!["a"]);
    assert_eq!(store.load().generation, 0);
    assert!(store.load().get("a").is_none());
    let status = store.status();
    assert_eq!(status.documents["a"].state, DocState::Error);
    assert_eq!(
        status.documents["a"]
            .last_error
            .as_ref()
            .map(|e| e.rejection.code),
        Some(Code::Parse)
    );
}

#[test]
fn implicit_reloads_report_missing_explicit_ones_remove() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 2\n");
    let (store, handle) = start(&env, |c| c.debounce = Duration::from_millis(50));
    reload(&handle, Trigger::Startup);

    std::fs::remove_file(env.configs.join("b.toml")).expect("rm");
    // The follow-up after the debounce reports it by itself.
    reload(&handle, Trigger::Watch);
    assert!(common::wait_until(common::DEADLINE, || {
        store
            .status()
            .documents
            .get("b")
            .is_some_and(|d| d.state == DocState::Missing)
    }));
    assert_eq!(value(&store, "b"), Some(json!({"port": 2})), "still served");
    assert_eq!(store.load().generation, 1);

    let out = reload(&handle, Trigger::Api);
    assert_eq!(out.removed, vec!["b"]);
    assert_eq!(store.load().generation, 2);
    assert!(store.load().get("b").is_none());
    assert!(!store.status().documents.contains_key("b"));
    assert!(store.status().all_ok());
}

#[test]
fn a_missing_file_that_comes_back_unchanged_is_ok_again() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let (store, handle) = start(&env, |c| c.debounce = Duration::ZERO);
    reload(&handle, Trigger::Startup);
    std::fs::remove_file(env.configs.join("a.toml")).expect("rm");
    reload(&handle, Trigger::Watch);
    assert_eq!(store.status().documents["a"].state, DocState::Missing);
    env.write_doc("a", "port = 1\n");
    reload(&handle, Trigger::Watch);
    assert_eq!(store.status().documents["a"].state, DocState::Ok);
    assert_eq!(store.load().generation, 1);
}

#[test]
fn implicit_reloads_skip_unsettled_files() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let mut unsettled = None;
    let (store, handle) = start(&env, |c| unsettled = Some(c.unsettled.clone()));
    let unsettled = unsettled.expect("set");
    reload(&handle, Trigger::Startup);

    let path = env.configs.join("a.toml");
    std::fs::write(&path, "port = ").expect("half-written");
    unsettled.insert(&path);
    reload(&handle, Trigger::Watch);
    assert!(store.status().all_ok(), "a half-written file is not read");
    std::fs::write(&path, "port = 5\n").expect("complete");
    unsettled.remove(&path);
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(out.accepted, vec!["a"]);
    assert_eq!(value(&store, "a"), Some(json!({"port": 5})));
}

#[test]
fn secrets_are_redacted_in_the_served_document() {
    let env = Env::new();
    env.write_schema(
        "a",
        &strict_schema(json!({
            "user": {"type": "string"},
            "password": {"type": "string", "writeOnly": true}
        })),
    );
    env.write_doc("a", "user = \"u\"\npassword = \"hunter2\"\n");
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);
    let snap = store.load_full();
    let a = snap.get("a").expect("served");
    assert!(a.has_secrets);
    assert_eq!(a.value["password"], json!("hunter2"));
    assert_eq!(a.redacted["password"], json!("<redacted>"));
    assert_ne!(a.redacted_sha256, a.sha256);
}

/// Blocks the first reload in `reload_started` until released, and counts
/// reloads.
struct Gate {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
    started: Mutex<Vec<Trigger>>,
}

impl ReloadObserver for Gate {
    fn reload_started(&self, trigger: Trigger) {
        self.started.lock().expect("lock").push(trigger);
        if let Some(tx) = self.entered.lock().expect("lock").take() {
            let _ = tx.send(());
            if let Some(rx) = self.release.lock().expect("lock").take() {
                let _ = rx.recv();
            }
        }
    }

    fn reload_finished(&self, _: &ReloadOutcome, _: &Status, _: &Snapshot) {}
}

#[test]
fn requests_during_a_reload_coalesce_into_exactly_one_more_and_explicit_wins() {
    let env = Env::new();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(Some(release_rx)),
        started: Mutex::new(Vec::new()),
    });
    let (store, handle) = start_observed(&env, |_| {}, vec![gate.clone()]);
    let first = {
        let h = handle.clone();
        std::thread::spawn(move || h.reload_blocking(Trigger::Startup))
    };
    entered_rx
        .recv_timeout(common::DEADLINE)
        .expect("first reload started");
    // 30 requests while it runs, one explicit among watch ones, half of
    // them waiting for their outcome (queued when `reload` is called).
    let mut waiters = Vec::new();
    for i in 0..30 {
        let trigger = if i == 17 {
            Trigger::Signal
        } else {
            Trigger::Watch
        };
        if i % 2 == 0 {
            waiters.push(handle.reload(trigger));
        } else {
            handle.request(trigger);
        }
    }
    release_tx.send(()).expect("release");
    let first = first.join().expect("join").expect("outcome");
    assert_eq!(first.trigger, Trigger::Startup);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for w in waiters {
        let out = runtime.block_on(w).expect("outcome");
        assert_eq!(out.trigger, Trigger::Signal, "explicit wins");
    }
    let started = gate.started.lock().expect("lock").clone();
    assert_eq!(
        started,
        vec![Trigger::Startup, Trigger::Signal],
        "exactly one more"
    );
    assert_eq!(store.status().counters.reloads, 2);
}

#[test]
fn a_store_has_one_writer() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let (store, handle) = start(&env, |_| {});
    let config = ReloadConfig::new(&env.configs, &env.schemas);
    let second = Reloader::spawn(config, store.clone(), Vec::new());
    assert_eq!(
        second.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::AlreadyExists),
        "a second reloader for the same store is refused"
    );
    // The first one still writes.
    assert_eq!(reload(&handle, Trigger::Startup).accepted, vec!["a"]);
    assert_eq!(store.load().generation, 1);
}
