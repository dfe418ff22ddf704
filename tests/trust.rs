//! The trust model (README "Security", issue 14): what a local user other
//! than root and the daemon's uid can and cannot do to a running daemon,
//! and what the daemon refuses to trust on disk. Each test is the attack
//! itself, from the attacker's side: peers run as other uids (`setpriv`),
//! the daemon as root or as an unprivileged service uid.
//!
//! Tests that need other uids skip themselves when not run as root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use common::{http, wait_until, Daemon, Env, DEADLINE};

/// The flooding peer.
const UID_A: u32 = 65534;
/// Another unprivileged peer.
const UID_B: u32 = 65533;
/// The uid a service daemon runs as in these tests.
const SERVICE: u32 = 65532;
/// The socket readers' group of the shipped layout.
const READERS_GID: u32 = 65531;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips the calling test (returns from it) when not run as root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root to run peers as other users");
            return;
        }
    };
}

/// `setpriv` dropping to `uid`/`gid` with exactly `groups` as supplementary
/// groups, then `program`.
fn as_user(uid: u32, gid: u32, groups: &[u32], program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg("--").arg(program);
    cmd.stdin(Stdio::null());
    cmd
}

/// Removes every inherited hotconf setting from `cmd`.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" || k == "WATCHDOG_USEC" {
            cmd.env_remove(k);
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
}

/// A plain document `app` with an integer `port`.
fn plain_env() -> Env {
    let env = Env::new();
    env.write_schema(
        "app",
        &common::strict_schema(json!({"port": {"type": "integer"}})),
    );
    env.write_doc("app", "port = 1\n");
    env
}

/// `hotconf run` for `env` as root, explicit reloads only, plus `extra`.
fn run_command(env: &Env, extra: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.args(env.run_args())
        .args(["--poll-interval", "0", "--no-watch"])
        .args(extra)
        .stdin(Stdio::null());
    clean_env(&mut cmd);
    cmd
}

fn start(env: &Env, extra: &[&str]) -> Daemon {
    let d = Daemon::from_command(run_command(env, extra));
    assert!(
        d.wait_ready(&env.socket()),
        "not ready: {:#?}",
        d.stderr_lines()
    );
    d
}

/// Lets other users reach the socket in the (0700) temp directory.
fn open_to_others(env: &Env) {
    chmod(env.path(), 0o755);
}

