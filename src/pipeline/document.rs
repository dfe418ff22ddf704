//! Reading and parsing one document: bytes in, a JSON value (or a
//! [`Rejection`]) out. Pure functions apart from [`read_capped`]; no globals.
//!
//! The layers, in order, each refusing with a stable code:
//!
//! 1. [`read_capped`]: the size cap (`E_TOO_LARGE`), I/O (`E_IO`).
//! 2. [`parse`]: UTF-8 and NUL (`E_ENCODING`), the nesting-depth pre-scan
//!    ([`MAX_DEPTH`], `E_PARSE`), TOML (`E_PARSE`), then our own walk to
//!    `serde_json::Value` (datetimes as RFC 3339 strings; `nan`/`inf` and
//!    out-of-range numbers are `E_PARSE`, never `null`).
//!
//! Every message is built here from the parser's *description* of the error
//! and a computed line/column: no message ever quotes a source line.
//!
//! Does not know about schemas (see `schema`) or about the daemon; locating
//! a JSON pointer in the source ([`locate`]) is offered for the schema layer's
//! rejection path.

use std::ffi::OsStr;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use serde_json::{Map, Number, Value};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::pipeline::rejection::{Code, Problem, Rejection};

/// Default for `--max-file-size`: 4 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// The deepest nesting a document may have: the number of keys and array
/// indices on the path to its deepest value (`a.b = [1]` has depth 3: `/a`,
/// `/a/b`, `/a/b/0`); an array counts as opening the level of its items even
/// when empty (`a = []` has depth 2). Deeper documents are `E_PARSE`.
///
/// It is checked twice. First by a cheap, non-recursive scan of the text
/// ([`parse`] runs it before the TOML parser), which over-estimates (header
/// segments count double once an array of tables has been seen), so nothing
/// recursive downstream — `toml`'s own parser (which stops at 80 levels of
/// brackets or key segments on its own), our conversion, the schema
/// validator, the redaction walk — ever sees more than this. Then exactly,
/// during the conversion, as a second line of defence. 64 is far beyond any
/// real configuration and below `toml`'s own limit of 80, so the operator
/// always gets this crate's message.
pub const MAX_DEPTH: usize = 64;

/// The most values a document may have, counted by the same pre-scan as
/// [`MAX_DEPTH`] before the TOML parser runs: every `key =` and every
/// further segment of a dotted key, every table-header segment, every array
/// item (an empty array or a trailing comma counts one more). More is
/// `E_TOO_LARGE`, nothing parsed.
///
/// Why: the parsed forms cost far more than the text. The `toml` parser's
/// spanned tree and the JSON value held beside it while converting take
/// about 0.5 KiB per value when the values are small tables (`a = [{b=1},
/// …]`: 7 bytes of text, ~1 KiB of memory), so a 4 MiB document of them
/// peaked near 900 MiB. At this limit the worst shape stays near 100 MiB;
/// real configurations are far below it (the 4 MiB default file size alone
/// allows a few hundred thousand short keys).
pub const MAX_VALUES: usize = 200_000;

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
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        // ok: writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Refuses a document that is a symlink planted by one user to a file of
/// another (`configs/creds.toml → /root/secret.toml` in a directory others
/// may write to): the daemon would read, and serve, what its author could
/// not. A symlink owned by root or by us is followed wherever it points; a
/// symlink owned by another uid only to a file of that same uid. Not a
/// symlink: nothing to check.
pub fn check_symlink(path: &Path, label: &str) -> Result<(), Rejection> {
    use std::os::unix::fs::MetadataExt;
    let io_err = |e: std::io::Error| Rejection::bare(Code::Io, label, io_reason(&e));
    let link = std::fs::symlink_metadata(path).map_err(io_err)?;
    if !link.file_type().is_symlink() {
        return Ok(());
    }
    let own = rustix::process::geteuid().as_raw();
    if link.uid() == 0 || link.uid() == own {
        return Ok(());
    }
    let target = std::fs::metadata(path).map_err(io_err)?;
    if target.uid() == link.uid() {
        return Ok(());
    }
    Err(Rejection::bare(
        Code::Io,
        label,
        format!(
            "refusing to follow: a symlink owned by uid {} to a file owned by uid {} \
             (--allow-foreign-symlinks serves it anyway)",
            link.uid(),
            target.uid()
        ),
    ))
}

