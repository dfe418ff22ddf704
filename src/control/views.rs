//! The JSON bodies of the API, built from the store: pure functions of a
//! snapshot, a status and who is asking (SPEC §5 fixes the field names).
//!
//! Peers that are not trusted (see [`Peer::is_trusted`](super::Peer)) get
//! redacted values, and for documents holding secrets the hash of the
//! redacted value instead of the source hash.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::store::snapshot::{ServedDocument, Snapshot};
use crate::store::status::{DocState, LastError, ReloadOutcome, Status};

/// Largest time humantime can print (9999-12-31T23:59:59Z).
const MAX_RFC3339_SECS: u64 = 253_402_300_799;

/// RFC 3339 (UTC, milliseconds) or `None` for a time outside 1970..=9999,
/// which only a broken clock produces.
pub fn rfc3339(t: SystemTime) -> Option<String> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    if since.as_secs() > MAX_RFC3339_SECS {
        return None;
    }
    Some(humantime::format_rfc3339_millis(t).to_string())
}

/// The hash a peer may see for a served document.
pub fn visible_sha256(doc: &ServedDocument, trusted: bool) -> &str {
    if trusted || !doc.has_secrets {
        &doc.sha256
    } else {
        &doc.redacted_sha256
    }
}

/// The value a peer may see for a served document.
pub fn visible_value(doc: &ServedDocument, trusted: bool) -> &Value {
    if trusted {
        &doc.value
    } else {
        &doc.redacted
    }
}

/// `GET /v1/status`.
pub fn status(
    instance: &str,
    uptime: std::time::Duration,
    snapshot: &Snapshot,
    status: &Status,
    trusted: bool,
) -> Value {
    let names: BTreeSet<&String> = status
        .documents
        .keys()
        .chain(snapshot.documents.keys())
        .collect();
    let documents: serde_json::Map<String, Value> = names
        .into_iter()
        .map(|name| (name.clone(), document(name, snapshot, status, trusted)))
        .collect();
    json!({
        "instance": instance,
        "generation": snapshot.generation,
        "published_at": if snapshot.generation == 0 { None } else { rfc3339(snapshot.published_at) },
        "uptime_s": uptime.as_secs(),
        "ok": status.all_ok(),
        "documents": documents,
        "last_reload": status.last_reload.as_ref().map(last_reload),
        "counters": {
            "reloads": status.counters.reloads,
            "rejections": status.counters.rejections,
        },
        "warnings": status.warnings,
        "watch": {
            "ok": status.watch_degraded.is_none(),
            "degraded_reason": status.watch_degraded,
        },
        "state_dir": status.persist.as_ref().map(|p| json!({
            "path": p.dir.display().to_string(),
            "ok": p.last_error.is_none(),
            "restored_generation": p.restored_generation,
            "persisted_generation": p.persisted_generation,
            "last_error": p.last_error.as_ref().map(|(message, at)| json!({
                "message": message,
                "at": rfc3339(*at),
            })),
        })),
    })
}

/// The state of one document (a member of `/v1/status`'s `documents`).
fn document(name: &str, snapshot: &Snapshot, status: &Status, trusted: bool) -> Value {
    let served = snapshot.get(name);
    let st = status.documents.get(name);
    // A served document the reloader has no status for is, by definition, ok.
    let state = st.map(|s| s.state).unwrap_or(DocState::Ok);
    let source = served
        .map(|d| d.source.display().to_string())
        .or_else(|| st.map(|s| s.source.display().to_string()));
    // The rejected candidate's hash is as sensitive as a source hash, and
    // the candidate may hold secrets the served version does not (a field
    // made `writeOnly`, a new secret): only trusted peers see it.
    let may_see_candidate_hash = trusted;
    json!({
        "state": state.as_str(),
        "generation": served.map(|d| d.generation),
        "sha256": served.map(|d| visible_sha256(d, trusted)),
        "loaded_at": served.and_then(|d| rfc3339(d.loaded_at)),
        "source": source,
        "last_error": st
            .and_then(|s| s.last_error.as_ref())
            .map(|e| last_error(e, may_see_candidate_hash)),
    })
}

/// A document's last rejection.
pub fn last_error(e: &LastError, show_hash: bool) -> Value {
    let r = &e.rejection;
    let errors: Vec<Value> = r
        .problems
        .iter()
        .map(|p| {
            json!({
                "pointer": p.pointer,
                "line": p.line,
                "column": p.column,
                "message": p.message,
            })
        })
        .collect();
    json!({
        "code": r.code.as_str(),
        "message": r.summary(),
        "file": r.file,
        "sha256": if show_hash { e.sha256.clone() } else { None },
        "at": rfc3339(e.at),
        "errors": errors,
    })
}

/// `last_reload` of `/v1/status`.
pub fn last_reload(o: &ReloadOutcome) -> Value {
    json!({
        "trigger": o.trigger.as_str(),
        "at": rfc3339(o.at),
        "duration_ms": u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
        "accepted": o.accepted,
        "rejected": o.rejected,
        "removed": o.removed,
        "waited_for": o.waited,
        "deferred": o.deferred,
    })
}

/// `POST /v1/reload`: what the reload did, whether everything is ok after
/// it, and every document that is not `ok` with its error.
pub fn reload_result(o: &ReloadOutcome, snapshot: &Snapshot, status: &Status) -> Value {
    let mut not_ok = serde_json::Map::new();
    for (name, st) in &status.documents {
        if st.state != DocState::Ok {
            not_ok.insert(
                name.clone(),
                json!({
                    "state": st.state.as_str(),
                    "last_error": st.last_error.as_ref().map(|e| last_error(e, true)),
                }),
            );
        }
    }
    let mut v = last_reload(o);
    if let Value::Object(m) = &mut v {
        m.insert("generation".into(), json!(snapshot.generation));
        m.insert("ok".into(), json!(status.all_ok()));
        m.insert("not_ok".into(), Value::Object(not_ok));
    }
    v
}

/// `GET /v1/config`: every served document's value, as JSON text. Built
/// from each version's shared body (see [`ServedDocument::body`]): copied
/// into place, never serialized again.
pub fn config(instance: &str, snapshot: &Snapshot, trusted: bool) -> bytes::Bytes {
    let bodies: Vec<(&String, bytes::Bytes)> = snapshot
        .documents
        .iter()
        .map(|(k, d)| (k, d.body(trusted)))
        .collect();
    let len: usize = bodies
        .iter()
        .map(|(k, b)| k.len().saturating_add(b.len()).saturating_add(8))
        .sum();
    let mut out = Vec::with_capacity(len.saturating_add(instance.len()).saturating_add(64));
    // ok (both): serializing a string cannot fail, and writing to a Vec neither.
    out.extend_from_slice(b"{\"instance\":");
    let _ = serde_json::to_writer(&mut out, instance);
    out.extend_from_slice(
        format!(",\"generation\":{},\"documents\":{{", snapshot.generation).as_bytes(),
    );
    for (i, (name, body)) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b':');
        out.extend_from_slice(body);
    }
    out.extend_from_slice(b"}}");
    bytes::Bytes::from(out)
}
