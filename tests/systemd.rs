//! hotconf as a systemd service: the shipped unit verifies cleanly and is
//! hardened, and the real binary tells a (fake) service manager exactly
//! what SPEC §6 promises over `NOTIFY_SOCKET`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, strict_schema, wait_until, Daemon, Env, DEADLINE};
use serde_json::json;

/// The shipped unit and its drop-ins.
fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(file)
}

/// A copy of the shipped unit in a temp dir, its commands pointed at the
/// binary under test (verify checks that they exist and are executable).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(dist("hotconf.service")).expect("read unit");
    assert!(text.contains("ExecStart=/usr/bin/hotconf run"));
    assert!(text.contains("ExecReload=/usr/bin/hotconf reload"));
    let path = dir.join("hotconf.service");
    std::fs::write(&path, text.replace("/usr/bin/hotconf", bin())).expect("write unit");
    path
}

fn systemd_analyze(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("systemd-analyze must be installed (CI installs the systemd package)")
}

fn assert_verifies_clean(dir: &Path, unit: &Path) {
    let out = systemd_analyze(dir, &["verify", &unit.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed: {stderr}{stdout}");
    assert!(
        stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}{stdout}"
    );
}

#[test]
fn shipped_unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(dir.path());
    assert_verifies_clean(dir.path(), &unit);
}

#[test]
fn unit_with_metrics_drop_in_verifies_without_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(dir.path());
    let drop_ins = dir.path().join("hotconf.service.d");
    std::fs::create_dir(&drop_ins).expect("mkdir");
    std::fs::copy(dist("hotconf-metrics.conf"), drop_ins.join("metrics.conf")).expect("copy");
    assert_verifies_clean(dir.path(), &unit);
}

