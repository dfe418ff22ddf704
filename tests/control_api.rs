//! The control API in-process: a real `Store` that the test publishes into
//! by hand (through its one write side, claimed with `HandWriter`), served by `control::Server` on a real unix socket in a temp
//! directory, with a stand-in reloader. Covers every endpoint and status
//! code, blocking queries and shutdown without depending on the pipeline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hotconf::control::{Context, ReloadFuture, ReloadService, Running, Server, ServerOptions};
use hotconf::control::{Limits, SocketOptions};
use hotconf::observe::metrics::Metrics;
use hotconf::reload::{ReloadObserver, ReloaderGone};
use hotconf::store::status::{DocState, DocStatus, LastError, ReloadOutcome, Status, Trigger};
use hotconf::store::testing::HandWriter;
use hotconf::{Code, Problem, Rejection, ServedDocument, Snapshot, Store};
use serde_json::{json, Value};

use common::{http, sample, DEADLINE};

/// What the stand-in reloader publishes on the next `POST /v1/reload`.
type Prepared = (Option<Snapshot>, Status, ReloadOutcome);

/// A reloader that applies a prepared result, as the real one would.
struct FakeReloader {
    store: Arc<Store>,
    writer: Arc<HandWriter>,
    metrics: Arc<Metrics>,
    next: Mutex<Option<Prepared>>,
}

