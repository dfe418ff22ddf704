//! Races between the reloader and its readers, found by stress runs and
//! kept as regressions: what a woken blocking query reads, and a shared
//! schema replaced while a reload reads its inputs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use common::{http, strict_schema, wait_until, Daemon, Env, DEADLINE};
use serde_json::{json, Value};

fn status(env: &Env) -> Value {
    http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json()
}

/// Sends a blocking status query now and returns a thread that reads its
/// answer: the request is in the daemon's socket before anything else
/// happens, so the query is normally parked when the publish comes (and if
/// it is not, it must answer consistently all the same).
fn park_status_query(env: &Env, index: u64) -> std::thread::JoinHandle<Value> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(env.socket()).expect("connect");
    let req = format!(
        "GET /v1/status?index={index}&wait=60s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).expect("send");
    std::thread::spawn(move || {
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("read answer");
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"))
    })
}

/// A blocking `GET /v1/status?index=N` woken by a publish must see the
/// status of the reload that published, not the previous one beside the
/// new generation (with `--state-dir` the gap used to be the persist).
#[test]
fn a_status_query_woken_by_a_publish_sees_that_reloads_outcome() {
    let env = Env::new();
    let schema = strict_schema(json!({"port": {"type": "integer", "minimum": 1}}));
    env.write_schema("a", &schema);
    env.write_doc("a", "port = 1\n");
    let state = env.path().join("state");
    let mut args = env.run_args();
    args.extend(
        [
            "--poll-interval",
            "0",
            "--no-watch",
            "--state-dir",
            &state.display().to_string(),
        ]
        .map(String::from),
    );
    let d = Daemon::spawn(&args, &[]);
    assert!(d.wait_ready(&env.socket()));

    env.write_doc("a", "port = 0\n");
    let r = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("reload")
        .json();
    assert_eq!(r["ok"], json!(false), "{r}");

    for round in 0..5u64 {
        // Park a blocking query at the current generation.
        let generation = status(&env)["generation"].as_u64().expect("generation");
        let waiter = park_status_query(&env, generation);
        // Fix the document: one reload accepts it and publishes.
        env.write_doc("a", &format!("port = {}\n", round + 2));
        let r = http(&env.socket(), "POST", "/v1/reload", None)
            .expect("reload")
            .json();
        assert_eq!(r["ok"], json!(true), "{r}");
        let s = waiter.join().expect("waiter");
        assert!(s["generation"].as_u64() > Some(generation), "{s}");
        assert_eq!(
            s["documents"]["a"]["state"],
            json!("ok"),
            "round {round}: {s}"
        );
        assert_eq!(s["ok"], json!(true), "round {round}: {s}");
        assert_eq!(
            s["last_reload"]["accepted"],
            json!(["a"]),
            "round {round}: {s}"
        );
        // Break it again for the next round (a rejection: no generation).
        env.write_doc("a", "port = 0\n");
        let r = http(&env.socket(), "POST", "/v1/reload", None)
            .expect("reload")
            .json();
        assert_eq!(r["ok"], json!(false), "{r}");
    }
}

/// With `--all-or-nothing`, tightening a schema shared by 100 documents so
/// that half of them fail must never publish anything: every reload judges
/// all of them against one version of the shared file.
#[test]
fn a_shared_schema_swap_is_judged_against_one_version_per_reload() {
    let env = Env::new();
    let shared = |max: u64| {
        json!({"$defs": {"port": {"type": "integer", "minimum": 1, "maximum": max}}}).to_string()
    };
    let user = strict_schema(json!({"port": {"$ref": "shared.schema.json#/$defs/port"}}));
    env.write_schema_file("shared.schema.json", &shared(65535));
    for i in 0..100 {
        let name = format!("d{i:03}");
        env.write_schema(&name, &user);
        // Every other document fails a maximum of 1024.
        env.write_doc(
            &name,
            if i % 2 == 0 {
                "port = 8080\n"
            } else {
                "port = 80\n"
            },
        );
    }
    let mut args = env.run_args();
    args.extend(["--poll-interval", "2ms", "--no-watch", "--all-or-nothing"].map(String::from));
    let d = Daemon::spawn(&args, &[]);
    assert!(d.wait_ready(&env.socket()));
    let reloads = |s: &Value| s["counters"]["reloads"].as_u64().unwrap_or(0);
    for round in 0..40 {
        let before = reloads(&status(&env));
        let max = if round % 2 == 0 { 1024 } else { 65535 };
        env.write_schema_file("shared.schema.json", &shared(max));
        assert!(
            wait_until(DEADLINE, || reloads(&status(&env)) > before),
            "round {round}: the poll never noticed the schema"
        );
        let s = status(&env);
        assert_eq!(
            s["generation"],
            json!(1),
            "round {round}: published under --all-or-nothing: {}",
            s["last_reload"]
        );
    }
}
