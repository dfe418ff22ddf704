//! Plans: what an explicit reload would do, judged without applying it.
//!
//! A [`Planner`] holds the daemon's own rules (config and schema
//! directories, size limit, `--all-or-nothing`) and judges a set of
//! candidates — bytes a client sent for some documents, the config
//! directory as it is on disk for the rest — against the served snapshot,
//! with explicit-reload semantics: a served document whose file is gone is
//! `removed`. It only reads: it never touches the store, the status, the
//! history or the metrics, and it never writes a file. It compiles schemas
//! in its own cache, never the reloader's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::diff::{diff, Change, Version};
use super::rejection_json;
use crate::pipeline::rejection::{Code, Rejection};
use crate::pipeline::schema::{Schema, SchemaCache};
use crate::pipeline::{self, document, Limits};
use crate::store::snapshot::Snapshot;

/// One candidate sent by a client: the bytes a document would have.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The document NAME (`NAME.toml`).
    pub name: String,
    /// The file as messages should name it (the client's path).
    pub label: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// What applying would do to one document.
#[derive(Debug, Clone)]
pub enum PlanResult {
    /// A new version would be published, with these changes.
    Accepted {
        /// Key-level changes against what is served (all added for a new
        /// document).
        changes: Vec<Change>,
        /// Whether its schema closure differs from the served version's.
        schema_changed: bool,
        /// The candidate's hash, if the peer may see it.
        sha256: Option<String>,
    },
    /// The candidate would be rejected (the served version stays).
    Rejected {
        /// Why.
        rejection: Rejection,
        /// The candidate's hash, if the peer may see it.
        sha256: Option<String>,
    },
    /// What is served would stay as it is.
    Unchanged,
    /// It would no longer be served (its file is gone).
    Removed,
    /// Its file is gone but `--all-or-nothing` and a rejection elsewhere
    /// keep it served (it would be `missing`).
    Missing,
}

impl PlanResult {
    /// `accepted|rejected|unchanged|removed|missing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanResult::Accepted { .. } => "accepted",
            PlanResult::Rejected { .. } => "rejected",
            PlanResult::Unchanged => "unchanged",
            PlanResult::Removed => "removed",
            PlanResult::Missing => "missing",
        }
    }
}

/// A whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The generation it was judged against.
    pub generation: u64,
    /// Every document of the candidate set and every served one.
    pub documents: BTreeMap<String, PlanResult>,
    /// Whether the peer's plan compared secrets with the served ones: a
    /// peer that may not see secrets gets a plan of redacted values only,
    /// so it cannot test guesses of a served secret.
    pub secrets_compared: bool,
}

impl Plan {
    /// Whether applying would leave every document ok.
    pub fn ok(&self) -> bool {
        self.documents
            .values()
            .all(|d| !matches!(d, PlanResult::Rejected { .. } | PlanResult::Missing))
    }

    /// The body of `POST /v1/plan`.
    pub fn to_json(&self) -> Value {
        let documents: serde_json::Map<String, Value> = self
            .documents
            .iter()
            .map(|(name, d)| {
                let v = match d {
                    PlanResult::Accepted {
                        changes,
                        schema_changed,
                        sha256,
                    } => json!({
                        "result": d.as_str(),
                        "sha256": sha256,
                        "schema_changed": schema_changed,
                        "changes": changes,
                    }),
                    PlanResult::Rejected { rejection, sha256 } => {
                        let errors: Vec<Value> = rejection
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
                        let mut e = rejection_json(rejection);
                        if let Value::Object(m) = &mut e {
                            m.insert("errors".into(), Value::Array(errors));
                        }
                        json!({"result": d.as_str(), "sha256": sha256, "error": e})
                    }
                    _ => json!({"result": d.as_str()}),
                };
                (name.clone(), v)
            })
            .collect();
        json!({
            "generation": self.generation,
            "ok": self.ok(),
            "secrets_compared": self.secrets_compared,
            "documents": documents,
        })
    }
}

/// Judges candidates with the daemon's own rules.
pub struct Planner {
    /// Directory of `NAME.toml` documents (read for documents without a
    /// candidate).
    pub config_dir: PathBuf,
    /// Directory of `NAME.schema.json` schemas.
    pub schema_dir: PathBuf,
    /// The daemon's read limits.
    pub limits: Limits,
    /// `--all-or-nothing`.
    pub all_or_nothing: bool,
    /// The planner's own compiled schemas (never the reloader's).
    schemas: Mutex<SchemaCache>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("config_dir", &self.config_dir)
            .field("schema_dir", &self.schema_dir)
            .finish_non_exhaustive()
    }
}

/// One document to judge: where it came from and its bytes.
struct Input {
    label: String,
    bytes: Result<Vec<u8>, Rejection>,
}

