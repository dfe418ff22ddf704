//! File watching against the real binary: every supported file operation,
//! at least three times in one daemon's life, with the served content
//! checked after each (through the `document_accepted` log records, whose
//! `sha256` is the hash of the served source bytes).
//!
//! The poll is disabled (`--poll-interval 0`) except in the degradation
//! tests, so these prove the watcher, not the poll. Every wait has a
//! deadline; the only sleeps are the pauses a scenario itself consists of
//! (a writer pausing mid-write, saves 3 ms apart).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{log_event, log_field, wait_until, Daemon, Env, DEADLINE};
use serde_json::json;

/// A daemon on a temp env with a schema for `app` (and any `extra` docs).
struct Hot {
    env: Env,
    daemon: Daemon,
}

fn schema_app() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "v": {"type": "integer"},
            "name": {"type": "string"},
        },
        "required": ["v"],
        "additionalProperties": false,
    })
}

fn doc(v: u64, name: &str) -> String {
    format!("v = {v}\nname = \"{name}\"\n")
}

fn sha(text: &str) -> String {
    hotconf::pipeline::document::sha256_hex(text.as_bytes())
}

impl Hot {
    /// Starts `hotconf run` with the watch-test defaults and waits until
    /// both directories are watched.
    fn start(docs: &[&str], extra_args: &[&str]) -> Hot {
        let env = Env::new();
        for name in docs {
            env.write_schema(name, &schema_app());
            env.write_doc(name, &doc(0, &format!("{name} initial")));
        }
        Self::spawn(env, extra_args)
    }