/// Children killed on drop.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `curl` as `uid`: `METHOD http://localhost/PATH...` over the socket, one
/// connection for all paths; (HTTP code of the last answer, stdout).
fn curl_as(uid: u32, socket: &Path, method: &str, paths: &[&str]) -> (u16, String) {
    let mut cmd = as_user(uid, uid, &[], "curl");
    cmd.args(["-sS", "--max-time", "60", "--unix-socket"])
        .arg(socket)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    for p in paths {
        cmd.arg(format!("http://localhost{p}"));
    }
    let out = cmd
        .output()
        .expect("curl must be installed (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .rsplit_once('\n')
        .map(|(_, c)| c)
        .unwrap_or(text.as_str())
        .trim()
        .parse()
        .unwrap_or(0);
    (code, text)
}

fn generation(socket: &Path) -> u64 {
    http(socket, "GET", "/v1/status", None)
        .expect("status")
        .json()["generation"]
        .as_u64()
        .expect("generation")
}

/// Open descriptors of process `pid`.
fn fds_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- B2

#[test]
fn one_uid_flooding_the_socket_leaves_other_uids_served() {
    require_root!();
    let env = plain_env();
    open_to_others(&env);
    // 16 slots: 14 for other users, of which one uid may hold 8.
    let d = start(&env, &["--socket-mode", "0666", "--max-connections", "16"]);
    let base = fds_of(d.pid());
    let g = generation(&env.socket());
    // uid A parks a blocking query on every slot it can get.
    let url = format!("http://localhost/v1/status?index={g}&wait=120s");
    let _flood = Children(
        (0..14)
            .map(|_| {
                let mut cmd = as_user(UID_A, UID_A, &[], "curl");
                cmd.args(["-sS", "--max-time", "150", "--unix-socket"])
                    .arg(env.socket())
                    .arg(&url)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                cmd.spawn().expect("spawn curl")
            })
            .collect(),
    );
    // Every curl of the flood connected: accepted (all 14 fit in the
    // untrusted pool) or refused once uid A's share is full.
    assert!(
        wait_until(DEADLINE, || {
            let open = fds_of(d.pid()).saturating_sub(base);
            open >= 14 || (open >= 7 && !d.events("connection_limit_reached").is_empty())
        }),
        "the flood was not accepted: {:#?}",
        d.stderr_lines()
    );
    let (code, out) = curl_as(UID_B, &env.socket(), "GET", &["/v1/status"]);
    assert_eq!(code, 200, "uid B locked out by uid A's flood: {out}");
    let refusal = &d.events("connection_limit_reached")[0];
    assert_eq!(
        common::log_field(refusal, "peer_uid").and_then(Value::as_u64),
        Some(u64::from(UID_A))
    );
}

// ---------------------------------------------------------------- B7

#[test]
fn refused_reloads_are_logged_once_per_uid_with_a_count() {
    require_root!();
    let env = plain_env();
    open_to_others(&env);
    let d = start(&env, &["--socket-mode", "0666"]);
    // Fifty refused reloads on one connection.
    let paths = vec!["/v1/reload"; 50];
    let (code, out) = curl_as(UID_A, &env.socket(), "POST", &paths);
    assert_eq!(code, 403, "{out}");
    assert_eq!(out.matches("\"forbidden\"").count(), 50, "{out}");
    // Another uid still gets its own line at once.
    let (code, _) = curl_as(UID_B, &env.socket(), "POST", &["/v1/reload"]);
    assert_eq!(code, 403);
    let uid_b = |v: &Value| {
        common::log_field(v, "peer_uid").and_then(Value::as_u64) == Some(u64::from(UID_B))
    };
    assert!(
        wait_until(DEADLINE, || d.events("reload_forbidden").iter().any(uid_b)),
        "uid B's refusal not logged: {:#?}",
        d.stderr_lines()
    );
    // Logs are written in order: every line about uid A is in by now.
    let a_lines = d
        .events("reload_forbidden")
        .into_iter()
        .filter(|v| !uid_b(v))
        .count();
    assert!(
        (1..=5).contains(&a_lines),
        "{a_lines} reload_forbidden lines for 50 refusals of one uid"
    );
}

// ---------------------------------------------------------------- B9

/// Who owns `/proc/PID/status`: the process's uid when it is dumpable,
/// root when it is not (proc(5); the files are re-evaluated at each lookup,
/// the directory itself is not).
fn proc_owner(pid: i32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}/status"))
        .expect("stat /proc/PID")
        .uid()
}

/// `env` readable by `uid`, with a socket directory of its own; the
/// `hotconf run` command as that uid.
fn service_daemon(env: &Env, uid: u32, socket: &Path, extra: &[&str]) -> Command {
    let mut cmd = as_user(uid, uid, &[], common::bin());
    cmd.args(["run", "--config-dir"])
        .arg(&env.configs)
        .arg("--schema-dir")
        .arg(&env.schemas)
        .arg("--socket")
        .arg(socket)
        .args(["--log-format", "json", "--poll-interval", "0", "--no-watch"])
        .args(extra);
    clean_env(&mut cmd);
    cmd
}

