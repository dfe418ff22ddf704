//! The whole verdict for one document, and for a directory: read → parse →
//! validate. What `hotconf check` runs and what the reloader runs per
//! document. No daemon state here: no store, no status, no watching.

pub mod document;
pub mod limits;
pub mod rejection;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::pipeline::document::Parsed;
use crate::pipeline::rejection::{Code, Rejection};
use crate::pipeline::schema::{Schema, SchemaCache};

/// Limits applied to every document read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Files larger than this are rejected (`E_TOO_LARGE`) unread.
    pub max_file_size: u64,
    /// Follow a document symlink to a file of another owner (see
    /// [`document::check_symlink`]); off by default.
    pub allow_foreign_symlinks: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: document::DEFAULT_MAX_FILE_SIZE,
            allow_foreign_symlinks: false,
        }
    }
}

/// Reads the document at `path` as a reload or `check` does: the symlink
/// rule of [`document::check_symlink`] (unless `limits` allow foreign
/// symlinks), then at most `limits.max_file_size` bytes.
pub fn read_document(path: &Path, limits: &Limits, label: &str) -> Result<Vec<u8>, Rejection> {
    if !limits.allow_foreign_symlinks {
        document::check_symlink(path, label)?;
    }
    document::read_capped(path, limits.max_file_size, label)
}

/// Parses and validates `bytes` of the document labelled `label` against
/// `schema`. Pure.
pub fn evaluate(label: &str, bytes: &[u8], schema: &Schema) -> Result<Parsed, Rejection> {
    let parsed = document::parse(label, bytes)?;
    schema.validate(label, &parsed)?;
    Ok(parsed)
}

/// The documents of a config directory: NAME → path. Entries that are not
/// documents are left out: names that are not `NAME.toml`, and entries that
/// (symlinks followed) exist but are not regular files — directories, FIFOs,
/// sockets. A dangling symlink is listed (reading it reports `E_IO`): in the
/// middle of a symlink swap it is a document whose content is not there.
pub fn list_documents(config_dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(config_dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        if let Some(name) = document::document_name(&file_name) {
            let path = entry.path();
            if let Ok(meta) = std::fs::metadata(&path) {
                if !meta.is_file() {
                    continue;
                }
            }
            out.insert(name.to_string(), path);
        }
    }
    Ok(out)
}

/// A path as the operator should see it: as given, without a leading `./`
/// (`./configs/app.toml` prints as `configs/app.toml`).
pub fn display_path(path: &Path) -> String {
    let mut components = path.components().peekable();
    while components.peek() == Some(&Component::CurDir) {
        components.next();
    }
    let trimmed: PathBuf = components.collect();
    if trimmed.as_os_str().is_empty() {
        path.display().to_string()
    } else {
        trimmed.display().to_string()
    }
}