impl ReloadService for FakeReloader {
    fn reload(&self, trigger: Trigger) -> ReloadFuture<'_> {
        Box::pin(async move {
            let prepared = self.next.lock().expect("lock").take();
            let Some((snapshot, status, mut outcome)) = prepared else {
                return Err(ReloaderGone);
            };
            outcome.trigger = trigger;
            if let Some(s) = snapshot {
                self.writer.publish(s);
            }
            self.writer.set_status(status.clone());
            self.metrics
                .reload_finished(&outcome, &status, &self.store.load_full());
            Ok(outcome)
        })
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    store: Arc<Store>,
    writer: Arc<HandWriter>,
    reloader: Arc<FakeReloader>,
    running: Option<Running>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("hotconf.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store = Arc::new(Store::new("test-instance".into()));
        let writer = Arc::new(HandWriter::claim(&store).expect("a fresh store's writer"));
        let metrics = Arc::new(Metrics::new());
        let reloader = Arc::new(FakeReloader {
            store: store.clone(),
            writer: writer.clone(),
            metrics: metrics.clone(),
            next: Mutex::new(None),
        });
        let opts = ServerOptions {
            socket: SocketOptions {
                path: socket.clone(),
                mode: 0o660,
                group: None,
            },
            metrics_listen: Some("127.0.0.1:0".parse().expect("addr")),
            limits: Limits::default(),
        };
        let server = Server::bind(&opts).expect("bind");
        let ctx = Context {
            store: store.clone(),
            reloader: reloader.clone(),
            metrics,
            outputs: None,
            history: None,
            planner: None,
        };
        let running = {
            let _guard = rt.enter();
            server.start(ctx).expect("start")
        };
        Fixture {
            rt,
            store,
            writer,
            reloader,
            running: Some(running),
            socket,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> common::Response {
        http(&self.socket, "GET", path, None).expect("request")
    }

    /// Blocking queries parked in the server.
    fn waiting(&self) -> usize {
        self.running.as_ref().map_or(0, |r| r.waiting_queries())
    }

    /// Open connections on the socket.
    fn connections(&self) -> usize {
        self.running.as_ref().map_or(0, |r| r.open_connections())
    }

    fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn served(name: &str, value: Value, generation: u64) -> (String, Arc<ServedDocument>) {
    let text = value.to_string();
    let sha = hotconf::pipeline::document::sha256_hex(text.as_bytes());
    let value = Arc::new(value);
    (
        name.to_string(),
        Arc::new(ServedDocument {
            value: value.clone(),
            redacted: value,
            has_secrets: false,
            sha256: sha.clone(),
            redacted_sha256: sha,
            generation,
            loaded_at: SystemTime::now(),
            source: PathBuf::from(format!("configs/{name}.toml")),
            schema_sha256: "s".repeat(64),
            typed: None,
            bodies: Default::default(),
        }),
    )
}

fn snapshot(generation: u64, docs: Vec<(String, Arc<ServedDocument>)>) -> Snapshot {
    Snapshot {
        generation,
        published_at: SystemTime::now(),
        documents: docs.into_iter().collect(),
    }
}

fn ok_status(names: &[&str]) -> Status {
    let mut s = Status::default();
    for n in names {
        s.documents.insert(
            n.to_string(),
            DocStatus {
                state: DocState::Ok,
                source: PathBuf::from(format!("configs/{n}.toml")),
                last_error: None,
            },
        );
    }
    s
}

fn schema_error(name: &str) -> DocStatus {
    DocStatus {
        state: DocState::Error,
        source: PathBuf::from(format!("configs/{name}.toml")),
        last_error: Some(LastError {
            rejection: Rejection::new(
                Code::Schema,
                format!("configs/{name}.toml"),
                Problem::at("/port", 2, 8, "\"x\" is not of type \"integer\""),
            ),
            sha256: Some("c".repeat(64)),
            at: SystemTime::now(),
        }),
    }
}

fn outcome(accepted: &[&str], rejected: &[&str], generation: u64) -> ReloadOutcome {
    ReloadOutcome {
        trigger: Trigger::Api,
        at: SystemTime::now(),
        duration: Duration::from_millis(3),
        accepted: accepted.iter().map(|s| s.to_string()).collect(),
        rejected: rejected.iter().map(|s| s.to_string()).collect(),
        removed: vec![],
        generation,
        waited: vec![],
        deferred: vec![],
    }
}

/// gen 1: app and db; gen 2: app changed.
fn two_generations(f: &Fixture) {
    f.writer.publish(snapshot(
        1,
        vec![
            served("app", json!({"server": {"port": 8080, "a/b": true}}), 1),
            served("db", json!({"url": "postgres://x"}), 1),
        ],
    ));
    f.writer.publish(snapshot(
        2,
        vec![
            served("app", json!({"server": {"port": 9090, "a/b": true}}), 2),
            served("db", json!({"url": "postgres://x"}), 1),
        ],
    ));
    f.writer.set_status(ok_status(&["app", "db"]));
}

#[test]
fn status_has_every_field_of_the_spec() {
    let f = Fixture::new();
    two_generations(&f);
    let mut st = ok_status(&["app", "db"]);
    st.documents.insert("broken".into(), schema_error("broken"));
    st.last_reload = Some(outcome(&["app"], &["broken"], 2));
    st.counters.reloads = 2;
    st.counters.rejections = 1;
    st.watch_degraded = Some("inotify limit reached".into());
    f.writer.set_status(st);

    let r = f.get("/v1/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    assert_eq!(r.header("x-hotconf-instance"), Some("test-instance"));
    let v = r.json();
    for k in [
        "instance",
        "generation",
        "published_at",
        "uptime_s",
        "ok",
        "documents",
        "last_reload",
        "counters",
        "watch",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["ok"], json!(false), "a rejected document makes ok false");
    assert_eq!(v["generation"], json!(2));
    let app = &v["documents"]["app"];
    assert_eq!(app["state"], "ok");
    assert_eq!(app["generation"], json!(2));
    assert_eq!(app["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(app["source"], "configs/app.toml");
    assert!(app["loaded_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(app["last_error"], Value::Null);
    let broken = &v["documents"]["broken"];
    assert_eq!(broken["state"], "error");
    assert_eq!(broken["generation"], Value::Null, "never valid");
    let err = &broken["last_error"];
    assert_eq!(err["code"], "E_SCHEMA");
    assert_eq!(err["sha256"].as_str().map(str::len), Some(64));
    assert!(err["at"].as_str().is_some());
    assert_eq!(
        err["errors"][0],
        json!({"pointer": "/port", "line": 2, "column": 8, "message": "\"x\" is not of type \"integer\""})
    );
    let lr = &v["last_reload"];
    assert_eq!(lr["trigger"], "api");
    assert_eq!(lr["duration_ms"], json!(3));
    assert_eq!(lr["accepted"], json!(["app"]));
    assert_eq!(lr["rejected"], json!(["broken"]));
    assert_eq!(lr["removed"], json!([]));
    assert_eq!(v["counters"], json!({"reloads": 2, "rejections": 1}));
    assert_eq!(
        v["watch"],
        json!({"ok": false, "degraded_reason": "inotify limit reached"})
    );
}

#[test]
fn config_endpoints_headers_and_errors() {
    let f = Fixture::new();
    two_generations(&f);

    let r = f.get("/v1/config");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    assert_eq!(r.header("x-hotconf-instance"), Some("test-instance"));
    assert_eq!(
        r.json(),
        json!({"instance": "test-instance", "generation": 2, "documents": {
            "app": {"server": {"port": 9090, "a/b": true}},
            "db": {"url": "postgres://x"}}})
    );

    // A document's own generation, not the snapshot's.
    let r = f.get("/v1/config/db");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("1"));
    assert_eq!(r.json(), json!({"url": "postgres://x"}));

    let r = f.get("/v1/config/app/server/port");
    assert_eq!((r.status, r.json()), (200, json!(9090)));
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    // JSON pointer escapes (~1 is '/').
    let r = f.get("/v1/config/app/server/a~1b");
    assert_eq!((r.status, r.json()), (200, json!(true)));

    for (method, path, status, code) in [
        ("GET", "/v1/config/nope", 404, "not_found"),
        ("GET", "/v1/config/app/server/nope", 404, "not_found"),
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("POST", "/v1/config", 405, "method_not_allowed"),
        ("DELETE", "/v1/status", 405, "method_not_allowed"),
        ("GET", "/v1/reload", 405, "method_not_allowed"),
        ("GET", "/v1/config?index=abc", 400, "bad_request"),
        ("GET", "/v1/config?index=1&wait=soon", 400, "bad_request"),
    ] {
        let r = http(&f.socket, method, path, None).expect("request");
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["code"], code, "{method} {path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}

#[test]
fn blocking_query_answers_on_publish_times_out_and_index_ahead() {
    let f = Fixture::new();
    two_generations(&f);

    // Index ahead of the generation (the daemon restarted): at once.
    let t = Instant::now();
    let r = f.get("/v1/config?index=99&wait=30s");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Index behind: at once.
    let r = f.get("/v1/config?index=1&wait=30s");
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));

    // Times out with the current value.
    let t = Instant::now();
    let r = f.get("/v1/config?index=2&wait=300ms");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("2"));

    // Answers promptly when a new generation is published.
    let socket = f.socket.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let r = http(&socket, "GET", "/v1/config?index=2&wait=60s", None).expect("request");
        (r, t.elapsed())
    });
    // Once it is parked, a status change (a rejection) must not answer
    // it: had it, the answer would carry generation 2.
    assert!(common::wait_until(DEADLINE, || f.waiting() == 1));
    let mut st = ok_status(&["app"]);
    st.documents.insert("db".into(), schema_error("db"));
    f.writer.set_status(st);
    f.writer.publish(snapshot(
        3,
        vec![served("app", json!({"server": {"port": 1}}), 3)],
    ));
    let (r, took) = waiter.join().expect("join");
    assert_eq!(r.header("x-hotconf-generation"), Some("3"));
    assert_eq!(r.json()["documents"]["app"]["server"]["port"], json!(1));
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn per_document_blocking_ignores_other_documents() {
    let f = Fixture::new();
    two_generations(&f);
    let socket = f.socket.clone();
    let waiter = std::thread::spawn(move || {
        http(&socket, "GET", "/v1/config/db?index=1&wait=60s", None).expect("request")
    });
    assert!(common::wait_until(DEADLINE, || f.waiting() == 1));
    // app changes, db does not: the db query keeps waiting (had it
    // answered, it would carry generation 1).
    f.writer.publish(snapshot(
        3,
        vec![
            served("app", json!({"server": {"port": 3}}), 3),
            served("db", json!({"url": "postgres://x"}), 1),
        ],
    ));
    f.writer.publish(snapshot(
        4,
        vec![
            served("app", json!({"server": {"port": 3}}), 3),
            served("db", json!({"url": "postgres://y"}), 4),
        ],
    ));
    let r = waiter.join().expect("join");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hotconf-generation"), Some("4"));
    assert_eq!(r.json(), json!({"url": "postgres://y"}));

    // The index is the document's own generation: db is at 4, the
    // snapshot at 4 too; now let app move the snapshot to 5 and ask about
    // db with the *snapshot's* generation: not ahead, so it waits (and
    // times out with db's value and db's generation).
    f.writer.publish(snapshot(
        5,
        vec![
            served("app", json!({"server": {"port": 5}}), 5),
            served("db", json!({"url": "postgres://y"}), 4),
        ],
    ));
    let t = Instant::now();
    let r = f.get("/v1/config/db?index=5&wait=300ms");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "answered at once"
    );
    assert_eq!(r.header("x-hotconf-generation"), Some("4"));
    // Ahead of the snapshot (a restarted daemon): at once.
    let t = Instant::now();
    let r = f.get("/v1/config/db?index=50&wait=60s");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(r.header("x-hotconf-generation"), Some("4"));

    // Removal answers a query on the removed document with 404.
    let socket = f.socket.clone();
    let waiter = std::thread::spawn(move || {
        http(&socket, "GET", "/v1/config/db?index=4&wait=60s", None).expect("request")
    });
    assert!(common::wait_until(DEADLINE, || f.waiting() == 1));
    f.writer.publish(snapshot(
        6,
        vec![served("app", json!({"server": {"port": 3}}), 3)],
    ));
    let r = waiter.join().expect("join");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-hotconf-generation"), Some("0"), "not served");
    // A client that saw db (index 4) learns of its removal at once; with
    // index 0 it waits for db to appear.
    assert_eq!(f.get("/v1/config/db?index=4&wait=60s").status, 404);
    let socket = f.socket.clone();
    let waiter = std::thread::spawn(move || {
        http(&socket, "GET", "/v1/config/db?index=0&wait=60s", None).expect("request")
    });
    assert!(common::wait_until(DEADLINE, || f.waiting() == 1));
    f.writer.publish(snapshot(
        7,
        vec![
            served("app", json!({"server": {"port": 3}}), 3),
            served("db", json!({"url": "postgres://z"}), 7),
        ],
    ));
    let r = waiter.join().expect("join");
    assert_eq!((r.status, r.json()), (200, json!({"url": "postgres://z"})));
    assert_eq!(r.header("x-hotconf-generation"), Some("7"));
}

#[test]
fn a_thousand_blocking_queries_are_answered_by_one_publish() {
    let f = Fixture::new();
    two_generations(&f);
    const N: usize = 1000;
    let conn = hotconf::client::transport::Connection::new(f.socket.clone());
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let conn = conn.clone();
            f.rt.spawn(async move {
                conn.get(
                    "/v1/config?index=2&wait=120s",
                    Some(Duration::from_secs(150)),
                )
                .await
            })
        })
        .collect();
    let parked = common::wait_until(DEADLINE, || f.waiting() >= N);
    assert!(parked, "only {} parked", f.waiting());
    let t = Instant::now();
    f.writer
        .publish(snapshot(3, vec![served("app", json!({}), 3)]));
    let answers = f.rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task").expect("answer"));
        }
        out
    });
    let took = t.elapsed();
    assert_eq!(answers.len(), N);
    assert!(answers.iter().all(|a| a.status == 200));
    assert!(answers.iter().all(|a| a
        .json_ok()
        .map(|v| v["generation"] == json!(3))
        .unwrap_or(false)));
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn reload_over_the_api_good_and_bad() {
    let f = Fixture::new();
    two_generations(&f);
    // No reloader behind the API: 503.
    let r = http(&f.socket, "POST", "/v1/reload", None).expect("request");
    assert_eq!(r.status, 503, "{}", r.body);

    // A good reload.
    let mut st = ok_status(&["app", "db"]);
    st.last_reload = Some(outcome(&["app"], &[], 3));
    *f.reloader.next.lock().expect("lock") = Some((
        Some(snapshot(
            3,
            vec![
                served("app", json!({"v": 3}), 3),
                served("db", json!({"url": "postgres://x"}), 1),
            ],
        )),
        st,
        outcome(&["app"], &[], 3),
    ));
    let r = http(&f.socket, "POST", "/v1/reload", None).expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["trigger"], "api");
    assert_eq!(v["generation"], json!(3));
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["accepted"], json!(["app"]));
    assert_eq!(v["not_ok"], json!({}));

    // A bad one: db rejected, reported with its error.
    let mut st = ok_status(&["app"]);
    st.documents.insert("db".into(), schema_error("db"));
    *f.reloader.next.lock().expect("lock") = Some((None, st, outcome(&[], &["db"], 3)));
    let r = http(&f.socket, "POST", "/v1/reload", None).expect("request");
    let v = r.json();
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["rejected"], json!(["db"]));
    assert_eq!(v["not_ok"]["db"]["state"], "error");
    assert_eq!(v["not_ok"]["db"]["last_error"]["code"], "E_SCHEMA");

    // Metrics counted both.
    let text = f.get("/metrics").body;
    let scrape = parse_metrics(&text);
    assert_eq!(
        sample(
            &scrape,
            "hotconf_reloads_total",
            &[("trigger", "api"), ("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "hotconf_reloads_total",
            &[("trigger", "api"), ("result", "rejected")]
        ),
        Some(1.0)
    );
}

fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("parse metrics")
}

