//! The immutable snapshot: exactly what is served, nothing else.
//!
//! A `Snapshot` is built by the reloader and never changed after it is
//! published; readers hold an `Arc` to it for as long as they like.
//! Rejections and reload outcomes are *status* (see `status`), not part of
//! the snapshot, so they can never move the generation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;

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
    /// The JSON text of `value` and of `redacted`, each made at most once
    /// for this version and then shared by every response (see
    /// [`ServedDocument::body`]). `Bodies::default()` when building one.
    pub bodies: Bodies,
}

/// The serialized forms of one served version, filled on first use.
///
/// A [`Bytes`] clone is a reference-count increment, so N clients reading
/// (or not reading) one document hold N references to one buffer, and
/// waking N blocking queries costs N writes, not N serializations.
#[derive(Debug, Clone, Default)]
pub struct Bodies {
    value: OnceLock<Bytes>,
    redacted: OnceLock<Bytes>,
}

impl Bodies {
    /// Bodies whose redacted text is already known (the reloader serializes
    /// it once to hash it); the value's text is still made on first use.
    pub fn with_redacted(redacted: Vec<u8>) -> Self {
        Bodies {
            value: OnceLock::new(),
            redacted: OnceLock::from(Bytes::from(redacted)),
        }
    }
}

/// `value` as compact JSON text.
fn json_bytes(value: &serde_json::Value) -> Bytes {
    // ok: serializing a `Value` cannot fail (its keys are strings).
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

impl ServedDocument {
    /// The whole document as JSON text, as a peer may see it: the value for
    /// a trusted peer (or when there are no secrets), else the redacted
    /// value. Serialized on the first call for this version; every later
    /// call returns the same buffer.
    pub fn body(&self, trusted: bool) -> Bytes {
        if trusted || !self.has_secrets {
            self.bodies
                .value
                .get_or_init(|| json_bytes(&self.value))
                .clone()
        } else {
            self.bodies
                .redacted
                .get_or_init(|| json_bytes(&self.redacted))
                .clone()
        }
    }
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
