//! `--state-dir` end to end: the real `hotconf run`, stopped and started
//! again on the same temp directories, observed through its socket, its
//! JSON logs and the `hotconf` CLI. The last good snapshot survives a
//! restart: generations continue, identical files keep the generation, and
//! a file broken while the daemon was down is answered with its last good
//! version (state `error`) instead of a refusal to start — unless the state
//! itself is corrupt, which is ignored with a warning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use common::{http, log_field, strict_schema, wait_until, Daemon, Env, DEADLINE};

fn port_schema() -> Value {
    strict_schema(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}))
}

fn state_dir(env: &Env) -> PathBuf {
    env.path().join("state")
}

fn spawn(env: &Env) -> Daemon {
    let mut args = env.run_args();
    let state = state_dir(env).display().to_string();
    // Every edit here is followed by an explicit reload whose generation
    // the test counts: the watcher must not apply the edits first.
    args.extend(["--poll-interval", "0", "--no-watch", "--state-dir", &state].map(String::from));
    Daemon::spawn(&args, &[])
}

/// Starts the daemon with the state dir and waits until it answers.
fn start(env: &Env) -> Daemon {
    let d = spawn(env);
    assert!(
        d.wait_ready(&env.socket()),
        "not ready: {:#?}",
        d.stderr_lines()
    );
    d
}

/// Waits until the daemon has logged `event` at least `n` times (logs are
/// captured by a reader thread, a little after they are written).
fn logged(d: &Daemon, event: &str, n: usize) -> Vec<Value> {
    assert!(
        d.wait_event_count(event, n, DEADLINE),
        "{event} x{n} never logged: {:#?}",
        d.stderr_lines()
    );
    d.events(event)
}

/// Waits for a refused start to exit 1 and for its last line (so that
/// everything before it has been captured too).
fn refused(d: &mut Daemon, what: &str) {
    let exit = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(exit.code(), Some(1), "{what}: {:#?}", d.stderr_lines());
    assert!(
        wait_until(DEADLINE, || d
            .stderr_lines()
            .iter()
            .any(|l| l.contains("not starting"))),
        "{what}: {:#?}",
        d.stderr_lines()
    );
}

/// SIGTERM, and the daemon exits 0.
fn stop(mut d: Daemon) {
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(DEADLINE).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", d.stderr_lines());
}

fn get(env: &Env, path: &str) -> common::Response {
    http(&env.socket(), "GET", path, None).expect("request")
}

fn status(env: &Env) -> Value {
    get(env, "/v1/status").json()
}

/// An explicit reload through the API; answers when it is finished.
fn reload(env: &Env) -> Value {
    let r = http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    r.json()
}

/// The persisted manifest's body.
fn manifest(env: &Env) -> Value {
    let text = std::fs::read_to_string(state_dir(env).join("state.json")).expect("manifest");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["body"].clone()
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    log_field(v, name).and_then(Value::as_str).unwrap_or("")
}

/// `hotconf status` against this env's socket: (exit code, stdout).
fn cli_status(env: &Env) -> (Option<i32>, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(["status", "--socket"]).arg(env.socket());
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") {
            cmd.env_remove(k);
        }
    }
    let o = cmd.output().expect("run hotconf status");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// `a` and `b`, both valid, run until generation 2 (`a` edited once) is
/// persisted, then stopped. Returns that run's instance id.
fn persisted_two_generations(env: &Env) -> Value {
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 5\n");
    let d = start(env);
    env.write_doc("a", "port = 2\n");
    assert_eq!(reload(env)["generation"], 2);
    // The reload answered, so it is finished: the snapshot is on disk.
    assert_eq!(manifest(env)["generation"], 2);
    let instance = status(env)["instance"].clone();
    stop(d);
    instance
}

#[test]
fn a_reload_is_finished_only_once_its_snapshot_is_persisted() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let d = start(&env);
    assert_eq!(manifest(&env)["generation"], 1);
    for port in 2..6 {
        env.write_doc("a", &format!("port = {port}\n"));
        let outcome = reload(&env);
        let m = manifest(&env);
        assert_eq!(m["generation"], outcome["generation"]);
        assert_eq!(m["documents"]["a"]["generation"], outcome["generation"]);
    }
    let st = status(&env);
    assert_eq!(st["state_dir"]["ok"], true, "{st:#}");
    assert_eq!(st["state_dir"]["persisted_generation"], 5);
    drop(d);
}

