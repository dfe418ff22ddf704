//! `hotconf run` end to end: the real binary in a temp directory, observed
//! through its JSON logs (the control socket comes later). The poll with a
//! short `--poll-interval` stands in for the file watcher as the implicit
//! trigger; SIGHUP is the explicit one.

mod common;

use serde_json::{json, Value};

use common::{log_field, strict_schema, Daemon, Env, DEADLINE};

fn port_schema() -> Value {
    strict_schema(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}))
}

/// Starts `hotconf run` on `env` with `extra` flags and waits for the
/// startup reload to finish.
fn start(env: &Env, extra: &[&str]) -> Daemon {
    let d = spawn(env, extra);
    assert!(
        d.wait_event_count("reload_finished", 1, DEADLINE),
        "startup reload never finished: {:#?}",
        d.stderr_lines()
    );
    d
}

fn spawn(env: &Env, extra: &[&str]) -> Daemon {
    let mut args = env.run_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::spawn(&args, &[])
}

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
    assert_eq!(d.events("startup").len(), 1);
    let f = finished(&d, 1);
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
}

#[test]
fn sighup_publishes_good_edits_in_one_generation_and_keeps_the_last_good_of_bad_ones() {
    let env = Env::new();
    two_docs(&env);
    env.write_schema("c", &port_schema());
    env.write_doc("c", "port = 3\n");
    let d = start(&env, &["--poll-interval", "0"]);

    env.write_doc("a", "port = 70000\n");
    env.write_doc("b", "port = 20\n");
    env.write_doc("c", "port = 30\n");
    d.signal(libc::SIGHUP);
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
    let d = start(&env, &["--poll-interval", "0", "--all-or-nothing"]);

    env.write_doc("a", "port = 0\n");
    env.write_doc("b", "port = 20\n");
    d.signal(libc::SIGHUP);
    let f = finished(&d, 2);
    assert_eq!(names(&f, "accepted"), Vec::<String>::new());
    assert_eq!(names(&f, "rejected"), vec!["a", "b"]);
    assert_eq!(num(&f, "generation"), Some(1), "nothing changes");
    assert_eq!(published_generations(&d), vec![1]);

    env.write_doc("a", "port = 10\n");
    d.signal(libc::SIGHUP);
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
    env.write_doc("a", "port = 1\n");
    let f = std::fs::File::options()
        .append(true)
        .open(env.configs.join("b.toml"))
        .expect("open");
    f.set_modified(std::time::SystemTime::now()).expect("touch");
    drop(f);
    // Several polls have looked since (each logs at debug only).
    let seen = d.events("nothing_changed").len();
    assert!(d.wait_event_count("nothing_changed", seen + 5, DEADLINE));
    assert_eq!(d.events("reload_started").len(), 1, "only startup");
    assert_eq!(published_generations(&d), vec![1]);

    // An explicit reload of identical bytes is a reload, without generation.
    d.signal(libc::SIGHUP);
    let f = finished(&d, 2);
    assert_eq!(text(&f, "trigger"), "signal");
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
    let f = finished(&d, 2);
    assert_eq!(text(&f, "trigger"), "watch");
    assert_eq!(names(&f, "rejected"), vec!["a"]);
    assert_eq!(names(&f, "accepted"), vec!["b"]);
    let r = d.events("document_rejected");
    assert_eq!(text(&r[0], "code"), "E_SCHEMA");
    assert!(
        text(&r[0], "errors").contains("last good value and schema stay in force"),
        "{:?}",
        r[0]
    );
    assert_eq!(num(&r[0], "serving"), Some(1));

    // An edit that fits the new schema is applied by the poll.
    env.write_doc("a", "port = 1000\n");
    let f = finished(&d, 3);
    assert_eq!(names(&f, "accepted"), vec!["a"]);
    assert_eq!(published_generations(&d), vec![1, 2, 3]);
}

#[test]
fn invalid_schema_is_e_schema_invalid_and_the_document_stays_served() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "50ms"]);
    env.write_schema_file("a.schema.json", "{\"type\": 12}");
    let f = finished(&d, 2);
    assert_eq!(names(&f, "rejected"), vec!["a"]);
    let r = d.events("document_rejected");
    assert_eq!(text(&r[0], "code"), "E_SCHEMA_INVALID");
    assert_eq!(num(&r[0], "serving"), Some(1));
    assert_eq!(published_generations(&d), vec![1]);
}

