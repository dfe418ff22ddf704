//! `hotconf history` and `hotconf plan`: what changed, and what would.
//!
//! `history` prints `GET /v1/history` like `git log --stat`: one header
//! line per reload, one line per document, one line per changed pointer.
//! `plan` sends candidate files to `POST /v1/plan` and prints what applying
//! them would do; without a daemon it falls back to `hotconf check` (which
//! can say valid or not, but has nothing to diff against). Rendering is
//! pure (`render_*`), so it is tested without a daemon.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{json, Value};

use super::transport::{ClientError, Connection};
use super::{error_lines, print, run, ClientOptions};
use crate::pipeline::{self, document, Limits};

/// How long a history or plan request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `hotconf history [-n N] [--format json]`: the last `n` reloads, newest
/// first. Exit 0, or 1 when the daemon cannot be asked.
pub fn history(opts: &ClientOptions, n: usize, json: bool) -> i32 {
    let conn = Connection::new(opts.socket_path());
    run("history", async move {
        let answer = conn
            .get(&format!("/v1/history?limit={n}"), Some(TIMEOUT))
            .await?;
        let body = answer.json_ok()?;
        if json {
            let text = serde_json::to_string_pretty(&body)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            print(&format!("{text}\n"))?;
        } else {
            print(&render_history(&body))?;
        }
        Ok(0)
    })
}

/// A JSON value as one short line (strings unquoted when plain).
fn short(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(v) => v.to_string(),
    }
}

/// The `+`/`-`/`~` lines of a list of changes, indented by `indent`.
fn change_lines(changes: &[Value], indent: &str, out: &mut String) {
    for c in changes {
        let kind = c.get("kind").and_then(Value::as_str).unwrap_or("?");
        let pointer = c.get("pointer").and_then(Value::as_str).unwrap_or("");
        let pointer = if pointer.is_empty() {
            "(document)"
        } else {
            pointer
        };
        let line = match kind {
            "added" => format!("+ {pointer} = {}", short(c.get("new"))),
            "removed" => format!("- {pointer} (was {})", short(c.get("old"))),
            _ => format!(
                "~ {pointer}: {} -> {}",
                short(c.get("old")),
                short(c.get("new"))
            ),
        };
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
}

/// The first 12 characters of a hash field, or `-`.
fn sha12(v: Option<&Value>) -> String {
    v.and_then(Value::as_str)
        .map(|h| h.chars().take(12).collect())
        .unwrap_or_else(|| "-".into())
}

/// `+A -R ~C` counts of a list of changes.
fn stat(changes: &[Value]) -> String {
    let count = |k: &str| {
        changes
            .iter()
            .filter(|c| c.get("kind").and_then(Value::as_str) == Some(k))
            .count()
    };
    format!(
        "+{} -{} ~{}",
        count("added"),
        count("removed"),
        count("changed")
    )
}

/// The human form of `GET /v1/history`.
pub fn render_history(body: &Value) -> String {
    let mut out = String::new();
    let entries = body
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        out.push_str("no reloads recorded\n");
        return out;
    }
    for e in &entries {
        let g = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
        let generations = if g("generation_before") == g("generation_after") {
            format!("generation {} (unchanged)", g("generation_after"))
        } else {
            format!(
                "generation {} -> {}",
                g("generation_before"),
                g("generation_after")
            )
        };
        out.push_str(&format!(
            "reload {}  {}  {}  {} ms  {}{}\n",
            g("id"),
            e.get("trigger").and_then(Value::as_str).unwrap_or("?"),
            e.get("started_at").and_then(Value::as_str).unwrap_or("-"),
            g("duration_ms"),
            generations,
            if e.get("ok").and_then(Value::as_bool) == Some(false) {
                "  NOT OK"
            } else {
                ""
            }
        ));
        let empty = serde_json::Map::new();
        let docs = documents(e).unwrap_or(&empty);
        let width = docs.keys().map(|k| k.chars().count()).max().unwrap_or(0);
        for (name, d) in docs {
            let result = d.get("result").and_then(Value::as_str).unwrap_or("?");
            match result {
                "accepted" => {
                    let (changes, schema) = accepted_parts(d);
                    out.push_str(&format!(
                        "    {name:width$}  accepted  {}  {} -> {}{schema}\n",
                        stat(&changes),
                        sha12(d.get("sha256_before")),
                        sha12(d.get("sha256")),
                    ));
                    change_lines(&changes, "        ", &mut out);
                }
                "rejected" => {
                    let err = d.get("error").cloned().unwrap_or(Value::Null);
                    let at = match (
                        err.get("line").and_then(Value::as_u64),
                        err.get("column").and_then(Value::as_u64),
                    ) {
                        (Some(l), Some(c)) => format!(":{l}:{c}"),
                        (Some(l), None) => format!(":{l}"),
                        _ => String::new(),
                    };
                    let pointer = err
                        .get("pointer")
                        .and_then(Value::as_str)
                        .filter(|p| !p.is_empty())
                        .map(|p| format!(" {p}:"))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "    {name:width$}  rejected  {} {}{at}:{pointer} {}\n",
                        err.get("code").and_then(Value::as_str).unwrap_or("E_?"),
                        err.get("file").and_then(Value::as_str).unwrap_or("?"),
                        err.get("message").and_then(Value::as_str).unwrap_or(""),
                    ));
                }
                "removed" => out.push_str(&format!(
                    "    {name:width$}  removed   (was {})\n",
                    sha12(d.get("sha256_before"))
                )),
                other => out.push_str(&format!("    {name:width$}  {other}\n")),
            }
        }
    }
    out
}

