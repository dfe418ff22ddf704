//! `hotconf run` end to end: the real binary in a temp directory, observed
//! the way its users observe it — through its real control socket. What is
//! served is read from `GET /v1/config/NAME` (value, `X-Hotconf-Generation`),
//! state from `GET /v1/status` (generation, per-document `state`,
//! `generation`, `last_error`, `counters`, `last_reload`). The JSON logs are
//! asserted where the test is about the logs themselves (the WARN line's
//! fields, event names, secrets never logged, no colours) and, beside the
//! socket, as a second witness of what a reload did.
//!
//! Implicit reloads come from the checksum poll (short `--poll-interval`) and
//! the file watcher; explicit ones from SIGHUP where the test is about the
//! signal, else from `POST /v1/reload`. A test that counts what one explicit
//! reload did after several files were written runs with `--no-watch`, so
//! that the watcher cannot apply the edits first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::{http, log_field, strict_schema, wait_until, Daemon, Env, Response, DEADLINE};

fn port_schema() -> Value {
    strict_schema(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}))
}

/// Starts `hotconf run` on `env` with `extra` flags and waits until its
/// socket answers (it serves only once the startup reload is done).
fn start(env: &Env, extra: &[&str]) -> Daemon {
    let d = spawn(env, extra);
    assert!(
        d.wait_ready(&env.socket()),
        "the socket never answered: {:#?}",
        d.stderr_lines()
    );
    d
}

fn spawn(env: &Env, extra: &[&str]) -> Daemon {
    let mut args = env.run_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::spawn(&args, &[])
}

// --- the socket ---

