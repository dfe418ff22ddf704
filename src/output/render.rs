//! Rendering one output from a snapshot: a minijinja template with strict
//! undefined (a misspelt or absent value is an error, never an empty
//! string), or one document mirrored as JSON or TOML. Pure: no file is
//! written and no command runs here.
//!
//! Also here: the secret values a render may contain, so that every
//! message about an output (a template error, a command's stderr) can be
//! scrubbed of them before it is logged or shown.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior};

use crate::output::definition::{Definition, Source};
use crate::pipeline::rejection::{Code, Problem, Rejection};
use crate::pipeline::schema::REDACTED;
use crate::store::snapshot::Snapshot;

/// Names minijinja provides itself; a template naming them reads no
/// document.
const BUILTIN_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop", "self"];

/// An environment with the rules every render follows.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Output files are configuration, not HTML: never escape.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // Config files end with a newline, and block tags on their own lines
    // should not leave blank lines behind (as Ansible and Salt render).
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

/// The top-level variables a template reads (documents and `generation`),
/// or its syntax error located on the template file `label`.
pub fn free_variables(label: &str, text: &str) -> Result<BTreeSet<String>, Rejection> {
    let env = environment();
    let template = env
        .template_from_named_str(label, text)
        .map_err(|e| syntax_rejection(label, &e))?;
    Ok(template
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| !BUILTIN_GLOBALS.contains(&n.as_str()))
        .collect())
}

fn syntax_rejection(label: &str, e: &minijinja::Error) -> Rejection {
    let message = match e.detail() {
        Some(detail) => format!("template syntax: {}: {detail}", e.kind()),
        None => format!("template syntax: {}", e.kind()),
    };
    let problem = match e.line() {
        Some(line) => Problem {
            line: Some(line),
            ..Problem::bare(message)
        },
        None => Problem::bare(message),
    };
    Rejection::new(Code::Parse, label, problem)
}

/// Renders `def` from `snapshot`. The error is a one-line reason that may
/// still hold a secret: scrub it with [`scrub`] before showing it.
pub fn render(def: &Definition, snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    match &def.source {
        Source::Template { path, text } => {
            let env = environment();
            let name = path.display().to_string();
            let template = env
                .template_from_named_str(&name, text)
                .map_err(|e| e.to_string())?;
            let mut ctx: BTreeMap<&str, minijinja::Value> = snapshot
                .documents
                .iter()
                .map(|(n, d)| {
                    (
                        n.as_str(),
                        minijinja::Value::from(minijinja::value::Serde(&*d.value)),
                    )
                })
                .collect();
            ctx.insert("generation", minijinja::Value::from(snapshot.generation));
            template
                .render(ctx)
                .map(String::into_bytes)
                .map_err(|e| e.to_string())
        }
        Source::Json(doc) => {
            let served = snapshot
                .get(doc)
                .ok_or_else(|| format!("document {doc:?} is not served"))?;
            let mut text = serde_json::to_string_pretty(&*served.value)
                .map_err(|e| format!("cannot write JSON: {e}"))?;
            text.push('\n');
            Ok(text.into_bytes())
        }
        Source::Toml(doc) => {
            let served = snapshot
                .get(doc)
                .ok_or_else(|| format!("document {doc:?} is not served"))?;
            toml::to_string(&*served.value)
                .map(String::into_bytes)
                .map_err(|e| format!("cannot write TOML: {e}"))
        }
    }
}

/// The secret values of the documents `def` reads, as text (strings as
/// they are, other scalars as JSON), longest first so that a secret
/// containing another is replaced whole.
pub fn secrets(def: &Definition, snapshot: &Snapshot) -> Vec<String> {
    let mut out = BTreeSet::new();
    for name in &def.documents {
        if let Some(doc) = snapshot.get(name) {
            if doc.has_secrets {
                collect_secrets(&doc.value, &doc.redacted, &mut out);
            }
        }
    }
    let mut out: Vec<String> = out.into_iter().filter(|s| !s.is_empty()).collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Whether any document `def` reads holds secrets.
pub fn reads_secrets(def: &Definition, snapshot: &Snapshot) -> bool {
    def.documents
        .iter()
        .any(|n| snapshot.get(n).is_some_and(|d| d.has_secrets))
}

fn collect_secrets(
    value: &serde_json::Value,
    redacted: &serde_json::Value,
    out: &mut BTreeSet<String>,
) {
    use serde_json::Value;
    match (value, redacted) {
        (Value::Object(v), Value::Object(r)) => {
            for (k, vv) in v {
                if let Some(rv) = r.get(k) {
                    collect_secrets(vv, rv, out);
                }
            }
        }
        (Value::Array(v), Value::Array(r)) => {
            for (vv, rv) in v.iter().zip(r) {
                collect_secrets(vv, rv, out);
            }
        }
        (v, Value::String(r)) if r == REDACTED => all_scalars(v, out),
        _ => {}
    }
}

fn all_scalars(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Object(m) => m.values().for_each(|v| all_scalars(v, out)),
        Value::Array(a) => a.iter().for_each(|v| all_scalars(v, out)),
        Value::Null => {}
        other => {
            out.insert(other.to_string());
        }
    }
}

/// `text` with every secret replaced by `<redacted>`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_and_scrubbed() {
        let value = serde_json::json!({"db": {"password": "hunter2", "host": "h"}, "n": [1, "x"]});
        let redacted =
            serde_json::json!({"db": {"password": REDACTED, "host": "h"}, "n": [1, "x"]});
        let mut out = BTreeSet::new();
        collect_secrets(&value, &redacted, &mut out);
        assert_eq!(out, BTreeSet::from(["hunter2".to_string()]));
        let secrets: Vec<String> = out.into_iter().collect();
        assert_eq!(
            scrub("bad token \"hunter2\" at line 3", &secrets),
            "bad token \"<redacted>\" at line 3"
        );
    }

    #[test]
    fn syntax_errors_name_the_template_line() {
        let r = free_variables("t.j2", "ok\n{% if %}\n").unwrap_err();
        assert_eq!(r.code, Code::Parse);
        assert_eq!(r.problems[0].line, Some(2));
    }
}