/// Reads a file, refusing (`E_TOO_LARGE`) without reading it whole when it is
/// larger than `max` bytes. `label` is the file as the operator should see it.
///
/// Symlinks are followed. The size is checked twice: from the metadata, and
/// while reading (at most `max + 1` bytes are ever read), because the file may
/// grow between the two. Other failures are `E_IO` with a short reason that
/// names no path beyond `label`.
pub fn read_capped(path: &Path, max: u64, label: &str) -> Result<Vec<u8>, Rejection> {
    let io_err = |e: std::io::Error| Rejection::bare(Code::Io, label, io_reason(&e));
    // Non-blocking open: a FIFO planted in the directory must not hang us
    // (it is refused below as not a regular file). No effect on files.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(io_err)?
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory"
        } else {
            "is not a regular file"
        };
        return Err(Rejection::bare(
            Code::Io,
            label,
            format!("cannot read: {what}"),
        ));
    }
    if meta.len() > max {
        return Err(too_large(label, max));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(too_large(label, max));
    }
    Ok(bytes)
}

fn too_large(label: &str, max: u64) -> Rejection {
    Rejection::bare(
        Code::TooLarge,
        label,
        format!("file is larger than the limit of {max} bytes (--max-file-size); not read"),
    )
}

/// A short, stable reason for an I/O error, without the OS's decoration.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use rustix::io::Errno;
    use std::io::ErrorKind as K;
    let why = match e.kind() {
        K::NotFound => "not found".to_string(),
        K::PermissionDenied => "permission denied".to_string(),
        K::IsADirectory => "is a directory".to_string(),
        K::InvalidData => "invalid data".to_string(),
        K::Interrupted => "interrupted".to_string(),
        K::UnexpectedEof => "unexpected end of file".to_string(),
        _ => match e.raw_os_error() {
            Some(c) if c == Errno::LOOP.raw_os_error() => {
                "too many levels of symbolic links".to_string()
            }
            Some(c) if c == Errno::NAMETOOLONG.raw_os_error() => "file name too long".to_string(),
            Some(c) if c == Errno::NOTDIR.raw_os_error() => {
                "a path component is not a directory".to_string()
            }
            Some(code) => format!("I/O error (errno {code})"),
            None => "I/O error".to_string(),
        },
    };
    format!("cannot read: {why}")
}

/// A parsed document: its JSON value and what the rejection path needs to
/// map JSON pointers back to source spans.
///
/// Its `Debug` shows neither the value nor the text: they may hold secrets.
#[derive(Clone)]
pub struct Parsed {
    /// The document as JSON (datetimes as RFC 3339 strings).
    pub value: serde_json::Value,
    /// The source text (kept only to locate schema violations).
    pub text: String,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("text_len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// UTF-8 check, TOML parse and conversion to JSON. `E_ENCODING` or
/// `E_PARSE` (with line and column, never quoting the source line).
///
/// Tables keep their keys in source order.
pub fn parse(label: &str, bytes: &[u8]) -> Result<Parsed, Rejection> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let (line, column) = bytes
                .get(..at)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|prefix| line_col(prefix, prefix.len()))
                .unwrap_or((1, 1));
            return Err(Rejection::new(
                Code::Encoding,
                label,
                Problem::at(
                    "",
                    line,
                    column,
                    format!("invalid UTF-8 at byte offset {at}"),
                ),
            ));
        }
    };
    // A byte-order mark is not content: drop it so that columns on line 1
    // count from the first real character.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // `toml` skips a leading mark too: a second one must not pass for the
    // first (toml-test `invalid/encoding/bom-not-at-start-02`, `-03`).
    if text.starts_with('\u{feff}') {
        return Err(Rejection::new(
            Code::Parse,
            label,
            Problem::at("", 1, 1, "byte-order mark not at the start of the file"),
        ));
    }
    if let Some(at) = text.find('\0') {
        let (line, column) = line_col(text, at);
        return Err(Rejection::new(
            Code::Encoding,
            label,
            Problem::at("", line, column, format!("NUL byte at byte offset {at}")),
        ));
    }
    match prescan(text) {
        Some(Prescan::TooDeep(at)) => return Err(too_deep(label, text, at)),
        Some(Prescan::TooManyValues(at)) => return Err(too_many_values(label, text, at)),
        None => {}
    }
    let root = DeTable::parse(text).map_err(|e| parse_error(label, text, &e))?;
    let value = convert_table(root.get_ref(), 0, label, text)?;
    Ok(Parsed {
        value,
        text: text.to_string(),
    })
}