#[test]
fn generations_continue_across_a_restart() {
    let env = Env::new();
    let first_instance = persisted_two_generations(&env);
    env.write_doc("b", "port = 6\n");
    let d = start(&env);
    let st = status(&env);
    assert_eq!(st["generation"], 3, "{st:#}");
    assert_eq!(st["documents"]["a"]["generation"], 2, "a unchanged");
    assert_eq!(st["documents"]["b"]["generation"], 3, "b edited");
    assert_eq!(st["ok"], true);
    assert_eq!(st["state_dir"]["restored_generation"], 2);
    let r = get(&env, "/v1/config/b");
    assert_eq!(r.header("x-hotconf-generation"), Some("3"));
    assert_eq!(r.json(), json!({"port": 6}));
    assert_ne!(
        st["instance"], first_instance,
        "instance is random per start"
    );
    assert_eq!(logged(&d, "state_restored", 1).len(), 1);
    // Continues from there.
    env.write_doc("a", "port = 3\n");
    assert_eq!(reload(&env)["generation"], 4);
    assert_eq!(manifest(&env)["generation"], 4);
    stop(d);
}

#[test]
fn a_restart_with_identical_files_keeps_the_generation() {
    let env = Env::new();
    persisted_two_generations(&env);
    let before = manifest(&env);
    let d = start(&env);
    let st = status(&env);
    assert_eq!(st["generation"], 2, "{st:#}");
    assert_eq!(st["ok"], true);
    // Everything the startup logged is captured once its end is.
    logged(&d, "reload_finished", 1);
    assert_eq!(st["documents"]["a"]["generation"], 2);
    assert_eq!(st["documents"]["b"]["generation"], 1);
    assert!(
        d.events("snapshot_published").is_empty(),
        "no new generation"
    );
    assert!(d.events("serving_persisted").is_empty());
    let r = get(&env, "/v1/config");
    assert_eq!(
        r.json()["documents"],
        json!({"a": {"port": 2}, "b": {"port": 5}})
    );
    // Not rewritten: the state was already this generation.
    assert_eq!(manifest(&env), before);
    stop(d);
}

#[test]
fn a_crash_right_after_a_reload_loses_nothing() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let d = start(&env);
    env.write_doc("a", "port = 2\n");
    assert_eq!(reload(&env)["generation"], 2);
    drop(d); // SIGKILL: no graceful shutdown
    env.write_doc("a", "port = [\n");
    let d = start(&env);
    let r = get(&env, "/v1/config/a");
    assert_eq!(r.json(), json!({"port": 2}));
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    drop(d);
}

#[test]
fn a_restart_with_a_broken_file_serves_its_last_good_version_and_says_so() {
    let env = Env::new();
    persisted_two_generations(&env);
    env.write_doc("a", "port = \"eighty\"\n");
    // Invalid and never persisted: error, not served.
    env.write_schema("c", &port_schema());
    env.write_doc("c", "port = 0\n");
    let d = start(&env);

    let r = get(&env, "/v1/config/a");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"port": 2}), "the last good value");
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    assert_eq!(get(&env, "/v1/config/b").json(), json!({"port": 5}));
    assert_eq!(get(&env, "/v1/config/c").status, 404);

    let st = status(&env);
    assert_eq!(st["ok"], false);
    assert_eq!(st["generation"], 2, "nothing new was published");
    assert_eq!(st["documents"]["a"]["state"], "error");
    assert_eq!(st["documents"]["a"]["generation"], 2);
    assert_eq!(st["documents"]["a"]["last_error"]["code"], "E_SCHEMA");
    assert_eq!(st["documents"]["b"]["state"], "ok");
    assert_eq!(st["documents"]["c"]["state"], "error");
    assert_eq!(st["documents"]["c"]["generation"], Value::Null);

    let warned = logged(&d, "serving_persisted", 1);
    assert_eq!(warned.len(), 1, "{:#?}", d.stderr_lines());
    assert_eq!(field(&warned[0], "level"), "WARN");
    assert_eq!(field(&warned[0], "documents"), "a");
    assert_eq!(field(&warned[0], "not_served"), "c");

    let (code, out) = cli_status(&env);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("E_SCHEMA"), "{out}");

    // Fixing the file is an ordinary edit: the next generation.
    env.write_doc("a", "port = 80\n");
    env.write_doc("c", "port = 8\n");
    let outcome = reload(&env);
    assert_eq!(outcome["generation"], 3);
    assert_eq!(status(&env)["ok"], true);
    stop(d);
}

#[test]
fn a_schema_made_stricter_while_down_serves_the_document_under_its_old_schema() {
    let env = Env::new();
    persisted_two_generations(&env);
    // `a` is `port = 2`; now ports must be >= 1024.
    let strict =
        strict_schema(json!({"port": {"type": "integer", "minimum": 1024, "maximum": 65535}}));
    env.write_schema("a", &strict);
    let d = start(&env);
    assert_eq!(get(&env, "/v1/config/a").json(), json!({"port": 2}));
    let st = status(&env);
    assert_eq!(st["documents"]["a"]["state"], "error");
    assert_eq!(st["documents"]["a"]["last_error"]["code"], "E_SCHEMA");
    assert_eq!(st["documents"]["b"]["state"], "ok");
    assert_eq!(logged(&d, "serving_persisted", 1).len(), 1);
    drop(d);
}

