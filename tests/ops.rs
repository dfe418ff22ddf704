//! Fitting the operator's tools (issue 15): blocking queries across a
//! daemon restart, usage errors, honest CLI answers, and the conventions of
//! Prometheus, HTTP probes, journald and shells. Every test drives the real
//! binary in a temp directory.

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
