//! The key-level diff of two versions of a document: the JSON pointers
//! added, removed and changed, with old and new values, secrets shown as
//! `<redacted>`.
//!
//! Pure: two (value, redacted value) pairs in, a list of changes out. It
//! does not know schemas; the redacted twin (built by
//! [`Schema::redact`](crate::pipeline::schema::Schema::redact)) says where
//! the secrets are. Arrays are compared whole (one change at the array's
//! pointer): an insertion would otherwise show as a change of every later
//! index.

use serde::Serialize;
use serde_json::Value;

use crate::pipeline::schema::REDACTED;

/// One version of a document as the diff sees it: the real value (to know
/// whether something changed) and its redacted twin (what may be shown).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// The value with its secrets.
    pub value: &'a Value,
    /// The same value with every secret replaced by `"<redacted>"`.
    pub redacted: &'a Value,
}

/// What happened at one pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Present only in the new version.
    Added,
    /// Present only in the old version.
    Removed,
    /// Present in both, with different values.
    Changed,
}

impl ChangeKind {
    /// The marker printed before the pointer (`+`, `-`, `~`).
    pub fn sign(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        }
    }
}

/// One changed pointer. Values are the redacted ones: a secret reads
/// `<redacted>` on both sides of a change, so that it shows as changed
/// without its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// RFC 6901 JSON pointer (`""` is the whole document).
    pub pointer: String,
    /// The old value (absent for `added`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The new value (absent for `removed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// Whether this node is a secret: the redacted twin hides it. (A value that
/// really is the text `<redacted>` is harmless to show, so equality rules it
/// out.)
fn is_secret(v: Version<'_>) -> bool {
    v.redacted.as_str() == Some(REDACTED) && v.value != v.redacted
}

/// The changes from `old` to `new`, in pointer order (object keys in the
/// order of the old version, then keys only the new one has). A table only
/// one side has is listed leaf by leaf; with no old version (a new
/// document) every leaf is added.
pub fn diff(old: Option<Version<'_>>, new: Version<'_>) -> Vec<Change> {
    let mut out = Vec::new();
    match old {
        Some(old) => walk("", old, new, &mut out),
        None => leaves("", new, ChangeKind::Added, &mut out),
    }
    out
}

/// Compares one node of both versions at `pointer`.
fn walk(pointer: &str, old: Version<'_>, new: Version<'_>, out: &mut Vec<Change>) {
    if old.value == new.value {
        return;
    }
    let secret = is_secret(old) || is_secret(new);
    if let (false, Value::Object(o), Value::Object(n)) = (secret, old.value, new.value) {
        for (k, ov) in o {
            let p = child(pointer, k);
            let or = old.redacted.get(k).unwrap_or(ov);
            match n.get(k) {
                Some(nv) => {
                    let nr = new.redacted.get(k).unwrap_or(nv);
                    walk(
                        &p,
                        Version {
                            value: ov,
                            redacted: or,
                        },
                        Version {
                            value: nv,
                            redacted: nr,
                        },
                        out,
                    );
                }
                None => leaves(
                    &p,
                    Version {
                        value: ov,
                        redacted: or,
                    },
                    ChangeKind::Removed,
                    out,
                ),
            }
        }
        for (k, nv) in n {
            if !o.contains_key(k) {
                let nr = new.redacted.get(k).unwrap_or(nv);
                leaves(
                    &child(pointer, k),
                    Version {
                        value: nv,
                        redacted: nr,
                    },
                    ChangeKind::Added,
                    out,
                );
            }
        }
        return;
    }
    out.push(Change {
        kind: ChangeKind::Changed,
        pointer: pointer.to_string(),
        old: Some(old.redacted.clone()),
        new: Some(new.redacted.clone()),
    });
}

/// Every leaf of a subtree that only one version has, as added or removed:
/// a table is opened down to its values; an array, a secret or a scalar is
/// one change.
fn leaves(pointer: &str, v: Version<'_>, kind: ChangeKind, out: &mut Vec<Change>) {
    if let (false, Value::Object(m)) = (is_secret(v), v.value) {
        if !m.is_empty() {
            for (k, value) in m {
                let redacted = v.redacted.get(k).unwrap_or(value);
                leaves(&child(pointer, k), Version { value, redacted }, kind, out);
            }
            return;
        }
    }
    let shown = Some(v.redacted.clone());
    let (old, new) = match kind {
        ChangeKind::Removed => (shown, None),
        _ => (None, shown),
    };
    out.push(Change {
        kind,
        pointer: pointer.to_string(),
        old,
        new,
    });
}