impl Planner {
    /// A planner with the daemon's rules.
    pub fn new(
        config_dir: PathBuf,
        schema_dir: PathBuf,
        limits: Limits,
        all_or_nothing: bool,
    ) -> Planner {
        Planner {
            config_dir,
            schema_dir,
            limits,
            all_or_nothing,
            schemas: Mutex::new(SchemaCache::new()),
        }
    }

    /// What an explicit reload would do if the documents of `candidates`
    /// had those bytes and every other document were as it is on disk now,
    /// judged against `served`. `trusted`: whether the peer may see
    /// secrets and their hashes. Reads files; call it off async workers.
    /// Fails only when the config directory cannot be listed (then a
    /// reload would remove nothing either).
    pub fn plan(
        &self,
        served: &Snapshot,
        candidates: Vec<Candidate>,
        trusted: bool,
    ) -> Result<Plan, Rejection> {
        let listing = pipeline::list_documents(&self.config_dir).map_err(|e| {
            Rejection::bare(
                Code::Io,
                pipeline::display_path(&self.config_dir),
                format!("config directory: {}", document::io_reason(&e)),
            )
        })?;
        let mut inputs: BTreeMap<String, Input> = listing
            .into_iter()
            .map(|(name, path)| {
                let label = pipeline::display_path(&path);
                // The daemon's read rule, symlink check included.
                let bytes = pipeline::read_document(&path, &self.limits, &label);
                (name, Input { label, bytes })
            })
            .collect();
        for c in candidates {
            let bytes =
                if u64::try_from(c.bytes.len()).unwrap_or(u64::MAX) > self.limits.max_file_size {
                    Err(Rejection::bare(
                        Code::TooLarge,
                        c.label.clone(),
                        format!(
                        "file is larger than the limit of {} bytes (--max-file-size); not judged",
                        self.limits.max_file_size
                    ),
                    ))
                } else {
                    Ok(c.bytes)
                };
            inputs.insert(
                c.name,
                Input {
                    label: c.label,
                    bytes,
                },
            );
        }

        let mut cache = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        let mut documents = BTreeMap::new();
        for (name, input) in &inputs {
            let schema = cache.load(&self.schema_dir, name).map_err(|mut r| {
                if r.code == Code::NoSchema {
                    r.file = input.label.clone();
                }
                r
            });
            documents.insert(name.clone(), judge(served, name, input, schema, trusted));
        }
        drop(cache);
        let blocked = self.all_or_nothing
            && documents
                .values()
                .any(|d| matches!(d, PlanResult::Rejected { .. }));
        for (name, d) in documents.iter_mut() {
            if blocked && matches!(d, PlanResult::Accepted { .. }) {
                let label = inputs
                    .get(name)
                    .map(|i| i.label.clone())
                    .unwrap_or_default();
                *d = PlanResult::Rejected {
                    rejection: Rejection::bare(
                        Code::Schema,
                        label,
                        "valid, but would not be applied: --all-or-nothing and another \
                         document would be rejected",
                    ),
                    sha256: None,
                };
            }
        }
        for name in served.documents.keys() {
            if !inputs.contains_key(name) {
                let r = if blocked {
                    PlanResult::Missing
                } else {
                    PlanResult::Removed
                };
                documents.insert(name.clone(), r);
            }
        }
        Ok(Plan {
            generation: served.generation,
            documents,
            secrets_compared: trusted,
        })
    }
}