#[test]
fn shipped_unit_is_hardened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(dir.path());
    let out = systemd_analyze(
        dir.path(),
        &["security", "--offline=true", &unit.display().to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for hotconf.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure figure in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(exposure <= 1.0, "exposure {exposure} too high:\n{text}");
}

/// One notification: its `KEY=VALUE` lines, in order.
#[derive(Debug, Clone)]
struct Message(Vec<(String, String)>);

impl Message {
    fn parse(bytes: &[u8]) -> Message {
        let text = String::from_utf8(bytes.to_vec()).expect("notification is UTF-8");
        assert!(text.ends_with('\n'), "unterminated notification {text:?}");
        Message(
            text.lines()
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("KEY=VALUE");
                    (k.to_string(), v.to_string())
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn is_watchdog(&self) -> bool {
        self.keys() == ["WATCHDOG"]
    }
}

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    sock: UnixDatagram,
    /// What to put in `NOTIFY_SOCKET`.
    address: String,
    /// Keeps a path socket's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl Manager {
    /// A socket bound to a path in a temp dir.
    fn at_path() -> Manager {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        Manager {
            sock,
            address: path.display().to_string(),
            _dir: Some(dir),
        }
    }

    /// A socket in the abstract namespace (`@name`).
    fn abstract_() -> Manager {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("hotconf-test-{}-{nanos}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        Manager {
            sock,
            address: format!("@{name}"),
            _dir: None,
        }
    }

    /// The next notification within `timeout`, if any.
    fn recv(&self, timeout: Duration) -> Option<Message> {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            match self.sock.recv(&mut buf) {
                Ok(n) => return Some(Message::parse(&buf[..n])),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    /// The next notification, which must come within the deadline.
    fn expect(&self, what: &str) -> Message {
        self.recv(DEADLINE)
            .unwrap_or_else(|| panic!("no notification ({what}) within {DEADLINE:?}"))
    }

    /// Every notification arriving during `window`.
    fn collect(&self, window: Duration) -> Vec<(Instant, Message)> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(m) = self.recv(end.saturating_duration_since(Instant::now())) {
            out.push((Instant::now(), m));
        }
        out
    }
}

/// The test's own CLOCK_MONOTONIC in microseconds.
fn monotonic_usec() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1_000
}

fn assert_ready(m: &Message, status: &str) {
    assert_eq!(m.keys(), ["READY", "STATUS"], "{m:?}");
    assert_eq!(m.get("READY"), Some("1"));
    assert_eq!(m.get("STATUS"), Some(status), "{m:?}");
}

/// Expects RELOADING=1 with a MONOTONIC_USEC within a second of the test's
/// clock at the time it arrived, in one datagram, then READY=1 with
/// `status`.
fn expect_reload(manager: &Manager, status: &str) {
    let m = manager.expect("RELOADING=1");
    let now = monotonic_usec();
    assert_eq!(m.get("RELOADING"), Some("1"), "{m:?}");
    let usec: i128 = m
        .get("MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {m:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        usec <= now && now - usec < 1_000_000,
        "MONOTONIC_USEC={usec} is not within a second before {now}"
    );
    let m = manager.expect("READY=1 after the reload");
    assert_ready(&m, status);
}

fn app_env() -> Env {
    let env = Env::new();
    env.write_schema(
        "app",
        &strict_schema(json!({"port": {"type": "integer"}, "name": {"type": "string"}})),
    );
    env.write_doc("app", "port = 8080\nname = \"a\"\n");
    env
}

/// `hotconf run` for `env` with `extra` flags, in an environment holding no
/// inherited hotconf or systemd variables (a CI job run by systemd may have
/// `WATCHDOG_PID` set), plus `envs`.
fn spawn(env: &Env, extra: &[&str], envs: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(bin());
    cmd.args(env.run_args())
        .args(extra)
        .stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("HOTCONF_")
            || k.starts_with("WATCHDOG_")
            || k == "NOTIFY_SOCKET"
            || k == "RUNTIME_DIRECTORY"
        {
            cmd.env_remove(&*k);
        }
    }
    cmd.envs(envs.iter().copied());
    Daemon::from_command(cmd)
}

fn assert_quiet(manager: &Manager, window: Duration, what: &str) {
    let got = manager.collect(window);
    assert!(got.is_empty(), "{what}: unexpected notifications {got:?}");
}

#[test]
fn notifies_ready_reloads_rejections_and_stopping_in_order() {
    let env = app_env();
    let manager = Manager::at_path();
    let mut daemon = spawn(
        &env,
        &["--poll-interval", "200ms"],
        &[("NOTIFY_SOCKET", &manager.address)],
    );

    let m = manager.expect("READY=1 after startup");
    assert_ready(&m, "generation 1 · 1 document · all ok");
    assert!(daemon.wait_ready(&env.socket()), "control socket answers");

    // Several polls find nothing: not a reload, systemd hears nothing.
    assert_quiet(
        &manager,
        Duration::from_millis(1500),
        "polls without change",
    );

    // SIGHUP is an explicit reload even when nothing changed.
    daemon.signal(libc::SIGHUP);
    expect_reload(&manager, "generation 1 · 1 document · all ok");

    // A file edit (found by the watcher or the poll).
    env.write_doc("app", "port = 9090\nname = \"a\"\n");
    expect_reload(&manager, "generation 2 · 1 document · all ok");

    // A rejected edit still ends the reload; STATUS says what was rejected.
    env.write_doc("app", "port = \"nine\"\nname = \"a\"\n");
    expect_reload(
        &manager,
        "generation 2 · 1 document · rejected: app (E_SCHEMA)",
    );
    assert_quiet(&manager, Duration::from_millis(1000), "after the rejection");

    daemon.signal(libc::SIGTERM);
    let m = manager.expect("STOPPING=1");
    assert_eq!(m.get("STOPPING"), Some("1"), "{m:?}");
    let status = daemon.wait_exit(DEADLINE).expect("daemon exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert_quiet(&manager, Duration::from_millis(200), "after STOPPING=1");
}

#[test]
fn abstract_notify_socket_works_and_foreign_watchdog_is_ignored() {
    let env = app_env();
    let manager = Manager::abstract_();
    // WATCHDOG_PID names another process: the watchdog is not ours.
    let mut daemon = spawn(
        &env,
        &["--poll-interval", "0"],
        &[
            ("NOTIFY_SOCKET", &manager.address),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let m = manager.expect("READY=1 on the abstract socket");
    assert_ready(&m, "generation 1 · 1 document · all ok");
    assert_quiet(
        &manager,
        Duration::from_millis(1000),
        "foreign WATCHDOG_PID",
    );

    daemon.signal(libc::SIGTERM);
    let m = manager.expect("STOPPING=1");
    assert_eq!(m.keys().first(), Some(&"STOPPING"));
    assert!(daemon.wait_exit(DEADLINE).is_some());
}

#[test]
fn failed_startup_never_claims_ready() {
    let env = app_env();
    env.write_doc("app", "port = \"nine\"\nname = \"a\"\n");
    let manager = Manager::at_path();
    let mut daemon = spawn(&env, &[], &[("NOTIFY_SOCKET", &manager.address)]);
    let status = daemon.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(1));
    assert_quiet(&manager, Duration::from_millis(200), "failed startup");
}

#[test]
fn no_notify_socket_means_no_notifications_and_a_normal_run() {
    let env = app_env();
    let mut daemon = spawn(&env, &[], &[]);
    assert!(daemon.wait_ready(&env.socket()));
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(DEADLINE).expect("exits");
    assert!(status.success());
}

#[test]
fn watchdog_pings_at_half_the_interval_and_stops_when_the_reloader_wedges() {
    let env = app_env();
    let manager = Manager::at_path();
    let wedge = env.path().join("wedge-reloader");
    // WATCHDOG_USEC = 2 s: a ping is due every second.
    let daemon = spawn(
        &env,
        &["--poll-interval", "0"],
        &[
            ("NOTIFY_SOCKET", &manager.address),
            ("WATCHDOG_USEC", "2000000"),
            ("HOTCONF_TEST_WEDGE_RELOADER", &wedge.display().to_string()),
        ],
    );
    let m = manager.expect("READY=1");
    assert_eq!(m.get("READY"), Some("1"));

    let window = Duration::from_secs(5);
    let got = manager.collect(window);
    assert!(
        got.iter().all(|(_, m)| m.is_watchdog()),
        "only pings expected: {got:?}"
    );
    let n = got.len();
    // ~5 expected; generous bounds for a loaded machine.
    assert!((3..=7).contains(&n), "{n} pings in {window:?}");
    for pair in got.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(
            gap >= Duration::from_millis(500),
            "pings {gap:?} apart, expected about 1s"
        );
    }

    // Wedge the reloader: the next request it takes never finishes.
    std::fs::write(&wedge, b"").expect("create wedge file");
    // The watchdog's own reloader probe is such a request; pings that had
    // already passed their probes may still arrive during the first period.
    let settle = manager.collect(Duration::from_millis(2500));
    assert!(settle.iter().all(|(_, m)| m.is_watchdog()), "{settle:?}");
    assert!(
        settle.len() <= 2,
        "pings went on after the wedge: {settle:?}"
    );
    assert_quiet(
        &manager,
        Duration::from_secs(4),
        "a wedged reloader must stop the watchdog pings",
    );
    assert!(
        wait_until(Duration::from_secs(5), || daemon
            .events("watchdog_withheld")
            .len()
            == 1),
        "the withheld ping is logged once"
    );
    drop(daemon);
}

#[test]
fn reload_command_exits_1_after_a_rejected_edit() {
    let env = app_env();
    let daemon = spawn(&env, &["--poll-interval", "0"], &[]);
    assert!(daemon.wait_ready(&env.socket()));
    let reload = || {
        Command::new(bin())
            .args(["reload", "--socket", &env.socket().display().to_string()])
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("run hotconf reload")
    };
    let ok = reload();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");

    env.write_doc("app", "port = \"nine\"\nname = \"a\"\n");
    let bad = reload();
    assert_eq!(
        bad.status.code(),
        Some(1),
        "ExecReload must fail on a rejected edit: {bad:?}"
    );
    let out = String::from_utf8_lossy(&bad.stdout) + String::from_utf8_lossy(&bad.stderr);
    assert!(out.contains("E_SCHEMA"), "says what was rejected: {out}");
    drop(daemon);
}