/// `hotconf plan [FILE...]`: what an explicit reload would do with these
/// files (the config directory as it is for every other document), judged
/// by the running daemon. Exit 0 if every document would be ok, 1
/// otherwise; without a daemon, `hotconf check`'s result and a note.
pub fn plan(
    opts: &ClientOptions,
    config_dir: &Path,
    schema_dir: &Path,
    limits: Limits,
    files: &[PathBuf],
    json: bool,
) -> i32 {
    let mut documents = Vec::new();
    for f in files {
        let label = pipeline::display_path(f);
        let name = f
            .file_name()
            .and_then(document::document_name)
            .map(str::to_owned);
        let Some(name) = name else {
            eprintln!("hotconf plan: {label}: not a document name (NAME.toml)");
            return 1;
        };
        let bytes = match document::read_capped(f, limits.max_file_size, &label) {
            Ok(b) => b,
            Err(r) => {
                for line in r.lines() {
                    eprintln!("{line}");
                }
                return 1;
            }
        };
        let content = match String::from_utf8(bytes) {
            Ok(text) => json!({"name": name, "file": label, "content": text}),
            // The daemon reports the encoding error as it would on disk.
            Err(e) => json!({"name": name, "file": label, "bytes": e.into_bytes()}),
        };
        documents.push(content);
    }
    let body = if documents.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(json!({ "documents": documents }).to_string())
    };
    let socket = opts.socket_path();
    let conn = Connection::new(socket.clone());
    let asked = run_plan(conn, body);
    match asked {
        Ok(Ok(answer)) => {
            let ok = answer.get("ok").and_then(Value::as_bool).unwrap_or(false);
            let printed = if json {
                serde_json::to_string_pretty(&answer)
                    .map(|t| format!("{t}\n"))
                    .map_err(|e| e.to_string())
            } else {
                Ok(render_plan(&answer))
            };
            match printed.map(|t| print(&t)) {
                Ok(Ok(())) => i32::from(!ok),
                _ => 1,
            }
        }
        Ok(Err(ClientError::NotRunning { path, .. })) => {
            eprintln!(
                "hotconf plan: no daemon at {}: falling back to `hotconf check` \
                 (valid or not only: no diff is possible without the served version)",
                path.display()
            );
            let rejections = pipeline::check(config_dir, schema_dir, files, limits);
            for line in rejections.iter().flat_map(|r| r.lines()) {
                println!("{line}");
            }
            i32::from(!rejections.is_empty())
        }
        Ok(Err(ClientError::Api { status: 413, .. })) => {
            eprintln!(
                "hotconf plan: the candidates are larger than the socket accepts in one \
                 request; copy them into the config directory and run `hotconf plan` \
                 without FILE to judge the directory as it is on disk"
            );
            1
        }
        Ok(Err(e)) => {
            eprintln!("hotconf plan: {e}");
            1
        }
        Err(e) => {
            eprintln!("hotconf plan: cannot start: {e}");
            1
        }
    }
}