/// Judges one document against what is served.
fn judge(
    served: &Snapshot,
    name: &str,
    input: &Input,
    schema: Result<Arc<Schema>, Rejection>,
    trusted: bool,
) -> PlanResult {
    let current = served.get(name);
    let sha256 = input.bytes.as_ref().ok().map(|b| document::sha256_hex(b));
    // A hash of a document with secrets lets a peer test guesses: only for
    // trusted peers (unknown schema: assume secrets).
    let has_secrets =
        schema.as_ref().map_or(true, |s| s.has_secrets()) || current.is_some_and(|d| d.has_secrets);
    let visible = if trusted || !has_secrets {
        sha256.clone()
    } else {
        None
    };
    let (bytes, schema) = match (&input.bytes, schema) {
        (Err(r), _) => {
            return PlanResult::Rejected {
                rejection: r.clone(),
                sha256: visible,
            }
        }
        (Ok(_), Err(r)) => {
            return PlanResult::Rejected {
                rejection: r,
                sha256: visible,
            }
        }
        (Ok(b), Ok(s)) => (b, s),
    };
    let same_schema = current.is_some_and(|d| d.schema_sha256 == schema.sha256);
    if trusted || !has_secrets {
        // Same bytes and schema: exactly what is served.
        if same_schema && current.is_some_and(|d| Some(&d.sha256) == sha256.as_ref()) {
            return PlanResult::Unchanged;
        }
    }
    let parsed = match pipeline::evaluate(&input.label, bytes, &schema) {
        Ok(p) => p,
        Err(rejection) => {
            return PlanResult::Rejected {
                rejection,
                sha256: visible,
            }
        }
    };
    let redacted = schema.redact(&parsed.value);
    let new = if trusted {
        Version {
            value: &parsed.value,
            redacted: &redacted,
        }
    } else {
        // Redacted on both sides: a secret is never compared for this peer.
        Version {
            value: &redacted,
            redacted: &redacted,
        }
    };
    let old = current.map(|d| {
        if trusted {
            Version {
                value: &d.value,
                redacted: &d.redacted,
            }
        } else {
            Version {
                value: &d.redacted,
                redacted: &d.redacted,
            }
        }
    });
    let changes = diff(old, new);
    if !trusted && has_secrets && same_schema && changes.is_empty() {
        return PlanResult::Unchanged;
    }
    PlanResult::Accepted {
        changes,
        schema_changed: current.is_some() && !same_schema,
        sha256: visible,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::served_document;

    /// A config dir with `a` (port) and `b` (secret `pw`), and a snapshot
    /// serving both as they are on disk.
    fn setup() -> (tempfile::TempDir, Planner, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        let (c, s) = (dir.path().join("c"), dir.path().join("s"));
        std::fs::create_dir_all(&c).unwrap();
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(
            s.join("a.schema.json"),
            r#"{"type":"object","properties":{"port":{"type":"integer","minimum":1}}}"#,
        )
        .unwrap();
        std::fs::write(
            s.join("b.schema.json"),
            r#"{"type":"object","properties":{"pw":{"type":"string","writeOnly":true}}}"#,
        )
        .unwrap();
        std::fs::write(c.join("a.toml"), "port = 1\n").unwrap();
        std::fs::write(c.join("b.toml"), "pw = \"one\"\n").unwrap();
        let planner = Planner::new(c.clone(), s.clone(), Limits::default(), false);
        let mut cache = SchemaCache::new();
        let mut documents = BTreeMap::new();
        for name in ["a", "b"] {
            let path = c.join(format!("{name}.toml"));
            let bytes = std::fs::read(&path).unwrap();
            let schema = cache.load(&s, name).unwrap();
            let parsed = pipeline::evaluate(name, &bytes, &schema).unwrap();
            let doc = served_document(&path, &bytes, parsed.value, &schema, None);
            documents.insert(name.to_string(), Arc::new(doc));
        }
        let snapshot = Snapshot {
            generation: 3,
            published_at: std::time::SystemTime::now(),
            documents,
        };
        (dir, planner, snapshot)
    }

    fn candidate(name: &str, text: &str) -> Candidate {
        Candidate {
            name: name.into(),
            label: format!("{name}.toml"),
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_directory_as_it_is_is_unchanged() {
        let (_d, p, s) = setup();
        let plan = p.plan(&s, vec![], true).unwrap();
        assert!(plan.ok());
        assert!(plan
            .documents
            .values()
            .all(|d| matches!(d, PlanResult::Unchanged)));
    }

    #[test]
    fn all_or_nothing_holds_back_good_edits_and_removals() {
        let (d, mut p, s) = setup();
        p.all_or_nothing = true;
        std::fs::remove_file(d.path().join("c/b.toml")).unwrap();
        let plan = p
            .plan(
                &s,
                vec![candidate("a", "port = 0\n"), candidate("n", "x = 1\n")],
                true,
            )
            .unwrap();
        assert!(!plan.ok());
        assert!(matches!(plan.documents["a"], PlanResult::Rejected { .. }));
        // `n` has no schema: rejected too.
        assert!(matches!(plan.documents["n"], PlanResult::Rejected { .. }));
        assert!(matches!(plan.documents["b"], PlanResult::Missing));
        p.all_or_nothing = false;
        let plan = p
            .plan(&s, vec![candidate("a", "port = 2\n")], true)
            .unwrap();
        assert!(matches!(plan.documents["b"], PlanResult::Removed));
        assert!(matches!(plan.documents["a"], PlanResult::Accepted { .. }));
        assert!(plan.ok());
    }

    #[test]
    fn an_untrusted_plan_never_compares_a_secret() {
        let (_d, p, s) = setup();
        for guess in ["one", "two"] {
            let text = format!("pw = \"{guess}\"\n");
            let plan = p.plan(&s, vec![candidate("b", &text)], false).unwrap();
            assert!(matches!(plan.documents["b"], PlanResult::Unchanged));
            assert!(!plan.secrets_compared);
        }
        let plan = p
            .plan(&s, vec![candidate("b", "pw = \"two\"\n")], true)
            .unwrap();
        let PlanResult::Accepted {
            changes, sha256, ..
        } = &plan.documents["b"]
        else {
            panic!("not accepted");
        };
        assert_eq!(changes.len(), 1);
        assert!(sha256.is_some());
        assert!(!plan.to_json().to_string().contains("two"));
    }
}