#[test]
fn metrics_have_every_series_of_the_spec() {
    let f = Fixture::new();
    two_generations(&f);
    let mut st = ok_status(&["app"]);
    st.documents.insert("db".into(), schema_error("db"));
    st.last_reload = Some(outcome(&["app"], &["db"], 2));
    st.last_success_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    f.writer.set_status(st);

    let r = f.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/openmetrics-text")));
    let scrape = parse_metrics(&r.body);
    assert_eq!(sample(&scrape, "hotconf_generation", &[]), Some(2.0));
    assert_eq!(
        sample(&scrape, "hotconf_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "hotconf_last_reload_success_timestamp_seconds",
            &[]
        ),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        sample(&scrape, "hotconf_document_valid", &[("document", "app")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "hotconf_document_valid", &[("document", "db")]),
        Some(0.0)
    );
    let sha = f.store.load().documents["app"].sha256.clone();
    assert_eq!(
        sample(
            &scrape,
            "hotconf_document_info",
            &[("document", "app"), ("sha256", &sha)]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "hotconf_reloads_total",
            &[("trigger", "watch"), ("result", "ok")]
        ),
        Some(0.0),
        "series exist before the first reload"
    );
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "hotconf_reload_duration_seconds"
            && matches!(s.value, prometheus_parse::Value::Histogram(_))));

    // The same over TCP, and nothing else there.
    let addr = f
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr())
        .expect("metrics addr");
    let body = tcp_get(addr, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("hotconf_generation 2"), "{body}");
    let body = tcp_get(addr, "/v1/status");
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
    let body = tcp_get(addr, "/v1/config");
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
}