    fn spawn(env: Env, extra_args: &[&str]) -> Hot {
        let mut args = env.run_args();
        // Defaults unless `extra_args` set them: no poll, 100 ms debounce.
        for (flag, value) in [("--poll-interval", "0"), ("--debounce", "100ms")] {
            if !extra_args.contains(&flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let daemon = Daemon::spawn(&args, &[]);
        let hot = Hot { env, daemon };
        let started = if extra_args.contains(&"--no-watch") {
            "watch_disabled"
        } else {
            "watch_started"
        };
        let n = if started == "watch_started" { 2 } else { 1 };
        assert!(
            hot.daemon.wait_event_count(started, n, DEADLINE),
            "watcher did not start; logs:\n{}",
            hot.logs()
        );
        hot
    }

    fn logs(&self) -> String {
        let lines = self.daemon.stderr_lines();
        let from = lines.len().saturating_sub(60);
        lines.get(from..).unwrap_or_default().join("\n")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.env.configs.join(format!("{name}.toml"))
    }

    /// Every published version of `name`, oldest first (sha256 of its
    /// source bytes, from `document_accepted` records that published).
    fn published(&self, name: &str) -> Vec<String> {
        self.daemon
            .json_logs()
            .iter()
            .filter(|v| log_event(v) == Some("document_accepted"))
            .filter(|v| log_field(v, "document").and_then(|d| d.as_str()) == Some(name))
            .filter_map(|v| {
                log_field(v, "sha256")
                    .and_then(|s| s.as_str())
                    .map(String::from)
            })
            .collect()
    }

    /// Waits until what is served for `name` is exactly `text` (the hash of
    /// the published source bytes, from the logs), then checks the value
    /// the control socket serves.
    fn expect_served(&self, name: &str, text: &str, what: &str) {
        let want = sha(text);
        let ok = wait_until(DEADLINE, || self.published(name).last() == Some(&want));
        assert!(
            ok,
            "{what}: {name} is not served as {text:?}; logs:\n{}",
            self.logs()
        );
        let value: serde_json::Value = toml::from_str(text).expect("test documents are TOML");
        let served = wait_until(DEADLINE, || {
            common::http(
                &self.env.socket(),
                "GET",
                &format!("/v1/config/{name}"),
                None,
            )
            .is_ok_and(|r| r.status == 200 && r.json() == value)
        });
        assert!(
            served,
            "{what}: GET /v1/config/{name} does not serve {value}"
        );
    }

    /// Number of generations published so far.
    fn generations(&self) -> usize {
        self.daemon.events("snapshot_published").len()
    }

    /// Waits for `n` records of `event` about `name`.
    fn wait_doc_event(&self, event: &str, name: &str, n: usize) {
        let count = || {
            self.daemon
                .events(event)
                .iter()
                .filter(|v| log_field(v, "document").and_then(|d| d.as_str()) == Some(name))
                .count()
        };
        assert!(
            wait_until(DEADLINE, || count() >= n),
            "no {n} {event} for {name}; logs:\n{}",
            self.logs()
        );
    }

    /// Document names that ever appeared in a `document_*` record.
    fn document_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .daemon
            .json_logs()
            .iter()
            .filter(|v| log_event(v).is_some_and(|e| e.starts_with("document_")))
            .filter_map(|v| {
                log_field(v, "document")
                    .and_then(|d| d.as_str())
                    .map(String::from)
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
}

// ---- one operation, three times (or more) ---------------------------------

#[test]
fn in_place_truncate_and_write() {
    let hot = Hot::start(&["app"], &[]);
    for i in 1..=3 {
        let text = doc(i, &format!("in place {i}"));
        std::fs::write(hot.path("app"), &text).expect("write");
        hot.expect_served("app", &text, "in-place write");
    }
}

#[test]
fn temp_file_and_rename() {
    let hot = Hot::start(&["app"], &[]);
    for i in 1..=3 {
        let text = doc(i, &format!("renamed {i}"));
        hot.env.write_doc("app", &text);
        hot.expect_served("app", &text, "rename-save");
    }
}

#[test]
fn vim_backup_dance_syscall_by_syscall() {
    // vim's default save, as strace shows it: probe file 4913 created and
    // deleted, original renamed to app.toml~, new file written (its
    // metadata set before the close), backup deleted.
    let hot = Hot::start(&["app"], &[]);
    let path = hot.path("app");
    let dir = &hot.env.configs;
    for i in 1..=3 {
        let text = doc(i, &format!("vim dance {i}"));
        let probe = dir.join("4913");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .expect("probe");
        std::fs::remove_file(&probe).expect("rm probe");
        std::fs::rename(&path, dir.join("app.toml~")).expect("backup");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("create");
        f.write_all(text.as_bytes()).expect("write");
        f.sync_all().expect("fsync");
        let perms = f.metadata().expect("meta").permissions();
        f.set_permissions(perms).expect("chmod");
        drop(f);
        std::fs::remove_file(dir.join("app.toml~")).expect("rm backup");
        hot.expect_served("app", &text, "vim dance");
    }
    assert_eq!(
        hot.document_names(),
        vec!["app"],
        "droppings never become documents"
    );
}

#[test]
fn real_vim_default_save() {
    // The real vim, default 'backupcopy=auto' and 'writebackup'; temp
    // directories are in vim's default 'backupskip', which would hide the
    // dance, so it is emptied (as for any file outside /tmp).
    let hot = Hot::start(&["app"], &[]);
    for i in 1..=3 {
        let text = doc(i, &format!("real vim {i}"));
        let src = hot.env.path().join("src.toml");
        std::fs::write(&src, &text).expect("write src");
        run(Command::new("vim")
            .args(["-N", "-u", "NONE", "-i", "NONE", "-n", "-es"])
            .args(["-c", "set backupskip="])
            .args(["-c", "%d"])
            .arg("-c")
            .arg(format!("r {}", src.display()))
            .args(["-c", "wq"])
            .arg(hot.path("app"))
            .stdin(std::process::Stdio::null()));
        assert_eq!(
            std::fs::read_to_string(hot.path("app")).expect("read"),
            text
        );
        hot.expect_served("app", &text, "vim save");
    }
    assert_eq!(hot.document_names(), vec!["app"]);
}

#[test]
fn sed_in_place() {
    let hot = Hot::start(&["app"], &[]);
    for i in 1..=3 {
        run(Command::new("sed")
            .arg("-i")
            .arg(format!(
                "s/^v = .*/v = {i}/;s/^name = .*/name = \"sed {i}\"/"
            ))
            .arg(hot.path("app")));
        hot.expect_served("app", &doc(i, &format!("sed {i}")), "sed -i");
    }
    assert_eq!(hot.document_names(), vec!["app"]);
}

#[test]
fn cp_over_the_file() {
    let hot = Hot::start(&["app"], &[]);
    for i in 1..=3 {
        let text = doc(i, &format!("cp {i}"));
        let src = hot.env.path().join("src.toml");
        std::fs::write(&src, &text).expect("write src");
        run(Command::new("cp").arg(&src).arg(hot.path("app")));
        hot.expect_served("app", &text, "cp");
    }
}

#[test]
fn delete_then_recreate_one_file() {
    let hot = Hot::start(&["app", "db"], &[]);
    for i in 1..=3 {
        std::fs::remove_file(hot.path("app")).expect("rm");
        // Watch reloads never remove: after --debounce it is `missing`.
        hot.wait_doc_event("document_missing", "app", i as usize);
        let text = doc(i, &format!("recreated {i}"));
        std::fs::write(hot.path("app"), &text).expect("recreate");
        hot.expect_served("app", &text, "recreate");
    }
    // And without a pause between delete and recreate.
    for i in 4..=6 {
        std::fs::remove_file(hot.path("app")).expect("rm");
        let text = doc(i, &format!("recreated at once {i}"));
        std::fs::write(hot.path("app"), &text).expect("recreate");
        hot.expect_served("app", &text, "recreate at once");
    }
    assert_eq!(
        hot.published("db").len(),
        1,
        "the other document never moved"
    );
}

#[test]
fn delete_then_recreate_every_file() {
    let names = ["app", "db", "web"];
    let hot = Hot::start(&names, &[]);
    for i in 1..=3 {
        for n in names {
            std::fs::remove_file(hot.path(n)).expect("rm");
        }
        for n in names {
            std::fs::write(hot.path(n), doc(i, &format!("{n} {i}"))).expect("recreate");
        }
        for n in names {
            hot.expect_served(n, &doc(i, &format!("{n} {i}")), "recreate all");
        }
    }
}

#[test]
fn configured_directory_deleted_and_recreated() {
    let hot = Hot::start(&["app"], &[]);
    let dir = hot.env.configs.clone();
    for i in 1..=3 {
        std::fs::remove_dir_all(&dir).expect("rm -r configs");
        hot.wait_doc_event("document_missing", "app", i as usize);
        std::fs::create_dir(&dir).expect("mkdir configs");
        let text = doc(i, &format!("new dir {i}"));
        std::fs::write(hot.path("app"), &text).expect("write");
        hot.expect_served("app", &text, "recreated directory");
    }
}

#[test]
fn new_document_with_its_schema() {
    let hot = Hot::start(&["app"], &[]);
    for i in 1..=3u64 {
        let name = format!("new{i}");
        let text = doc(i, &format!("brand new {i}"));
        if i % 2 == 1 {
            hot.env.write_schema(&name, &schema_app());
            hot.env.write_doc(&name, &text);
        } else {
            // Document first: E_NO_SCHEMA until its schema arrives.
            std::fs::write(hot.path(&name), &text).expect("write doc");
            hot.wait_doc_event("document_rejected", &name, 1);
            std::fs::write(
                hot.env.schemas.join(format!("{name}.schema.json")),
                schema_app().to_string(),
            )
            .expect("write schema");
        }
        hot.expect_served(&name, &text, "new document");
    }
}

#[test]
fn schema_edits() {
    let hot = Hot::start(&["app"], &[]);
    let text = doc(5, "schema edits");
    hot.env.write_doc("app", &text);
    hot.expect_served("app", &text, "setup");
    let with_max = |max: u64| {
        let mut s = schema_app();
        s["properties"]["v"]["maximum"] = json!(max);
        s
    };
    let schema_path = hot.env.schemas.join("app.schema.json");
    let count = |event: &str| {
        hot.daemon
            .events(event)
            .iter()
            .filter(|v| log_field(v, "document").and_then(|d| d.as_str()) == Some("app"))
            .count()
    };
    for i in 1..=3u64 {
        // Tighten (in place): the document now fails, last good stays.
        let rejected = count("document_rejected");
        std::fs::write(&schema_path, with_max(3).to_string()).expect("write schema");
        hot.wait_doc_event("document_rejected", "app", rejected + 1);
        assert_eq!(hot.published("app").last(), Some(&sha(&text)));
        // Loosen (rename into place): accepted again under the new schema.
        let accepted = count("document_accepted");
        hot.env.write_schema("app", &with_max(10 + i));
        hot.wait_doc_event("document_accepted", "app", accepted + 1);
        assert_eq!(hot.published("app").last(), Some(&sha(&text)));
    }
}

#[test]
fn kubernetes_configmap_swap() {
    // app.toml -> ..data/app.toml, ..data -> ..TIMESTAMP/; an update is a
    // new timestamped directory, a ..data_tmp link to it renamed over
    // ..data, then the old directory removed — as kubelet's atomic writer.
    let env = Env::new();
    env.write_schema("app", &schema_app());
    env.write_schema("db", &schema_app());
    let dir = env.configs.clone();
    let ts = |i: u64| format!("..2026_11_26_10_00_{i:02}.{:09}", 100 + i);
    let publish = |i: u64| {
        let d = dir.join(ts(i));
        std::fs::create_dir(&d).expect("mkdir ts");
        std::fs::write(d.join("app.toml"), doc(i, &format!("app cm {i}"))).expect("write");
        std::fs::write(d.join("db.toml"), doc(i, &format!("db cm {i}"))).expect("write");
        std::os::unix::fs::symlink(ts(i), dir.join("..data_tmp")).expect("link");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    };
    publish(0);
    for n in ["app", "db"] {
        std::os::unix::fs::symlink(format!("..data/{n}.toml"), dir.join(format!("{n}.toml")))
            .expect("link doc");
    }
    let hot = Hot::spawn(env, &["--all-or-nothing"]);
    hot.expect_served("app", &doc(0, "app cm 0"), "initial");
    for i in 1..=3 {
        publish(i);
        std::fs::remove_dir_all(dir.join(ts(i - 1))).expect("rm old");
        hot.expect_served("app", &doc(i, &format!("app cm {i}")), "configmap swap");
        hot.expect_served("db", &doc(i, &format!("db cm {i}")), "configmap swap");
    }
    assert_eq!(hot.document_names(), vec!["app", "db"]);
    // Each swap is one generation holding both files: never a mix.
    let published = hot.daemon.events("snapshot_published");
    for p in published.iter().skip(1) {
        let changed = log_field(p, "changed")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        assert!(
            changed.contains("app") && changed.contains("db"),
            "a generation changed only part of the swap: {p}"
        );
    }
}

#[test]
fn symlinked_document_whose_target_is_edited_elsewhere() {
    // notify-rs/notify#381: changes to a symlink's target are invisible to a
    // watch on the directory holding the link. hotconf also watches the
    // directories of its documents' targets.
    let env = Env::new();
    env.write_schema("app", &schema_app());
    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let target = elsewhere.join("app.toml");
    std::fs::write(&target, doc(0, "target 0")).expect("write");
    std::os::unix::fs::symlink(&target, env.configs.join("app.toml")).expect("ln");
    let hot = Hot::spawn(env, &[]);
    hot.expect_served("app", &doc(0, "target 0"), "initial");
    for i in 1..=3 {
        let text = doc(i, &format!("target in place {i}"));
        std::fs::write(&target, &text).expect("write target");
        hot.expect_served("app", &text, "target edited in place");
        let text = doc(i, &format!("target renamed {i}"));
        let tmp = elsewhere.join(".app.toml.tmp");
        std::fs::write(&tmp, &text).expect("write tmp");
        std::fs::rename(&tmp, &target).expect("rename");
        hot.expect_served("app", &text, "target rename-saved");
    }
}

#[test]
fn editor_droppings_never_become_documents() {
    let hot = Hot::start(&["app"], &[]);
    let dir = &hot.env.configs;
    for i in 1..=3 {
        for name in [
            "app.toml~",
            ".app.toml.swp",
            ".app.toml.swx",
            "4913",
            ".#app.toml",
            "#app.toml#",
            ".app.toml.tmp",
            "app.toml.bak",
            "..data_tmp",
            "sedAbC123",
        ] {
            std::fs::write(dir.join(name), "v = 99\n").expect("dropping");
        }
        let text = doc(i, &format!("with droppings {i}"));
        hot.env.write_doc("app", &text);
        hot.expect_served("app", &text, "droppings round");
    }
    // An explicit reload reads the listing authoritatively: still only app.
    let reloads = hot.daemon.events("reload_finished").len();
    hot.daemon.signal(libc::SIGHUP);
    assert!(hot
        .daemon
        .wait_event_count("reload_finished", reloads + 1, DEADLINE));
    assert_eq!(hot.document_names(), vec!["app"]);
}

// ---- bursts and slow writers ----------------------------------------------

#[test]
fn burst_of_fifty_rename_saves() {
    let hot = Hot::start(&["app"], &[]);
    let before = hot.generations();
    let mut last = String::new();
    for i in 1..=50 {
        last = doc(i, &format!("burst {i}"));
        hot.env.write_doc("app", &last);
        // The scenario: saves 3 ms apart.
        std::thread::sleep(Duration::from_millis(3));
    }
    hot.expect_served("app", &last, "burst");
    let generations = hot.generations() - before;
    assert!(
        (1..=50).contains(&generations),
        "{generations} generations for 50 writes"
    );
}

#[test]
fn half_written_document_is_never_published() {
    // The half is a valid document on its own: if it were ever read it
    // would be published. The writer pauses 50 ms with the file open;
    // --debounce 500ms is above the pause.
    let hot = Hot::start(&["app"], &["--debounce", "500ms"]);
    let mut halves = Vec::new();
    for i in 1..=3 {
        let half = format!("v = {i}\n");
        let rest = format!("name = \"completed {i}\"\n");
        halves.push(sha(&half));
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(hot.path("app"))
            .expect("open");
        f.write_all(half.as_bytes()).expect("write half");
        std::thread::sleep(Duration::from_millis(50));
        f.write_all(rest.as_bytes()).expect("write rest");
        drop(f);
        hot.expect_served("app", &format!("{half}{rest}"), "slow writer");
    }
    let published = hot.published("app");
    for h in &halves {
        assert!(
            !published.contains(h),
            "a half-written file was published; logs:\n{}",
            hot.logs()
        );
    }
    assert_eq!(
        hot.daemon.events("document_rejected").len(),
        0,
        "never even read half"
    );
}

// ---- degradation -----------------------------------------------------------

/// Runs the daemon in a new user namespace where `limit` (a file under
/// /proc/sys/user) is 0, so inotify cannot be used; the poll runs every
/// 200 ms.
fn degraded(limit: &str) -> Hot {
    let env = Env::new();
    env.write_schema("app", &schema_app());
    env.write_doc("app", &doc(0, "initial"));
    let mut cmd = Command::new("unshare");
    cmd.args(["-U", "-r", "--", "sh", "-c"])
        .arg(format!(
            "echo 0 > /proc/sys/user/{limit} && exec \"$0\" \"$@\""
        ))
        .arg(common::bin())
        .args(env.run_args())
        .args(["--poll-interval", "200ms", "--debounce", "100ms"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("HOTCONF_") {
            cmd.env_remove(k);
        }
    }
    let daemon = Daemon::from_command(cmd);
    Hot { env, daemon }
}

fn assert_degraded_but_working(hot: &Hot, why: &str) {
    assert!(
        hot.daemon.wait_event_count("watch_degraded", 1, DEADLINE),
        "no watch_degraded; logs:\n{}",
        hot.logs()
    );
    let rec = &hot.daemon.events("watch_degraded")[0];
    assert_eq!(rec.get("level").and_then(|l| l.as_str()), Some("WARN"));
    let reason = log_field(rec, "reason")
        .and_then(|r| r.as_str())
        .unwrap_or("");
    assert!(
        reason.contains(why),
        "reason {reason:?} should mention {why:?}"
    );
    assert!(
        reason.contains("poll"),
        "reason {reason:?} should say the poll is used"
    );
    assert!(hot.daemon.events("watch_started").is_empty());
    // The status says so too.
    assert!(
        hot.daemon.wait_ready(&hot.env.socket()),
        "no control socket"
    );
    let status = || {
        common::http(&hot.env.socket(), "GET", "/v1/status", None)
            .expect("status")
            .json()
    };
    assert!(
        wait_until(DEADLINE, || status()["watch"]["ok"] == json!(false)),
        "status does not say watching is degraded: {}",
        status()
    );
    let said = status()["watch"]["degraded_reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(said.contains(why), "status reason {said:?}");
    for i in 1..=3 {
        let text = doc(i, &format!("via the poll {i}"));
        hot.env.write_doc("app", &text);
        hot.expect_served("app", &text, "degraded");
    }
}

#[test]
fn degraded_without_inotify_instances_runs_on_the_poll() {
    let hot = degraded("max_inotify_instances");
    assert_degraded_but_working(&hot, "inotify instance");
}

#[test]
fn degraded_without_inotify_watches_runs_on_the_poll() {
    let hot = degraded("max_inotify_watches");
    assert_degraded_but_working(&hot, "watch limit");
}

#[test]
fn no_watch_leaves_changes_to_the_poll_signals_and_the_api() {
    let hot = Hot::start(&["app"], &["--no-watch"]);
    assert!(hot.daemon.wait_event_count("watch_disabled", 1, DEADLINE));
    for i in 1..=3 {
        let text = doc(i, &format!("explicit {i}"));
        hot.env.write_doc("app", &text);
        let reloads = hot.daemon.events("reload_finished").len();
        hot.daemon.signal(libc::SIGHUP);
        assert!(hot
            .daemon
            .wait_event_count("reload_finished", reloads + 1, DEADLINE));
        // Nothing applied it before the signal did.
        let last = hot.daemon.events("reload_finished").pop().expect("one");
        assert_eq!(log_field(&last, "trigger"), Some(&json!("signal")));
        assert_eq!(log_field(&last, "accepted"), Some(&json!("app")));
        hot.expect_served("app", &text, "explicit reload");
    }
}
