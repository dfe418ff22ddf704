//! Failure modes of the environment, one test each (README "Failure modes"):
//! what the daemon does, what the operator sees, and that it recovers.
//! Each drives the real binary; faults are real (permissions for a daemon
//! run as another user, user and mount namespaces, signals).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use common::{http, log_field, wait_until, Daemon, Env, DEADLINE};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NOBODY: u32 = 65534;

fn schema() -> Value {
    common::strict_schema(json!({ "port": { "type": "integer", "minimum": 1 } }))
}

fn status(socket: &Path) -> Value {
    http(socket, "GET", "/v1/status", None)
        .map(|r| r.json())
        .unwrap_or(Value::Null)
}

fn served(socket: &Path, name: &str) -> Value {
    http(socket, "GET", &format!("/v1/config/{name}"), None)
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.json())
        .unwrap_or(Value::Null)
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is needed: apt-get install -y {package}");
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests run the daemon as another user or in namespaces: run them as root (CI does)"
    );
}

/// An env whose documents uid 65534 can read, and a socket directory it
/// owns; the daemon runs as that user (no `CAP_DAC_OVERRIDE`), so
/// permissions apply to it.
fn unprivileged(env: &Env, extra: &[&str]) -> (Daemon, PathBuf) {
    require_root();
    for p in [env.path(), &env.configs, &env.schemas] {
        chmod(p, 0o755);
    }
    for dir in [&env.configs, &env.schemas] {
        for e in std::fs::read_dir(dir).expect("ls").flatten() {
            chmod(&e.path(), 0o644);
        }
    }
    let run = env.path().join("run");
    std::fs::create_dir(&run).expect("mkdir run");
    std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)).expect("chown");
    let socket = run.join("hotconf.sock");
    let mut args = env.run_args();
    let i = args.iter().position(|a| a == "--socket").expect("--socket");
    args[i + 1] = socket.display().to_string();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(common::bin());
    cmd.args(&args).uid(NOBODY).gid(NOBODY);
    scrub(&mut cmd);
    let d = Daemon::from_command(cmd);
    assert!(d.wait_ready(&socket), "{:#?}", d.stderr_lines());
    (d, socket)
}

fn scrub(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" || k == "WATCHDOG_USEC" {
            cmd.env_remove(k);
        }
    }
}

fn root_daemon(env: &Env, extra: &[&str]) -> Daemon {
    let mut args = env.run_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let d = Daemon::spawn(&args, &[]);
    assert!(d.wait_ready(&env.socket()), "{:#?}", d.stderr_lines());
    d
}

fn doc_state(socket: &Path, name: &str) -> (Value, Value) {
    let st = status(socket);
    let d = &st["documents"][name];
    (d["state"].clone(), d["last_error"]["code"].clone())
}

