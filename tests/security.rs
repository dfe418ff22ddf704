//! The control socket under attack (SPEC §5 "Security"): the real `hotconf
//! run`, its real unix socket, and the peers a real host has — an
//! unprivileged user (`curl` and the `hotconf` client run as uid 65534),
//! clients that stall, flood, send huge requests, stop reading or hang up
//! in the middle of a blocking query, and a service manager's low
//! open-file limit. Every limit tested here is listed in the README's
//! "Security" section.
//!
//! Who may do what: root and the daemon's uid may reload and see secrets;
//! everybody else gets 403 and `"<redacted>"`. A secret's value is grepped
//! for in everything a test captures — answers, metrics, logs, `hotconf
//! check` — and must be in none of it (except root's own `/v1/config`).
//!
//! Tests that need another uid skip themselves when not run as root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::{http, log_field, wait_until, Daemon, Env, DEADLINE};

/// The unprivileged peer.
const NOBODY: u32 = 65534;

/// hotconf's header-read (and keep-alive idle) timeout, see README.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips the calling test (returns from it) when not run as root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root to run a peer as another user");
            return;
        }
    };
}

/// A schema whose `password` is a secret (`writeOnly`) of 12+ characters.
fn secret_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "port": {"type": "integer"},
            "password": {"type": "string", "writeOnly": true, "minLength": 12},
        },
        "required": ["port", "password"],
        "additionalProperties": false,
    })
}

fn plain_schema() -> Value {
    common::strict_schema(json!({"port": {"type": "integer"}}))
}

/// `app` (with a secret) and `plain` (without).
fn secret_env(password: &str) -> Env {
    let env = Env::new();
    env.write_schema("app", &secret_schema());
    env.write_schema("plain", &plain_schema());
    env.write_doc("app", &app_doc(8080, password));
    env.write_doc("plain", "port = 1\n");
    env
}

fn app_doc(port: u16, password: &str) -> String {
    format!("port = {port}\npassword = \"{password}\"\n")
}

fn plain_env() -> Env {
    let env = Env::new();
    env.write_schema("plain", &plain_schema());
    env.write_doc("plain", "port = 1\n");
    env
}

/// Lets other users reach the socket in the (0700) temp directory.
fn open_to_others(env: &Env) {
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `hotconf run` with the env's dirs plus `extra`, environment cleaned.
/// Edits here are applied by explicit reloads whose outcome the tests read,
/// so neither the watcher nor the poll may apply them first.
fn run_command(env: &Env, extra: &[&str]) -> Command {
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
    cmd
}

/// Starts the daemon and waits until it answers.
fn start(env: &Env, extra: &[&str]) -> Daemon {
    ready(env, Daemon::from_command(run_command(env, extra)))
}

/// Starts the daemon with its open-file limit set to `soft`/`hard` at exec,
/// as a service manager would.
fn start_with_nofile(env: &Env, extra: &[&str], soft: u64, hard: u64) -> Daemon {
    let mut cmd = run_command(env, extra);
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe,
    // on a struct on its own stack.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ready(env, Daemon::from_command(cmd))
}

fn ready(env: &Env, d: Daemon) -> Daemon {
    assert!(
        d.wait_ready(&env.socket()),
        "not ready: {:#?}",
        d.stderr_lines()
    );
    d
}

fn status(env: &Env) -> Value {
    http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json()
}

/// Root's explicit reload; its answer.
fn reload(env: &Env) -> common::Response {
    http(&env.socket(), "POST", "/v1/reload", None).expect("reload")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Raises this process's open-file limit to its hard limit (the tests hold
/// thousands of connections). Returns the new soft limit.
fn raise_own_nofile() -> u64 {
    hotconf::daemon::rlimit::raise_nofile(u64::MAX)
        .expect("getrlimit")
        .soft
}

/// Open descriptors of process `pid`.
fn fds_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The soft "Max open files" of process `pid`.
fn nofile_of(pid: i32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("Max open files")
}

/// Waits until the daemon's descriptor count has been the same for a
/// moment (connections of earlier requests closed), and returns it.
fn settled_fds(pid: i32) -> usize {
    let mut last = fds_of(pid);
    let mut since = Instant::now();
    let settled = wait_until(DEADLINE, || {
        let now = fds_of(pid);
        if now != last {
            last = now;
            since = Instant::now();
        }
        since.elapsed() >= Duration::from_millis(300)
    });
    assert!(settled, "descriptor count never settled");
    last
}

/// What one unprivileged request produced.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    stderr: String,
    pid: u32,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `curl` as uid 65534: `METHOD http://localhost/PATH` over the socket.
fn curl_as_nobody(socket: &Path, method: &str, path: &str) -> Answer {
    let child = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--unix-socket"])
        .arg(socket)
        .args(["-X", method, "-w", "\n%{http_code}"])
        .arg(format!("http://localhost{path}"))
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Answer {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
    }
}

/// The `hotconf` client as uid 65534; (exit code, stdout, stderr).
fn client_as_nobody(socket: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).arg("--socket").arg(socket);
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run hotconf");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hotconf check` on the env; stdout and stderr, text and JSON.
fn check_output(env: &Env) -> String {
    let mut all = String::new();
    for format in ["text", "json"] {
        let out = Command::new(common::bin())
            .arg("check")
            .arg("--config-dir")
            .arg(&env.configs)
            .arg("--schema-dir")
            .arg(&env.schemas)
            .args(["--format", format])
            .output()
            .expect("run check");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all
}

/// `document_info`'s `sha256` label for `doc` in a metrics text.
fn info_sha(metrics: &str, doc: &str) -> Option<String> {
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "hotconf_document_info" && s.labels.get("document") == Some(doc))
        .and_then(|s| s.labels.get("sha256").map(str::to_string))
}

/// Asserts no captured text holds any of `secrets`.
fn assert_secret_free(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} leaks the secret {s:?}:\n{text}");
    }
}

