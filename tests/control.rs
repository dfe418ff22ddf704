//! The control socket end to end: the real `hotconf run` in a temp
//! directory, talked to over its real unix socket — by the test's HTTP
//! client, by `curl`, and by the `hotconf` CLI itself. Socket lifecycle
//! (mode from the first instant, second daemon refused, stale socket
//! replaced, removal on exit) and the CLI's output and exit codes.
//!
//! Edits are published with SIGHUP (explicit, immediate) or the checksum
//! poll (implicit), so these tests do not depend on the file watcher.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{http, log_field, sample, strict_schema, wait_until, Daemon, Env, DEADLINE};

fn port_schema() -> Value {
    strict_schema(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}))
}

fn two_docs(env: &Env) {
    env.write_schema("a", &port_schema());
    env.write_schema("b", &port_schema());
    env.write_doc("a", "port = 1\n");
    env.write_doc("b", "port = 2\n");
}

/// Starts `hotconf run` with `extra` flags and waits until it answers.
fn start(env: &Env, extra: &[&str]) -> Daemon {
    let mut args = env.run_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let d = Daemon::spawn(&args, &[]);
    assert!(
        d.wait_ready(&env.socket()),
        "not ready: {:#?}",
        d.stderr_lines()
    );
    d
}

fn get(env: &Env, path: &str) -> common::Response {
    http(&env.socket(), "GET", path, None).expect("request")
}

fn status(env: &Env) -> Value {
    get(env, "/v1/status").json()
}

/// Waits until `/v1/status` satisfies `cond`.
fn wait_status(env: &Env, cond: impl Fn(&Value) -> bool) -> bool {
    wait_until(DEADLINE, || {
        http(&env.socket(), "GET", "/v1/status", None)
            .map(|r| cond(&r.json()))
            .unwrap_or(false)
    })
}

/// Runs the `hotconf` CLI with a clean environment plus `envs`.
fn cli(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "RUNTIME_DIRECTORY" || k == "XDG_RUNTIME_DIR" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run hotconf")
}

fn cli_on(env: &Env, args: &[&str]) -> Output {
    let socket = env.socket();
    let socket = socket.to_str().expect("utf-8 path");
    let mut all = args.to_vec();
    all.extend(["--socket", socket]);
    cli(&all, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Raises this process's open-file limit to the hard limit (spawned
/// daemons inherit it).
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// Blocking queries the daemon has parked (it logs each at debug level;
/// start it with `--log-level info,hotconf=debug`).
fn parked(d: &Daemon) -> usize {
    d.stderr_lines()
        .iter()
        .filter(|l| l.contains("blocking query waiting"))
        .count()
}

/// `hotconf run` flags that make [`parked`] work.
const DEBUG: [&str; 2] = ["--log-level", "info,hotconf=debug"];

#[test]
fn every_endpoint_answers_over_the_real_socket() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "0"]);

    let r = get(&env, "/v1/status");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["generation"], json!(1));
    assert_eq!(v["documents"]["a"]["state"], "ok");
    assert_eq!(v["last_reload"]["trigger"], "startup");
    assert_eq!(v["last_reload"]["accepted"], json!(["a", "b"]));
    let instance = v["instance"].as_str().expect("instance").to_string();

    let r = get(&env, "/v1/config");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-instance"), Some(instance.as_str()));
    assert_eq!(
        r.json()["documents"],
        json!({"a": {"port": 1}, "b": {"port": 2}})
    );
    let r = get(&env, "/v1/config/b/port");
    assert_eq!((r.status, r.json()), (200, json!(2)));
    assert_eq!(r.header("x-hotconf-generation"), Some("1"));
    assert_eq!(get(&env, "/v1/config/zzz").status, 404);
    assert_eq!(get(&env, "/v1/config/a/nope").status, 404);
    assert_eq!(get(&env, "/nope").status, 404);
    let r = http(&env.socket(), "PUT", "/v1/config", None).expect("request");
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (405, json!("method_not_allowed"))
    );
    assert_eq!(get(&env, "/v1/reload").status, 405);
    assert_eq!(get(&env, "/metrics").status, 200);
    drop(d);
}