/// What `hotconf check` does: every document of `config_dir` (or only
/// `files`, when not empty) read, parsed and validated. Returns every
/// rejection, sorted by file then line. Empty means all valid.
///
/// - A document's label is its path as given or listed (`configs/app.toml`).
/// - A given file's document NAME comes from its file name, and its schema
///   from `schema_dir` wherever the file is; a given file whose name is not
///   a document name (`notes.txt`, `.app.toml`) is `E_IO` ("not a document
///   name") and is not read.
/// - A missing schema is `E_NO_SCHEMA` on the document; an invalid schema is
///   `E_SCHEMA_INVALID` on the schema file at fault, reported once even when
///   several documents use it.
/// - An unreadable config directory is one `E_IO` on the directory.
pub fn check(
    config_dir: &Path,
    schema_dir: &Path,
    files: &[PathBuf],
    limits: Limits,
) -> Vec<Rejection> {
    let mut rejections = Vec::new();
    let mut targets: Vec<(String, PathBuf, String)> = Vec::new();
    if files.is_empty() {
        match list_documents(config_dir) {
            Ok(docs) => {
                for (name, path) in docs {
                    targets.push((display_path(&path), path, name));
                }
            }
            Err(e) => rejections.push(Rejection::bare(
                Code::Io,
                display_path(config_dir),
                format!("config directory: {}", document::io_reason(&e)),
            )),
        }
    } else {
        for path in files {
            let label = display_path(path);
            match path.file_name().and_then(document::document_name) {
                Some(name) => targets.push((label, path.clone(), name.to_string())),
                None => rejections.push(Rejection::bare(
                    Code::Io,
                    label,
                    "not a document name (expected NAME.toml, NAME matching ^[A-Za-z0-9][A-Za-z0-9_-]*$); not checked",
                )),
            }
        }
    }

    let mut cache = SchemaCache::new();
    for (label, path, name) in targets {
        // Read and parse first, then the schema: a document with a syntax
        // error and a broken schema gets both reported.
        let bytes = match read_document(&path, &limits, &label) {
            Ok(bytes) => bytes,
            Err(r) => {
                rejections.push(r);
                continue;
            }
        };
        let parsed = document::parse(&label, &bytes);
        let schema = cache.load(schema_dir, &name).map_err(|mut r| {
            if r.code == Code::NoSchema {
                // Say it on the document: that is what lacks something.
                r.file = label.clone();
            }
            r
        });
        match (parsed, schema) {
            (Ok(parsed), Ok(schema)) => {
                if let Err(r) = schema.validate(&label, &parsed) {
                    rejections.push(r);
                }
            }
            (parsed, schema) => {
                rejections.extend(parsed.err());
                rejections.extend(schema.err());
            }
        }
    }

    // Each rejection's problems are already in source order (a schema
    // rejection ends with its "... more not shown" line, which must stay last).
    rejections.sort_by(|a, b| {
        let key = |r: &Rejection| {
            let p = r.problems.first();
            (
                r.file.clone(),
                p.and_then(|p| p.line).unwrap_or(0),
                p.and_then(|p| p.column).unwrap_or(0),
            )
        };
        key(a).cmp(&key(b))
    });
    rejections.dedup();
    rejections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keeps_regular_files_and_symlinks_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("app.toml"), "").unwrap();
        std::fs::write(d.join(".app.toml.swp"), "").unwrap();
        std::fs::write(d.join("app.toml~"), "").unwrap();
        std::fs::write(d.join("4913"), "").unwrap();
        std::fs::create_dir(d.join("dir.toml")).unwrap();
        std::fs::create_dir(d.join("..data")).unwrap();
        std::fs::write(d.join("..data/features.toml"), "").unwrap();
        std::os::unix::fs::symlink("..data/features.toml", d.join("features.toml")).unwrap();
        std::os::unix::fs::symlink("nowhere.toml", d.join("dangling.toml")).unwrap();
        let names: Vec<String> = list_documents(d).unwrap().into_keys().collect();
        assert_eq!(names, ["app", "dangling", "features"]);
    }

    /// A document at the deepest allowed nesting, failing a recursive schema
    /// at the bottom, runs the whole rejection path (validation, secret walk,
    /// span walk) on a thread with a tokio-sized 2 MiB stack.
    #[test]
    fn deepest_document_fits_a_small_stack() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("deep.schema.json"),
            r##"{
                "$ref": "#/$defs/n",
                "$defs": {"n": {
                    "type": ["object", "array", "string"],
                    "additionalProperties": {"$ref": "#/$defs/n"},
                    "items": {"$ref": "#/$defs/n"},
                    "properties": {"pw": {"writeOnly": true}}
                }}
            }"##,
        )
        .unwrap();
        let mut cache = SchemaCache::new();
        let schema = cache.load(dir.path(), "deep").unwrap();
        let half = document::MAX_DEPTH / 2;
        let text = format!(
            "{} = {}1{}\n",
            vec!["k"; half].join("."),
            "[".repeat(half - 1),
            "]".repeat(half - 1)
        );
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || evaluate("deep.toml", text.as_bytes(), &schema))
            .unwrap();
        let r = handle.join().unwrap().unwrap_err();
        assert_eq!(r.code, Code::Schema);
        assert_eq!(r.problems[0].line, Some(1));
        assert!(r.problems[0].message.contains("is not of types"), "{r}");
    }
}