/// `E_TOO_LARGE` for a document with more than [`MAX_VALUES`] values, at
/// the place where the count went over.
fn too_many_values(label: &str, text: &str, at: usize) -> Rejection {
    let (line, column) = line_col(text, at);
    Rejection::new(
        Code::TooLarge,
        label,
        Problem::at(
            "",
            line,
            column,
            format!(
                "more than {MAX_VALUES} values (keys, key segments, table headers and array items); not parsed"
            ),
        ),
    )
}

fn too_deep(label: &str, text: &str, at: usize) -> Rejection {
    let (line, column) = line_col(text, at);
    Rejection::new(
        Code::Parse,
        label,
        Problem::at(
            "",
            line,
            column,
            format!(
                "nesting deeper than {MAX_DEPTH} levels (tables, arrays and dotted keys combined)"
            ),
        ),
    )
}

/// An `E_PARSE` from a `toml` error, built from its description and span
/// only: the error's `Display` quotes the source line, which must not reach
/// a message.
fn parse_error(label: &str, text: &str, e: &toml::de::Error) -> Rejection {
    let start = e.span().map(|s| s.start).unwrap_or(0);
    let (line, column) = line_col(text, start);
    let message = sanitize_message(e.message());
    Rejection::new(
        Code::Parse,
        label,
        Problem::at("", line, column, format!("invalid TOML: {message}")),
    )
}

/// One line, bounded length, no control characters: a parser description
/// is grammar (`expected `=``), but nothing here trusts that it stays so.
fn sanitize_message(m: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = m
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if m.chars().count() > MAX {
        out.push('…');
    }
    // toml says "expected nothing" when nothing more was allowed; noise.
    let trimmed = out.trim();
    let trimmed = trimmed
        .strip_suffix(", expected nothing")
        .unwrap_or(trimmed);
    if trimmed.is_empty() {
        "syntax error".to_string()
    } else {
        trimmed.to_string()
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
/// An offset past the end, or inside a character, is clamped backwards.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1; // ok: at > 0
    }
    let before = text.get(..at).unwrap_or("");
    let line = before
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        .saturating_add(1);
    let line_start = before.rfind('\n').map(|i| i.saturating_add(1)).unwrap_or(0);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        .saturating_add(1);
    (line, column)
}

// ---------------------------------------------------------------------------
// Conversion to JSON

fn convert_table(
    table: &DeTable<'_>,
    depth: usize,
    label: &str,
    text: &str,
) -> Result<Value, Rejection> {
    // `toml` keeps keys sorted; the key spans give back the source order.
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut map = Map::with_capacity(entries.len());
    for (key, value) in entries {
        let v = convert_value(value, depth.saturating_add(1), label, text)?;
        map.insert(key.get_ref().to_string(), v);
    }
    Ok(Value::Object(map))
}

fn convert_value(
    value: &Spanned<DeValue<'_>>,
    depth: usize,
    label: &str,
    text: &str,
) -> Result<Value, Rejection> {
    let at = |message: String| {
        let (line, column) = line_col(text, value.span().start);
        Rejection::new(Code::Parse, label, Problem::at("", line, column, message))
    };
    if depth > MAX_DEPTH {
        return Err(too_deep(label, text, value.span().start));
    }
    Ok(match value.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Number(n.into()),
            Err(e) => {
                use std::num::IntErrorKind;
                let what = match e.kind() {
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                        "integer out of range (TOML integers are 64-bit signed)"
                    }
                    _ => "invalid integer",
                };
                return Err(at(what.to_string()));
            }
        },
        DeValue::Float(f) => {
            let parsed: Option<f64> = f.as_str().parse().ok();
            match parsed {
                Some(x) if x.is_nan() => {
                    return Err(at("nan has no JSON value; not allowed".to_string()))
                }
                Some(x) if x.is_infinite() => {
                    let what = if f.as_str().contains("inf") {
                        "inf has no JSON value; not allowed"
                    } else {
                        "float out of range"
                    };
                    return Err(at(what.to_string()));
                }
                Some(x) => match Number::from_f64(x) {
                    Some(n) => Value::Number(n),
                    None => return Err(at("float has no JSON value".to_string())),
                },
                None => return Err(at("invalid float".to_string())),
            }
        }
        DeValue::Datetime(d) => Value::String(rfc3339(d)),
        DeValue::Array(items) => {
            // Like the pre-scan: opening an array enters its items' level,
            // even when it is empty.
            if depth >= MAX_DEPTH {
                return Err(too_deep(label, text, value.span().start));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                out.push(convert_value(item, depth.saturating_add(1), label, text)?);
            }
            Value::Array(out)
        }
        DeValue::Table(t) => convert_table(t, depth, label, text)?,
    })
}