/// A connection that has sent part of a request head and stalls.
fn stalled(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .expect("write");
    s
}

/// A connection with a blocking query in flight (`wait` long).
fn blocking_query(socket: &Path, path: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    s
}

/// Reads until the peer closes; the bytes read and whether it closed (EOF
/// or reset) within `timeout`.
fn read_until_closed(s: &mut UnixStream, timeout: Duration) -> (Vec<u8>, bool) {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(_) => return (got, true),
        }
    }
}

/// The daemon's `limits` log record (the log is read by another thread:
/// wait for it).
fn limits_event(d: &Daemon) -> Value {
    assert!(
        d.wait_event_count("limits", 1, DEADLINE),
        "limits not logged: {:#?}",
        d.stderr_lines()
    );
    d.events("limits").swap_remove(0)
}

/// The current generation as root sees it.
fn generation(env: &Env) -> u64 {
    status(env)["generation"].as_u64().expect("generation")
}

#[test]
fn unprivileged_peer_may_not_reload_and_sees_only_redacted_values() {
    require_root!();
    let secret = "S3cr3t-Hunter-2026";
    let env = secret_env(secret);
    open_to_others(&env);
    let d = start(&env, &["--socket-mode", "0666", "--log-level", "debug"]);
    let sock = env.socket();
    let source_sha = sha256_hex(app_doc(8080, secret).as_bytes());
    let plain_sha = sha256_hex(b"port = 1\n");

    // Reload: 403 with a JSON error, logged with the peer's uid and pid.
    let denied = curl_as_nobody(&sock, "POST", "/v1/reload");
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.json()["code"], "forbidden", "{denied:?}");
    assert!(denied.json()["message"].is_string());
    let logged = wait_until(DEADLINE, || {
        d.events("reload_forbidden").iter().any(|l| {
            log_field(l, "peer_uid") == Some(&json!(NOBODY))
                && log_field(l, "peer_pid") == Some(&json!(denied.pid))
        })
    });
    assert!(
        logged,
        "403 not logged with uid and pid: {:#?}",
        d.stderr_lines()
    );
    let counters = status(&env)["counters"].clone();
    assert_eq!(counters["reloads"], json!(1), "only the startup reload ran");

    // Values: the secret is "<redacted>" everywhere it is served.
    let all = curl_as_nobody(&sock, "GET", "/v1/config");
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(
        all.json()["documents"],
        json!({"app": {"port": 8080, "password": "<redacted>"}, "plain": {"port": 1}})
    );
    let one = curl_as_nobody(&sock, "GET", "/v1/config/app");
    assert_eq!(one.json(), json!({"port": 8080, "password": "<redacted>"}));
    let part = curl_as_nobody(&sock, "GET", "/v1/config/app/password");
    assert_eq!(part.json(), json!("<redacted>"));
    let blocking = curl_as_nobody(&sock, "GET", "/v1/config/app?index=0&wait=1s");
    assert_eq!(
        blocking.json(),
        json!({"port": 8080, "password": "<redacted>"})
    );

    // Hashes: the redacted value's hash instead of the source hash of a
    // document holding secrets; the source hash of one without.
    let st = curl_as_nobody(&sock, "GET", "/v1/status");
    assert_eq!(st.status, 200);
    let nobody_sha = st.json()["documents"]["app"]["sha256"].clone();
    let redacted_sha = nobody_sha.as_str().expect("sha256").to_string();
    assert_eq!(redacted_sha.len(), 64);
    assert_ne!(redacted_sha, source_sha);
    assert_eq!(st.json()["documents"]["plain"]["sha256"], json!(plain_sha));
    let metrics = curl_as_nobody(&sock, "GET", "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(info_sha(&metrics.body, "app"), Some(redacted_sha.clone()));
    assert_eq!(info_sha(&metrics.body, "plain"), Some(plain_sha.clone()));

    // The hotconf client as the same user: redacted, and reload refused.
    let (code, out, err) = client_as_nobody(&sock, &["get", "app"]);
    assert_eq!(code, Some(0), "{err}");
    let got: Value = serde_json::from_str(&out).expect("get prints JSON");
    assert_eq!(got, json!({"port": 8080, "password": "<redacted>"}));
    let (code, out2, err2) = client_as_nobody(&sock, &["reload"]);
    assert_eq!(code, Some(1), "{out2}{err2}");
    let (_, out3, err3) = client_as_nobody(&sock, &["status", "--json"]);

    // Root sees the real values and the source hash.
    let root = status(&env);
    assert_eq!(root["documents"]["app"]["sha256"], json!(source_sha));
    let root_value = http(&sock, "GET", "/v1/config/app/password", None).expect("get");
    assert_eq!(root_value.json(), json!(secret));

    // A guess of the secret cannot be tested: changing only the secret
    // changes root's hash, not the one other users see.
    let secret2 = "S3cr3t-Hunter-2027";
    env.write_doc("app", &app_doc(8080, secret2));
    let r = reload(&env);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], json!(["app"]));
    let root2 = status(&env);
    assert_eq!(
        root2["documents"]["app"]["sha256"],
        json!(sha256_hex(app_doc(8080, secret2).as_bytes()))
    );
    let st2 = curl_as_nobody(&sock, "GET", "/v1/status");
    assert_eq!(st2.json()["documents"]["app"]["sha256"], nobody_sha);
    let metrics2 = curl_as_nobody(&sock, "GET", "/metrics");
    assert_eq!(info_sha(&metrics2.body, "app"), Some(redacted_sha));

    let captured = [
        denied.body,
        denied.stderr,
        all.body,
        one.body,
        part.body,
        blocking.body,
        st.body,
        st2.body,
        metrics.body,
        metrics2.body,
        out,
        err,
        out2,
        err2,
        out3,
        err3,
        root.to_string(),
        root2.to_string(),
        r.body,
        d.stderr_lines().join("\n"),
        d.stdout_lines().join("\n"),
    ]
    .join("\n");
    assert_secret_free("what was captured", &captured, &[secret, secret2]);
}