#[test]
fn the_daemon_is_not_dumpable_unless_asked() {
    require_root!();
    let env = plain_env();
    open_to_others(&env);
    let run = env.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    chown(&run, SERVICE, SERVICE);
    for (extra, dumpable) in [(&[][..], false), (&["--allow-core-dumps"][..], true)] {
        let socket = run.join(format!("{dumpable}.sock"));
        let d = Daemon::from_command(service_daemon(&env, SERVICE, &socket, extra));
        assert!(d.wait_ready(&socket), "not ready: {:#?}", d.stderr_lines());
        let owner = proc_owner(d.pid());
        if dumpable {
            assert_eq!(owner, SERVICE, "--allow-core-dumps keeps it dumpable");
        } else {
            assert_eq!(owner, 0, "the daemon is dumpable (PR_SET_DUMPABLE not 0)");
        }
    }
}

// ---------------------------------------------------------------- B6

/// `hotconf status --socket SOCKET` as `uid` with `groups`.
fn status_as(uid: u32, groups: &[u32], socket: &Path) -> Output {
    let mut cmd = as_user(uid, uid, groups, common::bin());
    cmd.arg("status").arg("--socket").arg(socket);
    clean_env(&mut cmd);
    cmd.output().expect("run hotconf status")
}

#[test]
fn operators_reach_a_service_socket_and_a_planted_one_is_refused() {
    require_root!();
    let env = plain_env();
    open_to_others(&env);
    // The shipped layout: a root-owned chain, then the runtime directory
    // of the service uid, searchable by the readers' group only.
    let runtime = env.path().join("run");
    std::fs::create_dir(&runtime).expect("mkdir");
    chown(&runtime, SERVICE, READERS_GID);
    chmod(&runtime, 0o750);
    let socket = runtime.join("hotconf.sock");
    let d = Daemon::from_command(service_daemon(
        &env,
        SERVICE,
        &socket,
        &["--socket-mode", "0666"],
    ));
    assert!(d.wait_ready(&socket), "not ready: {:#?}", d.stderr_lines());

    let operator = status_as(UID_A, &[READERS_GID], &socket);
    let text = String::from_utf8_lossy(&operator.stderr).into_owned()
        + &String::from_utf8_lossy(&operator.stdout);
    assert!(operator.status.success(), "operator refused: {text}");
    assert!(text.contains("app"), "{text}");
    let root = Command::new(common::bin())
        .arg("status")
        .arg("--socket")
        .arg(&socket)
        .output()
        .expect("root status");
    assert!(
        root.status.success(),
        "root refused: {}",
        String::from_utf8_lossy(&root.stderr)
    );

    // Not in the readers' group: told exactly where it stops.
    let outsider = status_as(UID_B, &[], &socket);
    let err = String::from_utf8_lossy(&outsider.stderr).into_owned();
    assert!(!outsider.status.success());
    assert!(
        err.contains(&format!("permission denied on {}", runtime.display())),
        "{err}"
    );

    // The same uid serving a socket in a directory anyone may write to:
    // anybody could have planted it there, so it is refused.
    let shared = env.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    let planted = shared.join("hotconf.sock");
    let p = Daemon::from_command(service_daemon(
        &env,
        SERVICE,
        &planted,
        &["--socket-mode", "0666"],
    ));
    assert!(p.wait_ready(&planted), "not ready: {:#?}", p.stderr_lines());
    let fooled = status_as(UID_A, &[READERS_GID], &planted);
    let err = String::from_utf8_lossy(&fooled.stderr).into_owned();
    assert!(!fooled.status.success(), "a planted socket was believed");
    assert!(err.contains("refusing"), "{err}");
    assert!(err.contains("writable by other users"), "{err}");
}

// ---------------------------------------------------------------- B10

fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(file)
}

/// The value of `Key=` in the unit's `[Service]` section (last one wins).
fn unit_setting(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(str::to_string)
}