#[test]
fn curl_is_a_client() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "0"]);
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--unix-socket"])
        .arg(env.socket())
        .arg("http://localhost/v1/status")
        .output()
        .expect("curl installed");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], json!(true));
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "--unix-socket"])
        .arg(env.socket())
        .arg("http://localhost/v1/reload")
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["trigger"].clone(), v["ok"].clone()),
        (json!("api"), json!(true))
    );
}

#[test]
fn blocking_query_returns_promptly_after_an_edit() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "50ms"]);
    let socket = env.socket();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let r = http(&socket, "GET", "/v1/config/a?index=1&wait=60s", None).expect("request");
        (r, t.elapsed())
    });
    env.write_doc("a", "port = 11\n");
    let (r, took) = waiter.join().expect("join");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"port": 11}));
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn blocking_query_times_out_with_the_current_value_and_answers_at_once_when_ahead() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "0"]);
    let t = Instant::now();
    let r = get(&env, "/v1/config?index=1&wait=500ms");
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("1"));
    assert_eq!(r.json()["documents"]["a"], json!({"port": 1}));

    let t = Instant::now();
    let r = get(&env, "/v1/config?index=42&wait=60s");
    assert_eq!(r.header("x-hotconf-generation"), Some("1"));
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "index ahead must answer at once"
    );
}

#[test]
fn a_rejection_does_not_wake_a_blocking_query() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "50ms"]);
    let socket = env.socket();
    let waiter = std::thread::spawn(move || {
        http(&socket, "GET", "/v1/config?index=1&wait=60s", None).expect("request")
    });
    env.write_doc("a", "port = \"not a number\"\n");
    assert!(wait_status(&env, |v| v["documents"]["a"]["state"] == "error"));
    // Had the rejection answered the query, it would carry generation 1.
    env.write_doc("b", "port = 22\n");
    let r = waiter.join().expect("join");
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    let v = r.json();
    assert_eq!(v["documents"]["a"], json!({"port": 1}), "last good served");
    assert_eq!(v["documents"]["b"], json!({"port": 22}));
}

#[test]
fn a_thousand_concurrent_blocking_queries_answered_by_one_publish() {
    const N: usize = 1000;
    raise_fd_limit();
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "0", DEBUG[0], DEBUG[1]]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let conn = hotconf::client::transport::Connection::new(env.socket());
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let conn = conn.clone();
            rt.spawn(async move {
                conn.get(
                    "/v1/config?index=1&wait=120s",
                    Some(Duration::from_secs(150)),
                )
                .await
            })
        })
        .collect();
    assert!(
        wait_until(DEADLINE, || parked(&d) >= N),
        "only {} queries parked",
        parked(&d)
    );
    env.write_doc("b", "port = 22\n");
    let t = Instant::now();
    d.signal(libc::SIGHUP);
    let answers = rt.block_on(async {
        let mut out = Vec::with_capacity(N);
        for task in tasks {
            out.push(task.await.expect("task").expect("answer"));
        }
        out
    });
    let took = t.elapsed();
    assert_eq!(answers.len(), N);
    for a in &answers {
        let v = a.json_ok().expect("200 JSON");
        assert_eq!(v["generation"], json!(2));
        assert_eq!(v["documents"]["b"], json!({"port": 22}));
    }
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn reload_over_the_api_with_a_good_and_a_bad_file() {
    let env = Env::new();
    two_docs(&env);
    // Several edits, then one explicit reload: the watcher must not apply
    // them first.
    let _d = start(&env, &["--poll-interval", "0", "--no-watch"]);
    env.write_doc("a", "port = 10\n");
    let r = http(&env.socket(), "POST", "/v1/reload", None).expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["trigger"], "api");
    assert_eq!(v["accepted"], json!(["a"]));
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["generation"], json!(2));

    env.write_doc("b", "port = 0\n");
    let v = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("request")
        .json();
    assert_eq!(v["rejected"], json!(["b"]));
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["generation"], json!(2), "nothing published");
    let err = &v["not_ok"]["b"]["last_error"];
    assert_eq!(err["code"], "E_SCHEMA");
    assert_eq!(err["errors"][0]["pointer"], "/port");
    assert_eq!(err["errors"][0]["line"], json!(1));
    assert_eq!(get(&env, "/v1/config/b").json(), json!({"port": 2}));
}

fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse")
}

#[test]
fn metrics_over_the_socket_and_over_metrics_listen() {
    let env = Env::new();
    two_docs(&env);
    let d = start(
        &env,
        // An edit, then one explicit reload whose outcome the metrics
        // count: the watcher must not apply it first.
        &[
            "--poll-interval",
            "0",
            "--no-watch",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    env.write_doc("b", "port = 0\n");
    let v = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("request")
        .json();
    assert_eq!(v["rejected"], json!(["b"]));

    let scrape = parse_metrics(&get(&env, "/metrics").body);
    assert_eq!(sample(&scrape, "hotconf_generation", &[]), Some(1.0));
    let startup_ok = [("trigger", "startup"), ("result", "ok")];
    assert_eq!(
        sample(&scrape, "hotconf_reloads_total", &startup_ok),
        Some(1.0)
    );
    let api_rejected = [("trigger", "api"), ("result", "rejected")];
    assert_eq!(
        sample(&scrape, "hotconf_reloads_total", &api_rejected),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "hotconf_last_reload_successful", &[]),
        Some(0.0)
    );
    let ts = sample(
        &scrape,
        "hotconf_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(ts.is_some_and(|t| t > 1.6e9), "{ts:?}");
    assert_eq!(
        sample(&scrape, "hotconf_document_valid", &[("document", "a")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "hotconf_document_valid", &[("document", "b")]),
        Some(0.0)
    );
    let sha_a = status(&env)["documents"]["a"]["sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    let info = [("document", "a"), ("sha256", sha_a.as_str())];
    assert_eq!(sample(&scrape, "hotconf_document_info", &info), Some(1.0));
    assert!(scrape.samples.iter().any(|s| {
        s.metric == "hotconf_reload_duration_seconds"
            && matches!(&s.value, prometheus_parse::Value::Histogram(h) if !h.is_empty())
    }));

    // The daemon logs the TCP address it bound (port 0 = any free port).
    let addr = d
        .json_logs()
        .iter()
        .find_map(|l| {
            log_field(l, "metrics_addr")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .expect("metrics_addr logged");
    let body = tcp_get(&addr, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let scrape = parse_metrics(body.split("\r\n\r\n").nth(1).unwrap_or(""));
    assert_eq!(sample(&scrape, "hotconf_generation", &[]), Some(1.0));
    assert!(tcp_get(&addr, "/v1/status").starts_with("HTTP/1.1 404"));
    assert!(tcp_get(&addr, "/v1/config").starts_with("HTTP/1.1 404"));
}

fn tcp_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// Watches `dir` from before the daemon starts until the socket appears,
/// asserting at every look that nothing reachable is more open than
/// `mode`: the socket itself, and any staging directory (0700).
fn assert_no_window(env: &Env, extra: &[&str], mode: u32) -> Daemon {
    let dir = env.path().join("run");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.join("hotconf.sock");
    let mut args = env.run_args();
    let i = args.iter().position(|a| a == "--socket").expect("--socket");
    args[i + 1] = socket.display().to_string();
    args.extend(extra.iter().map(|s| s.to_string()));
    let d = Daemon::spawn(&args, &[]);
    let end = Instant::now() + DEADLINE;
    let mut looks = 0u64;
    loop {
        looks += 1;
        for entry in std::fs::read_dir(&dir).expect("ls").flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let m = meta.permissions().mode() & 0o777;
            if meta.file_type().is_socket() {
                assert_eq!(m, mode, "socket seen with mode {m:o} after {looks} looks");
            } else if meta.is_dir() {
                assert_eq!(m & 0o077, 0, "staging dir {:?} is {m:o}", entry.file_name());
            }
        }
        if socket.exists() {
            break;
        }
        assert!(
            Instant::now() < end,
            "socket never appeared: {:#?}",
            d.stderr_lines()
        );
        std::thread::yield_now();
    }
    d
}

#[test]
fn socket_is_created_with_its_final_mode_and_group_from_the_first_instant() {
    let env = Env::new();
    two_docs(&env);
    let d = assert_no_window(&env, &["--poll-interval", "0"], 0o660);
    drop(d);

    let env = Env::new();
    two_docs(&env);
    let d = assert_no_window(
        &env,
        &[
            "--poll-interval",
            "0",
            "--socket-mode",
            "600",
            "--socket-group",
            "1",
        ],
        0o600,
    );
    let meta = std::fs::metadata(env.path().join("run/hotconf.sock")).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 1);
    drop(d);
}

#[test]
fn a_second_daemon_on_a_live_socket_exits_1_naming_it() {
    let env = Env::new();
    two_docs(&env);
    let _first = start(&env, &["--poll-interval", "0"]);
    let mut second = Daemon::spawn(&env.run_args(), &[]);
    let status = second.wait_exit(DEADLINE).expect("second exits");
    assert_eq!(status.code(), Some(1));
    let socket = env.socket().display().to_string();
    let err = second.stderr_lines().join("\n");
    assert!(err.contains(&socket) && err.contains("already"), "{err}");
    assert_eq!(status_code(&env), 200, "first daemon still serving");
    assert_eq!(
        second.events("startup").len(),
        0,
        "refused before doing any work"
    );
}

fn status_code(env: &Env) -> u16 {
    get(env, "/v1/status").status
}

#[test]
fn a_stale_socket_is_replaced_and_the_socket_is_removed_on_exit() {
    let env = Env::new();
    two_docs(&env);
    // A socket file nobody listens on (a daemon that was killed -9).
    drop(std::os::unix::net::UnixListener::bind(env.socket()).expect("bind"));
    assert!(env.socket().exists());
    let mut d = start(&env, &["--poll-interval", "0"]);
    assert_eq!(status_code(&env), 200);

    d.signal(libc::SIGTERM);
    let status = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(!env.socket().exists(), "socket removed on clean exit");
    let left: Vec<_> = std::fs::read_dir(env.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".hc"))
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn sigterm_answers_an_in_flight_blocking_query() {
    let env = Env::new();
    two_docs(&env);
    let mut d = start(&env, &["--poll-interval", "0", DEBUG[0], DEBUG[1]]);
    let socket = env.socket();
    let waiter = std::thread::spawn(move || {
        http(&socket, "GET", "/v1/config?index=1&wait=600s", None).expect("request")
    });
    assert!(wait_until(DEADLINE, || parked(&d) == 1));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(DEADLINE).and_then(|s| s.code()), Some(0));
    let r = waiter.join().expect("join");
    assert_eq!(r.status, 200);
}

#[test]
fn cli_status_get_and_exit_codes() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "50ms"]);

    let o = cli_on(&env, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("hotconf: ok, generation 1, instance "),
        "{text}"
    );
    let sha_a = status(&env)["documents"]["a"]["sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("a ") && l.contains(" ok ") && l.contains(&sha_a[..12])),
        "{text}"
    );
    assert!(text.contains("last reload: startup"), "{text}");

    let o = cli_on(&env, &["status", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).expect("raw JSON");
    assert_eq!(v["generation"], json!(1));

    let o = cli_on(&env, &["get", "a"]);
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "{\n  \"port\": 1\n}\n".into())
    );
    let o = cli_on(&env, &["get", "a/port"]);
    assert_eq!(stdout(&o), "1\n");
    let o = cli_on(&env, &["get", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));

    // A rejected edit: status exits 1 and prints the error compiler style.
    env.write_doc("b", "port = \"x\"\n");
    assert!(wait_status(&env, |v| v["ok"] == json!(false)));
    let o = cli_on(&env, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    let line = format!(
        "{}:1:8: E_SCHEMA /port: ",
        env.configs.join("b.toml").display()
    );
    assert!(text.lines().any(|l| l.starts_with(&line)), "{text}");
    assert!(text.starts_with("hotconf: NOT OK"), "{text}");
}

#[test]
fn cli_reload_prints_what_it_did_and_fails_when_something_is_not_ok() {
    let env = Env::new();
    two_docs(&env);
    // Several edits, then one explicit reload: the watcher must not apply
    // them first.
    let _d = start(&env, &["--poll-interval", "0", "--no-watch"]);
    env.write_doc("a", "port = 5\n");
    let o = cli_on(&env, &["reload"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("accepted: a\n"), "{text}");
    assert!(text.contains("rejected: -\n"), "{text}");

    env.write_doc("b", "port = [\n");
    std::fs::remove_file(env.configs.join("a.toml")).expect("rm");
    let o = cli_on(&env, &["reload"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("rejected: b\n"), "{text}");
    assert!(text.contains("removed:  a\n"), "{text}");
    let prefix = format!("{}:", env.configs.join("b.toml").display());
    assert!(
        text.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(" E_PARSE ")),
        "{text}"
    );
}

#[test]
fn cli_watch_prints_one_line_per_new_generation() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "0"]);
    let socket = env.socket();
    let mut watch = Daemon::from_command({
        let mut c = Command::new(common::bin());
        c.args(["watch", "--socket"]).arg(&socket);
        c
    });
    let mut watch_b = Daemon::from_command({
        let mut c = Command::new(common::bin());
        c.args(["watch", "b", "--socket"]).arg(&socket);
        c
    });
    // The first line of each is the current generation.
    let instance = status(&env)["instance"].clone();
    assert!(wait_until(DEADLINE, || watch.stdout_lines().len() == 1));
    let first: Value = serde_json::from_str(&watch.stdout_lines()[0]).expect("json line");
    assert_eq!(
        first,
        json!({"generation": 1, "instance": instance, "changed": ["a", "b"], "removed": []})
    );
    assert!(wait_until(DEADLINE, || watch_b.stdout_lines().len() == 1));
    let first: Value = serde_json::from_str(&watch_b.stdout_lines()[0]).expect("json line");
    assert_eq!(first["changed"], json!(["b"]));

    env.write_doc("a", "port = 100\n");
    let v = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("reload")
        .json();
    assert_eq!(v["generation"], json!(2));
    assert!(wait_until(DEADLINE, || watch.stdout_lines().len() >= 2));
    let line: Value = serde_json::from_str(&watch.stdout_lines()[1]).expect("json line");
    assert_eq!(
        line,
        json!({"generation": 2, "instance": instance, "changed": ["a"], "removed": []})
    );

    std::fs::remove_file(env.configs.join("b.toml")).expect("rm");
    http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    assert!(wait_until(DEADLINE, || watch.stdout_lines().len() >= 3));
    let line: Value = serde_json::from_str(&watch.stdout_lines()[2]).expect("json line");
    assert_eq!(line["generation"], json!(3));
    assert_eq!(line["removed"], json!(["b"]));
    // The `watch b` client saw only b's removal, not a's change.
    assert!(wait_until(DEADLINE, || watch_b.stdout_lines().len() >= 2));
    let lines = watch_b.stdout_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let line: Value = serde_json::from_str(&lines[1]).expect("json line");
    assert_eq!(line["changed"], json!([]));
    assert_eq!(line["removed"], json!(["b"]));
    let _ = watch.child.kill();
    let _ = watch_b.child.kill();
    let _ = watch.wait_exit(DEADLINE);
}