/// A TOML datetime as RFC 3339 text: `2026-11-26T13:05:00Z` (offset
/// datetime), `2026-11-26T13:05:00` (local datetime), `2026-11-26` (local
/// date), `13:05:00` (local time). Seconds are always written (TOML 1.1 may
/// omit them; RFC 3339 may not).
pub fn rfc3339(d: &toml::value::Datetime) -> String {
    let mut out = String::new();
    if let Some(date) = &d.date {
        out.push_str(&date.to_string());
    }
    if let Some(t) = &d.time {
        if d.date.is_some() {
            out.push('T');
        }
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            t.hour,
            t.minute,
            t.second.unwrap_or(0)
        ));
        if let Some(ns) = t.nanosecond {
            let digits = format!("{ns:09}");
            let digits = digits.trim_end_matches('0');
            out.push('.');
            out.push_str(if digits.is_empty() { "0" } else { digits });
        }
    }
    if let Some(offset) = &d.offset {
        out.push_str(&offset.to_string());
    }
    out
}

// ---------------------------------------------------------------------------
// Depth and value-count pre-scan

/// What the scanner expects next outside strings and comments.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// A key (or a `[header]` at the start of a top-level line).
    Key,
    /// A value, after `=` or inside an array.
    Value,
}

/// One open bracket of a value.
#[derive(Clone, Copy)]
struct Open {
    /// `[` (array) or `{` (inline table).
    array: bool,
    /// The depth at the bracket, restored at each `,` and at the close.
    base: usize,
}

/// Why the pre-scan refused a text, and at which byte offset.
///
/// Public only for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prescan {
    /// The estimated depth first exceeds [`MAX_DEPTH`] here.
    TooDeep(usize),
    /// The value count first exceeds [`MAX_VALUES`] here.
    TooManyValues(usize),
}