/// Damages the persisted state in some way.
type Damage = fn(&Path);

fn truncate_manifest(state: &Path) {
    let path = state.join("state.json");
    let bytes = std::fs::read(&path).expect("manifest");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
}

fn garbage_manifest(state: &Path) {
    std::fs::write(state.join("state.json"), b"\x00\xffnot json at all{{{").expect("garbage");
}

fn flip_blob_bytes(state: &Path) {
    let blobs = std::fs::read_dir(state.join("blobs")).expect("blobs");
    for entry in blobs {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("blob");
        if let Some(b) = bytes.first_mut() {
            *b ^= 0x20;
        }
        std::fs::write(&path, bytes).expect("flip");
    }
}

const DAMAGES: [(&str, Damage); 3] = [
    ("truncated manifest", truncate_manifest),
    ("garbage manifest", garbage_manifest),
    ("flipped blob bytes", flip_blob_bytes),
];

#[test]
fn a_corrupt_state_with_a_broken_file_is_ignored_and_startup_fails() {
    for (what, damage) in DAMAGES {
        let env = Env::new();
        persisted_two_generations(&env);
        damage(&state_dir(&env));
        env.write_doc("a", "port = [\n");
        let mut d = spawn(&env);
        refused(&mut d, what);
        let ignored = d.events("state_ignored");
        assert_eq!(ignored.len(), 1, "{what}: {:#?}", d.stderr_lines());
        assert_eq!(field(&ignored[0], "level"), "WARN");
        assert!(d.events("serving_persisted").is_empty());
        let lines = d.stderr_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("a.toml") && l.contains("E_PARSE")),
            "{what}: every error printed: {lines:#?}"
        );
    }
}

#[test]
fn a_corrupt_state_with_valid_files_starts_over_at_generation_1() {
    let env = Env::new();
    persisted_two_generations(&env);
    flip_blob_bytes(&state_dir(&env));
    let d = start(&env);
    let st = status(&env);
    assert_eq!(st["generation"], 1, "{st:#}");
    assert_eq!(st["ok"], true);
    assert_eq!(st["state_dir"]["restored_generation"], Value::Null);
    assert_eq!(logged(&d, "state_ignored", 1).len(), 1);
    // And the state is good again.
    assert_eq!(manifest(&env)["generation"], 1);
    stop(d);
    let d = start(&env);
    assert_eq!(status(&env)["state_dir"]["restored_generation"], 1);
    drop(d);
}

#[test]
fn a_failed_persist_is_loud_keeps_serving_and_is_repaired_later() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_doc("a", "port = 1\n");
    let d = start(&env);
    // Something in the way of the blobs directory, as a broken disk would be.
    let blobs = state_dir(&env).join("blobs");
    std::fs::rename(&blobs, env.path().join("blobs.away")).expect("move blobs");
    std::fs::write(&blobs, b"in the way").expect("block");

    env.write_doc("a", "port = 2\n");
    assert_eq!(reload(&env)["generation"], 2);
    assert_eq!(
        get(&env, "/v1/config/a").json(),
        json!({"port": 2}),
        "served"
    );
    let failed = logged(&d, "persist_failed", 1);
    assert_eq!(failed.len(), 1, "{:#?}", d.stderr_lines());
    assert_eq!(field(&failed[0], "level"), "ERROR");
    let st = status(&env);
    assert_eq!(st["ok"], true, "documents are fine");
    assert_eq!(st["state_dir"]["ok"], false, "{st:#}");
    assert_eq!(st["state_dir"]["persisted_generation"], 1);
    assert!(st["state_dir"]["last_error"]["message"].is_string());
    let metrics = get(&env, "/metrics").body;
    assert!(metrics.contains("hotconf_state_persist_ok 0"), "{metrics}");
    assert!(
        metrics.contains("hotconf_state_persisted_generation 1"),
        "{metrics}"
    );

    // Freed: the next reload persists what is served.
    std::fs::remove_file(&blobs).expect("unblock");
    reload(&env);
    assert!(wait_until(DEADLINE, || status(&env)["state_dir"]["ok"] == true));
    assert_eq!(manifest(&env)["generation"], 2);
    assert!(get(&env, "/metrics")
        .body
        .contains("hotconf_state_persist_ok 1"));
    stop(d);
    env.write_doc("a", "port = x\n");
    let d = start(&env);
    assert_eq!(get(&env, "/v1/config/a").json(), json!({"port": 2}));
    drop(d);
}

#[test]
fn a_refused_first_start_leaves_no_state_so_the_next_start_is_refused_too() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 0\n");
    for attempt in 1..=2 {
        let mut d = spawn(&env);
        refused(&mut d, &format!("attempt {attempt}"));
        assert!(d.events("serving_persisted").is_empty());
        assert!(
            !state_dir(&env).join("state.json").exists(),
            "attempt {attempt}: a refused start persists nothing"
        );
    }
}
