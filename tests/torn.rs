//! Explicit reloads never publish a file a writer is still producing (SPEC
//! §2, issue 14 A): a writer truncates the document, writes part of it,
//! pauses (for less than `--debounce`), writes the rest and closes; an
//! explicit reload — SIGHUP or `POST /v1/reload` — asked for during the
//! pause must wait for the close (or leave the file for later), never
//! publish the part, nor the empty file, nor persist either.
//!
//! The writer's pause is the scenario (a program writing in two steps), not
//! a wait for the daemon: every wait on the daemon has a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use common::{http, wait_until, Daemon, Env, DEADLINE};

/// Far longer than the writer's pause, so the pause is "below the
/// debounce" however loaded the machine is.
const DEBOUNCE: &str = "2s";
/// The writer's pause between its two writes.
const PAUSE: Duration = Duration::from_millis(400);

const V1: &str = "name = \"v1\"\nport = 1111\n";
const FIRST: &str = "name = \"v2\"\n";
const REST: &str = "port = 2222\n";

/// `name` required (or not), `port` an optional integer.
fn env_with(required: bool) -> Env {
    let env = Env::new();
    let mut schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
        "additionalProperties": false,
    });
    if required {
        schema["required"] = json!(["name"]);
    }
    env.write_schema("app", &schema);
    env.write_doc("app", V1);
    env
}

fn start(env: &Env, state: Option<&Path>) -> Daemon {
    let mut cmd = Command::new(common::bin());
    cmd.args(env.run_args())
        .args(["--poll-interval", "0", "--debounce", DEBOUNCE])
        .stdin(Stdio::null());
    if let Some(s) = state {
        cmd.arg("--state-dir").arg(s);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" || k == "WATCHDOG_USEC" {
            cmd.env_remove(k);
        }
    }
    let d = Daemon::from_command(cmd);
    assert!(
        d.wait_ready(&env.socket()),
        "not ready: {:#?}",
        d.stderr_lines()
    );
    // The watcher is what knows a file is being written: it must be up.
    assert!(
        d.wait_event_count("watch_started", 2, DEADLINE),
        "not watching: {:#?}",
        d.stderr_lines()
    );
    d
}

/// Rewrites `path` in place as a program would: truncate, write `first`,
/// pause, write `rest`, close. `during` runs in the pause (after `first`
/// is written) and its result is returned once the file is closed.
fn torn_write<T: Send + 'static>(
    path: &Path,
    first: &str,
    rest: &str,
    during: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let path: PathBuf = path.to_path_buf();
    let (first, rest) = (first.to_string(), rest.to_string());
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&path).expect("open O_TRUNC");
        f.write_all(first.as_bytes()).expect("write first part");
        tx.send(()).expect("signal");
        std::thread::sleep(PAUSE);
        f.write_all(rest.as_bytes()).expect("write the rest");
        drop(f);
    });
    rx.recv().expect("writer started");
    let out = during();
    writer.join().expect("writer");
    out
}

fn config(env: &Env) -> (Value, u64) {
    let r = http(&env.socket(), "GET", "/v1/config/app", None).expect("get");
    assert_eq!(r.status, 200, "{}", r.body);
    let g = r
        .header("x-hotconf-generation")
        .and_then(|g| g.parse().ok())
        .expect("generation header");
    (r.json(), g)
}

/// Waits until the complete new file is served; returns its generation.
fn complete_served(env: &Env, d: &Daemon) -> u64 {
    let want = json!({"name": "v2", "port": 2222});
    let mut last = (Value::Null, 0);
    let ok = wait_until(DEADLINE, || {
        last = config(env);
        last.0 == want
    });
    assert!(ok, "never served {want}: {last:?}\n{:#?}", d.stderr_lines());
    last.1
}

#[test]
fn sighup_during_a_writers_pause_waits_for_the_complete_file() {
    let env = env_with(true);
    let d = start(&env, None);
    let pid = d.pid();
    torn_write(&env.configs.join("app.toml"), FIRST, REST, move || {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGHUP);
        }
    });
    // One new generation, the complete file: the part ({"name": "v2"},
    // which never existed as a whole file) was never its own generation.
    assert_eq!(complete_served(&env, &d), 2, "{:#?}", d.stderr_lines());
    // The log is read by another thread: wait for the SIGHUP's own record.
    wait_until(DEADLINE, || {
        d.events("reload_finished")
            .iter()
            .any(|v| common::log_field(v, "trigger").and_then(Value::as_str) == Some("signal"))
    });
    let partial = d.events("document_accepted").len();
    assert_eq!(
        partial,
        2,
        "startup + the complete file: {:#?}",
        d.stderr_lines()
    );
    let signal = d
        .events("reload_finished")
        .into_iter()
        .find(|v| common::log_field(v, "trigger").and_then(Value::as_str) == Some("signal"))
        .expect("the SIGHUP's reload_finished");
    assert_eq!(
        common::log_field(&signal, "waited_for").and_then(Value::as_str),
        Some("app"),
        "{signal}"
    );
}