#[test]
fn a_secret_is_in_no_rejection_log_status_or_metrics() {
    require_root!();
    let good = "Good-Secret-Value-42";
    // Each bad edit touches the secret's line; its text must appear nowhere.
    let bad_edits = [
        // Too short for minLength: a schema violation on the secret.
        ("Zq7short", app_doc(8080, "Zq7short")),
        // Unterminated string: a parse error on the secret's line.
        (
            "Zq7unterminated",
            "port = 8080\npassword = \"Zq7unterminated\n".to_string(),
        ),
        // Trailing garbage after the secret on its line.
        (
            "Zq7trailing",
            "port = 8080\npassword = \"Zq7trailing-long-enough\" Zq7junk\n".to_string(),
        ),
        // Wrong type: the offending value is the secret.
        (
            "98765432123",
            "port = 8080\npassword = 98765432123\n".to_string(),
        ),
        // A secret where the schema allows no key at all is still quoted
        // nowhere (the secret's value is the offending key's value).
        (
            "Zq7extra",
            format!("port = 8080\npassword = \"{good}\"\nextra = \"Zq7extra\"\n"),
        ),
    ];
    let env = secret_env(good);
    open_to_others(&env);
    let d = start(&env, &["--socket-mode", "0666", "--log-level", "debug"]);
    let sock = env.socket();
    let mut captured = String::new();
    let mut secrets = vec![good];
    for (i, (secret, text)) in bad_edits.iter().enumerate() {
        // The "extra" key is not a secret: only check what is.
        if *secret != "Zq7extra" {
            secrets.push(secret);
        }
        env.write_doc("app", text);
        let r = reload(&env);
        assert_eq!(r.status, 200, "{}", r.body);
        let result = r.json();
        assert_eq!(result["rejected"], json!(["app"]), "edit {i}: {result}");
        captured.push_str(&r.body);
        let root = status(&env);
        let err = &root["documents"]["app"]["last_error"];
        assert!(err["code"].is_string(), "edit {i}: {root}");
        captured.push_str(&root.to_string());
        let nobody = curl_as_nobody(&sock, "GET", "/v1/status");
        let nobody_err = &nobody.json()["documents"]["app"]["last_error"];
        assert_eq!(nobody_err["code"], err["code"]);
        // The rejected candidate's hash would be as good as its source hash
        // for testing guesses: hidden from other users.
        assert!(nobody_err["sha256"].is_null(), "{}", nobody.body);
        captured.push_str(&nobody.body);
        captured.push_str(&curl_as_nobody(&sock, "GET", "/metrics").body);
        captured.push_str(&curl_as_nobody(&sock, "GET", "/v1/config").body);
        captured.push_str(&check_output(&env));
        // The last good value is still served.
        let served = http(&sock, "GET", "/v1/config/app/password", None).expect("get");
        assert_eq!(served.json(), json!(good), "edit {i}");
    }
    assert!(
        d.wait_event_count("document_rejected", bad_edits.len(), DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    captured.push_str(&d.stderr_lines().join("\n"));
    captured.push_str(&d.stdout_lines().join("\n"));
    assert_secret_free("rejections, status, metrics and logs", &captured, &secrets);
}

#[test]
fn three_hundred_stalled_clients_do_not_delay_another_client() {
    raise_own_nofile();
    let env = plain_env();
    let d = start(&env, &[]);
    let base = settled_fds(d.pid());
    let slow: Vec<UnixStream> = (0..300).map(|_| stalled(&env.socket())).collect();
    assert!(
        wait_until(DEADLINE, || fds_of(d.pid()) >= base + 300),
        "daemon accepted only {} of 300",
        fds_of(d.pid()).saturating_sub(base)
    );
    // Best of three, so that one scheduling hiccup of a loaded machine is
    // not mistaken for a stall; every one must still be quick.
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let r = http(&env.socket(), "GET", "/v1/status", None).expect("status");
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert!(took < Duration::from_secs(5), "status took {took:?}");
        best = best.min(took);
    }
    assert!(best < Duration::from_secs(2), "status took {best:?}");
    // The header-read timeout closes every stalled connection.
    assert!(
        wait_until(HEADER_READ_TIMEOUT + DEADLINE, || fds_of(d.pid()) <= base),
        "stalled connections still open: {} > {base}",
        fds_of(d.pid())
    );
    let mut first = slow.into_iter().next().expect("one");
    let (_, closed) = read_until_closed(&mut first, DEADLINE);
    assert!(closed, "a stalled client was not disconnected");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let env = plain_env();
    let d = start(&env, &[]);
    let base = settled_fds(d.pid());
    let mut s = UnixStream::connect(env.socket()).expect("connect");
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let t = Instant::now();
    let (got, closed) = read_until_closed(&mut s, HEADER_READ_TIMEOUT + DEADLINE);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "idle keep-alive connection never closed");
    assert!(
        t.elapsed() >= HEADER_READ_TIMEOUT / 2,
        "closed after {:?}, before it was idle long",
        t.elapsed()
    );
    assert!(wait_until(DEADLINE, || fds_of(d.pid()) <= base));
}

