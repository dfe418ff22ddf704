//! Reload history (`GET /v1/history`, `hotconf history`) and plans (`POST
//! /v1/plan`, `hotconf plan`) against the real daemon on its real socket,
//! with real files in temp directories. Edits are applied by explicit
//! reloads only (`--no-watch`, no poll), so every reload a test counts is
//! one it asked for.
//!
//! The unprivileged peer is uid 65534 (`curl` run as that user); those
//! tests need root to switch users and say so when skipped, as
//! tests/security.rs does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::{http, wait_until, Daemon, Env, DEADLINE};

/// The unprivileged peer.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `app`: a port and a name; `extra`: a flag.
fn app_schema() -> Value {
    common::strict_schema(json!({
        "port": {"type": "integer", "minimum": 1},
        "name": {"type": "string"},
    }))
}

fn start(env: &Env, extra: &[&str]) -> Daemon {
    let mut cmd = Command::new(common::bin());
    cmd.args(env.run_args())
        .args(["--poll-interval", "0", "--no-watch"])
        .args(extra)
        .stdin(Stdio::null());
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
    d
}

fn get(env: &Env, path: &str) -> Value {
    let r = http(&env.socket(), "GET", path, None).expect("GET");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// Root's explicit reload.
fn reload(env: &Env) -> Value {
    let r = http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn history(env: &Env) -> Vec<Value> {
    get(env, "/v1/history?limit=100")["entries"]
        .as_array()
        .expect("entries")
        .clone()
}

/// The `hotconf` client (as root) with `args` and `--socket`; (exit code,
/// stdout, stderr).
fn client(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).arg("--socket").arg(env.socket());
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(env.path())
        .stdin(Stdio::null())
        .output()
        .expect("run hotconf");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl` as uid 65534: (HTTP status, body).
fn curl_as_nobody(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "--unix-socket"])
        .arg(socket)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd
        .arg(format!("http://localhost{path}"))
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run curl (Debian package: curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lets other users reach the socket in the (0700) temp directory.
fn open_to_others(env: &Env) {
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn changes(doc: &Value) -> Vec<(String, String, Value, Value)> {
    doc["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or("").to_string(),
                c["pointer"].as_str().unwrap_or("").to_string(),
                c.get("old").cloned().unwrap_or(Value::Null),
                c.get("new").cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[test]
fn history_records_startup_edit_rejection_schema_change_and_removal_in_order() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_schema(
        "extra",
        &common::strict_schema(json!({"on": {"type": "boolean"}})),
    );
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    env.write_doc("extra", "on = true\n");
    let _d = start(&env, &[]);

    // 2: an accepted edit.
    env.write_doc("app", "port = 2\nname = \"a\"\n");
    reload(&env);
    // 3: a rejected edit (line 1, column 8: the value).
    env.write_doc("app", "port = \"x\"\nname = \"a\"\n");
    reload(&env);
    // 4: a schema change the served document still satisfies... on disk
    // the document is still the bad one, so first fix it.
    env.write_doc("app", "port = 3\nname = \"a\"\n");
    reload(&env);
    // 5: the schema changes (a new optional key): same bytes, new schema.
    let mut schema = app_schema();
    schema["properties"]["debug"] = json!({"type": "boolean"});
    env.write_schema("app", &schema);
    reload(&env);
    // 6: a removal.
    std::fs::remove_file(env.configs.join("extra.toml")).expect("rm");
    reload(&env);

    let h = history(&env);
    let ids: Vec<u64> = h.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![6, 5, 4, 3, 2, 1], "newest first: {h:#?}");
    let (removal, schema_change, fix, rejection, edit, startup) =
        (&h[0], &h[1], &h[2], &h[3], &h[4], &h[5]);

    assert_eq!(startup["trigger"], "startup");
    assert_eq!(startup["generation_before"], 0);
    assert_eq!(startup["generation_after"], 1);
    assert_eq!(startup["documents"]["app"]["result"], "accepted");
    assert_eq!(startup["documents"]["extra"]["result"], "accepted");
    assert_eq!(
        changes(&startup["documents"]["app"]),
        vec![
            ("added".into(), "/port".into(), Value::Null, json!(1)),
            ("added".into(), "/name".into(), Value::Null, json!("a")),
        ]
    );

    assert_eq!(edit["trigger"], "api");
    assert_eq!(
        (
            edit["generation_before"].as_u64(),
            edit["generation_after"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        changes(&edit["documents"]["app"]),
        vec![("changed".into(), "/port".into(), json!(1), json!(2))]
    );
    assert!(
        edit["documents"].get("extra").is_none(),
        "only what changed: {edit:#}"
    );

    assert_eq!(rejection["ok"], false);
    assert_eq!(
        rejection["generation_before"],
        rejection["generation_after"]
    );
    let r = &rejection["documents"]["app"];
    assert_eq!(r["result"], "rejected");
    assert_eq!(r["error"]["code"], "E_SCHEMA");
    assert_eq!(r["error"]["pointer"], "/port");
    assert_eq!(r["error"]["line"], 1);
    assert_eq!(r["error"]["column"], 8);
    assert!(r["error"]["file"].as_str().unwrap().ends_with("app.toml"));
    assert_eq!(
        r["sha256"].as_str(),
        Some(sha256_hex(b"port = \"x\"\nname = \"a\"\n").as_str())
    );

    // The fix is diffed against what was served (2), not the rejected file.
    assert_eq!(
        changes(&fix["documents"]["app"]),
        vec![("changed".into(), "/port".into(), json!(2), json!(3))]
    );

    let s = &schema_change["documents"]["app"];
    assert_eq!(s["result"], "accepted");
    assert_eq!(s["schema_changed"], true);
    assert!(changes(s).is_empty(), "same value: {s:#}");
    assert_eq!(s["sha256"], s["sha256_before"]);

    assert_eq!(removal["documents"]["extra"]["result"], "removed");
    assert_eq!(
        removal["documents"]["extra"]["sha256_before"].as_str(),
        Some(sha256_hex(b"on = true\n").as_str())
    );

    // `?since=` and `?limit=`.
    let since = get(&env, "/v1/history?since=4");
    let ids: Vec<u64> = since["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![6, 5]);
    assert_eq!(
        get(&env, "/v1/history?limit=1")["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The human form: one header per reload, one line per changed pointer.
    let (code, out, err) = client(&env, &["history", "-n", "6"]);
    assert_eq!(code, Some(0), "{err}");
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with("reload ")).collect();
    assert_eq!(headers.len(), 6, "{out}");
    assert!(headers[0].starts_with("reload 6  api  "), "{out}");
    assert!(
        headers[5].contains("startup") && headers[5].contains("generation 0 -> 1"),
        "{out}"
    );
    assert!(out.contains("        ~ /port: 1 -> 2\n"), "{out}");
    assert!(
        out.contains("E_SCHEMA") && out.contains("app.toml:1:8: /port:"),
        "{out}"
    );
    assert!(out.contains("removed"), "{out}");
    let (code, out, _) = client(&env, &["history", "-n", "2", "--format", "json"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
}

#[test]
fn history_keeps_only_the_last_n_reloads() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    let _d = start(&env, &["--history", "2"]);
    for port in 2..=4 {
        env.write_doc("app", &format!("port = {port}\nname = \"a\"\n"));
        reload(&env);
    }
    let body = get(&env, "/v1/history");
    assert_eq!(body["capacity"], 2);
    assert_eq!(body["latest"], 4);
    let h = body["entries"].as_array().unwrap();
    let ids: Vec<u64> = h.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![4, 3], "the oldest are dropped");
    assert_eq!(
        changes(&h[0]["documents"]["app"]),
        vec![("changed".into(), "/port".into(), json!(3), json!(4))]
    );
}

/// `app` with a secret `password`.
fn secret_env(password: &str) -> Env {
    let env = Env::new();
    env.write_schema(
        "app",
        &json!({
            "type": "object",
            "properties": {
                "port": {"type": "integer"},
                "password": {"type": "string", "writeOnly": true, "minLength": 12},
            },
            "required": ["port", "password"],
            "additionalProperties": false,
        }),
    );
    env.write_doc("app", &format!("port = 1\npassword = \"{password}\"\n"));
    env
}

#[test]
fn a_secret_change_shows_as_changed_without_its_value_or_hash_for_nobody() {
    if !is_root() {
        eprintln!("skipped: needs root to run a peer as another user");
        return;
    }
    let (old, new) = ("old-secret-password-1", "new-secret-password-2");
    let env = secret_env(old);
    open_to_others(&env);
    let _d = start(&env, &["--socket-mode", "0666"]);
    let text = format!("port = 1\npassword = \"{new}\"\n");
    env.write_doc("app", &text);
    reload(&env);
    let file_sha = sha256_hex(text.as_bytes());

    let root = get(&env, "/v1/history?limit=1");
    let doc = &root["entries"][0]["documents"]["app"];
    assert_eq!(
        changes(doc),
        vec![(
            "changed".into(),
            "/password".into(),
            json!("<redacted>"),
            json!("<redacted>")
        )]
    );
    assert_eq!(
        doc["sha256"].as_str(),
        Some(file_sha.as_str()),
        "root sees the source hash"
    );
    let root_text = root.to_string();
    assert!(
        !root_text.contains(old) && !root_text.contains(new),
        "{root_text}"
    );

    let (status, body) = curl_as_nobody(&env.socket(), "GET", "/v1/history?limit=10", None);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(old) && !body.contains(new), "{body}");
    assert!(
        !body.contains(&file_sha),
        "no source hash for nobody: {body}"
    );
    assert!(!body.contains(&sha256_hex(
        format!("port = 1\npassword = \"{old}\"\n").as_bytes()
    )));
    let v: Value = serde_json::from_str(&body).expect("json");
    let doc = &v["entries"][0]["documents"]["app"];
    assert_eq!(
        changes(doc),
        vec![(
            "changed".into(),
            "/password".into(),
            json!("<redacted>"),
            json!("<redacted>")
        )]
    );

    // A rejected candidate's hash is hidden from nobody too.
    let bad = "port = \"x\"\npassword = \"short\"\n";
    env.write_doc("app", bad);
    reload(&env);
    let (_, body) = curl_as_nobody(&env.socket(), "GET", "/v1/history?limit=1", None);
    assert!(body.contains("rejected"), "{body}");
    assert!(!body.contains(&sha256_hex(bad.as_bytes())), "{body}");
    let root = get(&env, "/v1/history?limit=1");
    assert_eq!(
        root["entries"][0]["documents"]["app"]["sha256"].as_str(),
        Some(sha256_hex(bad.as_bytes()).as_str())
    );
}

#[test]
fn a_blocking_history_query_wakes_on_a_rejection() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    let daemon = start(&env, &["--log-level", "debug"]);
    let latest = get(&env, "/v1/history")["latest"].as_u64().unwrap();
    let d = &daemon;
    let generation = get(&env, "/v1/status")["generation"].as_u64().unwrap();

    let socket = env.socket();
    let waiter = std::thread::spawn(move || {
        http(
            &socket,
            "GET",
            &format!("/v1/history?index={latest}&wait=600s"),
            None,
        )
        .expect("blocking history")
    });
    // Parked before the rejection happens (the daemon logs it at debug).
    assert!(
        wait_until(DEADLINE, || d
            .stderr_lines()
            .iter()
            .any(|l| l.contains("blocking history query waiting"))),
        "the history query never parked: {:#?}",
        d.stderr_lines()
    );
    env.write_doc("app", "port = 0\nname = \"a\"\n");
    let outcome = reload(&env);
    assert_eq!(outcome["rejected"], json!(["app"]));
    // Woken by the rejection, well before its 600 s wait would end.
    assert!(
        wait_until(DEADLINE, || waiter.is_finished()),
        "a rejection did not wake the blocking history query"
    );
    let answer = waiter.join().expect("waiter");
    assert_eq!(answer.status, 200);
    let v = answer.json();
    assert_eq!(v["latest"].as_u64(), Some(latest + 1));
    assert_eq!(v["entries"][0]["documents"]["app"]["result"], "rejected");
    assert_eq!(
        answer.header("x-hotconf-history-index"),
        Some((latest + 1).to_string().as_str())
    );
    // The snapshot did not move: a blocking config query would still wait.
    assert_eq!(
        get(&env, "/v1/status")["generation"].as_u64(),
        Some(generation)
    );
    // Nothing new: the query waits out its (short) wait and says so.
    let idle = get(
        &env,
        &format!("/v1/history?index={}&wait=200ms", latest + 1),
    );
    assert_eq!(idle["latest"].as_u64(), Some(latest + 1));
}

/// Everything a plan must not change: status (without uptime), history and
/// metrics.
fn observable(env: &Env) -> (Value, Value, String) {
    let mut status = get(env, "/v1/status");
    status.as_object_mut().unwrap().remove("uptime_s");
    let history = get(env, "/v1/history?limit=100");
    let metrics = http(&env.socket(), "GET", "/metrics", None)
        .expect("metrics")
        .body;
    // Samples of one family come in no fixed order; the process's own
    // metrics (CPU, memory, descriptors) move by themselves.
    let mut lines: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with("process_"))
        .collect();
    lines.sort_unstable();
    (status, history, lines.join("\n"))
}

#[test]
fn a_plan_shows_exactly_the_changed_pointers_and_never_changes_anything() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_schema(
        "extra",
        &common::strict_schema(json!({"on": {"type": "boolean"}})),
    );
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    env.write_doc("extra", "on = true\n");
    let _d = start(&env, &[]);
    let before = observable(&env);

    let cand = env.path().join("candidate");
    std::fs::create_dir(&cand).unwrap();
    std::fs::write(cand.join("app.toml"), "port = 5\nname = \"a\"\n").unwrap();
    let (code, out, err) = client(&env, &["plan", cand.join("app.toml").to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("~ /port: 1 -> 5"), "{out}");
    assert!(out.contains("extra  unchanged"), "{out}");
    assert!(out.contains("every document ok"), "{out}");
    // `check --against-daemon` is the same plan.
    let (code, same, _) = client(
        &env,
        &[
            "check",
            "--against-daemon",
            cand.join("app.toml").to_str().unwrap(),
        ],
    );
    assert_eq!((code, same.as_str()), (Some(0), out.as_str()));
    let (code, out, _) = client(
        &env,
        &[
            "plan",
            "--format",
            "json",
            cand.join("app.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        changes(&v["documents"]["app"]),
        vec![("changed".into(), "/port".into(), json!(1), json!(5))]
    );
    assert_eq!(v["documents"]["extra"]["result"], "unchanged");

    // A bad candidate: its errors, exit 1.
    std::fs::write(cand.join("app.toml"), "port = 0\nname = \"a\"\n").unwrap();
    let (code, out, _) = client(&env, &["plan", cand.join("app.toml").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("    app    rejected\n"), "{out}");
    assert!(out.contains("app.toml:1:8: E_SCHEMA /port:"), "{out}");
    assert!(out.contains("NOT OK"), "{out}");

    // The directory as it is on disk: a bad edit and a removal, not applied.
    env.write_doc("app", "port = \"x\"\nname = \"a\"\n");
    std::fs::remove_file(env.configs.join("extra.toml")).unwrap();
    let (code, out, _) = client(&env, &["plan"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("app    rejected") && out.contains("extra  removed"),
        "{out}"
    );
    // A bad body is refused, and changes nothing either.
    let r = http(&env.socket(), "POST", "/v1/plan", Some("{not json")).expect("plan");
    assert_eq!(r.status, 400);

    assert_eq!(
        observable(&env),
        before,
        "a plan changed what is observable"
    );
}

#[test]
fn a_plan_from_nobody_never_reveals_a_secret_or_its_hash() {
    if !is_root() {
        eprintln!("skipped: needs root to run a peer as another user");
        return;
    }
    let served = "served-secret-password";
    let env = secret_env(served);
    open_to_others(&env);
    let _d = start(&env, &["--socket-mode", "0666"]);
    let served_sha = sha256_hex(format!("port = 1\npassword = \"{served}\"\n").as_bytes());
    let before = observable(&env);

    let plan_of = |password: &str| {
        let body = json!({"documents": [{
            "name": "app",
            "content": format!("port = 2\npassword = \"{password}\"\n"),
        }]})
        .to_string();
        let (status, text) = curl_as_nobody(&env.socket(), "POST", "/v1/plan", Some(&body));
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains(served) && !text.contains(password), "{text}");
        assert!(!text.contains(&served_sha), "{text}");
        assert!(
            !text.contains(&sha256_hex(
                format!("port = 2\npassword = \"{password}\"\n").as_bytes()
            )),
            "{text}"
        );
        serde_json::from_str::<Value>(&text).expect("json")
    };
    // A right guess and a wrong one look the same: no oracle for the
    // served secret.
    let right = plan_of(served);
    let wrong = plan_of("a-wrong-guess-of-it");
    assert_eq!(right, wrong);
    assert_eq!(right["secrets_compared"], false);
    assert_eq!(
        changes(&right["documents"]["app"]),
        vec![("changed".into(), "/port".into(), json!(1), json!(2))]
    );
    // The directory as it is: nothing to reveal either.
    let (status, text) = curl_as_nobody(&env.socket(), "POST", "/v1/plan", None);
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(served) && !text.contains(&served_sha),
        "{text}"
    );

    // Root's plan compares the secret (as changed, never its value).
    let body = json!({"documents": [{"name": "app",
        "content": "port = 1\npassword = \"another-long-password\"\n"}]})
    .to_string();
    let r = http(&env.socket(), "POST", "/v1/plan", Some(&body)).expect("plan");
    let v = r.json();
    assert_eq!(v["secrets_compared"], true);
    assert_eq!(
        changes(&v["documents"]["app"]),
        vec![(
            "changed".into(),
            "/password".into(),
            json!("<redacted>"),
            json!("<redacted>")
        )]
    );
    assert!(!r.body.contains("another-long-password") && !r.body.contains(served));

    assert_eq!(
        observable(&env),
        before,
        "a plan changed what is observable"
    );
}

#[test]
fn plan_without_a_daemon_falls_back_to_check_and_says_no_diff_is_possible() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_doc("app", "port = 0\nname = \"a\"\n");
    let mut cmd = Command::new(common::bin());
    let out = cmd
        .args(["plan", "--config-dir"])
        .arg(&env.configs)
        .arg("--schema-dir")
        .arg(&env.schemas)
        .arg("--socket")
        .arg(env.socket())
        .env_remove("HOTCONF_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("no diff is possible"), "{stderr}");
    assert!(stdout.contains("E_SCHEMA"), "{stdout}");
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    let ok = Command::new(common::bin())
        .args(["plan", "--config-dir"])
        .arg(&env.configs)
        .arg("--schema-dir")
        .arg(&env.schemas)
        .arg("--socket")
        .arg(env.socket())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(ok.status.code(), Some(0));
    let _ = Duration::ZERO;
}

#[test]
fn status_shows_served_vs_on_disk_for_a_rejected_document() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    let _d = start(&env, &[]);
    let bad = "port = 0\nname = \"a\"\n";
    env.write_doc("app", bad);
    reload(&env);
    let (code, out, _) = client(&env, &["status"]);
    assert_eq!(code, Some(1));
    let served = &sha256_hex(b"port = 1\nname = \"a\"\n")[..12];
    let disk = &sha256_hex(bad.as_bytes())[..12];
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("app: serving generation 1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(served) && line.contains(disk), "{line}");
    assert!(out.contains("hotconf plan"), "{out}");
}

#[test]
fn an_implicit_reload_records_a_missing_file_and_its_recovery() {
    let env = Env::new();
    env.write_schema("app", &app_schema());
    env.write_doc("app", "port = 1\nname = \"a\"\n");
    let mut cmd = Command::new(common::bin());
    cmd.args(env.run_args())
        .args([
            "--no-watch",
            "--poll-interval",
            "100ms",
            "--debounce",
            "10ms",
        ])
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" || k == "WATCHDOG_USEC" {
            cmd.env_remove(k);
        }
    }
    let d = Daemon::from_command(cmd);
    assert!(d.wait_ready(&env.socket()), "{:#?}", d.stderr_lines());
    let text = std::fs::read(env.configs.join("app.toml")).unwrap();
    std::fs::remove_file(env.configs.join("app.toml")).unwrap();
    let result_of_newest = |env: &Env| {
        get(env, "/v1/history?limit=1")["entries"][0]["documents"]["app"]["result"]
            .as_str()
            .map(str::to_owned)
    };
    assert!(
        wait_until(DEADLINE, || result_of_newest(&env).as_deref()
            == Some("missing")),
        "{:#}",
        get(&env, "/v1/history")
    );
    let newest = &get(&env, "/v1/history?limit=1")["entries"][0];
    // Implicit: the poll, or the follow-up it scheduled for the debounce.
    assert!(
        ["poll", "watch"].contains(&newest["trigger"].as_str().unwrap()),
        "{newest:#}"
    );
    assert_eq!(newest["ok"], false);
    assert_eq!(newest["generation_before"], newest["generation_after"]);
    // The same bytes back: recovered, still nothing published.
    std::fs::write(env.configs.join("app.toml"), text).unwrap();
    assert!(
        wait_until(DEADLINE, || result_of_newest(&env).as_deref()
            == Some("recovered")),
        "{:#}",
        get(&env, "/v1/history")
    );
    assert_eq!(get(&env, "/v1/status")["generation"], 1);
}
