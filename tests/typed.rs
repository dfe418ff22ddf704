//! Typed views (SPEC §7, `E_TYPE` of §3) driven in-process: a Rust type
//! registered for a document before the reloader starts is checked on every
//! candidate, built once per accepted version and served lock-free.

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
use std::time::Duration;

use hotconf::pipeline::rejection::Code;
use hotconf::reload::{ReloadConfig, ReloadHandle, Reloader};
use hotconf::store::status::{DocState, ReloadOutcome, Trigger};
use hotconf::{Store, TypedView};
use serde::Deserialize;
use serde_json::json;

use common::{strict_schema, Env};

/// What the service expects of `app`.
#[derive(Debug, Deserialize, PartialEq)]
struct App {
    name: String,
    port: u16,
}

/// Another type, never registered for `app`.
#[derive(Debug, Deserialize)]
struct Other {
    #[allow(dead_code)]
    name: String,
}

/// Looser than `App`: `port` is any integer and `name` is optional.
fn loose_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string"},
            "port": {"type": "integer"}
        }
    })
}

fn start(env: &Env, tweak: impl FnOnce(&mut ReloadConfig)) -> (Arc<Store>, ReloadHandle) {
    let store = Arc::new(Store::with_random_instance());
    let mut config = ReloadConfig::new(&env.configs, &env.schemas);
    config.register::<App>("app");
    tweak(&mut config);
    let handle = Reloader::spawn(config, store.clone(), Vec::new()).expect("spawn reloader");
    (store, handle)
}

fn reload(handle: &ReloadHandle, trigger: Trigger) -> ReloadOutcome {
    handle.reload_blocking(trigger).expect("reloader alive")
}

fn app(name: &str, port: u64) -> String {
    format!("name = \"{name}\"\nport = {port}\n")
}

#[test]
fn type_mismatch_keeps_last_good() {
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_doc("app", &app("a", 8080));
    let (store, handle) = start(&env, |_| {});
    let out = reload(&handle, Trigger::Startup);
    assert_eq!(out.accepted, vec!["app"]);
    let good = store.typed::<App>("app").expect("typed value served");
    assert_eq!(
        *good,
        App {
            name: "a".into(),
            port: 8080
        }
    );

    // Valid under the schema (any integer), not a u16.
    env.write_doc("app", &app("a", 70000));
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(out.rejected, vec!["app"]);
    assert!(out.accepted.is_empty());
    assert_eq!(store.load().generation, 1, "no new generation");
    let served = store.typed::<App>("app").expect("last good still served");
    assert!(Arc::ptr_eq(&served, &good), "the very same last good value");
    assert_eq!(
        store.load().get("app").map(|d| d.value["port"].clone()),
        Some(json!(8080)),
        "the JSON value is the last good one too"
    );

    let status = store.status();
    let doc = &status.documents["app"];
    assert_eq!(doc.state, DocState::Error);
    let err = doc.last_error.as_ref().expect("last error");
    assert_eq!(err.rejection.code, Code::Type);
    let problem = &err.rejection.problems[0];
    assert_eq!(problem.pointer, "/port");
    assert_eq!((problem.line, problem.column), (Some(2), Some(8)));
    assert!(
        problem.message.contains("expected u16"),
        "says what the type wants: {}",
        problem.message
    );
    let line = err.rejection.to_string();
    assert!(
        line.contains(":2:8: E_TYPE /port: "),
        "compiler style: {line}"
    );
    assert_eq!(status.counters.rejections, 1);

    // The fix is accepted, with a new typed value.
    env.write_doc("app", &app("a", 9090));
    let out = reload(&handle, Trigger::Watch);
    assert_eq!(out.accepted, vec!["app"]);
    assert_eq!(store.load().generation, 2);
    let fixed = store.typed::<App>("app").expect("typed");
    assert_eq!(fixed.port, 9090);
    assert!(store.status().all_ok());
}