#[test]
fn a_4mib_header_is_refused_without_harm() {
    let env = plain_env();
    let d = start(&env, &[]);
    let base = settled_fds(d.pid());
    let s = UnixStream::connect(env.socket()).expect("connect");
    let mut writer = s.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut req = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
        req.resize(req.len() + 4 * 1024 * 1024, b'a');
        req.extend_from_slice(b"\r\n\r\n");
        // The daemon stops reading long before the end: EPIPE is expected.
        let _ = writer.write_all(&req);
    });
    let mut s = s;
    let t = Instant::now();
    let (got, closed) = read_until_closed(&mut s, DEADLINE);
    let took = t.elapsed();
    let _ = sender.join();
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "connection with a 4 MiB header left open");
    assert!(text.starts_with("HTTP/1.1 431"), "answer: {text:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(status(&env)["generation"], json!(1));
    assert!(wait_until(DEADLINE, || fds_of(d.pid()) <= base));
    assert!(d.events("shutdown").is_empty());
}

#[test]
fn a_large_request_body_is_refused() {
    let env = plain_env();
    let _d = start(&env, &[]);
    let mut s = UnixStream::connect(env.socket()).expect("connect");
    let len = 4 * 1024 * 1024;
    write!(
        s,
        "POST /v1/reload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n"
    )
    .expect("write head");
    // The answer comes without the body being sent.
    let (got, _) = read_until_closed(&mut s, DEADLINE);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "answer: {text:?}");
    assert!(text.contains("payload_too_large"), "{text}");
    assert_eq!(status(&env)["counters"]["reloads"], json!(1), "no reload");
}