#[test]
fn the_unit_stops_restarting_on_invalid_configuration_and_verifies() {
    let text = std::fs::read_to_string(dist("hotconf.service")).expect("read unit");
    assert_eq!(
        unit_setting(&text, "Restart").as_deref(),
        Some("on-failure")
    );
    assert_eq!(
        unit_setting(&text, "RestartPreventExitStatus").as_deref(),
        Some("1"),
        "exit 1 (invalid configuration) must not be restarted"
    );
    assert_eq!(unit_setting(&text, "LimitCORE").as_deref(), Some("0"));
    // The separate readers' group: the runtime directory is handed to it.
    assert!(
        text.contains("chgrp hotconf-readers /run/hotconf"),
        "{text}"
    );
    let sysusers = std::fs::read_to_string(dist("hotconf.sysusers")).expect("sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with("g hotconf-readers")));

    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("hotconf.service");
    std::fs::write(&unit, text.replace("/usr/bin/hotconf", common::bin())).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", &unit.display().to_string()])
        .current_dir(dir.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed: {said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );

    // And the daemon does exit 1 on a broken file without saved state.
    let env = plain_env();
    env.write_doc("app", "port = \"x\"\n");
    let mut d = Daemon::from_command(run_command(&env, &[]));
    let status = d.wait_exit(DEADLINE).expect("the daemon did not exit");
    assert_eq!(status.code(), Some(1));
}

// ---------------------------------------------------------------- B3

/// `env` with a state directory prepared by `prepare`; the daemon's exit
/// code (if it exits) and its stderr.
fn start_on_state(
    env: &Env,
    state: &Path,
    extra: &[&str],
) -> (Daemon, Option<std::process::ExitStatus>) {
    let mut cmd = run_command(env, extra);
    cmd.arg("--state-dir").arg(state);
    let mut d = Daemon::from_command(cmd);
    let exited = wait_until(DEADLINE, || {
        matches!(d.child.try_wait(), Ok(Some(_)))
            || common::http(&env.socket(), "GET", "/v1/status", None).is_ok()
    });
    assert!(exited, "neither ready nor exited: {:#?}", d.stderr_lines());
    let status = d.wait_exit(Duration::from_millis(200));
    (d, status)
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused() {
    require_root!();
    let env = plain_env();
    let state = env.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o700);
    chown(&state, UID_A, UID_A);
    let (d, status) = start_on_state(&env, &state, &[]);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{:#?}",
        d.stderr_lines()
    );
    let err = d.stderr_lines().join("\n");
    assert!(err.contains(&format!("owned by uid {UID_A}")), "{err}");
}

#[test]
fn a_state_directory_writable_by_others_is_refused() {
    let env = plain_env();
    for mode in [0o777, 0o770, 0o1777] {
        let state = env.path().join(format!("state-{mode:o}"));
        std::fs::create_dir(&state).expect("mkdir");
        chmod(&state, mode);
        let (d, status) = start_on_state(&env, &state, &[]);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "mode {mode:o}: {:#?}",
            d.stderr_lines()
        );
        let err = d.stderr_lines().join("\n");
        assert!(err.contains("writable by other users"), "{err}");
    }
}

#[test]
fn a_symlinked_lock_or_blobs_in_the_state_directory_is_never_followed() {
    let env = plain_env();
    // `lock` → a file that does not exist yet: following it would create it.
    let state = env.path().join("state-lock");
    std::fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o700);
    let victim_file = env.path().join("created-through-lock");
    std::os::unix::fs::symlink(&victim_file, state.join("lock")).expect("symlink");
    let (d, status) = start_on_state(&env, &state, &[]);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{:#?}",
        d.stderr_lines()
    );
    assert!(d.stderr_lines().join("\n").contains("symlink"));
    assert!(
        !victim_file.exists(),
        "the daemon created a file through `lock`"
    );

    // `blobs` → a directory of someone else's: following it would chmod it
    // and write blobs into it.
    let state = env.path().join("state-blobs");
    std::fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o700);
    let victim_dir = env.path().join("victim");
    std::fs::create_dir(&victim_dir).expect("mkdir");
    chmod(&victim_dir, 0o755);
    std::os::unix::fs::symlink(&victim_dir, state.join("blobs")).expect("symlink");
    let (d, status) = start_on_state(&env, &state, &[]);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{:#?}",
        d.stderr_lines()
    );
    let meta = std::fs::metadata(&victim_dir).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o755, "chmod'ed through `blobs`");
    let written = std::fs::read_dir(&victim_dir).expect("ls").count();
    assert_eq!(written, 0, "blobs written through the symlink");
}