/// `pointer` extended by the key `k`, escaped as RFC 6901 says.
fn child(pointer: &str, k: &str) -> String {
    format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v<'a>(value: &'a Value, redacted: &'a Value) -> Version<'a> {
        Version { value, redacted }
    }

    #[test]
    fn added_removed_changed_nested() {
        let a = json!({"server": {"port": 80, "host": "a"}, "old": 1, "list": [1, 2]});
        let b = json!({"server": {"port": 81, "host": "a", "tls": true}, "list": [1, 2, 3]});
        let d = diff(Some(v(&a, &a)), v(&b, &b));
        assert_eq!(
            d,
            vec![
                Change {
                    kind: ChangeKind::Changed,
                    pointer: "/server/port".into(),
                    old: Some(json!(80)),
                    new: Some(json!(81)),
                },
                Change {
                    kind: ChangeKind::Added,
                    pointer: "/server/tls".into(),
                    old: None,
                    new: Some(json!(true)),
                },
                Change {
                    kind: ChangeKind::Removed,
                    pointer: "/old".into(),
                    old: Some(json!(1)),
                    new: None,
                },
                Change {
                    kind: ChangeKind::Changed,
                    pointer: "/list".into(),
                    old: Some(json!([1, 2])),
                    new: Some(json!([1, 2, 3])),
                },
            ]
        );
    }

    #[test]
    fn equal_versions_have_no_changes() {
        let a = json!({"a": {"b": [1]}});
        assert!(diff(Some(v(&a, &a)), v(&a, &a)).is_empty());
    }

    #[test]
    fn a_changed_secret_shows_changed_without_values() {
        let a = json!({"db": {"password": "hunter2", "user": "u"}});
        let ar = json!({"db": {"password": REDACTED, "user": "u"}});
        let b = json!({"db": {"password": "correct horse", "user": "u"}});
        let br = json!({"db": {"password": REDACTED, "user": "u"}});
        let d = diff(Some(v(&a, &ar)), v(&b, &br));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, ChangeKind::Changed);
        assert_eq!(d[0].pointer, "/db/password");
        assert_eq!(d[0].old, Some(json!(REDACTED)));
        assert_eq!(d[0].new, Some(json!(REDACTED)));
        let text = serde_json::to_string(&d).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("horse"));
    }

    #[test]
    fn a_secret_table_is_one_change_and_never_recursed() {
        let a = json!({"creds": {"k": "1"}});
        let ar = json!({"creds": REDACTED});
        let b = json!({"creds": {"k": "2", "extra": "x"}});
        let d = diff(Some(v(&a, &ar)), v(&b, &ar));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pointer, "/creds");
        assert_eq!(d[0].new, Some(json!(REDACTED)));
    }

    #[test]
    fn an_added_or_removed_secret_is_redacted() {
        let a = json!({"x": 1});
        let b = json!({"x": 1, "token": "s3cret"});
        let br = json!({"x": 1, "token": REDACTED});
        let added = diff(Some(v(&a, &a)), v(&b, &br));
        assert_eq!(added[0].new, Some(json!(REDACTED)));
        let removed = diff(Some(v(&b, &br)), v(&a, &a));
        assert_eq!(removed[0].kind, ChangeKind::Removed);
        assert_eq!(removed[0].old, Some(json!(REDACTED)));
        let fresh = diff(None, v(&b, &br));
        assert_eq!(fresh.len(), 2);
        assert_eq!(fresh[1].new, Some(json!(REDACTED)));
    }

    #[test]
    fn a_new_table_is_listed_leaf_by_leaf() {
        let a = json!({"x": 1});
        let b = json!({"x": 1, "t": {"a": {"b": 2}, "l": [1], "s": "k"}});
        let br = json!({"x": 1, "t": {"a": {"b": 2}, "l": [1], "s": REDACTED}});
        let d = diff(Some(v(&a, &a)), v(&b, &br));
        let pointers: Vec<&str> = d.iter().map(|c| c.pointer.as_str()).collect();
        assert_eq!(pointers, ["/t/a/b", "/t/l", "/t/s"]);
        assert_eq!(d[2].new, Some(json!(REDACTED)));
        let gone = diff(Some(v(&b, &br)), v(&a, &a));
        assert!(gone
            .iter()
            .all(|c| c.kind == ChangeKind::Removed && c.new.is_none()));
        assert_eq!(gone.len(), 3);
    }

    #[test]
    fn pointers_are_escaped() {
        let a = json!({"a/b": 1, "c~d": 1});
        let b = json!({"a/b": 2, "c~d": 2});
        let d = diff(Some(v(&a, &a)), v(&b, &b));
        assert_eq!(d[0].pointer, "/a~1b");
        assert_eq!(d[1].pointer, "/c~0d");
    }
}