fn get(env: &Env, path: &str) -> Response {
    http(&env.socket(), "GET", path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET /v1/status` (always 200 from a daemon that answers).
fn status(env: &Env) -> Value {
    let r = get(env, "/v1/status");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Waits until `/v1/status` satisfies `cond`; returns that status.
fn wait_status(d: &Daemon, env: &Env, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(DEADLINE, || {
        match http(&env.socket(), "GET", "/v1/status", None) {
            Ok(r) if r.status == 200 => {
                last = r.json();
                cond(&last)
            }
            _ => false,
        }
    });
    assert!(
        ok,
        "/v1/status never showed {what}: {last:#}\nlogs: {:#?}",
        d.stderr_lines()
    );
    last
}

/// The number of reloads `/v1/status` has counted.
fn reloads(s: &Value) -> u64 {
    s["counters"]["reloads"].as_u64().expect("counters.reloads")
}

/// One document of `/v1/status`.
fn doc<'a>(s: &'a Value, name: &str) -> &'a Value {
    &s["documents"][name]
}

/// What `GET /v1/config/NAME` serves: the value and its
/// `X-Hotconf-Generation` (the document's own generation).
fn served(env: &Env, name: &str) -> (Value, u64) {
    let r = get(env, &format!("/v1/config/{name}"));
    assert_eq!(r.status, 200, "{name} is not served: {}", r.body);
    let generation = r
        .header("x-hotconf-generation")
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no X-Hotconf-Generation: {r:?}"));
    (r.json(), generation)
}

/// `POST /v1/reload`: an explicit reload; its result, once it is done.
fn api_reload(env: &Env) -> Value {
    let r = http(&env.socket(), "POST", "/v1/reload", None).expect("POST /v1/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// --- the logs ---

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    log_field(v, name).and_then(Value::as_str).unwrap_or("")
}

fn num(v: &Value, name: &str) -> Option<u64> {
    log_field(v, name).and_then(Value::as_u64)
}

/// A comma-separated list field as names.
fn names(v: &Value, name: &str) -> Vec<String> {
    text(v, name)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `n`-th (1-based) `reload_finished` record, waiting for it.
fn finished(d: &Daemon, n: usize) -> Value {
    assert!(
        d.wait_event_count("reload_finished", n, DEADLINE),
        "reload #{n} never finished: {:#?}",
        d.stderr_lines()
    );
    d.events("reload_finished").swap_remove(n - 1)
}

fn published_generations(d: &Daemon) -> Vec<u64> {
    d.events("snapshot_published")
        .iter()
        .filter_map(|v| num(v, "generation"))
        .collect()
}

/// The `n`-th (1-based) `document_rejected` WARN record, waiting for it.
fn rejected_line(d: &Daemon, n: usize) -> Value {
    assert!(
        d.wait_event_count("document_rejected", n, DEADLINE),
        "rejection #{n} never logged: {:#?}",
        d.stderr_lines()
    );
    d.events("document_rejected").swap_remove(n - 1)
}

fn two_docs(env: &Env) {
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 2\n");
}

#[test]
fn startup_publishes_every_valid_document_as_generation_1() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "0"]);

    let s = status(&env);
    assert_eq!(s["generation"], json!(1), "{s:#}");
    assert_eq!(s["ok"], json!(true));
    for (name, bytes) in [("a", "port = 1\n"), ("b", "port = 2\n")] {
        let doc = doc(&s, name);
        assert_eq!(doc["state"], "ok", "{name}: {doc:#}");
        assert_eq!(doc["generation"], json!(1), "{name}");
        assert_eq!(doc["last_error"], Value::Null, "{name}");
        assert_eq!(doc["sha256"], json!(sha256_hex(bytes.as_bytes())), "{name}");
    }
    assert_eq!(s["last_reload"]["trigger"], "startup");
    assert_eq!(s["last_reload"]["accepted"], json!(["a", "b"]));
    assert_eq!(s["last_reload"]["rejected"], json!([]));
    assert_eq!(s["counters"], json!({"reloads": 1, "rejections": 0}));
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    assert_eq!(served(&env, "b"), (json!({"port": 2}), 1));
    let all = get(&env, "/v1/config");
    assert_eq!(all.header("x-hotconf-generation"), Some("1"));
    assert_eq!(
        all.json()["documents"],
        json!({"a": {"port": 1}, "b": {"port": 2}})
    );

    // The logs tell the same story, once (they are read from a pipe: wait
    // for the line rather than race the socket).
    let f = finished(&d, 1);
    assert_eq!(d.events("startup").len(), 1);
    assert_eq!(text(&f, "trigger"), "startup");
    assert_eq!(names(&f, "accepted"), vec!["a", "b"]);
    let p = d.events("snapshot_published");
    assert_eq!(p.len(), 1);
    assert_eq!(num(&p[0], "generation"), Some(1));
    assert_eq!(names(&p[0], "changed"), vec!["a", "b"]);
}

#[test]
fn startup_with_invalid_documents_prints_every_error_and_exits_1() {
    let env = Env::new();
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_schema("c", &port_schema());
    env.write_doc("a", "port = [\n");
    env.write_doc("b", "port = \"x\"\n");
    env.write_doc("c", "port = 3\n");
    let mut d = spawn(&env, &["--poll-interval", "0"]);
    let status = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(1));
    // The last line it prints; the pipe may still be draining.
    assert!(
        wait_until(DEADLINE, || d
            .stderr_lines()
            .iter()
            .any(|l| l.contains("not starting"))),
        "{:#?}",
        d.stderr_lines()
    );
    let lines = d.stderr_lines();
    let a = format!("{}:", env.configs.join("a.toml").display());
    let b = format!("{}:", env.configs.join("b.toml").display());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&a) && l.contains(": E_PARSE")),
        "a's error, compiler style: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&b) && l.contains(": E_SCHEMA /port: ")),
        "b's error, compiler style: {lines:#?}"
    );
    // It never served: no socket is left behind for clients to find.
    assert!(!env.socket().exists(), "socket left behind");
}

#[test]
fn sighup_publishes_good_edits_in_one_generation_and_keeps_the_last_good_of_bad_ones() {
    let env = Env::new();
    two_docs(&env);
    env.write_schema("c", &port_schema());
    env.write_doc("c", "port = 3\n");
    // Several edits, then one explicit reload: the watcher must not apply
    // them first.
    let d = start(&env, &["--poll-interval", "0", "--no-watch"]);

    env.write_doc("a", "port = 70000\n");
    env.write_doc("b", "port = 20\n");
    env.write_doc("c", "port = 30\n");
    d.signal(libc::SIGHUP);
    let s = wait_status(&d, &env, "the SIGHUP's reload", |s| reloads(s) >= 2);
    assert_eq!(reloads(&s), 2, "one SIGHUP, one reload: {s:#}");
    assert_eq!(s["last_reload"]["trigger"], "signal");
    assert_eq!(s["last_reload"]["accepted"], json!(["b", "c"]));
    assert_eq!(s["last_reload"]["rejected"], json!(["a"]));
    assert_eq!(s["last_reload"]["removed"], json!([]));
    // One atomic publish: one new generation, holding both accepted edits.
    assert_eq!(s["generation"], json!(2), "{s:#}");
    assert_eq!(doc(&s, "b")["generation"], json!(2));
    assert_eq!(doc(&s, "c")["generation"], json!(2));
    assert_eq!(doc(&s, "b")["state"], "ok");
    assert_eq!(doc(&s, "c")["state"], "ok");
    // The bad edit: recorded, its last good version still served.
    assert_eq!(s["ok"], json!(false));
    let a = doc(&s, "a");
    assert_eq!(a["state"], "error", "{a:#}");
    assert_eq!(a["generation"], json!(1));
    assert_eq!(a["sha256"], json!(sha256_hex(b"port = 1\n")), "served");
    let e = &a["last_error"];
    assert_eq!(e["code"], "E_SCHEMA", "{e:#}");
    assert_eq!(
        e["sha256"],
        json!(sha256_hex(b"port = 70000\n")),
        "candidate"
    );
    assert_eq!(e["errors"][0]["pointer"], "/port", "{e:#}");
    assert_eq!(e["errors"][0]["line"], json!(1));
    assert_eq!(e["errors"][0]["column"], json!(8));
    assert_eq!(s["counters"]["rejections"], json!(1));
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    assert_eq!(served(&env, "b"), (json!({"port": 20}), 2));
    assert_eq!(served(&env, "c"), (json!({"port": 30}), 2));
    let all = get(&env, "/v1/config").json();
    assert_eq!(all["generation"], json!(2));
    assert_eq!(
        all["documents"],
        json!({"a": {"port": 1}, "b": {"port": 20}, "c": {"port": 30}})
    );

    // The logs: the reload's line, one publish, one WARN line per document.
    let f = finished(&d, 2);
    assert_eq!(text(&f, "trigger"), "signal");
    assert_eq!(names(&f, "accepted"), vec!["b", "c"]);
    assert_eq!(names(&f, "rejected"), vec!["a"]);
    assert_eq!(names(&f, "not_ok"), vec!["a"]);
    assert_eq!(published_generations(&d), vec![1, 2], "one atomic publish");
    let p = &d.events("snapshot_published")[1];
    assert_eq!(names(p, "changed"), vec!["b", "c"]);

    let r = d.events("document_rejected");
    assert_eq!(r.len(), 1, "one line per document");
    assert_eq!(text(&r[0], "level"), "WARN");
    assert_eq!(text(&r[0], "code"), "E_SCHEMA");
    assert_eq!(text(&r[0], "pointer"), "/port");
    assert_eq!(num(&r[0], "line"), Some(1));
    assert_eq!(num(&r[0], "column"), Some(8));
    assert_eq!(num(&r[0], "serving"), Some(1), "last good still served");
    assert!(text(&r[0], "file").ends_with("a.toml"));
}

#[test]
fn all_or_nothing_rejects_the_whole_reload() {
    let env = Env::new();
    two_docs(&env);
    // Several edits, then one explicit reload: the watcher must not apply
    // them first.
    let d = start(
        &env,
        &["--poll-interval", "0", "--all-or-nothing", "--no-watch"],
    );

    env.write_doc("a", "port = 0\n");
    env.write_doc("b", "port = 20\n");
    let r = api_reload(&env);
    assert_eq!(r["trigger"], "api", "{r:#}");
    assert_eq!(r["accepted"], json!([]));
    assert_eq!(r["rejected"], json!(["a", "b"]));
    assert_eq!(r["generation"], json!(1), "nothing changes");
    assert_eq!(r["ok"], json!(false));
    assert_eq!(r["not_ok"]["a"]["last_error"]["code"], "E_SCHEMA", "{r:#}");
    assert_eq!(r["not_ok"]["b"]["state"], "error");
    let held = r["not_ok"]["b"]["last_error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(held.contains("--all-or-nothing"), "b held back: {r:#}");

    let s = status(&env);
    assert_eq!(s["generation"], json!(1), "{s:#}");
    for name in ["a", "b"] {
        assert_eq!(doc(&s, name)["state"], "error", "{name}: {s:#}");
        assert_eq!(doc(&s, name)["generation"], json!(1), "{name}");
    }
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    assert_eq!(served(&env, "b"), (json!({"port": 2}), 1), "no mix served");

    env.write_doc("a", "port = 10\n");
    let r = api_reload(&env);
    assert_eq!(r["accepted"], json!(["a", "b"]), "{r:#}");
    assert_eq!(r["rejected"], json!([]));
    assert_eq!(r["generation"], json!(2));
    assert_eq!(
        (r["ok"].clone(), r["not_ok"].clone()),
        (json!(true), json!({}))
    );
    let s = status(&env);
    assert_eq!(s["generation"], json!(2), "{s:#}");
    for name in ["a", "b"] {
        assert_eq!(doc(&s, name)["state"], "ok", "{name}: {s:#}");
        assert_eq!(doc(&s, name)["last_error"], Value::Null, "{name}");
    }
    assert_eq!(s["counters"], json!({"reloads": 3, "rejections": 2}));
    assert_eq!(served(&env, "a"), (json!({"port": 10}), 2));
    assert_eq!(served(&env, "b"), (json!({"port": 20}), 2));

    // The logs agree: one publish for the two reloads.
    let f = finished(&d, 2);
    assert_eq!(names(&f, "rejected"), vec!["a", "b"]);
    assert_eq!(num(&f, "generation"), Some(1));
    let f = finished(&d, 3);
    assert_eq!(names(&f, "accepted"), vec!["a", "b"]);
    assert_eq!(text(&f, "not_ok"), "");
    assert_eq!(published_generations(&d), vec![1, 2]);
}

#[test]
fn identical_bytes_or_a_touch_make_no_generation_and_no_reload() {
    let env = Env::new();
    two_docs(&env);
    let d = start(
        &env,
        &[
            "--poll-interval",
            "20ms",
            "--log-level",
            "info,hotconf=debug",
        ],
    );
    let before = status(&env);
    env.write_doc("a", "port = 1\n");
    let f = std::fs::File::options()
        .append(true)
        .open(env.configs.join("b.toml"))
        .expect("open");
    f.set_modified(std::time::SystemTime::now()).expect("touch");
    drop(f);
    // Several polls have looked since, for longer than the default
    // `--debounce` (each logs at debug only: a look that finds nothing is
    // invisible on the socket, by design).
    let seen = d.events("nothing_changed").len();
    assert!(d.wait_event_count("nothing_changed", seen + 10, DEADLINE));

    let s = status(&env);
    assert_eq!(s["generation"], json!(1), "{s:#}");
    assert_eq!(s["published_at"], before["published_at"], "no publish");
    assert_eq!(s["counters"], json!({"reloads": 1, "rejections": 0}));
    assert_eq!(s["last_reload"], before["last_reload"], "only startup");
    assert_eq!(s["documents"], before["documents"], "nothing reloaded");
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    assert_eq!(served(&env, "b"), (json!({"port": 2}), 1));
    assert_eq!(d.events("reload_started").len(), 1, "only startup");
    assert_eq!(published_generations(&d), vec![1]);

    // An explicit reload of identical bytes is a reload, without generation.
    let r = api_reload(&env);
    assert_eq!(r["trigger"], "api", "{r:#}");
    assert_eq!(r["generation"], json!(1));
    assert_eq!(r["accepted"], json!([]));
    assert_eq!(r["rejected"], json!([]));
    assert_eq!(r["ok"], json!(true));
    let s = status(&env);
    assert_eq!(s["generation"], json!(1), "{s:#}");
    assert_eq!(s["published_at"], before["published_at"], "no publish");
    assert_eq!(s["counters"]["reloads"], json!(2), "a reload");
    assert_eq!(s["last_reload"]["trigger"], "api");
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    let f = finished(&d, 2);
    assert_eq!(text(&f, "trigger"), "api");
    assert_eq!(num(&f, "generation"), Some(1));
    assert_eq!(published_generations(&d), vec![1]);
}

#[test]
fn poll_applies_edits_and_a_schema_change_revalidates_its_documents() {
    let env = Env::new();
    let shared =
        |max: u64| json!({"$defs": {"port": {"type": "integer", "minimum": 1, "maximum": max}}});
    let user = strict_schema(json!({"port": {"$ref": "shared.schema.json#/$defs/port"}}));
    env.write_schema_file("shared.schema.json", &shared(65535).to_string());
    env.write_schema("a", &user);
    env.write_schema("b", &user);
    env.write_doc("a", "port = 8080\n");
    env.write_doc("b", "port = 80\n");
    let d = start(&env, &["--poll-interval", "50ms"]);

    env.write_schema_file("shared.schema.json", &shared(1024).to_string());
    // Normally the first reload after the change does both. A reload that
    // is already reading when the shared schema is replaced can judge b
    // against the new version and a against the old one, leaving a to the
    // next reload (the re-read check covers document files, not schema
    // files: reported to the lead), so this waits for both effects.
    let s = wait_status(&d, &env, "the schema change", |s| {
        doc(s, "a")["state"] == "error" && doc(s, "b")["generation"] == 2
    });
    assert_eq!(s["last_reload"]["trigger"], "watch", "{s:#}");
    assert_eq!(s["last_reload"]["rejected"], json!(["a"]));
    assert_eq!(s["counters"]["rejections"], json!(1));
    let a = doc(&s, "a");
    assert_eq!(a["state"], "error", "{a:#}");
    assert_eq!(a["generation"], json!(1));
    assert_eq!(a["last_error"]["code"], "E_SCHEMA");
    assert!(
        a["last_error"]
            .to_string()
            .contains("last good value and schema stay in force"),
        "{a:#}"
    );
    // b is revalidated under the new schema: what is served changed.
    assert_eq!(s["generation"], json!(2));
    assert_eq!(doc(&s, "b")["generation"], json!(2));
    assert_eq!(served(&env, "a"), (json!({"port": 8080}), 1));
    assert_eq!(served(&env, "b"), (json!({"port": 80}), 2));
    let r = rejected_line(&d, 1);
    assert_eq!(text(&r, "code"), "E_SCHEMA");
    assert!(
        text(&r, "errors").contains("last good value and schema stay in force"),
        "{r:?}"
    );
    assert_eq!(num(&r, "serving"), Some(1));

    // An edit that fits the new schema is applied by the poll.
    env.write_doc("a", "port = 1000\n");
    let s = wait_status(&d, &env, "a's fix", |s| doc(s, "a")["state"] == "ok");
    assert_eq!(s["generation"], json!(3), "{s:#}");
    assert_eq!(s["last_reload"]["accepted"], json!(["a"]));
    assert_eq!(doc(&s, "a")["last_error"], Value::Null);
    assert_eq!(served(&env, "a"), (json!({"port": 1000}), 3));
    assert_eq!(served(&env, "b"), (json!({"port": 80}), 2));
    assert!(
        wait_until(DEADLINE, || published_generations(&d) == vec![1, 2, 3]),
        "{:?}",
        published_generations(&d)
    );
}

#[test]
fn invalid_schema_is_e_schema_invalid_and_the_document_stays_served() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "50ms"]);
    env.write_schema_file("a.schema.json", "{\"type\": 12}");
    let s = wait_status(&d, &env, "a rejected", |s| doc(s, "a")["state"] == "error");
    assert_eq!(s["last_reload"]["rejected"], json!(["a"]), "{s:#}");
    assert_eq!(doc(&s, "a")["last_error"]["code"], "E_SCHEMA_INVALID");
    assert_eq!(doc(&s, "a")["generation"], json!(1));
    assert_eq!(doc(&s, "b")["state"], "ok");
    assert_eq!(s["generation"], json!(1));
    assert_eq!(s["counters"]["rejections"], json!(1));
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    let r = rejected_line(&d, 1);
    assert_eq!(text(&r, "level"), "WARN");
    assert_eq!(text(&r, "code"), "E_SCHEMA_INVALID");
    assert_eq!(num(&r, "serving"), Some(1));
    assert_eq!(published_generations(&d), vec![1]);
}

#[test]
fn poll_reports_a_vanished_file_missing_and_sighup_removes_it() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "30ms", "--debounce", "100ms"]);
    std::fs::remove_file(env.configs.join("b.toml")).expect("rm");
    let s = wait_status(&d, &env, "b missing", |s| doc(s, "b")["state"] == "missing");
    let b = doc(&s, "b");
    assert_eq!(b["last_error"]["code"], "E_MISSING", "{b:#}");
    assert_eq!(b["generation"], json!(1));
    assert_eq!(s["ok"], json!(false));
    assert_eq!(s["generation"], json!(1), "the watch never removes");
    assert_eq!(s["last_reload"]["trigger"], "watch", "{s:#}");
    assert_eq!(s["last_reload"]["removed"], json!([]));
    assert_eq!(served(&env, "b"), (json!({"port": 2}), 1), "still served");
    assert!(d.wait_event_count("document_missing", 1, DEADLINE));
    let m = &d.events("document_missing")[0];
    assert_eq!(text(m, "level"), "WARN");
    assert_eq!(text(m, "document"), "b");
    assert_eq!(num(m, "serving"), Some(1));
    assert!(
        d.events("document_removed").is_empty(),
        "the watch never removes"
    );

    d.signal(libc::SIGHUP);
    let s = wait_status(&d, &env, "b removed", |s| s["documents"].get("b").is_none());
    assert_eq!(s["generation"], json!(2), "{s:#}");
    assert_eq!(s["last_reload"]["trigger"], "signal");
    assert_eq!(s["last_reload"]["removed"], json!(["b"]));
    assert_eq!(s["ok"], json!(true));
    assert_eq!(get(&env, "/v1/config/b").status, 404);
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    assert!(d.wait_event_count("document_removed", 1, DEADLINE));
    assert!(wait_until(DEADLINE, || published_generations(&d) == vec![1, 2]));
    let p = &d.events("snapshot_published")[1];
    assert_eq!(names(p, "removed"), vec!["b"]);
}

#[test]
fn a_never_valid_document_is_rejected_and_never_published() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "50ms"]);
    env.write_schema("c", &port_schema());
    env.write_doc("c", "port = \"eighty\"\n");
    let s = wait_status(&d, &env, "c rejected", |s| doc(s, "c")["state"] == "error");
    let c = doc(&s, "c");
    assert_eq!(c["generation"], Value::Null, "never valid: {c:#}");
    assert_eq!(c["sha256"], Value::Null);
    assert_eq!(c["last_error"]["code"], "E_SCHEMA");
    assert_eq!(s["last_reload"]["rejected"], json!(["c"]));
    assert_eq!(s["ok"], json!(false));
    assert_eq!(s["generation"], json!(1));
    let r = get(&env, "/v1/config/c");
    assert_eq!(r.status, 404, "not served: {}", r.body);
    assert!(get(&env, "/v1/config").json()["documents"]
        .get("c")
        .is_none());
    let w = rejected_line(&d, 1);
    assert_eq!(text(&w, "document"), "c");
    assert_eq!(num(&w, "serving"), None, "nothing served for it");

    env.write_doc("c", "port = 80\n");
    let s = wait_status(&d, &env, "c accepted", |s| doc(s, "c")["state"] == "ok");
    assert_eq!(s["generation"], json!(2), "{s:#}");
    assert_eq!(doc(&s, "c")["generation"], json!(2));
    assert_eq!(s["last_reload"]["accepted"], json!(["c"]));
    assert_eq!(s["ok"], json!(true));
    assert_eq!(served(&env, "c"), (json!({"port": 80}), 2));
    assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
    assert!(wait_until(DEADLINE, || published_generations(&d) == vec![1, 2]));
}

#[test]
fn secrets_never_reach_the_logs() {
    let env = Env::new();
    env.write_schema(
        "a",
        &strict_schema(json!({
            "password": {"type": "string", "writeOnly": true, "minLength": 40}
        })),
    );
    let good = "a-long-enough-secret-value-for-the-schema";
    env.write_doc("a", &format!("password = \"{good}\"\n"));
    let d = start(&env, &["--poll-interval", "50ms"]);
    env.write_doc("a", "password = \"hunter2-short\"\n");
    let s = wait_status(&d, &env, "a rejected", |s| doc(s, "a")["state"] == "error");
    assert_eq!(doc(&s, "a")["last_error"]["code"], "E_SCHEMA", "{s:#}");
    // Not in the status either, not even in the error message.
    let body = get(&env, "/v1/status").body;
    assert!(!body.contains("hunter2"), "{body}");
    assert!(!body.contains(good), "{body}");
    // The last good value is still served (to the daemon's own user).
    assert_eq!(served(&env, "a"), (json!({"password": good}), 1));

    finished(&d, 2);
    assert_eq!(d.events("document_rejected").len(), 1);
    let all = d.stderr_lines().join("\n");
    assert!(!all.contains("hunter2"), "{all}");
    assert!(!all.contains("a-long-enough-secret"), "{all}");
}

#[test]
fn sigterm_and_sigint_stop_gracefully_with_exit_0() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let env = Env::new();
        two_docs(&env);
        let mut d = start(&env, &[]);
        assert_eq!(served(&env, "a"), (json!({"port": 1}), 1));
        d.signal(sig);
        let status = d.wait_exit(DEADLINE).expect("exits");
        assert_eq!(status.code(), Some(0), "{:#?}", d.stderr_lines());
        assert!(d.wait_event_count("shutdown", 1, DEADLINE));
        assert_eq!(d.events("shutdown").len(), 1);
        assert!(!env.socket().exists(), "socket removed on a clean exit");
    }
}

#[test]
fn a_storm_of_200_sighups_coalesces_and_the_daemon_stays_correct() {
    let env = Env::new();
    two_docs(&env);
    // Only the signals apply edits.
    let mut d = start(&env, &["--poll-interval", "0", "--no-watch"]);
    env.write_doc("a", "port = 11\n");
    for _ in 0..200 {
        d.signal(libc::SIGHUP);
    }
    let s = wait_status(&d, &env, "a's edit", |s| doc(s, "a")["generation"] == 2);
    assert_eq!(
        s["generation"],
        json!(2),
        "one generation for one edit: {s:#}"
    );
    assert_eq!(served(&env, "a"), (json!({"port": 11}), 2));
    // One more, after a change: the daemon still hears SIGHUP.
    env.write_doc("b", "port = 22\n");
    d.signal(libc::SIGHUP);
    // Startup, a's edit and b's edit are three reloads; waiting on the
    // counter (recorded after the publish), the status has caught up.
    let s = wait_status(&d, &env, "b's edit", |s| {
        doc(s, "b")["generation"] == 3 && reloads(s) >= 3
    });
    assert_eq!(s["generation"], json!(3), "{s:#}");
    assert_eq!(s["ok"], json!(true));
    assert_eq!(s["last_reload"]["trigger"], "signal");
    assert_eq!(served(&env, "a"), (json!({"port": 11}), 2));
    assert_eq!(served(&env, "b"), (json!({"port": 22}), 3));
    assert!(d.child.try_wait().expect("try_wait").is_none(), "alive");
    let reloads = reloads(&s);
    println!("200 SIGHUPs → {reloads} reloads");
    assert!(reloads < 100, "far fewer reloads than signals: {reloads}");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(DEADLINE).and_then(|s| s.code()), Some(0));
}

/// 60 documents, so that a reload has some work to do.
fn sixty_docs(env: &Env, port: u16) {
    for i in 0..60 {
        let name = format!("d{i:02}");
        env.write_schema(&name, &port_schema());
        env.write_doc(&name, &format!("port = {port}\n"));
    }
}

/// Every `reload_started` has its `reload_finished`, and `shutdown` is last
/// (call once the process has exited).
fn assert_no_reload_cut_short(d: &Daemon) {
    // The pipe may still be draining after the exit.
    assert!(
        d.wait_event_count("shutdown", 1, DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    let events: Vec<String> = d
        .json_logs()
        .iter()
        .filter_map(|v| common::log_event(v).map(str::to_string))
        .collect();
    let started = events.iter().filter(|e| *e == "reload_started").count();
    let finished = events.iter().filter(|e| *e == "reload_finished").count();
    assert_eq!(started, finished, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("shutdown"));
}

#[test]
fn sigterm_lets_the_in_flight_reload_finish() {
    let env = Env::new();
    sixty_docs(&env, 1);
    let mut d = start(&env, &["--poll-interval", "0"]);
    let s = status(&env);
    assert_eq!(s["documents"].as_object().map(|m| m.len()), Some(60));
    assert_eq!(s["generation"], json!(1));
    for i in 0..60 {
        env.write_doc(&format!("d{i:02}"), "port = 2\n");
    }
    d.signal(libc::SIGHUP);
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(0));
    // Whether or not the SIGHUP's reload got to start, none is cut short:
    // every start has its finish, and both come before `shutdown`.
    assert_no_reload_cut_short(&d);
}

#[test]
fn sigterm_during_an_api_reload_lets_it_finish_and_answers_its_caller() {
    let env = Env::new();
    sixty_docs(&env, 1);
    // The API call is the only trigger.
    let mut d = start(&env, &["--poll-interval", "0", "--no-watch"]);
    sixty_docs(&env, 2);
    let socket = env.socket();
    let caller = std::thread::spawn(move || http(&socket, "POST", "/v1/reload", None));
    // The reload has started (it may be done already: the answer must be
    // the same either way).
    assert!(
        d.wait_event_count("reload_started", 2, DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    d.signal(libc::SIGTERM);
    let r = caller
        .join()
        .expect("join")
        .expect("the caller is answered");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["trigger"], "api", "{v:#}");
    assert_eq!(v["generation"], json!(2), "the whole reload published");
    assert_eq!(v["accepted"].as_array().map(Vec::len), Some(60), "{v:#}");
    assert_eq!(v["ok"], json!(true));
    let status = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(0), "{:#?}", d.stderr_lines());
    assert_no_reload_cut_short(&d);
    let end = d.events("shutdown");
    assert_eq!(num(&end[0], "generation"), Some(2), "{end:?}");
}

#[test]
fn text_logs_have_no_colours_off_a_terminal_and_a_bad_level_is_a_usage_error() {
    let env = Env::new();
    two_docs(&env);
    // The env's own socket: never the shared default path.
    let args = vec![
        "run".to_string(),
        "--config-dir".into(),
        env.configs.display().to_string(),
        "--schema-dir".into(),
        env.schemas.display().to_string(),
        "--socket".into(),
        env.socket().display().to_string(),
        "--poll-interval".into(),
        "0".into(),
    ];
    let mut d = Daemon::spawn(&args, &[("HOTCONF_LOG_FORMAT", "text")]);
    assert!(d.wait_ready(&env.socket()), "{:#?}", d.stderr_lines());
    assert!(wait_until(DEADLINE, || d
        .stderr_lines()
        .iter()
        .any(|l| l.contains("event=\"reload_finished\""))));
    assert!(d.stderr_lines().iter().all(|l| !l.contains('\u{1b}')));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(DEADLINE).and_then(|s| s.code()), Some(0));

    let mut bad = args.clone();
    bad.extend(["--log-level".to_string(), "info,[".to_string()]);
    let mut d = Daemon::spawn(&bad, &[]);
    assert_eq!(d.wait_exit(DEADLINE).and_then(|s| s.code()), Some(2));
}