#[test]
fn a_persisted_generation_no_daemon_reaches_is_ignored_as_corrupt() {
    let env = plain_env();
    let state = env.path().join("state");
    {
        let (d, status) = start_on_state(&env, &state, &[]);
        assert!(status.is_none(), "{:#?}", d.stderr_lines());
        assert!(wait_until(DEADLINE, || state.join("state.json").exists()));
    }
    // Forge the manifest: same content, generation u64::MAX, checksum
    // recomputed (it guards against corruption, not forgery).
    let path = state.join("state.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    manifest["body"]["generation"] = json!(u64::MAX);
    let body = serde_json::to_vec(&manifest["body"]).expect("body");
    manifest["checksum"] = json!(hotconf::pipeline::document::sha256_hex(&body));
    std::fs::write(&path, serde_json::to_vec(&manifest).expect("json")).expect("write");

    let (d, status) = start_on_state(&env, &state, &[]);
    assert!(status.is_none(), "{:#?}", d.stderr_lines());
    assert_eq!(
        generation(&env.socket()),
        1,
        "the forged generation is served"
    );
    assert!(
        wait_until(DEADLINE, || !d.events("state_ignored").is_empty()),
        "{:#?}",
        d.stderr_lines()
    );
}

// ---------------------------------------------------------------- B9

#[test]
fn no_source_hash_of_a_secret_bearing_document_is_logged_or_shown() {
    require_root!();
    let env = Env::new();
    open_to_others(&env);
    env.write_schema(
        "app",
        &json!({
            "type": "object",
            "properties": {
                "port": {"type": "integer"},
                "password": {"type": "string", "writeOnly": true},
            },
            "additionalProperties": false,
        }),
    );
    env.write_schema(
        "plain",
        &common::strict_schema(json!({"port": {"type": "integer"}})),
    );
    let source = "port = 1\npassword = \"hunter2hunter2\"\n";
    env.write_doc("app", source);
    env.write_doc("plain", "port = 1\n");
    let d = start(&env, &["--socket-mode", "0666"]);
    let source_hash = hotconf::pipeline::document::sha256_hex(source.as_bytes());
    let accepted = d
        .events("document_accepted")
        .into_iter()
        .find(|v| common::log_field(v, "document").and_then(Value::as_str) == Some("app"))
        .expect("document_accepted for app");
    assert!(
        common::log_field(&accepted, "sha256").is_some(),
        "a hash is still logged: {accepted}"
    );
    let logs = d.stderr_lines().join("\n");
    assert!(
        !logs.contains(&source_hash),
        "the source hash of a secret-bearing document is logged:\n{logs}"
    );

    // A rejected candidate: its hash is for trusted peers only, even for a
    // document whose served version holds no secret (the candidate may).
    env.write_doc("plain", "port = \"x\"\npassword = \"new secret\"\n");
    let r = http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let root = http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json();
    assert!(
        root["documents"]["plain"]["last_error"]["sha256"].is_string(),
        "{root}"
    );
    let (code, out) = curl_as(UID_A, &env.socket(), "GET", &["/v1/status"]);
    assert_eq!(code, 200);
    let body = out.rsplit_once('\n').map(|(b, _)| b).unwrap_or("");
    let nobody: Value = serde_json::from_str(body).expect("json");
    let err = &nobody["documents"]["plain"]["last_error"];
    assert!(err["code"].is_string(), "{nobody}");
    assert!(
        err["sha256"].is_null(),
        "candidate hash shown to uid {UID_A}: {err}"
    );
}

// ---------------------------------------------------------------- B4

#[test]
fn a_config_directory_others_may_write_is_reported_loudly() {
    let env = plain_env();
    chmod(&env.configs, 0o777);
    let d = start(&env, &[]);
    let warned = d.events("unsafe_directory");
    assert!(!warned.is_empty(), "no warning: {:#?}", d.stderr_lines());
    let line = d.stderr_lines().join("\n");
    assert!(line.contains("writable by every user"), "{line}");
    let status = http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json();
    let warnings = status["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("config directory"))),
        "{status:#}"
    );
    // A private layout: no warning.
    let quiet_env = plain_env();
    chmod(&quiet_env.configs, 0o755);
    let quiet = start(&quiet_env, &[]);
    assert!(quiet.events("unsafe_directory").is_empty());
    let status = http(&quiet_env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json();
    assert_eq!(status["warnings"], json!([]));
}

#[test]
fn a_planted_symlink_to_another_users_file_is_not_served() {
    require_root!();
    let env = plain_env();
    open_to_others(&env);
    chmod(&env.configs, 0o777);
    chmod(&env.schemas, 0o777);
    // root's secret, outside the config directory.
    let secret = env.path().join("secret.toml");
    std::fs::write(&secret, "token = \"root-only-secret\"\n").expect("write");
    chmod(&secret, 0o600);
    let d = start(&env, &["--socket-mode", "0666"]);
    // uid A plants a permissive schema and a symlink to it; the next
    // reload (root's, or any implicit one) reads the directory.
    env.write_schema("creds", &json!({"type": "object"}));
    let link = env.configs.join("creds.toml");
    std::os::unix::fs::symlink(&secret, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(UID_A), Some(UID_A)).expect("lchown");
    let r = http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let (code, out) = curl_as(UID_A, &env.socket(), "GET", &["/v1/config/creds"]);
    assert!(!out.contains("root-only-secret"), "served to uid A: {out}");
    assert_eq!(code, 404, "{out}");
    let status = http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json();
    let creds = &status["documents"]["creds"];
    assert_eq!(creds["state"], "error", "{status:#}");
    assert!(
        creds.to_string().contains("symlink owned by uid"),
        "{creds:#}"
    );
    drop(d);

    // The operator's explicit choice.
    let env2 = plain_env();
    let secret2 = env2.path().join("secret.toml");
    std::fs::write(&secret2, "token = \"allowed\"\n").expect("write");
    env2.write_schema("creds", &json!({"type": "object"}));
    let link2 = env2.configs.join("creds.toml");
    std::os::unix::fs::symlink(&secret2, &link2).expect("symlink");
    std::os::unix::fs::lchown(&link2, Some(UID_A), Some(UID_A)).expect("lchown");
    let _d2 = start(&env2, &["--allow-foreign-symlinks"]);
    let r = http(&env2.socket(), "GET", "/v1/config/creds", None).expect("get");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"token": "allowed"}));
}

