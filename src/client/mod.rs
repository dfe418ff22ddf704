//! The CLI client: `status`, `get`, `reload`, `watch` (and, in
//! [`history`], `history` and `plan`) over the control socket.
//!
//! Each command is a function returning the process exit code (0 ok, 1 the
//! daemon reports a problem or cannot be reached). The HTTP exchange lives
//! in [`transport`]; what is printed is built by pure functions (`render_*`)
//! so it is testable without a daemon. Nothing here panics on what the
//! daemon sends: a malformed answer is an error message and exit 1.

pub mod history;
pub mod transport;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::control::paths::{self, Role};
use transport::{Answer, ClientError, Connection};

/// Options shared by every client subcommand.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Explicit socket path; `None` resolves as SPEC §4 says for clients.
    pub socket: Option<PathBuf>,
}

impl ClientOptions {
    /// The socket this client talks to.
    pub fn socket_path(&self) -> PathBuf {
        paths::resolve_socket(self.socket.as_deref(), Role::Client).path
    }
}

/// How long a non-blocking request may take before the client gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `wait` of the blocking queries `watch` sends.
const WATCH_WAIT: Duration = Duration::from_secs(300);

/// Runs `f` on a small single-threaded runtime; prints its error and
/// returns 1 on failure.
fn run(command: &str, f: impl std::future::Future<Output = Result<i32, ClientError>>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hotconf {command}: cannot start: {e}");
            return 1;
        }
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(ClientError::Output(_)) => 1,
        Err(e) => {
            eprintln!("hotconf {command}: {e}");
            1
        }
    }
}

/// Writes `text` to stdout; a closed pipe is an error, not a panic.
fn print(text: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(ClientError::Output)
}

/// `hotconf status [--json]`. Returns the exit code: 0 only if every
/// document is `ok`.
pub fn status(opts: &ClientOptions, json: bool) -> i32 {
    let conn = Connection::new(opts.socket_path());
    run("status", async move {
        let answer = conn.get("/v1/status", Some(REQUEST_TIMEOUT)).await?;
        let body = answer.json_ok()?;
        let ok = body.get("ok").and_then(Value::as_bool).unwrap_or(false) && !outputs_failed(&body);
        if json {
            print(&format!("{}\n", String::from_utf8_lossy(&answer.body)))?;
        } else {
            print(&render_status(&body, SystemTime::now()))?;
        }
        Ok(if ok { 0 } else { 1 })
    })
}

/// `hotconf get NAME[/pointer]`: prints the value as pretty JSON.
pub fn get(opts: &ClientOptions, what: &str) -> i32 {
    get_value(opts, what, false)
}

/// The text `hotconf get --raw` prints for `value`: a string bare (no
/// quotes, no escapes), a number, boolean or null as JSON, an array or
/// table as compact JSON — what `jq -r` prints, for
/// `port=$(hotconf get --raw app/server/port)`.
pub fn raw_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `hotconf get [--raw] NAME[/pointer]`: pretty JSON, or with `raw` the
/// value as [`raw_text`] prints it.
pub fn get_value(opts: &ClientOptions, what: &str, raw: bool) -> i32 {
    let conn = Connection::new(opts.socket_path());
    let uri = format!(
        "/v1/config/{}",
        transport::encode_path(what.trim_start_matches('/'))
    );
    run("get", async move {
        let answer = conn.get(&uri, Some(REQUEST_TIMEOUT)).await?;
        let body = answer.json_ok()?;
        let text = if raw {
            raw_text(&body)
        } else {
            serde_json::to_string_pretty(&body).map_err(|e| ClientError::Protocol(e.to_string()))?
        };
        print(&format!("{text}\n"))?;
        Ok(0)
    })
}

/// `hotconf reload`: asks for an explicit reload, waits for it, prints what
/// it did and every document not `ok` afterwards. Exit 1 if any is not.
pub fn reload(opts: &ClientOptions) -> i32 {
    let conn = Connection::new(opts.socket_path());
    run("reload", async move {
        // No timeout: a reload ends when it ends (systemd bounds ExecReload).
        let answer = conn
            .request(hyper::Method::POST, "/v1/reload", None)
            .await?;
        let body = answer.json_ok()?;
        print(&render_reload(&body))?;
        let ok = body.get("ok").and_then(Value::as_bool).unwrap_or(false);
        Ok(if ok { 0 } else { 1 })
    })
}