#[test]
fn unreadable_config_file_is_e_io_keeps_the_last_good_and_recovers() {
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let (d, socket) = unprivileged(&env, &["--poll-interval", "300ms"]);
    let file = env.configs.join("app.toml");
    chmod(&file, 0o000);
    // Root writes through the mode; the daemon (uid 65534) cannot read it.
    std::fs::write(&file, "port = 2\n").expect("write");
    assert!(
        wait_until(DEADLINE, || doc_state(&socket, "app")
            == (json!("error"), json!("E_IO"))),
        "{:#}\n{:#?}",
        status(&socket),
        d.stderr_lines()
    );
    let st = status(&socket);
    let message = st["documents"]["app"]["last_error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("permission denied"), "{message}");
    assert_eq!(served(&socket, "app"), json!({"port": 1}), "last good kept");
    // Readable again: the poll picks it up without any signal.
    chmod(&file, 0o644);
    assert!(
        wait_until(DEADLINE, || served(&socket, "app") == json!({"port": 2})),
        "{:#}",
        status(&socket)
    );
    assert_eq!(doc_state(&socket, "app").0, json!("ok"));
}

#[test]
fn unreadable_schema_directory_is_e_io_naming_the_file_once() {
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let (d, socket) = unprivileged(&env, &["--poll-interval", "0"]);
    chmod(&env.schemas, 0o000);
    env.write_doc("app", "port = 2\n");
    let r = http(&socket, "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let st = status(&socket);
    let err = &st["documents"]["app"]["last_error"];
    assert_eq!(err["code"], "E_IO", "{st:#}");
    // The message is the compiler-style line.
    let line = err["message"].as_str().unwrap_or("").to_string();
    assert!(line.contains("app.schema.json"), "{line}");
    assert_eq!(
        line.matches("app.schema.json").count(),
        1,
        "the path is said once: {line}"
    );
    assert!(line.contains("permission denied"), "{line}");
    assert_eq!(served(&socket, "app"), json!({"port": 1}), "last good kept");
    // The log says it the same way, once per rejection.
    let rejected = d.events("document_rejected");
    let last = rejected.last().expect("a document_rejected line");
    assert_eq!(
        log_field(last, "code").and_then(Value::as_str),
        Some("E_IO")
    );
    chmod(&env.schemas, 0o755);
    let r = http(&socket, "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(served(&socket, "app"), json!({"port": 2}));
    assert_eq!(doc_state(&socket, "app").0, json!("ok"));
}

#[test]
fn config_directory_deleted_and_recreated_with_the_same_content() {
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let d = root_daemon(&env, &["--debounce", "100ms"]);
    let socket = env.socket();
    let generation = status(&socket)["generation"].clone();
    std::fs::remove_dir_all(&env.configs).expect("rm -r configs");
    assert!(
        wait_until(DEADLINE, || doc_state(&socket, "app").0 == json!("missing")),
        "{:#}",
        status(&socket)
    );
    assert_eq!(served(&socket, "app"), json!({"port": 1}), "still served");
    std::fs::create_dir(&env.configs).expect("mkdir");
    std::fs::write(env.configs.join("app.toml"), "port = 1\n").expect("write");
    assert!(
        wait_until(DEADLINE, || doc_state(&socket, "app").0 == json!("ok")),
        "{:#}\n{:#?}",
        status(&socket),
        d.stderr_lines()
    );
    // Same content: no new generation.
    assert_eq!(status(&socket)["generation"], generation);
    // And new content after another round.
    std::fs::remove_dir_all(&env.configs).expect("rm -r configs");
    std::fs::create_dir(&env.configs).expect("mkdir");
    std::fs::write(env.configs.join("app.toml"), "port = 7\n").expect("write");
    assert!(
        wait_until(DEADLINE, || served(&socket, "app") == json!({"port": 7})),
        "{:#}",
        status(&socket)
    );
}

#[test]
fn sigstop_for_five_seconds_with_edits_then_sigcont_picks_them_up() {
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let d = root_daemon(&env, &["--poll-interval", "0"]);
    let socket = env.socket();
    d.signal(libc::SIGSTOP);
    for port in 2..=6 {
        env.write_doc("app", &format!("port = {port}\n"));
        // The scenario is a stopped daemon for 5 s, edits spread over it.
        std::thread::sleep(Duration::from_secs(1));
    }
    d.signal(libc::SIGCONT);
    assert!(
        wait_until(DEADLINE, || served(&socket, "app") == json!({"port": 6})),
        "{:#}\n{:#?}",
        status(&socket),
        d.stderr_lines()
    );
    assert_eq!(doc_state(&socket, "app").0, json!("ok"));
}

#[test]
fn socket_directory_removed_is_logged_and_the_socket_recreated() {
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let run = env.path().join("run");
    std::fs::create_dir(&run).expect("mkdir run");
    let socket = run.join("hotconf.sock");
    let mut args = env.run_args();
    let i = args.iter().position(|a| a == "--socket").expect("--socket");
    args[i + 1] = socket.display().to_string();
    let d = Daemon::spawn(&args, &[]);
    assert!(d.wait_ready(&socket), "{:#?}", d.stderr_lines());
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;

    std::fs::remove_dir_all(&run).expect("rm -r run");
    assert!(
        d.wait_event_count("socket_lost", 1, DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    let lost = &d.events("socket_lost")[0];
    assert_eq!(lost.get("level").and_then(Value::as_str), Some("ERROR"));
    // Still no directory: said once, not every second.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(d.events("socket_lost").len(), 1, "{:#?}", d.stderr_lines());
    assert!(http(&socket, "GET", "/v1/status", None).is_err());

    std::fs::create_dir(&run).expect("mkdir run");
    assert!(
        d.wait_event_count("socket_restored", 1, DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    assert!(d.wait_ready(&socket));
    assert_eq!(served(&socket, "app"), json!({"port": 1}));
    let again = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(again, mode, "same mode as the first socket");
    // And it still follows edits.
    env.write_doc("app", "port = 3\n");
    assert!(wait_until(DEADLINE, || served(&socket, "app") == json!({"port": 3})));

    // A socket file removed alone is recreated too.
    std::fs::remove_file(&socket).expect("rm socket");
    assert!(d.wait_event_count("socket_restored", 2, DEADLINE));
    assert!(d.wait_ready(&socket));
}

/// The daemon in a new user namespace where `limit` (under /proc/sys/user)
/// is 0, polling every 200 ms.
fn without_inotify(env: &Env, limit: &str) -> Daemon {
    require("unshare", "util-linux");
    let mut cmd = Command::new("unshare");
    cmd.args(["-U", "-r", "--", "sh", "-c"])
        .arg(format!(
            "echo 0 > /proc/sys/user/{limit} && exec \"$0\" \"$@\""
        ))
        .arg(common::bin())
        .args(env.run_args())
        .args(["--poll-interval", "200ms", "--debounce", "100ms"]);
    scrub(&mut cmd);
    let d = Daemon::from_command(cmd);
    assert!(d.wait_ready(&env.socket()), "{:#?}", d.stderr_lines());
    d
}

fn degraded_then_restored(limit: &str, sysctl: &str) {
    require("nsenter", "util-linux");
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let d = without_inotify(&env, limit);
    let socket = env.socket();
    assert!(
        wait_until(DEADLINE, || status(&socket)["watch"]["ok"] == json!(false)),
        "{:#}",
        status(&socket)
    );
    let reason = status(&socket)["watch"]["degraded_reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains(sysctl), "names {sysctl}: {reason:?}");
    assert!(
        !reason.contains("Too many open files"),
        "not the descriptor limit: {reason:?}"
    );
    // The poll delivers meanwhile.
    env.write_doc("app", "port = 2\n");
    assert!(wait_until(DEADLINE, || served(&socket, "app") == json!({"port": 2})));
    // The limit is raised (inside the daemon's namespace): watching resumes
    // by itself.
    let ok = Command::new("nsenter")
        .args(["-U", "-t", &d.pid().to_string(), "--", "sh", "-c"])
        .arg(format!("echo 1024 > /proc/sys/user/{limit}"))
        .status()
        .expect("nsenter");
    assert!(ok.success(), "raising {limit} in the daemon's namespace");
    assert!(
        d.wait_event_count("watch_restored", 1, DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    assert!(wait_until(DEADLINE, || status(&socket)["watch"]["ok"] == json!(true)));
    env.write_doc("app", "port = 3\n");
    assert!(wait_until(DEADLINE, || served(&socket, "app") == json!({"port": 3})));
}

#[test]
fn inotify_instances_exhausted_names_the_sysctl_and_watching_resumes() {
    degraded_then_restored("max_inotify_instances", "fs.inotify.max_user_instances");
}

#[test]
fn inotify_watches_exhausted_names_the_sysctl_and_watching_resumes() {
    degraded_then_restored("max_inotify_watches", "fs.inotify.max_user_watches");
}

/// The daemon in a new mount namespace whose state directory is a 256 KiB
/// tmpfs; the test reaches it through `/proc/PID/root`.
fn on_tiny_tmpfs(env: &Env, state: &Path) -> Daemon {
    require_root();
    require("unshare", "util-linux");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=256k,mode=0700 tmpfs '{}' && exec \"$0\" \"$@\"",
            state.display()
        ))
        .arg(common::bin())
        .args(env.run_args())
        .args(["--poll-interval", "0", "--state-dir"])
        .arg(state);
    scrub(&mut cmd);
    let d = Daemon::from_command(cmd);
    assert!(d.wait_ready(&env.socket()), "{:#?}", d.stderr_lines());
    d
}

fn reload(socket: &Path) -> Value {
    let r = http(socket, "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn state_directory_full_then_read_only_warns_keeps_serving_and_recovers() {
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    let state = env.path().join("state");
    std::fs::create_dir(&state).expect("mkdir state");
    let d = on_tiny_tmpfs(&env, &state);
    let socket = env.socket();
    assert!(wait_until(DEADLINE, || status(&socket)["state_dir"]["ok"]
        == json!(true)));
    let inside = PathBuf::from(format!("/proc/{}/root", d.pid()))
        .join(state.strip_prefix("/").expect("absolute state dir"));

    // Full: a filler takes every block.
    let filler = inside.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    env.write_doc("app", &format!("port = 2\n# {}\n", "x".repeat(8000)));
    reload(&socket);
    assert_eq!(
        served(&socket, "app"),
        json!({"port": 2}),
        "serving goes on"
    );
    assert!(
        wait_until(DEADLINE, || status(&socket)["state_dir"]["ok"]
            == json!(false)),
        "{:#}",
        status(&socket)
    );
    assert!(
        !d.events("persist_failed").is_empty(),
        "{:#?}",
        d.stderr_lines()
    );
    std::fs::remove_file(&filler).expect("free");
    env.write_doc("app", "port = 3\n");
    reload(&socket);
    assert!(
        wait_until(DEADLINE, || status(&socket)["state_dir"]["ok"]
            == json!(true)),
        "{:#}",
        status(&socket)
    );

    // Read-only: a read-only bind mount over it inside the daemon's
    // namespace (a plain `remount,ro` is refused while the daemon holds a
    // file there open for writing); unmounting it makes it writable again.
    let in_ns = |script: String| {
        let ok = Command::new("nsenter")
            .args(["-m", "-t", &d.pid().to_string(), "--", "sh", "-c"])
            .arg(&script)
            .status()
            .expect("nsenter");
        assert!(ok.success(), "{script}");
    };
    let s = state.display();
    in_ns(format!(
        "mount --bind '{s}' '{s}' && mount -o remount,bind,ro '{s}'"
    ));
    let failed = d.events("persist_failed").len();
    env.write_doc("app", "port = 4\n");
    reload(&socket);
    assert_eq!(
        served(&socket, "app"),
        json!({"port": 4}),
        "serving goes on"
    );
    assert!(wait_until(DEADLINE, || d.events("persist_failed").len() > failed));
    assert_eq!(status(&socket)["state_dir"]["ok"], json!(false));
    in_ns(format!("umount '{s}'"));
    env.write_doc("app", "port = 5\n");
    reload(&socket);
    assert!(
        wait_until(DEADLINE, || status(&socket)["state_dir"]["ok"]
            == json!(true)),
        "{:#}",
        status(&socket)
    );
}

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Reads `uptime_s`, `counters.reloads` and `last_reload.duration_ms`.
fn clocks(socket: &Path) -> (u64, u64, u64) {
    let st = status(socket);
    (
        st["uptime_s"]
            .as_u64()
            .expect("uptime_s is a non-negative integer"),
        st["counters"]["reloads"].as_u64().unwrap_or(0),
        st["last_reload"]["duration_ms"].as_u64().unwrap_or(0),
    )
}

/// A blocking query must answer (with the current value when `wait` runs
/// out) whatever the wall clock does: it runs on the monotonic clock.
fn blocking_query_answers(socket: &Path) {
    let socket = socket.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let g = status(&socket)["generation"].as_u64().unwrap_or(0);
        let r = http(
            &socket,
            "GET",
            &format!("/v1/config?index={g}&wait=1s"),
            None,
        );
        let _ = tx.send(r.map(|r| r.status));
    });
    let answer = rx
        .recv_timeout(DEADLINE)
        .expect("the blocking query stalled");
    assert_eq!(answer.expect("answer"), 200);
}

#[test]
fn wall_clock_jumps_cause_no_reload_storm_no_stall_and_no_negative_duration() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "libfaketime is needed: apt-get install -y faketime"
    );
    let env = Env::new();
    env.write_schema("app", &schema());
    env.write_doc("app", "port = 1\n");
    // Only the wall clock jumps (as when an operator or NTP sets it); the
    // monotonic clock never does.
    let offset = env.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("offset");
    let mut args = env.run_args();
    args.extend(["--poll-interval", "1s", "--debounce", "100ms"].map(String::from));
    let d = Daemon::spawn(
        &args,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", offset.to_str().expect("utf-8")),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let socket = env.socket();
    assert!(d.wait_ready(&socket), "{:#?}", d.stderr_lines());
    assert!(
        wait_until(DEADLINE, || clocks(&socket).0 >= 1),
        "uptime never reached 1 s"
    );
    for (jump, port) in [("-1d", 2), ("+2d", 3)] {
        let (uptime, _, _) = clocks(&socket);
        std::fs::write(&offset, format!("{jump}\n")).expect("jump");
        // The faked clock really moved for the daemon.
        let published_before = status(&socket)["published_at"].clone();
        env.write_doc("app", &format!("port = {port}\n"));
        assert!(
            wait_until(DEADLINE, || served(&socket, "app") == json!({"port": port})),
            "after a {jump} jump: {:#}\n{:#?}",
            status(&socket),
            d.stderr_lines()
        );
        assert_ne!(status(&socket)["published_at"], published_before);
        let (uptime_after, reloads, duration_ms) = clocks(&socket);
        assert!(
            uptime_after >= uptime,
            "uptime went from {uptime} to {uptime_after} s after a {jump} jump"
        );
        assert!(
            duration_ms < 60_000,
            "duration_ms {duration_ms} after a {jump} jump"
        );
        // No storm: an idle daemon does no recorded reloads while the poll
        // keeps running.
        std::thread::sleep(Duration::from_secs(3));
        let (_, reloads_later, _) = clocks(&socket);
        assert!(
            reloads_later <= reloads + 1,
            "{} reloads in 3 idle seconds after a {jump} jump",
            reloads_later - reloads
        );
        blocking_query_answers(&socket);
    }
    for rec in d.events("reload_finished") {
        let ms = log_field(&rec, "duration_ms").and_then(Value::as_i64);
        assert!(ms.is_some_and(|ms| ms >= 0), "{rec}");
    }
}
