//! Fitting the operator's tools (issue 15): blocking queries across a
//! daemon restart, usage errors, honest CLI answers, and the conventions of
//! Prometheus, HTTP probes, journald and shells. Every test drives the real
//! binary in a temp directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use common::{http, strict_schema, wait_until, Daemon, Env, DEADLINE};

fn port_schema() -> Value {
    strict_schema(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}))
}

fn one_doc(env: &Env, port: u16) {
    env.write_schema("app", &port_schema());
    env.write_doc("app", &format!("port = {port}\n"));
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

/// `hotconf ARGS` with a clean environment plus `envs`.
fn cli(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(common::bin());
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" || k == "JOURNAL_STREAM" {
            c.env_remove(k);
        }
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run hotconf")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stops a daemon with SIGTERM and waits for it to exit.
fn stop(mut d: Daemon) {
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(DEADLINE).is_some(), "daemon did not stop");
}

#[test]
fn blocking_queries_answer_at_once_for_another_instance() {
    let env = Env::new();
    one_doc(&env, 1);
    let first = start(&env, &["--no-watch", "--poll-interval", "0"]);
    let old = http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json();
    let old_instance = old["instance"].as_str().expect("instance").to_string();
    assert_eq!(old["generation"], json!(1));

    let mut watch = Daemon::from_command({
        let mut c = Command::new(common::bin());
        c.args(["watch", "--socket"]).arg(env.socket());
        c
    });
    assert!(wait_until(DEADLINE, || watch.stdout_lines().len() == 1));

    // A restart without a state dir counts from generation 1 again.
    stop(first);
    env.write_doc("app", "port = 2\n");
    let _second = start(&env, &["--no-watch", "--poll-interval", "0"]);
    let now = http(&env.socket(), "GET", "/v1/status", None)
        .expect("status")
        .json();
    assert_eq!(now["generation"], json!(1));
    assert_ne!(now["instance"], json!(old_instance));

    // `hotconf watch` reports the change across the restart promptly.
    assert!(
        wait_until(DEADLINE, || watch.stdout_lines().len() >= 2),
        "watch missed the restart: {:?} {:?}",
        watch.stdout_lines(),
        watch.stderr_lines()
    );
    // The same index from the previous start: answered at once, not after
    // the 300 s wait.
    for path in ["/v1/status", "/v1/config", "/v1/config/app"] {
        let uri = format!("{path}?index=1&wait=600s&instance={old_instance}");
        let r = http(&env.socket(), "GET", &uri, None).expect("blocking query");
        assert_eq!(r.status, 200, "{uri}: {}", r.body);
    }
    let line: Value = serde_json::from_str(&watch.stdout_lines()[1]).expect("json line");
    assert_eq!(line["changed"], json!(["app"]));
    assert_eq!(line["instance"], now["instance"]);
    let _ = watch.child.kill();
    let _ = watch.wait_exit(DEADLINE);
}

#[test]
fn an_invalid_log_level_is_a_usage_error_naming_the_levels() {
    let env = Env::new();
    one_doc(&env, 1);
    let cases = [
        ("--log-level", "verbose"),
        ("--log-level", "debugg"),
        ("--log-level", "hotconf=debugg"),
        ("--log-level", ""),
        ("HOTCONF_LOG_LEVEL", "verbose"),
    ];
    for (how, level) in cases {
        let mut args = env.run_args();
        let mut envs = Vec::new();
        if how.starts_with("--") {
            args.extend([how.to_string(), level.to_string()]);
        } else {
            envs.push((how, level));
        }
        // A daemon that starts anyway would run forever: bounded wait.
        let mut d = Daemon::spawn(&args, &envs);
        let status = d.wait_exit(DEADLINE);
        let err = d.stderr_lines().join("\n");
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{how} {level:?}: {err}"
        );
        assert!(
            err.contains("off, error, warn, info, debug, trace"),
            "{how} {level:?}: {err}"
        );
    }
}