// ---------------------------------------------------------------- B1

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

/// Whether the daemon has started answering on `s` (bytes are waiting).
fn answer_waiting(s: &std::os::unix::net::UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on a socket we own, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

#[test]
fn four_hundred_peers_not_reading_a_4mib_document_cost_bounded_memory() {
    use std::io::Write;
    const PEERS: usize = 400;
    let own = hotconf::daemon::rlimit::raise_nofile(u64::MAX)
        .expect("getrlimit")
        .soft;
    assert!(own >= 1000, "this test needs 1000 descriptors, have {own}");
    let env = Env::new();
    env.write_schema("big", &json!({"type": "object"}));
    // About 3.8 MiB of TOML: 3800 keys of 1000 characters each.
    let mut text = String::new();
    for i in 0..3800 {
        text.push_str(&format!("k{i} = \"{}\"\n", "x".repeat(1000)));
    }
    env.write_doc("big", &text);
    let d = start(&env, &[]);
    // Warm up: one full answer, read, so caches and allocator pools exist.
    let r = http(&env.socket(), "GET", "/v1/config/big", None).expect("get");
    assert_eq!(r.status, 200);
    let before = rss_kib(d.pid());

    let peers: Vec<std::os::unix::net::UnixStream> = (0..PEERS)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(env.socket()).expect("connect");
            s.write_all(b"GET /v1/config/big HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("write");
            s
        })
        .collect();
    // Every peer is being answered (and none reads): the daemon has done
    // all the work it will do for them.
    // Generous: without shared bodies each answer is serialized anew.
    let answered = wait_until(Duration::from_secs(180), || {
        peers.iter().all(answer_waiting)
    });
    assert!(
        answered,
        "{} of {PEERS} peers got an answer started; daemon RSS {} KiB (was {before})",
        peers.iter().filter(|s| answer_waiting(s)).count(),
        rss_kib(d.pid())
    );
    let mut peak = 0;
    // Sample for a moment: the answers are in flight, stalled on full
    // socket buffers.
    let _ = wait_until(Duration::from_secs(2), || {
        peak = peak.max(rss_kib(d.pid()));
        false
    });
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("daemon RSS before {before} KiB, peak {peak} KiB, growth {growth_mib} MiB");
    assert!(
        growth_mib < 256,
        "{PEERS} non-reading peers of a 4 MiB answer grew the daemon by {growth_mib} MiB"
    );
    drop(peers);
}