#[test]
fn cli_when_no_daemon_runs_says_which_socket_it_tried() {
    let env = Env::new();
    let socket = env.socket();
    for args in [
        vec!["status"],
        vec!["get", "a"],
        vec!["reload"],
        vec!["watch"],
    ] {
        let o = cli_on(&env, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(&socket.display().to_string()), "{err}");
        assert!(stdout(&o).is_empty());
    }
    // Without --socket the path comes from the environment (SPEC §4).
    let o = cli(&["status"], &[("RUNTIME_DIRECTORY", env.path())]);
    assert_eq!(o.status.code(), Some(1));
    let tried = env.path().join("hotconf.sock");
    assert!(
        stderr(&o).contains(&tried.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cli_refuses_a_socket_served_by_another_user() {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a daemon as another user");
        return;
    }
    let env = Env::new();
    two_docs(&env);
    // Let uid 65534 read the documents and own the socket's directory.
    for p in [env.path(), &env.configs, &env.schemas] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for dir in [&env.configs, &env.schemas] {
        for e in std::fs::read_dir(dir).expect("ls").flatten() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
    }
    // A directory anyone may write to: anyone could have planted the socket
    // (a socket of another uid in a directory only it and root may write
    // to is believed: tests/trust.rs).
    let run = env.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).expect("chown");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = run.join("hotconf.sock");
    let mut cmd = Command::new(common::bin());
    let mut args = env.run_args();
    let i = args.iter().position(|a| a == "--socket").expect("--socket");
    args[i + 1] = socket.display().to_string();
    args.extend([
        "--poll-interval".into(),
        "0".into(),
        "--socket-mode".into(),
        "0666".into(),
    ]);
    cmd.args(&args).uid(65534).gid(65534);
    let d = Daemon::from_command(cmd);
    assert!(d.wait_ready(&socket), "{:#?}", d.stderr_lines());

    // Root's client refuses to believe a daemon run by uid 65534 there.
    let o = cli(
        &["status", "--socket", socket.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("uid 65534"), "{}", stderr(&o));

    // The daemon, for its part, trusts root and its own uid: root may reload.
    let r = http(&socket, "POST", "/v1/reload", None).expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn untrusted_peers_see_redacted_values_and_may_not_reload() {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a peer as another user");
        return;
    }
    let env = Env::new();
    env.write_schema(
        "a",
        &strict_schema(json!({
            "port": {"type": "integer"},
            "password": {"type": "string", "writeOnly": true},
        })),
    );
    env.write_doc("a", "port = 1\npassword = \"hunter2\"\n");
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = start(&env, &["--poll-interval", "0", "--socket-mode", "0666"]);
    let as_nobody = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(env.socket())
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let config: Value =
        serde_json::from_str(&as_nobody(&["http://localhost/v1/config/a"])).expect("json");
    assert_eq!(config, json!({"port": 1, "password": "<redacted>"}));
    let st: Value =
        serde_json::from_str(&as_nobody(&["http://localhost/v1/status"])).expect("json");
    let root_st = status(&env);
    assert_ne!(
        st["documents"]["a"]["sha256"], root_st["documents"]["a"]["sha256"],
        "no source hash of a document with secrets for untrusted peers"
    );
    let metrics = as_nobody(&["http://localhost/metrics"]);
    let reload = as_nobody(&["-X", "POST", "http://localhost/v1/reload"]);
    let reload: Value = serde_json::from_str(&reload).expect("json");
    assert_eq!(reload["code"], "forbidden");
    // Root sees the real value.
    assert_eq!(get(&env, "/v1/config/a/password").json(), json!("hunter2"));
    // The secret is in no answer to the untrusted peer and in no log line.
    let everything = format!("{config}{st}{metrics}{}", d.stderr_lines().join("\n"));
    assert!(!everything.contains("hunter2"));
    assert!(
        d.stderr_lines()
            .iter()
            .any(|l| l.contains("untrusted peer") && l.contains("65534")),
        "403 logged with the peer's uid"
    );
}

#[test]
fn daemon_and_client_agree_on_the_socket_from_the_environment() {
    let env = Env::new();
    two_docs(&env);
    let runtime = env.path().join("runtime");
    std::fs::create_dir(&runtime).expect("mkdir");
    let mut args = env.run_args();
    let i = args.iter().position(|a| a == "--socket").expect("--socket");
    args.drain(i..i + 2);
    args.extend(["--poll-interval".into(), "0".into()]);
    let runtime_str = runtime.to_str().expect("utf-8");
    let d = Daemon::spawn(&args, &[("RUNTIME_DIRECTORY", runtime_str)]);
    let socket = runtime.join("hotconf.sock");
    assert!(d.wait_ready(&socket), "{:#?}", d.stderr_lines());
    let o = cli(&["status"], &[("RUNTIME_DIRECTORY", &runtime)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // XDG_RUNTIME_DIR comes after RUNTIME_DIRECTORY, for both.
    let o = cli(
        &["get", "a/port"],
        &[
            ("RUNTIME_DIRECTORY", &runtime),
            ("XDG_RUNTIME_DIR", env.path()),
        ],
    );
    assert_eq!(stdout(&o), "1\n");
    // (Unless a system daemon's socket exists: clients try it first.)
    if !Path::new(hotconf::control::paths::SYSTEM_SOCKET).exists() {
        let o = cli(&["get", "a/port"], &[("XDG_RUNTIME_DIR", &runtime)]);
        assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));
    }
}

#[test]
fn through_the_socket_an_implicit_reload_reports_missing_and_an_explicit_one_removes() {
    let env = Env::new();
    two_docs(&env);
    let _d = start(&env, &["--poll-interval", "50ms", "--debounce", "50ms"]);
    std::fs::remove_file(env.configs.join("b.toml")).expect("rm");
    assert!(wait_status(&env, |v| v["documents"]["b"]["state"] == "missing"));
    let v = status(&env);
    assert_eq!(
        v["generation"],
        json!(1),
        "missing is status, not a generation"
    );
    assert_eq!(v["documents"]["b"]["last_error"]["code"], "E_MISSING");
    assert_eq!(v["ok"], json!(false));
    assert_eq!(
        get(&env, "/v1/config/b").json(),
        json!({"port": 2}),
        "last good served"
    );

    let o = cli_on(&env, &["reload"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("removed:  b\n"), "{}", stdout(&o));
    let v = status(&env);
    assert_eq!(v["generation"], json!(2));
    assert_eq!(v["ok"], json!(true));
    assert!(v["documents"].get("b").is_none(), "{v}");
    assert_eq!(get(&env, "/v1/config/b").status, 404);
}

#[test]
fn through_the_socket_all_or_nothing_and_identical_bytes() {
    let env = Env::new();
    two_docs(&env);
    // Several edits, then one explicit reload: the watcher must not apply
    // them first.
    let _d = start(
        &env,
        &["--poll-interval", "0", "--all-or-nothing", "--no-watch"],
    );
    env.write_doc("a", "port = 10\n");
    env.write_doc("b", "port = 0\n");
    let v = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("reload")
        .json();
    assert_eq!(
        v["generation"],
        json!(1),
        "one rejection rejects everything"
    );
    assert_eq!(v["ok"], json!(false));
    assert_eq!(get(&env, "/v1/config/a/port").json(), json!(1));

    env.write_doc("b", "port = 2\n");
    let v = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("reload")
        .json();
    assert_eq!(
        (v["generation"].clone(), v["ok"].clone()),
        (json!(2), json!(true))
    );
    // b's content is what was served all along: only a changes.
    assert_eq!(v["accepted"], json!(["a"]));

    // Rewriting identical bytes: an explicit reload, but no generation.
    env.write_doc("a", "port = 10\n");
    let v = http(&env.socket(), "POST", "/v1/reload", None)
        .expect("reload")
        .json();
    assert_eq!(v["generation"], json!(2));
    assert_eq!(v["accepted"], json!([]));
    assert_eq!(status(&env)["documents"]["a"]["generation"], json!(2));
}