#[test]
fn a_field_the_schema_lacks_but_the_type_requires_is_e_type_at_its_table() {
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_doc("app", "port = 1\n");
    let (store, handle) = start(&env, |_| {});
    let out = reload(&handle, Trigger::Startup);
    assert_eq!(out.rejected, vec!["app"], "valid JSON, but no `name`");
    assert!(store.load().get("app").is_none(), "never valid: not served");
    assert!(store.typed::<App>("app").is_none());
    let status = store.status();
    let err = status.documents["app"].last_error.as_ref().expect("error");
    assert_eq!(err.rejection.code, Code::Type);
    let p = &err.rejection.problems[0];
    assert_eq!(
        (p.pointer.as_str(), p.line, p.column),
        ("", Some(1), Some(1))
    );
    assert!(p.message.contains("missing field `name`"), "{}", p.message);
}

#[test]
fn a_key_the_schema_allows_but_the_type_denies_is_e_type_at_the_key() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[allow(dead_code)]
        port: u16,
    }
    let env = Env::new();
    env.write_schema("strict", &json!({"type": "object"}));
    env.write_doc("strict", "port = 1\n\n[extra]\nx = 1\n");
    let (store, handle) = start(&env, |c| {
        c.register::<Strict>("strict");
    });
    reload(&handle, Trigger::Startup);
    let status = store.status();
    let err = status.documents["strict"]
        .last_error
        .as_ref()
        .expect("error");
    assert_eq!(err.rejection.code, Code::Type);
    let p = &err.rejection.problems[0];
    assert_eq!(
        (p.pointer.as_str(), p.line, p.column),
        ("/extra", Some(3), Some(2))
    );
    assert!(
        p.message.starts_with("unknown field `extra`"),
        "{}",
        p.message
    );
}

#[test]
fn type_errors_never_quote_a_secret() {
    #[derive(Debug, Deserialize)]
    struct Db {
        #[allow(dead_code)]
        password: u32,
    }
    let env = Env::new();
    env.write_schema(
        "db",
        &strict_schema(json!({"password": {"type": "string", "writeOnly": true}})),
    );
    env.write_doc("db", "password = \"hunter2\"\n");
    let (store, handle) = start(&env, |c| {
        c.register::<Db>("db");
    });
    reload(&handle, Trigger::Startup);
    let status = store.status();
    let err = status.documents["db"].last_error.as_ref().expect("error");
    assert_eq!(err.rejection.code, Code::Type);
    let text = err.rejection.to_string();
    assert!(!text.contains("hunter2"), "secret quoted: {text}");
    assert!(text.contains("/password"), "still says where: {text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn typed_read_returns_the_same_arc_for_the_same_version() {
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_schema("other", &loose_schema());
    env.write_doc("app", &app("a", 1));
    env.write_doc("other", &app("o", 1));
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);
    let first = store.typed::<App>("app").expect("typed");
    let view: TypedView<App> = store.view("app");
    let second = view.load().expect("typed");
    assert!(Arc::ptr_eq(&first, &second), "built once, shared");

    // Another document's new generation leaves this version alone.
    env.write_doc("other", &app("o", 2));
    reload(&handle, Trigger::Watch);
    assert_eq!(store.load().generation, 2);
    let third = view.load().expect("typed");
    assert!(Arc::ptr_eq(&first, &third), "same version, same Arc");
    assert_eq!(view.load_with_generation().map(|(g, _)| g), Some(1));

    env.write_doc("app", &app("a", 2));
    reload(&handle, Trigger::Watch);
    let fourth = view.load().expect("typed");
    assert!(
        !Arc::ptr_eq(&first, &fourth),
        "a new version is a new value"
    );
    assert_eq!(fourth.port, 2);
    assert_eq!(first.port, 1, "a held Arc keeps its version");
}

#[test]
fn wrong_type_or_unregistered_name_is_none_not_a_panic() {
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_schema("plain", &loose_schema());
    env.write_doc("app", &app("a", 1));
    env.write_doc("plain", &app("p", 1));
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);
    assert!(store.typed::<App>("app").is_some());
    assert!(store.typed::<Other>("app").is_none(), "wrong type");
    assert!(store.typed::<String>("app").is_none(), "wrong type");
    assert!(store.typed::<App>("plain").is_none(), "no type registered");
    assert!(store.load().get("plain").is_some(), "but served as JSON");
    assert!(store.typed::<App>("nope").is_none(), "not a document");
    assert!(store.view::<Other>("app").load().is_none());
}