#[test]
fn reload_after_the_watcher_applied_an_edit_says_nothing_new_and_what_is_not_ok() {
    let env = Env::new();
    one_doc(&env, 1);
    let d = start(&env, &["--poll-interval", "0"]);
    env.write_doc("app", "port = 0\n");
    assert!(wait_until(DEADLINE, || {
        http(&env.socket(), "GET", "/v1/status", None)
            .map(|r| r.json()["documents"]["app"]["state"] == json!("error"))
            .unwrap_or(false)
    }));
    let socket = env.socket();
    let mut c = Command::new(common::bin());
    c.args(["reload", "--socket"]).arg(&socket);
    let o = c.output().expect("reload");
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("nothing new to apply"), "{text}");
    assert!(!text.contains("rejected: -"), "{text}");
    assert!(text.contains("not ok"), "{text}");
    let line = format!(
        "{}:1:8: E_SCHEMA /port:",
        env.configs.join("app.toml").display()
    );
    assert!(text.lines().any(|l| l.starts_with(&line)), "{text}");

    let metrics = http(&socket, "GET", "/metrics", None)
        .expect("metrics")
        .body;
    let lines: Vec<_> = metrics.lines().map(|l| Ok(l.to_string())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("parse");
    let unchanged = [("trigger", "api"), ("result", "unchanged")];
    assert_eq!(
        common::sample(&scrape, "hotconf_reloads_total", &unchanged),
        Some(1.0),
        "{metrics}"
    );
    let api_ok = [("trigger", "api"), ("result", "ok")];
    assert_eq!(
        common::sample(&scrape, "hotconf_reloads_total", &api_ok),
        Some(0.0)
    );
    assert!(!metrics.contains("Reloads that did something"), "{metrics}");
    drop(d);
}