/// `hotconf watch [NAME]`: one JSON line per new generation (that changes
/// or removes NAME, if given) until interrupted. The first line is the
/// current generation with every served document as changed (as `consul
/// watch` runs its handler at once), so a consumer needs no separate `get`
/// to start. Rides out daemon restarts: a new instance reports the
/// documents whose content differs as changed.
pub fn watch(opts: &ClientOptions, name: Option<&str>) -> i32 {
    let conn = Connection::new(opts.socket_path());
    let name = name.map(str::to_string);
    run("watch", async move {
        let mut last: Option<Seen> = None;
        let mut lost = false;
        let nothing = Seen {
            instance: String::new(),
            generation: 0,
            served: BTreeMap::new(),
        };
        loop {
            let uri = match &last {
                None => "/v1/status".to_string(),
                // The instance makes a restarted daemon answer at once even
                // when it counts to the same generation again.
                Some(seen) => format!(
                    "/v1/status?index={}&wait={}s&instance={}",
                    seen.generation,
                    WATCH_WAIT.as_secs(),
                    transport::encode_path(&seen.instance)
                ),
            };
            let answer = conn
                .get(&uri, Some(WATCH_WAIT + REQUEST_TIMEOUT))
                .await
                .and_then(|a: Answer| a.json_ok());
            let body = match answer {
                Ok(body) => body,
                Err(e) if last.is_none() => return Err(e),
                Err(e) => {
                    if !lost {
                        eprintln!("hotconf watch: {e}; retrying");
                        lost = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            lost = false;
            let now = Seen::from_status(&body)?;
            if let Some(line) = watch_line(last.as_ref().unwrap_or(&nothing), &now, name.as_deref())
            {
                print(&format!("{line}\n"))?;
            }
            last = Some(now);
        }
    })
}

/// What `watch` knows about one answer: enough to say what changed next.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The daemon start.
    instance: String,
    /// The snapshot generation.
    generation: u64,
    /// Served documents: their own generations and content hashes.
    served: BTreeMap<String, (u64, String)>,
}

impl Seen {
    fn from_status(body: &Value) -> Result<Seen, ClientError> {
        let bad = || ClientError::Protocol("status answer without instance/generation".into());
        let instance = body
            .get("instance")
            .and_then(Value::as_str)
            .ok_or_else(bad)?;
        let generation = body
            .get("generation")
            .and_then(Value::as_u64)
            .ok_or_else(bad)?;
        let served = body
            .get("documents")
            .and_then(Value::as_object)
            .map(|docs| {
                docs.iter()
                    .filter_map(|(k, d)| {
                        let gen = d.get("generation")?.as_u64()?;
                        let sha = d.get("sha256").and_then(Value::as_str).unwrap_or("");
                        Some((k.clone(), (gen, sha.to_string())))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Seen {
            instance: instance.to_string(),
            generation,
            served,
        })
    }
}

/// The line `watch` prints going from `prev` to `now`, if there is one.
/// Within one daemon start a document changed when its generation moved;
/// across a restart, when its content hash differs.
fn watch_line(prev: &Seen, now: &Seen, only: Option<&str>) -> Option<Value> {
    let restarted = prev.instance != now.instance;
    if !restarted && now.generation == prev.generation {
        return None;
    }
    let wanted = |n: &String| only.is_none_or(|o| o == n);
    let changed: Vec<&String> = now
        .served
        .iter()
        .filter(|(n, (gen, sha))| match prev.served.get(*n) {
            None => true,
            Some((pgen, psha)) if restarted => psha != sha || pgen > gen,
            Some((pgen, _)) => pgen != gen,
        })
        .map(|(n, _)| n)
        .filter(|n| wanted(n))
        .collect();
    let removed: Vec<&String> = prev
        .served
        .keys()
        .filter(|n| !now.served.contains_key(*n))
        .filter(|n| wanted(n))
        .collect();
    if only.is_some() && changed.is_empty() && removed.is_empty() {
        return None;
    }
    Some(json!({
        "generation": now.generation,
        "instance": now.instance,
        "changed": changed,
        "removed": removed,
    }))
}

/// Compact age: `12s`, `5m12s`, `3h2m`, `4d3h`.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// "12s ago" from an RFC 3339 timestamp, or "-".
fn ago(ts: Option<&Value>, now: SystemTime) -> String {
    ts.and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339(s).ok())
        .map(|t| {
            format!(
                "{} ago",
                format_age(now.duration_since(t).unwrap_or_default())
            )
        })
        .unwrap_or_else(|| "-".into())
}

/// One compiler-style line per problem of a `last_error` object (the same
/// form as `hotconf check`).
pub fn error_lines(last_error: &Value) -> Vec<String> {
    let file = last_error
        .get("file")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let code = last_error
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("E_?");
    let problems = last_error
        .get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if problems.is_empty() {
        let msg = last_error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("");
        return vec![msg.to_string()];
    }
    problems
        .iter()
        .map(|p| {
            let pointer = p.get("pointer").and_then(Value::as_str).unwrap_or("");
            let message = p.get("message").and_then(Value::as_str).unwrap_or("");
            let what = if pointer.is_empty() {
                message.to_string()
            } else {
                format!("{pointer}: {message}")
            };
            let line = p.get("line").and_then(Value::as_u64);
            let col = p.get("column").and_then(Value::as_u64);
            match (line, col) {
                (Some(l), Some(c)) => format!("{file}:{l}:{c}: {code} {what}"),
                (Some(l), None) => format!("{file}:{l}: {code} {what}"),
                _ => format!("{file}: {code} {what}"),
            }
        })
        .collect()
}

fn names(v: Option<&Value>) -> String {
    let list: Vec<&str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

/// The human form of `/v1/status`.
pub fn render_status(body: &Value, now: SystemTime) -> String {
    let s = |k: &str| body.get(k);
    let mut out = String::new();
    let instance = s("instance").and_then(Value::as_str).unwrap_or("?");
    let generation = s("generation").and_then(Value::as_u64).unwrap_or(0);
    let uptime = s("uptime_s").and_then(Value::as_u64).unwrap_or(0);
    let ok = s("ok").and_then(Value::as_bool).unwrap_or(false);
    out.push_str(&format!(
        "hotconf: {}, generation {generation}, instance {instance}, up {}\n",
        if ok { "ok" } else { "NOT OK" },
        format_age(Duration::from_secs(uptime)),
    ));
    let empty = serde_json::Map::new();
    let docs = s("documents").and_then(Value::as_object).unwrap_or(&empty);
    let mut errors = Vec::new();
    if docs.is_empty() {
        out.push_str("no documents\n");
    } else {
        let width = docs
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        out.push_str(&format!(
            "{:width$}  {:7}  {:>5}  {:12}  LOADED\n",
            "DOCUMENT", "STATE", "GEN", "SHA256"
        ));
        for (name, d) in docs {
            let state = d.get("state").and_then(Value::as_str).unwrap_or("?");
            let gen = d
                .get("generation")
                .and_then(Value::as_u64)
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into());
            let sha: String = d
                .get("sha256")
                .and_then(Value::as_str)
                .map(|h| h.chars().take(12).collect())
                .unwrap_or_else(|| "-".into());
            let loaded = ago(d.get("loaded_at"), now);
            out.push_str(&format!(
                "{name:width$}  {state:7}  {gen:>5}  {sha:12}  {loaded}\n"
            ));
            match d.get("last_error").filter(|e| !e.is_null()) {
                Some(e) => errors.extend(error_lines(e)),
                None if state != "ok" => errors.push(format!("{name}: {state}")),
                None => {}
            }
        }
    }
    match s("last_reload").filter(|v| !v.is_null()) {
        Some(r) => out.push_str(&format!(
            "last reload: {} {}, {} ms: accepted {}; rejected {}; removed {}\n",
            r.get("trigger").and_then(Value::as_str).unwrap_or("?"),
            ago(r.get("at"), now),
            r.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
            names(r.get("accepted")),
            names(r.get("rejected")),
            names(r.get("removed")),
        )),
        None => out.push_str("last reload: none yet\n"),
    }
    if let Some(reason) = s("watch")
        .and_then(|w| w.get("degraded_reason"))
        .and_then(Value::as_str)
    {
        out.push_str(&format!(
            "file watching degraded (polling only): {reason}\n"
        ));
    }
    if let Some(line) = s("state_dir").and_then(state_dir_line) {
        out.push_str(&line);
    }
    if let Some(outputs) = s("outputs").and_then(Value::as_object) {
        outputs_lines(outputs, s("outputs_file"), now, &mut out, &mut errors);
    }
    if !errors.is_empty() {
        out.push_str("errors:\n");
        for e in errors {
            out.push_str(&e);
            out.push('\n');
        }
    }
    let drift: Vec<String> = docs
        .iter()
        .filter_map(|(name, d)| served_vs_disk(name, d, now))
        .collect();
    if !drift.is_empty() {
        out.push_str("served vs on disk (`hotconf plan` shows the difference):\n");
        for line in drift {
            out.push_str(&line);
        }
    }
    out
}

/// The outputs table of `hotconf status` (`--outputs`), their errors, and
/// a refused outputs file.
fn outputs_lines(
    outputs: &serde_json::Map<String, Value>,
    file: Option<&Value>,
    now: SystemTime,
    out: &mut String,
    errors: &mut Vec<String>,
) {
    let width = outputs
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    out.push_str(&format!(
        "{:width$}  {:7}  {:>5}  {:12}  {:10}  DESTINATION\n",
        "OUTPUT", "STATE", "GEN", "SHA256", "APPLIED"
    ));
    for (name, o) in outputs {
        let state = o.get("state").and_then(Value::as_str).unwrap_or("?");
        let gen = o
            .get("generation")
            .and_then(Value::as_u64)
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into());
        let sha: String = o
            .get("sha256")
            .and_then(Value::as_str)
            .map(|h| h.chars().take(12).collect())
            .unwrap_or_else(|| "-".into());
        let applied = match o.get("applied_at").filter(|v| !v.is_null()) {
            Some(at) => ago(Some(at), now),
            None => "-".into(),
        };
        let dest = o.get("destination").and_then(Value::as_str).unwrap_or("?");
        out.push_str(&format!(
            "{name:width$}  {state:7}  {gen:>5}  {sha:12}  {applied:10}  {dest}\n"
        ));
        if let Some(message) = o
            .get("last_error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
        {
            errors.push(format!("output {name}: {message}"));
        }
    }
    if let Some(problems) = file
        .and_then(|f| f.get("last_error"))
        .and_then(|e| e.get("problems"))
        .and_then(Value::as_array)
    {
        for p in problems {
            let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            let at = match (
                p.get("line").and_then(Value::as_u64),
                p.get("column").and_then(Value::as_u64),
            ) {
                (Some(l), Some(c)) => format!(":{l}:{c}"),
                _ => String::new(),
            };
            let pointer = match text("pointer") {
                "" => String::new(),
                ptr => format!(" {ptr}"),
            };
            errors.push(format!(
                "{}{at}: {}{pointer}: {}",
                text("file"),
                text("code"),
                text("message")
            ));
        }
        errors.push("the outputs file was refused; the previous outputs stay in force".into());
    }
}

/// Whether `/v1/status` reports a failed output or a refused outputs file.
fn outputs_failed(body: &Value) -> bool {
    let failed = body
        .get("outputs")
        .and_then(Value::as_object)
        .is_some_and(|o| {
            o.values()
                .any(|o| o.get("state").and_then(Value::as_str) == Some("error"))
        });
    let refused = body
        .get("outputs_file")
        .and_then(|f| f.get("ok"))
        .and_then(Value::as_bool)
        == Some(false);
    failed || refused
}

/// For a document that is not ok: what is served (generation, hash, since
/// when) and what is on disk (the rejected file's hash, since when).
fn served_vs_disk(name: &str, d: &Value, now: SystemTime) -> Option<String> {
    let state = d.get("state").and_then(Value::as_str)?;
    if state == "ok" {
        return None;
    }
    let short = |v: Option<&Value>| -> Option<String> {
        v.and_then(Value::as_str)
            .map(|h| h.chars().take(12).collect())
    };
    let served = match d.get("generation").and_then(Value::as_u64) {
        Some(g) => format!(
            "serving generation {g} (sha256 {}, loaded {})",
            short(d.get("sha256")).unwrap_or_else(|| "-".into()),
            ago(d.get("loaded_at"), now)
        ),
        None => "nothing served".into(),
    };
    let e = d.get("last_error").filter(|e| !e.is_null());
    let at = ago(e.and_then(|e| e.get("at")), now);
    let disk = if state == "missing" {
        format!("on disk: no file (since {at})")
    } else {
        let sha =
            short(e.and_then(|e| e.get("sha256"))).unwrap_or_else(|| "unreadable or hidden".into());
        format!("on disk: sha256 {sha}, rejected {at}")
    };
    Some(format!("  {name}: {served}; {disk}\n"))
}

/// The `state_dir` line of `hotconf status` (`--state-dir`): where, what
/// is on disk, what was restored, and a failed persist first of all.
fn state_dir_line(sd: &Value) -> Option<String> {
    let path = sd.get("path")?.as_str()?;
    let generation = |k: &str| {
        sd.get(k)
            .and_then(Value::as_u64)
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none".into())
    };
    let restored = match sd.get("restored_generation").and_then(Value::as_u64) {
        Some(g) => format!("restored generation {g} at startup"),
        None => "nothing restored at startup".into(),
    };
    let failure = sd
        .get("last_error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str);
    Some(match failure {
        Some(message) => format!(
            "state dir {path}: PERSIST FAILED ({message}); on disk: generation {}; {restored}\n",
            generation("persisted_generation")
        ),
        None => format!(
            "state dir {path}: generation {} persisted; {restored}\n",
            generation("persisted_generation")
        ),
    })
}

/// The human form of a `POST /v1/reload` answer. A reload that found the
/// files as served (the watcher applied or rejected them already) says so
/// rather than listing three empty sets.
pub fn render_reload(body: &Value) -> String {
    let empty = |k: &str| {
        body.get(k)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    };
    let not_ok = body
        .get("not_ok")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty());
    if empty("accepted") && empty("rejected") && empty("removed") {
        let mut out = format!(
            "reload ({}): nothing new to apply; generation {} is served\n",
            body.get("trigger").and_then(Value::as_str).unwrap_or("api"),
            body.get("generation").and_then(Value::as_u64).unwrap_or(0),
        );
        if let Some(not_ok) = not_ok {
            out.push_str(&format!(
                "not ok (their files are unchanged since they were last judged): {}\n",
                not_ok.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            push_not_ok(&mut out, not_ok);
        }
        return out;
    }
    let mut out = format!(
        "reload ({}): generation {}, {} ms\naccepted: {}\nrejected: {}\nremoved:  {}\n",
        body.get("trigger").and_then(Value::as_str).unwrap_or("api"),
        body.get("generation").and_then(Value::as_u64).unwrap_or(0),
        body.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
        names(body.get("accepted")),
        names(body.get("rejected")),
        names(body.get("removed")),
    );
    if let Some(not_ok) = not_ok {
        out.push_str("not ok:\n");
        push_not_ok(&mut out, not_ok);
    }
    out
}

/// Every document of `not_ok` with its errors, compiler style.
fn push_not_ok(out: &mut String, not_ok: &serde_json::Map<String, Value>) {
    for (name, d) in not_ok {
        match d.get("last_error").filter(|e| !e.is_null()) {
            Some(e) => {
                for line in error_lines(e) {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            None => out.push_str(&format!(
                "{name}: {}\n",
                d.get("state").and_then(Value::as_str).unwrap_or("?")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(format_age(Duration::from_secs(5)), "5s");
        assert_eq!(format_age(Duration::from_secs(65)), "1m05s");
        assert_eq!(format_age(Duration::from_secs(7260)), "2h01m");
        assert_eq!(format_age(Duration::from_secs(90000)), "1d01h");
    }

    #[test]
    fn error_lines_are_compiler_style() {
        let e = json!({
            "code": "E_SCHEMA", "file": "configs/app.toml", "message": "x",
            "errors": [
                {"pointer": "/server/timeout_ms", "line": 12, "column": 11,
                 "message": "\"5000ms\" is not of type \"integer\""},
                {"pointer": "", "line": null, "column": null, "message": "bad"}
            ]
        });
        assert_eq!(
            error_lines(&e),
            vec![
                "configs/app.toml:12:11: E_SCHEMA /server/timeout_ms: \"5000ms\" is not of type \"integer\"",
                "configs/app.toml: E_SCHEMA bad",
            ]
        );
    }

    fn seen(instance: &str, generation: u64, served: &[(&str, u64)]) -> Seen {
        Seen {
            instance: instance.into(),
            generation,
            served: served
                .iter()
                .map(|(n, g)| (n.to_string(), (*g, format!("h{g}"))))
                .collect(),
        }
    }

    #[test]
    fn watch_lines() {
        let a = seen("i1", 3, &[("app", 3), ("db", 2)]);
        let b = seen("i1", 4, &[("app", 4)]);
        let line = watch_line(&a, &b, None).expect("line");
        assert_eq!(
            line.to_string(),
            r#"{"generation":4,"instance":"i1","changed":["app"],"removed":["db"]}"#
        );
        assert_eq!(watch_line(&a, &a, None), None);
        let line = watch_line(&a, &b, Some("db")).expect("db removed");
        assert_eq!(line["removed"], json!(["db"]));
        assert_eq!(line["changed"], json!([]));
        let c = seen("i1", 5, &[("app", 4), ("x", 5)]);
        assert_eq!(watch_line(&b, &c, Some("app")), None);
        let restarted = seen("i2", 1, &[("app", 1)]);
        let line = watch_line(&c, &restarted, None).expect("restart");
        assert_eq!(line["changed"], json!(["app"]));
        assert_eq!(line["removed"], json!(["x"]));
        // The first line: everything served is new to the watcher.
        let nothing = seen("", 0, &[]);
        let line = watch_line(&nothing, &a, None).expect("first line");
        assert_eq!(line["changed"], json!(["app", "db"]));
        assert_eq!(watch_line(&nothing, &a, Some("zz")), None);
    }

    #[test]
    fn status_rendering() {
        let body = json!({
            "instance": "abc", "generation": 2, "uptime_s": 61, "ok": false,
            "documents": {
                "app": {"state": "ok", "generation": 2, "sha256": "0123456789abcdef",
                        "loaded_at": "2020-01-01T00:00:00Z", "last_error": null},
                "db": {"state": "error", "generation": null, "sha256": null,
                       "loaded_at": null, "last_error": {"code": "E_PARSE",
                       "file": "configs/db.toml", "message": "m",
                       "errors": [{"pointer": "", "line": 1, "column": 2, "message": "boom"}]}}
            },
            "last_reload": {"trigger": "startup", "at": "2020-01-01T00:00:00Z",
                            "duration_ms": 3, "accepted": ["app"], "rejected": ["db"], "removed": []},
            "watch": {"ok": true, "degraded_reason": null}
        });
        let now = humantime::parse_rfc3339("2020-01-01T00:00:10Z").expect("ts");
        let text = render_status(&body, now);
        assert!(
            text.contains("NOT OK, generation 2, instance abc, up 1m01s"),
            "{text}"
        );
        assert!(text.contains("0123456789ab  10s ago"), "{text}");
        assert!(text.contains("configs/db.toml:1:2: E_PARSE boom"), "{text}");
        assert!(
            text.contains("accepted app; rejected db; removed -"),
            "{text}"
        );
    }

    #[test]
    fn status_rendering_of_the_state_dir() {
        let now = SystemTime::now();
        let mut body = json!({"instance": "i", "generation": 4, "ok": true, "documents": {},
            "state_dir": {"path": "/var/lib/hotconf", "ok": true, "restored_generation": 3,
                          "persisted_generation": 4, "last_error": null}});
        let text = render_status(&body, now);
        assert!(
            text.contains("state dir /var/lib/hotconf: generation 4 persisted; restored generation 3 at startup"),
            "{text}"
        );
        body["state_dir"]["last_error"] = json!({"message": "disk full", "at": null});
        let text = render_status(&body, now);
        assert!(text.contains("PERSIST FAILED (disk full)"), "{text}");
        body["state_dir"] = Value::Null;
        assert!(!render_status(&body, now).contains("state dir"));
    }
}