#[test]
fn clients_that_hang_up_during_blocking_queries_leak_nothing() {
    raise_own_nofile();
    let env = secret_env("Leak-Test-Secret-1");
    let d = start(&env, &[]);
    // Warm up every endpoint once (lazy allocations are not leaks).
    for path in ["/v1/status", "/v1/config", "/v1/config/app", "/metrics"] {
        assert_eq!(
            http(&env.socket(), "GET", path, None).expect("get").status,
            200
        );
    }
    let threads_before = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    let base = settled_fds(d.pid());
    for round in 0..3 {
        let g = generation(&env);
        let paths = [
            format!("/v1/config?index={g}&wait=5m"),
            format!("/v1/status?index={g}&wait=5m"),
            "/v1/config/app?index=1&wait=5m".to_string(),
            "/v1/config/app/port?index=1&wait=5m".to_string(),
        ];
        let clients: Vec<UnixStream> = (0..100)
            .map(|i| blocking_query(&env.socket(), &paths[i % paths.len()]))
            .collect();
        assert!(
            wait_until(DEADLINE, || fds_of(d.pid()) >= base + 100),
            "round {round}: only {} queries in flight",
            fds_of(d.pid()).saturating_sub(base)
        );
        drop(clients);
        assert!(
            wait_until(DEADLINE, || fds_of(d.pid()) <= base),
            "round {round}: {} descriptors after the hang-ups, {base} before",
            fds_of(d.pid())
        );
    }
    let threads_after = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    // Threads are a pool, not per connection: a few may be added, no more.
    assert!(
        threads_after <= threads_before + 8,
        "threads grew from {threads_before} to {threads_after}"
    );
    // Still fully working: a blocking query is answered by a publish.
    let g = generation(&env);
    let mut waiter = blocking_query(&env.socket(), &format!("/v1/config?index={g}&wait=60s"));
    env.write_doc("plain", "port = 2\n");
    assert_eq!(reload(&env).status, 200);
    let (got, _) = read_until_closed(&mut waiter, DEADLINE);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"port\":2"), "{text}");
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let env = plain_env();
    let d = start(&env, &["--max-connections", "8"]);
    let base = settled_fds(d.pid());
    let g = generation(&env);
    // Eight legitimate long waits hold every slot.
    let mut holders: Vec<UnixStream> = (0..8)
        .map(|_| blocking_query(&env.socket(), &format!("/v1/status?index={g}&wait=120s")))
        .collect();
    assert!(
        wait_until(DEADLINE, || fds_of(d.pid()) >= base + 8),
        "holders not accepted"
    );
    for _ in 0..5 {
        let t = Instant::now();
        let mut extra = UnixStream::connect(env.socket()).expect("connect");
        let _ = extra.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let (got, closed) = read_until_closed(&mut extra, DEADLINE);
        assert!(closed, "over-limit connection left waiting");
        assert!(got.is_empty(), "over-limit connection was served");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "refusal took {:?}",
            t.elapsed()
        );
    }
    assert!(
        wait_until(DEADLINE, || !d
            .events("connection_limit_reached")
            .is_empty()),
        "limit not logged: {:#?}",
        d.stderr_lines()
    );
    // One slot freed: served again.
    drop(holders.pop());
    assert!(wait_until(DEADLINE, || {
        http(&env.socket(), "GET", "/v1/status", None)
            .map(|r| r.status == 200)
            .unwrap_or(false)
    }));
    drop(holders);
}