#[test]
fn check_says_how_many_documents_are_ok_unless_quiet() {
    let env = Env::new();
    one_doc(&env, 1);
    env.write_schema("db", &port_schema());
    env.write_doc("db", "port = 2\n");
    let dirs = |extra: &[&str]| {
        let mut v = vec![
            "check".to_string(),
            "--config-dir".into(),
            env.configs.display().to_string(),
            "--schema-dir".into(),
            env.schemas.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let args = dirs(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args, &[])
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "2 documents ok\n");
    let o = run(&["--quiet"]);
    assert_eq!((o.status.code(), stderr(&o).as_str()), (Some(0), ""));
    let app = env.configs.join("app.toml").display().to_string();
    let o = run(&[&app]);
    assert_eq!(stderr(&o), "1 document ok\n");

    // gcc's diagnostic form, for editors' problem matchers.
    env.write_doc("app", "port = 0\n");
    let o = run(&["--format", "gcc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(&format!("{app}:1:8: error: E_SCHEMA /port: ")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn an_empty_config_dir_is_said_by_check_and_warned_by_run() {
    let env = Env::new();
    let args = [
        "check",
        "--config-dir",
        env.configs.to_str().expect("utf-8"),
        "--schema-dir",
        env.schemas.to_str().expect("utf-8"),
    ];
    let o = cli(&args, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no documents found"), "{}", stderr(&o));

    let d = start(&env, &["--no-watch"]);
    assert!(
        d.wait_event_count("no_documents", 1, DEADLINE),
        "{:#?}",
        d.stderr_lines()
    );
    let warn = &d.events("no_documents")[0];
    assert_eq!(warn["level"], json!("WARN"), "{warn}");
}

#[test]
fn a_refused_startup_never_logs_a_published_generation() {
    let env = Env::new();
    one_doc(&env, 1);
    env.write_schema("db", &port_schema());
    env.write_doc("db", "port = 0\n");
    let mut d = Daemon::spawn(&env.run_args(), &[]);
    let status = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        d.events("snapshot_published").is_empty() && d.events("document_accepted").is_empty(),
        "{:#?}",
        d.stderr_lines()
    );
    let last = d.stderr_lines().last().cloned().unwrap_or_default();
    assert!(last.contains("not starting"), "{last}");
}

#[test]
fn poll_reloads_are_logged_as_poll() {
    let env = Env::new();
    one_doc(&env, 1);
    let d = start(&env, &["--no-watch", "--poll-interval", "100ms"]);
    env.write_doc("app", "port = 2\n");
    assert!(
        wait_until(DEADLINE, || d
            .events("reload_finished")
            .iter()
            .any(|e| common::log_field(e, "trigger") == Some(&json!("poll")))),
        "{:#?}",
        d.stderr_lines()
    );
    assert!(d
        .events("reload_finished")
        .iter()
        .all(|e| common::log_field(e, "trigger") != Some(&json!("watch"))));
}

#[test]
fn boolean_env_twins_take_the_usual_spellings() {
    let env = Env::new();
    one_doc(&env, 1);
    for (value, set) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("true", true),
        ("0", false),
        ("no", false),
        ("off", false),
        ("false", false),
    ] {
        let mut args = env.run_args();
        args.extend(["--poll-interval".into(), "0".into()]);
        let d = Daemon::spawn(
            &args,
            &[
                ("HOTCONF_NO_WATCH", value),
                ("HOTCONF_ALL_OR_NOTHING", value),
            ],
        );
        assert!(
            d.wait_ready(&env.socket()),
            "{value}: {:#?}",
            d.stderr_lines()
        );
        let event = if set {
            "watch_disabled"
        } else {
            "watch_started"
        };
        assert!(
            d.wait_event_count(event, 1, DEADLINE),
            "{value}: {:#?}",
            d.stderr_lines()
        );
        let startup = &d.events("startup")[0];
        assert_eq!(
            common::log_field(startup, "all_or_nothing"),
            Some(&json!(set))
        );
        stop(d);
    }
    let mut args = env.run_args();
    args.extend(["--poll-interval".into(), "0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = Command::new(common::bin());
    c.args(&args).env("HOTCONF_NO_WATCH", "maybe");
    let o = c.output().expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn help_shows_the_real_socket_default_and_help_takes_help() {
    let rt = tempfile::tempdir().expect("tempdir");
    for sub in ["run", "status", "watch"] {
        let o = cli(&[sub, "--help"], &[("RUNTIME_DIRECTORY", rt.path())]);
        assert_eq!(o.status.code(), Some(0));
        let want = format!("[default: {}", rt.path().join("hotconf.sock").display());
        assert!(stdout(&o).contains(&want), "{sub}: {}", stdout(&o));
        assert!(
            !stdout(&o).contains("default: see README"),
            "{}",
            stdout(&o)
        );
    }
    for args in [&["help", "--help"][..], &["help", "run", "--help"][..]] {
        let o = cli(args, &[]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage:"), "{}", stdout(&o));
    }
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused_naming_the_first() {
    let env = Env::new();
    one_doc(&env, 1);
    let state = env.path().join("state");
    let state_arg = state.display().to_string();
    let first = start(&env, &["--no-watch", "--state-dir", &state_arg]);
    let mut args = env.run_args();
    let other = env.path().join("other.sock");
    if let Some(i) = args.iter().position(|a| a == "--socket") {
        args[i + 1] = other.display().to_string();
    }
    args.extend(["--no-watch".into(), "--state-dir".into(), state_arg.clone()]);
    let mut second = Daemon::spawn(&args, &[]);
    let status = second.wait_exit(DEADLINE).expect("second daemon exits");
    assert_eq!(status.code(), Some(1), "{:#?}", second.stderr_lines());
    let text = second.stderr_lines().join("\n");
    assert!(text.contains(&format!("pid {}", first.pid())), "{text}");
    assert!(!other.exists());
    drop(first);
}

#[test]
fn readme_error_examples_match_the_shipped_app_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let env = Env::new();
    for f in ["app.toml", "features.toml"] {
        std::fs::copy(root.join("configs").join(f), env.configs.join(f)).expect("copy");
    }
    for f in std::fs::read_dir(root.join("schemas")).expect("schemas") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, env.schemas.join(f.file_name().expect("name"))).expect("copy");
    }
    let shipped = std::fs::read_to_string(root.join("configs/app.toml")).expect("app.toml");
    for (edit, code) in [
        ("timeout_ms = \"5000ms\"", "E_SCHEMA"),
        ("timeout_ms == 5000", "E_PARSE"),
    ] {
        let text = shipped.replace("timeout_ms = 5000\n", &format!("{edit}\n"));
        std::fs::write(env.configs.join("app.toml"), text).expect("write");
        let mut c = Command::new(common::bin());
        c.current_dir(env.path()).arg("check");
        let o = c.output().expect("check");
        let line = stdout(&o).lines().next().unwrap_or_default().to_string();
        assert!(line.contains(code), "{line}");
        assert!(readme.contains(&line), "README lacks {line:?}");
    }
}

/// `GET PATH` over TCP with extra request headers; the raw answer.
fn tcp_get(addr: &str, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// The body of a raw HTTP answer (not chunked: these answers have a length).
fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// Starts a daemon with `--metrics-listen 127.0.0.1:0` and returns it with
/// the TCP address it logged.
fn with_metrics(env: &Env, extra: &[&str]) -> (Daemon, String) {
    let mut args = vec!["--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let d = start(env, &args);
    let mut addr = None;
    assert!(wait_until(DEADLINE, || {
        addr = d.json_logs().iter().find_map(|l| {
            common::log_field(l, "metrics_addr")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        addr.is_some()
    }));
    (d, addr.expect("metrics_addr logged"))
}

#[test]
fn promtool_finds_nothing_to_complain_about_in_metrics() {
    let env = Env::new();
    one_doc(&env, 1);
    env.write_schema("db", &port_schema());
    env.write_doc("db", "port = 2\n");
    let (_d, addr) = with_metrics(&env, &["--no-watch"]);
    env.write_doc("db", "port = 0\n");
    http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    let raw = tcp_get(&addr, "/metrics", "Accept: */*\r\n");
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{raw}"
    );
    let text = body_of(&raw);
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("promtool not found ({e}): apt-get install prometheus"),
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let o = child.wait_with_output().expect("promtool");
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        stdout(&o),
        stderr(&o)
    );
    for series in [
        "hotconf_build_info{version=\"",
        "hotconf_rejections_total{code=\"E_SCHEMA\"} 1",
        "hotconf_watch_healthy 1",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(series), "{series}: {text}");
    }
    // Prometheus asks for OpenMetrics and gets it.
    let raw = tcp_get(
        &addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    );
    assert!(raw.contains("application/openmetrics-text"), "{raw}");
    assert!(body_of(&raw).ends_with("# EOF\n"), "{raw}");
    // The probes, and nothing else but /metrics.
    assert!(tcp_get(&addr, "/-/healthy", "").starts_with("HTTP/1.1 200"));
    assert!(tcp_get(&addr, "/-/ready", "").starts_with("HTTP/1.1 200"));
    assert!(tcp_get(&addr, "/v1/status", "").starts_with("HTTP/1.1 404"));
}

#[test]
fn metrics_listen_takes_a_bare_port_and_a_host_name() {
    let env = Env::new();
    one_doc(&env, 1);
    for listen in [":0", "localhost:0"] {
        let d = start(&env, &["--no-watch", "--metrics-listen", listen]);
        assert!(
            d.wait_event_count("startup", 1, DEADLINE),
            "{listen}: {:#?}",
            d.stderr_lines()
        );
        stop(d);
    }
}

/// A child killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a log file once `cond` holds for them (bounded wait).
fn wait_lines(path: &Path, cond: impl Fn(&[String]) -> bool) -> Vec<String> {
    let read = || -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let ok = wait_until(DEADLINE, || cond(&read()));
    let lines = read();
    assert!(ok, "{lines:#?}");
    lines
}

#[test]
fn under_journald_lines_carry_priorities_and_no_timestamps() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    one_doc(&env, 1);
    let log = env.path().join("journal.stream");
    let file = std::fs::File::create(&log).expect("log file");
    let meta = file.metadata().expect("stat");
    let mut c = Command::new(common::bin());
    c.args(["run", "--config-dir"])
        .arg(&env.configs)
        .arg("--schema-dir")
        .arg(&env.schemas)
        .arg("--socket")
        .arg(env.socket())
        .args(["--no-watch", "--poll-interval", "0"])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(std::process::Stdio::null())
        .stderr(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" {
            c.env_remove(k);
        }
    }
    // Not `Daemon`: it would pipe stderr, and stderr must be this file.
    let d = Killed(
        c.stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    assert!(wait_until(DEADLINE, || http(
        &env.socket(),
        "GET",
        "/v1/status",
        None
    )
    .is_ok()));
    env.write_doc("app", "port = 0\n");
    http(&env.socket(), "POST", "/v1/reload", None).expect("reload");
    let lines = wait_lines(&log, |l| l.iter().any(|l| l.contains("E_SCHEMA")));
    for line in &lines {
        assert!(line.starts_with('<'), "no priority: {line}");
        // No timestamp of our own: journald stamps entries.
        assert!(!line.contains("Z ") && !line.contains("T2"), "{line}");
    }
    let rejected = lines.iter().find(|l| l.contains("E_SCHEMA")).expect("line");
    assert!(rejected.starts_with("<4>"), "{rejected}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("<6>") && l.contains("hotconf starting")));
    drop(d);

    // Asked for explicitly, on a pipe.
    let mut args = env.run_args();
    let i = args.iter().position(|a| a == "json").expect("json");
    args[i] = "journald".into();
    let d = Daemon::spawn(&args, &[]);
    assert!(
        wait_until(DEADLINE, || d
            .stderr_lines()
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("E_SCHEMA"))),
        "{:#?}",
        d.stderr_lines()
    );
}

#[test]
fn get_raw_prints_a_string_bare_for_shell_scripts() {
    let env = Env::new();
    env.write_schema(
        "app",
        &strict_schema(json!({
            "name": {"type": "string"},
            "port": {"type": "integer"},
            "server": {"type": "object"}
        })),
    );
    env.write_doc(
        "app",
        "name = \"orders \\\"api\\\"\"\nport = 8080\n[server]\nlisten = \"0.0.0.0\"\n",
    );
    let _d = start(&env, &["--no-watch", "--poll-interval", "0"]);
    let get = |what: &str, raw: bool| {
        let mut c = Command::new(common::bin());
        c.arg("get").arg(what).arg("--socket").arg(env.socket());
        if raw {
            c.arg("--raw");
        }
        c.output().expect("get")
    };
    let o = get("app/name", true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "orders \"api\"\n");
    assert_eq!(stdout(&get("app/port", true)), "8080\n");
    assert_eq!(
        stdout(&get("app/server", true)),
        "{\"listen\":\"0.0.0.0\"}\n"
    );
    // Without --raw: JSON, as before.
    assert_eq!(stdout(&get("app/name", false)), "\"orders \\\"api\\\"\"\n");
    assert_eq!(get("app/nope", true).status.code(), Some(1));
}

#[test]
fn completions_and_the_man_page_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F _hotconf"),
        ("zsh", "#compdef hotconf"),
        ("fish", "complete -c hotconf"),
    ] {
        let o = cli(&["completions", shell], &[]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("reload"), "{shell}: {text}");
    }
    assert_eq!(cli(&["completions", "tcsh"], &[]).status.code(), Some(2));
    let o = cli(&["man"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH hotconf"), "{page}");
    assert!(page.contains("check"), "{page}");
}

#[test]
fn status_takes_the_same_format_flag_as_check() {
    let env = Env::new();
    one_doc(&env, 1);
    let _d = start(&env, &["--no-watch", "--poll-interval", "0"]);
    let socket = env.socket();
    let s = socket.to_str().expect("utf-8");
    let o = cli(&["status", "--format", "json", "--socket", s], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["documents"]["app"]["state"], json!("ok"));
    // The old spelling still works for existing scripts.
    let o = cli(&["status", "--json", "--socket", s], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