#[test]
fn poll_reports_a_vanished_file_missing_and_sighup_removes_it() {
    let env = Env::new();
    two_docs(&env);
    let d = start(&env, &["--poll-interval", "30ms", "--debounce", "100ms"]);
    std::fs::remove_file(env.configs.join("b.toml")).expect("rm");
    assert!(d.wait_event_count("document_missing", 1, DEADLINE));
    let m = &d.events("document_missing")[0];
    assert_eq!(text(m, "document"), "b");
    assert_eq!(num(m, "serving"), Some(1));
    assert!(
        d.events("document_removed").is_empty(),
        "the watch never removes"
    );
    assert_eq!(published_generations(&d), vec![1]);

    d.signal(libc::SIGHUP);
    assert!(d.wait_event_count("document_removed", 1, DEADLINE));
    assert!(common::wait_until(DEADLINE, || published_generations(&d) == vec![1, 2]));
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
    let f = finished(&d, 2);
    assert_eq!(names(&f, "rejected"), vec!["c"]);
    assert_eq!(names(&f, "not_ok"), vec!["c"]);
    let r = d.events("document_rejected");
    assert_eq!(num(&r[0], "serving"), None, "nothing served for it");
    assert_eq!(published_generations(&d), vec![1]);

    env.write_doc("c", "port = 80\n");
    let f = finished(&d, 3);
    assert_eq!(names(&f, "accepted"), vec!["c"]);
    assert_eq!(published_generations(&d), vec![1, 2]);
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
    env.write_doc(
        "a",
        "password = \"a-long-enough-secret-value-for-the-schema\"\n",
    );
    let d = start(&env, &["--poll-interval", "50ms"]);
    env.write_doc("a", "password = \"hunter2-short\"\n");
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
        d.signal(sig);
        let status = d.wait_exit(DEADLINE).expect("exits");
        assert_eq!(status.code(), Some(0), "{:#?}", d.stderr_lines());
        assert_eq!(d.events("shutdown").len(), 1);
    }
}

#[test]
fn a_storm_of_200_sighups_coalesces_and_the_daemon_stays_correct() {
    let env = Env::new();
    two_docs(&env);
    let mut d = start(&env, &["--poll-interval", "0"]);
    env.write_doc("a", "port = 11\n");
    for _ in 0..200 {
        d.signal(libc::SIGHUP);
    }
    // One more, after a change, to have something to wait for.
    assert!(common::wait_until(DEADLINE, || {
        d.events("document_accepted")
            .iter()
            .any(|v| text(v, "document") == "a" && num(v, "generation") == Some(2))
    }));
    env.write_doc("b", "port = 22\n");
    d.signal(libc::SIGHUP);
    assert!(common::wait_until(DEADLINE, || published_generations(&d) == vec![1, 2, 3]));
    assert!(d.child.try_wait().expect("try_wait").is_none(), "alive");
    let reloads = d.events("reload_started").len();
    println!("200 SIGHUPs → {reloads} reloads");
    assert!(reloads < 100, "far fewer reloads than signals: {reloads}");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(DEADLINE).and_then(|s| s.code()), Some(0));
}

#[test]
fn sigterm_lets_the_in_flight_reload_finish() {
    let env = Env::new();
    for i in 0..60 {
        let name = format!("d{i:02}");
        env.write_schema(&name, &port_schema());
        env.write_doc(&name, "port = 1\n");
    }
    let mut d = start(&env, &["--poll-interval", "0"]);
    for i in 0..60 {
        env.write_doc(&format!("d{i:02}"), "port = 2\n");
    }
    d.signal(libc::SIGHUP);
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(status.code(), Some(0));
    // Whether or not the SIGHUP's reload got to start, none is cut short:
    // every start has its finish, and both come before `shutdown`.
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
fn text_logs_have_no_colours_off_a_terminal_and_a_bad_level_is_a_usage_error() {
    let env = Env::new();
    two_docs(&env);
    let args = vec![
        "run".to_string(),
        "--config-dir".into(),
        env.configs.display().to_string(),
        "--schema-dir".into(),
        env.schemas.display().to_string(),
        "--poll-interval".into(),
        "0".into(),
    ];
    let mut d = Daemon::spawn(&args, &[("HOTCONF_LOG_FORMAT", "text")]);
    assert!(common::wait_until(DEADLINE, || d
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