/// Scans `text` without recursion and returns where the estimated depth
/// first exceeds [`MAX_DEPTH`] or the value count first exceeds
/// [`MAX_VALUES`], if either does. Neither estimate under-counts for a valid
/// document; invalid TOML is left for the parser to report.
///
/// Public only for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub fn prescan(text: &str) -> Option<Prescan> {
    let bytes = text.as_bytes();
    // Values counted so far (see MAX_VALUES for what counts).
    let mut values = 0usize;
    macro_rules! count {
        ($n:expr, $at:expr) => {
            values = values.saturating_add($n);
            if values > MAX_VALUES {
                return Some(Prescan::TooManyValues($at));
            }
        };
    }
    let mut i = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    let mut ctx = Ctx::Key;
    // Depth contributed by the current `[header]`.
    let mut header_depth = 0usize;
    // Once an array of tables exists, a header segment may stand for two
    // levels (the array and its last table).
    let mut seen_array_table = false;
    // Current estimated depth.
    let mut cur = 0usize;
    // In key context: whether the current key has started (its first
    // segment counted).
    let mut key_started = false;
    // At the start of a top-level line (only whitespace so far).
    let mut line_start = true;

    while let Some(&b) = bytes.get(i) {
        match b {
            b'#' => {
                // Comment: up to the newline (left for the newline arm).
                while let Some(&c) = bytes.get(i) {
                    if c == b'\n' {
                        break;
                    }
                    i = i.saturating_add(1);
                }
                continue;
            }
            b'\n' => {
                if stack.is_empty() {
                    ctx = Ctx::Key;
                    cur = header_depth;
                    key_started = false;
                    line_start = true;
                }
            }
            b' ' | b'\t' | b'\r' => {}
            b'"' | b'\'' => {
                if ctx == Ctx::Key {
                    if !key_started {
                        key_started = true;
                        cur = cur.saturating_add(1);
                        if cur > MAX_DEPTH {
                            return Some(Prescan::TooDeep(i));
                        }
                    }
                    line_start = false;
                }
                i = skip_string(bytes, i);
                continue;
            }
            b'[' if stack.is_empty() && ctx == Ctx::Key && line_start => {
                // A table header: count its segments.
                let double = bytes.get(i.saturating_add(1)) == Some(&b'[');
                let start = i;
                i = i.saturating_add(if double { 2 } else { 1 });
                let mut segments = 1usize;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'.' => segments = segments.saturating_add(1),
                        b'"' | b'\'' => {
                            i = skip_string(bytes, i);
                            continue;
                        }
                        b']' | b'\n' => break,
                        _ => {}
                    }
                    i = i.saturating_add(1);
                }
                count!(segments, start);
                if double {
                    seen_array_table = true;
                }
                header_depth = if seen_array_table {
                    segments.saturating_mul(2)
                } else {
                    segments
                };
                if header_depth > MAX_DEPTH {
                    return Some(Prescan::TooDeep(start));
                }
                cur = header_depth;
                line_start = false;
                // Skip the closing bracket(s); the rest of the line is left
                // to the normal arms (a comment, or junk the parser reports).
                while bytes.get(i) == Some(&b']') {
                    i = i.saturating_add(1);
                }
                continue;
            }
            b'=' if ctx == Ctx::Key => {
                count!(1, i);
                ctx = Ctx::Value;
                key_started = false;
            }
            b'.' if ctx == Ctx::Key => {
                count!(1, i);
                cur = cur.saturating_add(1);
                if cur > MAX_DEPTH {
                    return Some(Prescan::TooDeep(i));
                }
            }
            b'[' if ctx == Ctx::Value => {
                count!(1, i);
                stack.push(Open {
                    array: true,
                    base: cur,
                });
                cur = cur.saturating_add(1);
                if cur > MAX_DEPTH {
                    return Some(Prescan::TooDeep(i));
                }
            }
            b'{' if ctx == Ctx::Value => {
                stack.push(Open {
                    array: false,
                    base: cur,
                });
                ctx = Ctx::Key;
                key_started = false;
            }
            b']' | b'}' if !stack.is_empty() => {
                if let Some(open) = stack.pop() {
                    cur = open.base;
                }
                ctx = Ctx::Value;
            }
            b',' => {
                if let Some(open) = stack.last() {
                    if open.array {
                        count!(1, i);
                        cur = open.base.saturating_add(1);
                        ctx = Ctx::Value;
                    } else {
                        cur = open.base;
                        ctx = Ctx::Key;
                        key_started = false;
                    }
                }
            }
            _ => {
                if ctx == Ctx::Key {
                    line_start = false;
                    if !key_started {
                        key_started = true;
                        cur = cur.saturating_add(1);
                        if cur > MAX_DEPTH {
                            return Some(Prescan::TooDeep(i));
                        }
                    }
                }
            }
        }
        i = i.saturating_add(1);
    }
    None
}

/// The index just past the string starting at `i` (a quote), handling
/// basic, literal and multi-line strings. An unterminated string runs to the
/// end of the line (single-line) or of the text (multi-line).
fn skip_string(bytes: &[u8], i: usize) -> usize {
    let Some(&q) = bytes.get(i) else {
        return i;
    };
    let basic = q == b'"';
    let triple =
        bytes.get(i.saturating_add(1)) == Some(&q) && bytes.get(i.saturating_add(2)) == Some(&q);
    if triple {
        let mut j = i.saturating_add(3);
        while let Some(&c) = bytes.get(j) {
            if basic && c == b'\\' {
                j = j.saturating_add(2);
                continue;
            }
            if c == q
                && bytes.get(j.saturating_add(1)) == Some(&q)
                && bytes.get(j.saturating_add(2)) == Some(&q)
            {
                // Up to two more quotes may belong to the content.
                let mut end = j.saturating_add(3);
                let mut extra = 0;
                while extra < 2 && bytes.get(end) == Some(&q) {
                    end = end.saturating_add(1);
                    extra += 1; // ok: bounded by 2
                }
                return end;
            }
            j = j.saturating_add(1);
        }
        return bytes.len();
    }
    let mut j = i.saturating_add(1);
    while let Some(&c) = bytes.get(j) {
        if c == b'\n' {
            return j;
        }
        if basic && c == b'\\' {
            j = j.saturating_add(2);
            continue;
        }
        if c == q {
            return j.saturating_add(1);
        }
        j = j.saturating_add(1);
    }
    bytes.len()
}

