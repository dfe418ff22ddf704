//! Reading and parsing one document: bytes in, a JSON value (or a
//! [`Rejection`]) out. Pure functions apart from [`read_capped`]; no globals.
//!
//! Does not know about schemas (see `schema`) or about the daemon.

use std::ffi::OsStr;
use std::path::Path;

use crate::rejection::{Code, Rejection};

/// Default for `--max-file-size`: 4 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// The document NAME of a directory entry called `NAME.toml`, if it is one:
/// `NAME` must match `^[A-Za-z0-9][A-Za-z0-9_-]*$`. Editor droppings, hidden
/// files and temp files are not documents.
pub fn document_name(file_name: &OsStr) -> Option<&str> {
    let s = file_name.to_str()?;
    let name = s.strip_suffix(".toml")?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphanumeric() {
        return None;
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Some(name)
    } else {
        None
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Reads a file, refusing (`E_TOO_LARGE`) without reading it whole when it is
/// larger than `max` bytes. `label` is the file as the operator should see it.
pub fn read_capped(path: &Path, max: u64, label: &str) -> Result<Vec<u8>, Rejection> {
    let _ = (path, max);
    Err(Rejection::bare(Code::Io, label, "not implemented yet"))
}

/// A parsed document: its JSON value and what the rejection path needs to
/// map JSON pointers back to source spans.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The document as JSON (datetimes as RFC 3339 strings).
    pub value: serde_json::Value,
    /// The source text (kept only to locate schema violations).
    pub text: String,
}

/// UTF-8 check, TOML parse and conversion to JSON. `E_ENCODING` or
/// `E_PARSE` (with line and column, never quoting the source line).
pub fn parse(label: &str, bytes: &[u8]) -> Result<Parsed, Rejection> {
    let _ = bytes;
    Err(Rejection::bare(Code::Parse, label, "not implemented yet"))
}