// ---------------------------------------------------------------- B8

/// One `GET /metrics` on a kept-alive TCP connection; the status code (0
/// when the connection is closed or breaks).
fn scrape(s: &mut std::net::TcpStream) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let _ = s.set_read_timeout(Some(DEADLINE));
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return 0;
    }
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return 0;
        }
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return 0;
    }
    code
}

#[test]
fn a_scraper_survives_idle_tcp_peers_and_keeps_its_connection() {
    let env = plain_env();
    let d = start(&env, &["--metrics-listen", "127.0.0.1:0"]);
    let addr = {
        let found = || {
            d.json_logs().iter().find_map(|l| {
                common::log_field(l, "metrics_addr")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
        };
        assert!(wait_until(DEADLINE, || found().is_some()));
        found().expect("metrics address")
    };
    // The scraper's keep-alive connection, used once.
    let mut scraper = std::net::TcpStream::connect(&addr).expect("connect");
    assert_eq!(scrape(&mut scraper), 200);
    // Then 100 TCP peers connect and send nothing: more than the port's
    // slots.
    let idle: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() >= 80, "only {} connected", idle.len());
    // A scrape interval longer than the header-read (idle) timeout of the
    // socket (10 s) passes.
    let _ = wait_until(Duration::from_secs(12), || false);
    // The kept-alive connection still works, and so does a new one.
    assert_eq!(
        scrape(&mut scraper),
        200,
        "the scraper's connection was closed"
    );
    let mut fresh = std::net::TcpStream::connect(&addr).expect("connect");
    assert_eq!(scrape(&mut fresh), 200, "a new scrape was locked out");
    // And with every slot held by idle peers again, a new scraper still
    // gets in (the longest-idle peer makes room).
    let more: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    // Once the daemon has dealt with all of them (its descriptors stop
    // moving), every slot is held by an idle peer.
    let mut last = fds_of(d.pid());
    let mut since = std::time::Instant::now();
    assert!(wait_until(DEADLINE, || {
        let now = fds_of(d.pid());
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        }
        since.elapsed() >= Duration::from_millis(300)
    }));
    let mut late = std::net::TcpStream::connect(&addr).expect("connect");
    assert_eq!(scrape(&mut late), 200, "locked out by idle peers");
    drop((idle, more));
}