// ---------------------------------------------------------------------------
// Locating a JSON pointer in the source (rejection path only)

/// Which part of an entry a location should point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The value (for most violations).
    Value,
    /// The key naming the value (for an unexpected property).
    Key,
}

/// The 1-based line and column in `text` of the value (or key) at JSON
/// `pointer`, found by walking the parser's span information. Tables
/// defined by a `[header]` are located at their header; the root at line 1,
/// column 1. `None` if the pointer does not lead anywhere in `text`.
pub fn locate(text: &str, pointer: &str, target: Target) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let offset = offset_in(&root, pointer, target)?;
    Some(line_col(text, offset))
}

/// The byte offset [`locate`] turns into a line and column, on an already
/// parsed `root` (parse once, locate many; see [`line_cols`]).
pub(crate) fn offset_in(
    root: &Spanned<DeTable<'_>>,
    pointer: &str,
    target: Target,
) -> Option<usize> {
    let segments = pointer_segments(pointer)?;
    if segments.is_empty() {
        return Some(0);
    }
    let mut key_span: Option<Range<usize>> = None;
    let mut current_table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut current_value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in &segments {
        let next = if let Some(table) = current_table {
            let (k, v) = table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == seg.as_str())?;
            key_span = Some(k.span());
            v
        } else {
            let value = current_value?;
            match value.get_ref() {
                DeValue::Array(items) => {
                    let idx: usize = seg.parse().ok()?;
                    key_span = None;
                    items.get(idx)?
                }
                DeValue::Table(t) => {
                    let (k, v) = t
                        .iter()
                        .find(|(k, _)| k.get_ref().as_ref() == seg.as_str())?;
                    key_span = Some(k.span());
                    v
                }
                _ => return None,
            }
        };
        current_table = None;
        current_value = Some(next);
    }
    let value = current_value?;
    let span = match target {
        Target::Key => key_span.unwrap_or_else(|| value.span()),
        Target::Value => {
            let s = value.span();
            // A table defined by dotted keys has no span of its own; point
            // at the key that introduced it instead.
            if s.start == 0 && s.end == 0 {
                key_span.unwrap_or(s)
            } else {
                s
            }
        }
    };
    Some(span.start)
}

/// [`line_col`] of many offsets in one pass over `text` (the rejection path
/// of a document with many violations stays linear).
pub fn line_cols(text: &str, offsets: &[usize]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_by_key(|&i| offsets.get(i).copied().unwrap_or(0));
    let mut out = vec![(1usize, 1usize); offsets.len()];
    let mut line = 1usize;
    let mut column = 1usize;
    let mut chars = text.char_indices().peekable();
    for i in order {
        let target = offsets.get(i).copied().unwrap_or(0);
        while let Some(&(at, c)) = chars.peek() {
            if at >= target {
                break;
            }
            if c == '\n' {
                line = line.saturating_add(1);
                column = 1;
            } else {
                column = column.saturating_add(1);
            }
            chars.next();
        }
        if let Some(slot) = out.get_mut(i) {
            *slot = (line, column);
        }
    }
    out
}