#[test]
fn sighup_on_a_truncated_empty_file_does_not_publish_it() {
    let env = env_with(false);
    let d = start(&env, None);
    let pid = d.pid();
    // Truncate, nothing written yet, pause, then the whole new file.
    torn_write(&env.configs.join("app.toml"), "", FIRST, move || {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGHUP);
        }
    });
    let want = json!({"name": "v2"});
    let ok = wait_until(DEADLINE, || config(&env).0 == want);
    assert!(ok, "{:#?}", d.stderr_lines());
    let (_, g) = config(&env);
    assert_eq!(
        g, 2,
        "the empty file {{}} was published as its own generation"
    );
}

/// `POST /v1/reload` as root: the answer.
fn api_reload(socket: PathBuf) -> Value {
    let r = http(&socket, "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn an_api_reload_during_a_writers_pause_answers_with_the_complete_file() {
    let env = env_with(true);
    let state = env.path().join("state");
    let d = start(&env, Some(&state));
    let socket = env.socket();
    let answer = torn_write(&env.configs.join("app.toml"), FIRST, REST, move || {
        api_reload(socket)
    });
    // What it published is the whole file, and the answer says it waited.
    assert_eq!(config(&env), (json!({"name": "v2", "port": 2222}), 2));
    assert_eq!(answer["accepted"], json!(["app"]), "{answer:#}");
    assert_eq!(answer["generation"], json!(2), "{answer:#}");
    assert_eq!(answer["waited_for"], json!(["app"]), "{answer:#}");
    assert_eq!(answer["deferred"], json!([]), "{answer:#}");
    // A reload is finished only once persisted: what the state holds now is
    // what the answer published, never the part.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).expect("state"))
            .expect("json");
    let persisted = manifest["body"]["documents"]["app"]["sha256"]
        .as_str()
        .expect("persisted app")
        .to_string();
    let full = format!("{FIRST}{REST}");
    assert_eq!(
        persisted,
        hotconf::pipeline::document::sha256_hex(full.as_bytes()),
        "the state holds something else than the complete file"
    );
    assert_ne!(
        persisted,
        hotconf::pipeline::document::sha256_hex(FIRST.as_bytes()),
        "the partial file was persisted as last good"
    );
    assert_eq!(complete_served(&env, &d), 2);
}

#[test]
fn an_api_reload_on_a_truncated_empty_file_does_not_publish_it() {
    let env = env_with(false);
    let d = start(&env, None);
    let socket = env.socket();
    let answer = torn_write(&env.configs.join("app.toml"), "", FIRST, move || {
        api_reload(socket)
    });
    assert_eq!(answer["waited_for"], json!(["app"]), "{answer:#}");
    assert_eq!(
        config(&env),
        (json!({"name": "v2"}), 2),
        "{:#?}",
        d.stderr_lines()
    );
}

/// The schema-compile error raised inside a `$ref`'d file names that file
/// (as meta-schema errors do), through `hotconf check`.
#[test]
fn a_schema_compile_error_is_blamed_on_the_referenced_file_at_fault() {
    for bad in [
        json!({"type": "string", "format": "datetime"}),
        json!({"type": "string", "pattern": "(unclosed"}),
    ] {
        let env = Env::new();
        env.write_schema("common", &json!({"$defs": {"when": bad}}));
        env.write_schema(
            "app",
            &json!({"type": "object", "properties": {
                "when": {"$ref": "common.schema.json#/$defs/when"}
            }}),
        );
        env.write_doc("app", "when = \"x\"\n");
        let out = Command::new(common::bin())
            .arg("check")
            .arg("--config-dir")
            .arg(&env.configs)
            .arg("--schema-dir")
            .arg(&env.schemas)
            .output()
            .expect("run check");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("E_SCHEMA_INVALID"))
            .unwrap_or_else(|| panic!("no E_SCHEMA_INVALID line: {text}"));
        assert!(
            line.contains("common.schema.json") && !line.contains("app.schema.json"),
            "blamed on the wrong file: {line}"
        );
        assert!(line.contains("/$defs/when"), "{line}");
    }
}