fn tcp_get(addr: std::net::SocketAddr, path: &str) -> String {
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

#[test]
fn curl_speaks_to_the_socket() {
    let f = Fixture::new();
    two_generations(&f);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "--unix-socket"])
        .arg(&f.socket)
        .arg("http://localhost/v1/config/app/server/port")
        .output()
        .expect("run curl (is it installed?)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-hotconf-generation: 2"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("9090"), "{text}");
    // Keep-alive: two requests on one connection.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(&f.socket)
        .args([
            "http://localhost/v1/config/db/url",
            "http://localhost/v1/config/app/server/port",
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"postgres://x\"9090");
}

#[test]
fn shutdown_answers_blocking_queries_and_removes_the_socket() {
    let mut f = Fixture::new();
    two_generations(&f);
    let mode = std::fs::metadata(&f.socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(mode.ok().map(|m| m & 0o777), Some(0o660));
    let socket = f.socket.clone();
    let waiter = std::thread::spawn(move || {
        http(&socket, "GET", "/v1/config?index=2&wait=600s", None).expect("request")
    });
    assert!(common::wait_until(DEADLINE, || f.waiting() == 1));
    let t = Instant::now();
    f.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    let r = waiter.join().expect("join");
    assert_eq!(r.status, 200);
    assert!(!f.socket.exists(), "socket removed");
}

#[test]
fn a_client_leaving_a_blocking_query_leaks_nothing() {
    let f = Fixture::new();
    two_generations(&f);
    for _ in 0..20 {
        let mut s = std::os::unix::net::UnixStream::connect(&f.socket).expect("connect");
        std::io::Write::write_all(
            &mut s,
            b"GET /v1/config?index=2&wait=600s HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .expect("write");
        assert!(common::wait_until(DEADLINE, || f.waiting() == 1));
        drop(s);
        assert!(
            common::wait_until(DEADLINE, || f.waiting() == 0 && f.connections() == 0),
            "waiting {} connections {}",
            f.waiting(),
            f.connections()
        );
    }
}

#[test]
fn an_oversized_request_head_is_refused_without_harm() {
    use std::io::{Read, Write};
    let f = Fixture::new();
    two_generations(&f);
    let mut s = std::os::unix::net::UnixStream::connect(&f.socket).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let big = "a".repeat(1 << 20);
    // The server may close before we finish writing: that is a refusal too.
    let _ = write!(
        s,
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:.200}"
    );
    assert_eq!(f.get("/v1/status").status, 200);
    assert!(common::wait_until(DEADLINE, || f.connections() == 0));
}

#[test]
fn tcp_probes_say_healthy_and_ready_only_after_the_startup_load() {
    let f = Fixture::new();
    let addr = f
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr())
        .expect("metrics addr");
    // No reload finished yet: not ready. The stand-in reloader is gone
    // when nothing is prepared: not healthy.
    let body = tcp_get(addr, "/-/ready");
    assert!(body.starts_with("HTTP/1.1 503"), "{body}");
    let body = tcp_get(addr, "/-/healthy");
    assert!(body.starts_with("HTTP/1.1 503"), "{body}");

    let mut st = ok_status(&["app"]);
    st.last_reload = Some(outcome(&["app"], &[], 1));
    f.writer.set_status(st.clone());
    *f.reloader.next.lock().expect("lock") = Some((None, st, outcome(&[], &[], 1)));
    let body = tcp_get(addr, "/-/ready");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let body = tcp_get(addr, "/-/healthy");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    // Still nothing else there.
    let body = tcp_get(addr, "/v1/config/app");
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
}