#[test]
fn reload_publishes_while_two_thousand_idle_connections_are_open() {
    let own = raise_own_nofile();
    assert!(own >= 2500, "this test needs 2500 descriptors, have {own}");
    let env = plain_env();
    // Started with the common default soft limit of 1024: the daemon must
    // raise it itself to hold 2,000 connections.
    let d = start_with_nofile(&env, &[], 1024, own);
    // 4096 connections (the default) + 256 descriptors kept for files,
    // within the hard limit.
    let wanted = (4096 + 256).min(own);
    assert_eq!(nofile_of(d.pid()), wanted, "limit not raised");
    let limits = limits_event(&d);
    let limits = &limits;
    assert_eq!(log_field(limits, "nofile_before"), Some(&json!(1024)));
    assert_eq!(log_field(limits, "nofile"), Some(&json!(wanted)));
    assert_eq!(
        log_field(limits, "max_connections"),
        Some(&json!(4096.min(wanted - 256)))
    );
    let base = settled_fds(d.pid());
    let connecting = Instant::now();
    let idle: Vec<UnixStream> = (0..2000)
        .map(|_| UnixStream::connect(env.socket()).expect("connect"))
        .collect();
    assert!(
        wait_until(DEADLINE, || fds_of(d.pid()) >= base + 2000),
        "daemon holds only {} connections",
        fds_of(d.pid()).saturating_sub(base)
    );
    env.write_doc("plain", "port = 2\n");
    let r = reload(&env);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], json!(["plain"]));
    assert_eq!(generation(&env), 2);
    // The connections were open throughout (unless a very loaded machine
    // took longer than the header-read timeout, which closes idle ones).
    assert!(
        connecting.elapsed() >= HEADER_READ_TIMEOUT || fds_of(d.pid()) >= base + 1900,
        "idle connections dropped early"
    );
    drop(idle);
}

#[test]
fn a_scarce_open_file_limit_caps_connections_and_reloads_still_publish() {
    let own = raise_own_nofile();
    assert!(own >= 2500, "this test needs 2500 descriptors, have {own}");
    let env = plain_env();
    // Hard limit 1024: the daemon cannot raise it, so it accepts fewer
    // connections and keeps descriptors for reading files.
    let d = start_with_nofile(&env, &[], 1024, 1024);
    let limits = limits_event(&d);
    let limits = &limits;
    let cap = log_field(limits, "max_connections")
        .and_then(Value::as_u64)
        .expect("max_connections");
    assert!(cap < 1024 - 100, "cap {cap} leaves no room for files");
    let base = settled_fds(d.pid());
    let flood: Vec<UnixStream> = (0..1200)
        .filter_map(|_| UnixStream::connect(env.socket()).ok())
        .collect();
    assert!(
        wait_until(DEADLINE, || fds_of(d.pid()) >= base + cap as usize),
        "cap not reached"
    );
    // The reloader can still open files and publish.
    env.write_doc("plain", "port = 3\n");
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(DEADLINE, || d
            .events("snapshot_published")
            .iter()
            .any(|e| log_field(e, "generation") == Some(&json!(2)))),
        "{:#?}",
        d.stderr_lines()
    );
    assert!(fds_of(d.pid()) < 1024);
    drop(flood);
    assert!(wait_until(DEADLINE, || {
        http(&env.socket(), "GET", "/v1/config/plain", None)
            .map(|r| r.status == 200 && r.json() == json!({"port": 3}))
            .unwrap_or(false)
    }));
}