#[test]
fn concurrent_readers_see_only_whole_versions_while_reloading() {
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_doc("app", &app("v1", 1));
    let (store, handle) = start(&env, |_| {});
    reload(&handle, Trigger::Startup);

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let view: TypedView<App> = store.view("app");
                let (mut reads, mut last) = (0u64, 0u16);
                while !stop.load(Ordering::Relaxed) {
                    let v = view.load().expect("always served");
                    // Every version is whole: its name matches its port.
                    assert_eq!(v.name, format!("v{}", v.port), "torn value");
                    assert!(v.port >= last, "versions never go back");
                    last = v.port;
                    reads += 1;
                }
                (reads, last)
            })
        })
        .collect();

    for port in 2..=40u64 {
        env.write_doc("app", &app(&format!("v{port}"), port));
        let out = reload(&handle, Trigger::Watch);
        assert_eq!(out.accepted, vec!["app"]);
        if port % 10 == 0 {
            // Rejections in between change nothing for readers.
            env.write_doc("app", &app("bad", 70000));
            assert_eq!(reload(&handle, Trigger::Watch).rejected, vec!["app"]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let (reads, last) = r.join().expect("reader did not panic");
        assert!(reads > 0);
        assert!(last <= 40);
    }
    assert_eq!(store.typed::<App>("app").map(|a| a.port), Some(40));
}

#[test]
fn a_version_served_without_its_typed_value_gets_one() {
    // As a snapshot restored from disk would be: served, same bytes, but
    // built by a reloader that had no type registered.
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_doc("app", &app("a", 1));
    let plain = Arc::new(Store::with_random_instance());
    let h = Reloader::spawn(
        ReloadConfig::new(&env.configs, &env.schemas),
        plain.clone(),
        Vec::new(),
    )
    .expect("spawn");
    reload(&h, Trigger::Startup);
    assert!(plain.typed::<App>("app").is_none());

    let store = Arc::new(Store::with_snapshot(
        "restored".into(),
        (*plain.load_full()).clone(),
    ));
    let mut config = ReloadConfig::new(&env.configs, &env.schemas);
    config.register::<App>("app");
    let handle = Reloader::spawn(config, store.clone(), Vec::new()).expect("spawn");
    reload(&handle, Trigger::Startup);
    assert_eq!(store.typed::<App>("app").map(|a| a.port), Some(1));
    assert!(store.status().all_ok());
}

#[test]
fn changed_wakes_only_when_its_document_changes() {
    let env = Env::new();
    env.write_schema("app", &loose_schema());
    env.write_schema("other", &loose_schema());
    env.write_doc("app", &app("a", 1));
    env.write_doc("other", &app("o", 1));
    let (store, handle) = start(&env, |_| {});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut view: TypedView<App> = store.view("app");
        assert!(view.load().is_none(), "nothing loaded yet");
        handle.reload(Trigger::Startup).await.expect("reload");
        let v = tokio::time::timeout(common::DEADLINE, view.changed())
            .await
            .expect("first version wakes");
        assert_eq!(v.map(|a| a.port), Some(1));

        // Another document's publish, and a rejection of this one: no wake.
        env.write_doc("other", &app("o", 2));
        env.write_doc("app", &app("a", 70000));
        let out = handle.reload(Trigger::Watch).await.expect("reload");
        assert_eq!((out.accepted.len(), out.rejected.len()), (1, 1));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), view.changed())
                .await
                .is_err(),
            "woken by someone else's change"
        );

        env.write_doc("app", &app("a", 2));
        let waiter = tokio::spawn(async move {
            let v = view.changed().await;
            (view, v)
        });
        handle.reload(Trigger::Watch).await.expect("reload");
        let (mut view, v) = tokio::time::timeout(common::DEADLINE, waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(v.map(|a| a.port), Some(2));

        // A removal wakes it too, with nothing to read.
        std::fs::remove_file(env.configs.join("app.toml")).expect("rm");
        handle.reload(Trigger::Api).await.expect("reload");
        let v = tokio::time::timeout(common::DEADLINE, view.changed())
            .await
            .expect("woken by the removal");
        assert!(v.is_none());
    });
}
