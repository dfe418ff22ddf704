//! The immutable snapshot: exactly what is served, nothing else.
//!
//! A `Snapshot` is built by the reloader and never changed after it is
//! published; readers hold an `Arc` to it for as long as they like.
//! Rejections and reload outcomes are *status* (see `status`), not part of
//! the snapshot, so they can never move the generation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// One served document.
#[derive(Debug, Clone)]
pub struct ServedDocument {
    /// The document's value as JSON.
    pub value: Arc<serde_json::Value>,
    /// The value with secrets (`writeOnly`) replaced by `"<redacted>"`; the
    /// same `Arc` as `value` when the document holds no secrets.
    pub redacted: Arc<serde_json::Value>,
    /// Whether the schema marks any of its values as secret.
    pub has_secrets: bool,
    /// SHA-256 of the source bytes.
    pub sha256: String,
    /// SHA-256 of the redacted value's JSON text, shown instead of `sha256`
    /// to peers who may not see secrets (a source hash lets them test
    /// guesses of a weak secret). Equal to `sha256` without secrets.
    pub redacted_sha256: String,
    /// The snapshot generation in which this document last changed.
    pub generation: u64,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// The file it was read from.
    pub source: PathBuf,
    /// SHA-256 of its schema's closure.
    pub schema_sha256: String,
    /// This version deserialized into the Rust type an embedding program
    /// registered for the document (see [`crate::store::typed`]); built once, when
    /// the version was accepted. `None` when no type is registered. Read it
    /// with [`ServedDocument::typed`].
    pub typed: Option<crate::store::typed::AnyTyped>,
}

/// An immutable, complete view of the served configuration.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Moves only when served content changes. 0 means nothing published yet.
    pub generation: u64,
    /// When this snapshot was published.
    pub published_at: SystemTime,
    /// Served documents by name.
    pub documents: BTreeMap<String, Arc<ServedDocument>>,
}

impl Snapshot {
    /// The snapshot before anything has been loaded: generation 0, empty.
    pub fn empty() -> Self {
        Snapshot {
            generation: 0,
            published_at: SystemTime::now(),
            documents: BTreeMap::new(),
        }
    }

    /// The served value of document `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Arc<ServedDocument>> {
        self.documents.get(name)
    }
}