/// The unescaped segments of a JSON pointer (`""` is the root).
pub fn pointer_segments(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Value {
        parse("t.toml", text.as_bytes()).unwrap().value
    }

    fn err(text: &str) -> Rejection {
        parse("t.toml", text.as_bytes()).unwrap_err()
    }

    #[test]
    fn converts_and_keeps_source_order() {
        let v = ok("z = 1\na = \"x\"\n[server]\nport = 8080\nratio = 0.5\n");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"z":1,"a":"x","server":{"port":8080,"ratio":0.5}}"#
        );
    }

    #[test]
    fn integers_in_every_notation() {
        let v = ok("a = 0xff\nb = +5\nc = 1_000\nd = 0o17\ne = 0b101\nf = -9223372036854775808\n");
        assert_eq!(
            v,
            serde_json::json!({"a": 255, "b": 5, "c": 1000, "d": 15, "e": 5, "f": i64::MIN})
        );
        let r = err("a = 9223372036854775808\n");
        assert!(r.problems[0].message.contains("out of range"));
        let r = err("a = 0x\n");
        assert_eq!(r.problems[0].message, "invalid integer");
    }

    #[test]
    fn byte_order_mark_is_not_a_column() {
        let r = parse("t", "\u{feff}a = nan\n".as_bytes()).unwrap_err();
        assert_eq!(
            (r.problems[0].line, r.problems[0].column),
            (Some(1), Some(5))
        );
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.toml");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let r = read_capped(&p, 100, "f").unwrap_err();
        assert_eq!(r.code, Code::Io);
        assert_eq!(r.problems[0].message, "cannot read: is not a regular file");
    }

    #[test]
    fn datetimes_are_rfc3339_strings() {
        let v = ok("a = 2026-11-26T13:05:00Z\nb = 2026-11-26\nc = 13:05\nd = 1979-05-27 07:32:00.5-07:00\n");
        assert_eq!(v["a"], "2026-11-26T13:05:00Z");
        assert_eq!(v["b"], "2026-11-26");
        assert_eq!(v["c"], "13:05:00");
        assert_eq!(v["d"], "1979-05-27T07:32:00.5-07:00");
    }

    #[test]
    fn nan_and_inf_are_rejected_at_their_place() {
        let r = err("a = 1\nb = nan\n");
        assert_eq!(r.code, Code::Parse);
        assert_eq!(
            (r.problems[0].line, r.problems[0].column),
            (Some(2), Some(5))
        );
        let r = err("x = [1.0, -inf]\n");
        assert_eq!(
            (r.problems[0].line, r.problems[0].column),
            (Some(1), Some(11))
        );
        assert!(r.problems[0].message.contains("inf"));
        let r = err("x = 1e400\n");
        assert!(r.problems[0].message.contains("out of range"));
    }

    #[test]
    fn encoding_errors() {
        let r = parse("t.toml", b"a = 1\nb = \"\xff\"\n").unwrap_err();
        assert_eq!(r.code, Code::Encoding);
        assert_eq!(
            (r.problems[0].line, r.problems[0].column),
            (Some(2), Some(6))
        );
        let r = parse("t.toml", b"a = 1\x00\n").unwrap_err();
        assert_eq!(r.code, Code::Encoding);
        assert_eq!(
            (r.problems[0].line, r.problems[0].column),
            (Some(1), Some(6))
        );
    }

    #[test]
    fn parse_error_does_not_quote_the_line() {
        let r = err("[db]\npassword = \"hunter2\" oops\n");
        assert_eq!(r.code, Code::Parse);
        assert_eq!(r.problems[0].line, Some(2));
        let msg = r.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!msg.contains("oops"), "{msg}");
    }

    #[test]
    fn depth_limit() {
        let ok_depth = format!(
            "a = {}1{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse("t", ok_depth.as_bytes()).is_ok());
        let deep = format!("a = {}1{}\n", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let r = err(&deep);
        assert!(r.problems[0].message.contains("nesting"), "{r}");
        let deep = format!("a = {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(err(&deep).problems[0].message.contains("nesting"));
        let dotted = format!("{} = 1\n", vec!["k"; MAX_DEPTH + 1].join("."));
        assert!(err(&dotted).problems[0].message.contains("nesting"));
        let header = format!("[{}]\nx = 1\n", vec!["k"; MAX_DEPTH].join("."));
        assert!(err(&header).problems[0].message.contains("nesting"));
        let inline = format!(
            "a = {}1{}\n",
            "{b = ".repeat(MAX_DEPTH),
            "}".repeat(MAX_DEPTH)
        );
        assert!(err(&inline).problems[0].message.contains("nesting"));
        // Strings and comments do not count.
        let s = format!(
            "a = \"{}\" # {}\nb = '''{}'''\n",
            "[".repeat(500),
            "{".repeat(500),
            "[".repeat(500)
        );
        assert!(parse("t", s.as_bytes()).is_ok());
    }

    #[test]
    fn value_count_limit() {
        // Keys: exactly the limit passes the pre-scan, one more is refused
        // at the `=` that went over.
        let keys: String = (0..MAX_VALUES).map(|i| format!("k{i} = 1\n")).collect();
        assert_eq!(prescan(&keys), None);
        let over = format!("{keys}last = 1\n");
        assert_eq!(
            prescan(&over),
            Some(Prescan::TooManyValues(keys.len() + "last ".len()))
        );
        let r = err(&over);
        assert_eq!(r.code, Code::TooLarge);
        assert_eq!(
            (r.problems[0].line, r.problems[0].column),
            (Some(MAX_VALUES + 1), Some(6))
        );
        assert!(
            r.problems[0].message.contains("more than 200000 values"),
            "{r}"
        );
        // Array items: `a = [` counts the key and the first item.
        let items = |item: &str, n: usize| format!("a = [{}]\n", vec![item; n].join(","));
        assert_eq!(prescan(&items("1", MAX_VALUES - 1)), None);
        assert!(matches!(
            prescan(&items("1", MAX_VALUES)),
            Some(Prescan::TooManyValues(_))
        ));
        // The costly shape: small inline tables count their keys too.
        let tables = MAX_VALUES / 2 - 1;
        assert!(parse("t", items("{b=1}", tables).as_bytes()).is_ok());
        assert!(matches!(
            prescan(&items("{b=1}", tables + 1)),
            Some(Prescan::TooManyValues(_))
        ));
        // Dotted keys and header segments each count (each may be a table).
        let dotted: String = (0..MAX_VALUES / 2)
            .map(|i| format!("t{i}.k = 1\n"))
            .collect();
        assert_eq!(prescan(&dotted), None);
        assert!(matches!(
            prescan(&format!("{dotted}x = 1\n")),
            Some(Prescan::TooManyValues(_))
        ));
        let headers: String = (0..MAX_VALUES / 2).map(|i| format!("[t{i}]\n")).collect();
        assert!(matches!(
            prescan(&format!("{headers}{headers}x = 1\n")),
            Some(Prescan::TooManyValues(_))
        ));
        // Strings and comments do not count.
        let quoted = format!(
            "a = \"{}\" # {}\n",
            "=,[".repeat(MAX_VALUES),
            ",".repeat(MAX_VALUES)
        );
        assert_eq!(prescan(&quoted), None);
    }

    #[test]
    fn locate_values_keys_and_headers() {
        let text = "title = \"x\"\n\n[server]\nport = 1\n  timeout_ms = \"5000ms\"\n\n[[peers]]\nhost = \"a\"\n[[peers]]\nhost = \"b\"\nlimits.max = 3\n";
        assert_eq!(
            locate(text, "/server/timeout_ms", Target::Value),
            Some((5, 16))
        );
        assert_eq!(
            locate(text, "/server/timeout_ms", Target::Key),
            Some((5, 3))
        );
        assert_eq!(locate(text, "/server", Target::Value), Some((3, 1)));
        assert_eq!(locate(text, "", Target::Value), Some((1, 1)));
        assert_eq!(locate(text, "/peers/1/host", Target::Value), Some((10, 8)));
        assert_eq!(locate(text, "/peers/1", Target::Value), Some((9, 1)));
        assert_eq!(
            locate(text, "/peers/1/limits", Target::Value),
            Some((11, 1))
        );
        assert_eq!(locate(text, "/nope", Target::Value), None);
        let offsets = [text.len(), 0, 13, text.find("5000").unwrap()];
        let expected: Vec<_> = offsets.iter().map(|&o| line_col(text, o)).collect();
        assert_eq!(line_cols(text, &offsets), expected);
    }

    #[test]
    fn read_capped_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert_eq!(read_capped(&p, 6, "a").unwrap(), b"a = 1\n");
        assert_eq!(read_capped(&p, 5, "a").unwrap_err().code, Code::TooLarge);
        let r = read_capped(&dir.path().join("none.toml"), 5, "none").unwrap_err();
        assert_eq!(r.code, Code::Io);
        assert_eq!(r.problems[0].message, "cannot read: not found");
        assert_eq!(read_capped(dir.path(), 5, "d").unwrap_err().code, Code::Io);
    }
}