/// Children killed (and reaped) on drop, so a failing test leaks none.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn other_users_cannot_take_the_slots_kept_for_root() {
    require_root!();
    let env = plain_env();
    open_to_others(&env);
    let d = start(&env, &["--socket-mode", "0666", "--max-connections", "8"]);
    let base = settled_fds(d.pid());
    let g = generation(&env);
    // Eight long blocking queries by another user: one slot of the eight is
    // kept for root and the daemon's uid, so one of them is refused.
    let url = format!("http://localhost/v1/status?index={g}&wait=120s");
    let mut curls = Children(
        (0..8)
            .map(|_| {
                Command::new("curl")
                    .args(["-sS", "--max-time", "150", "--unix-socket"])
                    .arg(env.socket())
                    .arg(&url)
                    .uid(NOBODY)
                    .gid(NOBODY)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn curl")
            })
            .collect(),
    );
    assert!(
        wait_until(DEADLINE, || fds_of(d.pid()) >= base + 7),
        "the queries were not accepted"
    );
    let refused = wait_until(DEADLINE, || {
        curls
            .0
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(Some(s)) if !s.success()))
    });
    assert!(
        refused,
        "no connection beyond the untrusted share was refused"
    );
    let running = curls
        .0
        .iter_mut()
        .map(|c| c.try_wait())
        .filter(|w| matches!(w, Ok(None)))
        .count();
    assert_eq!(running, 7, "seven queries hold their slots");
    // Root still gets through, at once.
    let t = Instant::now();
    let r = http(&env.socket(), "GET", "/v1/status", None).expect("root's request");
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    drop(curls);
}

#[test]
fn a_client_that_stops_reading_its_answer_is_cut_off() {
    const SEND_TIMEOUT: Duration = Duration::from_secs(30);
    let env = Env::new();
    env.write_schema(
        "big",
        &common::strict_schema(json!({"blob": {"type": "string"}})),
    );
    // A 2 MiB answer: far more than a socket buffer holds.
    env.write_doc("big", &format!("blob = \"{}\"\n", "x".repeat(2 << 20)));
    let d = start(&env, &[]);
    let base = settled_fds(d.pid());
    let mut s = blocking_query(&env.socket(), "/v1/config/big");
    assert!(wait_until(DEADLINE, || fds_of(d.pid()) > base));
    // Never read: the daemon gives up after the send timeout.
    assert!(
        wait_until(SEND_TIMEOUT + DEADLINE, || fds_of(d.pid()) <= base),
        "a stalled answer holds its connection"
    );
    // Other clients were served all along.
    assert_eq!(status(&env)["generation"], json!(1));
    let (got, closed) = read_until_closed(&mut s, DEADLINE);
    assert!(closed);
    assert!(got.len() < (2 << 20), "the whole answer was sent");
}

#[test]
fn a_client_that_pipelines_behind_a_blocking_query_and_hangs_up_leaks_nothing() {
    let env = plain_env();
    let d = start(&env, &[]);
    let base = settled_fds(d.pid());
    let g = generation(&env);
    // A second request already sent behind the blocking query: the HTTP
    // layer does not look at the connection again until the first answer
    // is written, so the hang-up must be noticed beside it.
    let clients: Vec<UnixStream> = (0..20)
        .map(|_| {
            let mut s = UnixStream::connect(env.socket()).expect("connect");
            write!(
                s,
                "GET /v1/config?index={g}&wait=5m HTTP/1.1\r\nHost: localhost\r\n\r\n\
                 GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            .expect("write");
            s
        })
        .collect();
    assert!(wait_until(DEADLINE, || fds_of(d.pid()) >= base + 20));
    drop(clients);
    assert!(
        wait_until(DEADLINE, || fds_of(d.pid()) <= base),
        "{} descriptors after the hang-ups, {base} before",
        fds_of(d.pid())
    );
}

#[test]
fn a_flood_of_the_metrics_port_takes_few_descriptors() {
    let env = plain_env();
    let d = start(&env, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics_addr = || {
        d.json_logs().iter().find_map(|l| {
            log_field(l, "metrics_addr")
                .and_then(Value::as_str)
                .map(String::from)
        })
    };
    assert!(wait_until(DEADLINE, || metrics_addr().is_some()));
    let addr = metrics_addr().expect("metrics address logged");
    let base = settled_fds(d.pid());
    let flood: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(flood.len() >= 100, "only {} connected", flood.len());
    // Every connection was accepted (held or closed) once the backlog is
    // empty; the daemon holds at most the metrics port's 64.
    assert!(wait_until(DEADLINE, || fds_of(d.pid()) >= base + 50));
    let held = settled_fds(d.pid()).saturating_sub(base);
    assert!(held <= 64, "the metrics port holds {held} connections");
    // The socket is not affected.
    assert_eq!(status(&env)["generation"], json!(1));
    drop(flood);
    assert!(wait_until(DEADLINE, || fds_of(d.pid()) <= base));
}