/// Sends the plan request on a small runtime.
fn run_plan(conn: Connection, body: Bytes) -> std::io::Result<Result<Value, ClientError>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async move {
        conn.request_with_body(hyper::Method::POST, "/v1/plan", body, Some(TIMEOUT))
            .await?
            .json_ok()
    }))
}

/// The `documents` object of a history entry or a plan, by name.
fn documents(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    v.get("documents").and_then(Value::as_object)
}

/// An accepted document's changed pointers and its "(schema changed)" note.
fn accepted_parts(d: &Value) -> (Vec<Value>, &'static str) {
    let changes = d
        .get("changes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let schema = if d.get("schema_changed").and_then(Value::as_bool) == Some(true) {
        "  (schema changed)"
    } else {
        ""
    };
    (changes, schema)
}

/// The human form of `POST /v1/plan`.
pub fn render_plan(body: &Value) -> String {
    let mut out = format!(
        "plan against generation {}:\n",
        body.get("generation").and_then(Value::as_u64).unwrap_or(0)
    );
    let empty = serde_json::Map::new();
    let docs = documents(body).unwrap_or(&empty);
    let width = docs.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (name, d) in docs {
        let result = d.get("result").and_then(Value::as_str).unwrap_or("?");
        match result {
            "accepted" => {
                let (changes, schema) = accepted_parts(d);
                out.push_str(&format!(
                    "    {name:width$}  accepted   {}{schema}\n",
                    stat(&changes)
                ));
                change_lines(&changes, "        ", &mut out);
            }
            "rejected" => {
                out.push_str(&format!("    {name:width$}  rejected\n"));
                if let Some(e) = d.get("error") {
                    for line in error_lines(e) {
                        out.push_str(&format!("        {line}\n"));
                    }
                }
            }
            other => out.push_str(&format!("    {name:width$}  {other}\n")),
        }
    }
    if body.get("secrets_compared").and_then(Value::as_bool) == Some(false) {
        out.push_str("note: secrets were not compared (only root and the daemon's user may)\n");
    }
    if body.get("ok").and_then(Value::as_bool) == Some(true) {
        out.push_str("applying would leave every document ok\n");
    } else {
        out.push_str("applying would leave a document NOT OK\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_reads_like_git_log_stat() {
        let body = json!({"entries": [{
            "id": 2, "trigger": "api", "started_at": "2026-01-01T00:00:00.000Z",
            "duration_ms": 3, "generation_before": 1, "generation_after": 2, "ok": false,
            "documents": {
                "app": {"result": "accepted", "sha256_before": "aaaaaaaaaaaaaaaa",
                        "sha256": "bbbbbbbbbbbbbbbb", "schema_changed": false,
                        "changes": [{"kind": "changed", "pointer": "/port", "old": 1, "new": 2}]},
                "db": {"result": "rejected", "sha256": null, "error": {"code": "E_SCHEMA",
                        "file": "c/db.toml", "line": 3, "column": 8, "pointer": "/x",
                        "message": "bad", "problems": 1}}
            }
        }]});
        let text = render_history(&body);
        assert!(
            text.starts_with(
                "reload 2  api  2026-01-01T00:00:00.000Z  3 ms  generation 1 -> 2  NOT OK\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("    app  accepted  +0 -0 ~1  aaaaaaaaaaaa -> bbbbbbbbbbbb\n"),
            "{text}"
        );
        assert!(text.contains("        ~ /port: 1 -> 2\n"), "{text}");
        assert!(
            text.contains("    db   rejected  E_SCHEMA c/db.toml:3:8: /x: bad\n"),
            "{text}"
        );
    }
}
