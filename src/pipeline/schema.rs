//! JSON Schemas: loading a schema and its `$ref` closure from the schema
//! directory (never anything outside it, never the network), compiling it
//! once, validating parsed documents with every violation located in the
//! TOML source, and knowing which values are secrets (`writeOnly`).
//!
//! What this module deliberately does not do: read documents, decide what
//! is served, or watch files. The reloader calls [`SchemaCache::load`] on
//! every reload; it re-reads the closure's bytes (cheap) and compares
//! [`Schema::sha256`] with what was last used to decide whether documents
//! must be re-validated. Compilation happens only when those bytes change.
//!
//! ## `$ref` resolution
//!
//! A `$ref` is either local (`#/$defs/port`, `#anchor`) or a relative file
//! reference (`common.schema.json#/$defs/port`, `defs/net.json`), resolved
//! against the referring file's directory and required to stay inside the
//! schema directory, also after following symlinks. Absolute paths, `..`
//! escapes and any URI with a scheme (`http:`, `https:`, `file:`, `urn:`)
//! are `E_SCHEMA_INVALID`: nothing outside the schema directory is read and
//! nothing is fetched. A `$id` that changes the base URI is not supported
//! for file references (they would not resolve; `E_SCHEMA_INVALID`).
//!
//! ## Secrets (`writeOnly`)
//!
//! A value is a secret when a schema that applies to it says
//! `"writeOnly": true`; everything under a secret is secret too. Which
//! schemas apply is computed by walking the instance and the schema together
//! (each instance location gets the *set* of schema nodes that may apply, so
//! the walk is linear in instance size × schema size, whatever the `$ref`
//! cycles). Covered: `properties`, `patternProperties`,
//! `additionalProperties`, `unevaluatedProperties`, `items` (both forms),
//! `prefixItems`, `additionalItems`, `unevaluatedItems`, `contains`,
//! `allOf`/`anyOf`/`oneOf`/`not`, `if`/`then`/`else`, `dependentSchemas`,
//! `dependencies`, and `$ref` (local pointers, anchors, files of the
//! closure). It errs on the side of hiding: every `patternProperties`
//! schema is assumed to match every key, every branch of `anyOf`/`oneOf`/
//! `if` is assumed to apply, and a `$ref` it cannot follow (`$dynamicRef`,
//! `$recursiveRef`, `$id`-based) makes the whole value a secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::pipeline::document::{self, Parsed, Target};
use crate::pipeline::rejection::{Code, Problem, Rejection};

/// The virtual base URI under which closure files are given to the
/// validator; `$ref`s resolve against it and are served from memory only.
const BASE_URI: &str = "file:///hotconf-schema-dir/";

/// At most this many files in one schema's `$ref` closure.
const MAX_CLOSURE_FILES: usize = 256;

/// At most this many violations are listed per document (the rest are
/// counted in a last, location-less problem): a 4 MiB file of wrong values
/// must not produce a million-line answer.
pub const MAX_PROBLEMS: usize = 100;

/// Documents with more values than this get only their first violation
/// looked for (see [`Schema::validate`]).
pub const BULK_VALUES: usize = 100_000;

/// Whether `value` holds more than `limit` values (counted without
/// recursion, stopping as soon as the answer is known).
fn more_values_than(value: &Value, limit: usize) -> bool {
    let mut count = 0usize;
    let mut work = vec![value];
    while let Some(v) = work.pop() {
        count = count.saturating_add(1);
        if count > limit {
            return true;
        }
        match v {
            Value::Object(map) => work.extend(map.values()),
            Value::Array(items) => work.extend(items.iter()),
            _ => {}
        }
    }
    false
}

/// Longer offending values are quoted by their first this-many characters.
const MAX_QUOTED: usize = 64;

/// What secrets are replaced with in redacted values.
pub const REDACTED: &str = "<redacted>";

/// A compiled schema with its `$ref` closure.
pub struct Schema {
    /// The document this schema is for.
    pub name: String,
    /// SHA-256 over the whole closure (the schema file and every file it
    /// references), so that a change to a shared definitions file changes it.
    pub sha256: String,
    /// Every file of the closure, the schema itself first.
    pub files: Vec<PathBuf>,
    /// Each closure file's relative path and exact bytes, in `files`'
    /// order: what `sha256` is computed over, kept so that the state
    /// directory can persist the schema a document was accepted with.
    sources: Vec<(String, Arc<[u8]>)>,
    /// The compiled validator (compiled once per closure content).
    validator: jsonschema::Validator,
    /// Each closure file's JSON, by its path relative to the schema
    /// directory (`/`-separated); used to find `writeOnly` locations.
    resources: BTreeMap<String, Value>,
    /// The relative path of the schema itself (`NAME.schema.json`).
    root: String,
    /// Whether a `writeOnly: true` (or a `$ref` we cannot follow) is
    /// reachable from the root.
    has_secrets: bool,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

// The reloader shares compiled schemas across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Schema>();
};

impl Schema {
    /// Validates a parsed document: `Ok` or `E_SCHEMA` listing every
    /// violation with pointer, line and column. `label` names the TOML file.
    ///
    /// Locations: the offending value; for `additionalProperties` the extra
    /// key (one problem per key, pointer to the extra property); for
    /// `required` the table lacking the key (its `[header]`, or line 1
    /// column 1 for the root). Messages quote at most the offending scalar
    /// (its first 64 characters), never a secret, never a whole table or
    /// array. At most [`MAX_PROBLEMS`] violations are listed, in source
    /// order, then one location-less problem counts the rest. A document
    /// with more than [`BULK_VALUES`] values gets only its first violation
    /// (collecting them all would cost memory per violation), and says so.
    pub fn validate(&self, label: &str, parsed: &Parsed) -> Result<(), Rejection> {
        if self.validator.is_valid(&parsed.value) {
            return Ok(());
        }
        // Collecting every error costs memory per error; on a huge document
        // (a 4 MiB array of wrong items) only the first one is looked for.
        let huge = more_values_than(&parsed.value, BULK_VALUES);
        let errors: Vec<_> = if huge {
            self.validator
                .validate(&parsed.value)
                .err()
                .into_iter()
                .collect()
        } else {
            self.validator.iter_errors(&parsed.value).collect()
        };
        if errors.is_empty() {
            return Ok(());
        }
        let secrets = self.secret_pointers(&parsed.value);
        let root = toml::de::DeTable::parse(&parsed.text).ok();
        let offset = |pointer: &str, target: Target| {
            root.as_ref()
                .and_then(|r| document::offset_in(r, pointer, target))
        };
        // (pointer, byte offset, message); lines and columns in one pass below.
        let mut found: Vec<(String, Option<usize>, String)> = Vec::new();
        let mut omitted = 0usize;
        for error in &errors {
            if found.len() >= MAX_PROBLEMS {
                omitted = omitted.saturating_add(1);
                continue;
            }
            let pointer = error.instance_path().as_str().to_string();
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected }
                | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                    let which = if matches!(
                        error.kind(),
                        ValidationErrorKind::UnevaluatedProperties { .. }
                    ) {
                        "unevaluated"
                    } else {
                        "additional"
                    };
                    for key in unexpected {
                        // One error may name every key of a huge table.
                        if found.len() >= MAX_PROBLEMS {
                            omitted = omitted.saturating_add(1);
                            continue;
                        }
                        let p = format!("{pointer}/{}", escape_pointer(key));
                        let message = format!("{which} property {} is not allowed", quote(key));
                        let at = offset(&p, Target::Key);
                        found.push((p, at, message));
                    }
                }
                ValidationErrorKind::Required { .. } => {
                    let at = offset(&pointer, Target::Value);
                    found.push((pointer, at, error.to_string()));
                }
                kind => {
                    let instance = error.instance();
                    let message = if is_under(&secrets, &pointer) {
                        match kind {
                            ValidationErrorKind::Constant { .. }
                            | ValidationErrorKind::Enum { .. } => {
                                format!("{REDACTED} is not one of the allowed values")
                            }
                            _ => error.masked_with(REDACTED).to_string(),
                        }
                    } else if instance.is_object() {
                        error.masked_with("table").to_string()
                    } else if instance.is_array() {
                        error.masked_with("array").to_string()
                    } else {
                        let shown = instance.to_string();
                        if shown.chars().count() > MAX_QUOTED {
                            // A long value is quoted by its beginning only.
                            let head: String = shown.chars().take(MAX_QUOTED).collect();
                            error.masked_with(format!("{head}…")).to_string()
                        } else {
                            error.to_string()
                        }
                    };
                    let at = offset(&pointer, Target::Value);
                    found.push((pointer, at, message));
                }
            }
        }
        let offsets: Vec<usize> = found.iter().map(|f| f.1.unwrap_or(0)).collect();
        let places = document::line_cols(&parsed.text, &offsets);
        let problems = found
            .into_iter()
            .zip(places)
            .map(|((pointer, at, message), (line, column))| Problem {
                pointer,
                line: at.map(|_| line),
                column: at.map(|_| column),
                message,
            })
            .collect();
        let mut rejection = Rejection {
            code: Code::Schema,
            file: label.to_string(),
            problems,
        };
        rejection.sort_problems();
        rejection.problems.dedup();
        if huge {
            rejection.problems.push(Problem::bare(format!(
                "the document has more than {BULK_VALUES} values: only the first violation is listed"
            )));
        }
        if omitted > 0 {
            // Last, after sorting: a summary, not a location.
            rejection.problems.push(Problem::bare(format!(
                "... and {omitted} more violations not shown (at most {MAX_PROBLEMS} are listed)"
            )));
        }
        Err(rejection)
    }

    /// The closure's files as (path relative to the schema directory,
    /// exact bytes), the schema itself first: what [`Schema::sha256`] is
    /// computed over. [`Schema::from_sources`] compiles them back.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.sources
            .iter()
            .map(|(rel, bytes)| (rel.as_str(), &**bytes))
    }

    /// Compiles the schema of document `name` from closure files held in
    /// memory (relative path, bytes), as [`Schema::sources`] gave them —
    /// e.g. read back from the state directory. Nothing is read from
    /// disk; `schema_dir` only names files in messages. The first file must
    /// be `NAME.schema.json`; every path must be a plain relative path
    /// inside the schema directory; a `$ref` to a file not among them
    /// fails to compile. The result's `sha256` is computed from the given
    /// bytes, so the caller can compare it with what it expected.
    pub fn from_sources(
        schema_dir: &Path,
        name: &str,
        sources: Vec<(String, Vec<u8>)>,
    ) -> Result<Schema, Rejection> {
        let root = format!("{name}.schema.json");
        let root_label = label(schema_dir, &root);
        if sources.first().map(|(rel, _)| rel.as_str()) != Some(root.as_str()) {
            return Err(Rejection::bare(
                Code::SchemaInvalid,
                root_label,
                "the schema closure does not start with the schema itself",
            ));
        }
        if sources.len() > MAX_CLOSURE_FILES {
            return Err(Rejection::bare(
                Code::SchemaInvalid,
                root_label,
                format!("more than {MAX_CLOSURE_FILES} files referenced"),
            ));
        }
        let mut closure = Vec::with_capacity(sources.len());
        let mut seen = HashSet::new();
        for (rel, bytes) in sources {
            let file_label = label(schema_dir, &rel);
            // A plain relative path stays the same when resolved from a
            // file at the top of the schema directory.
            if resolve_relative("top", &rel).as_deref() != Ok(rel.as_str())
                || !seen.insert(rel.clone())
            {
                return Err(Rejection::bare(
                    Code::SchemaInvalid,
                    file_label,
                    "not a plain relative path inside the schema directory",
                ));
            }
            let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
                Rejection::bare(Code::SchemaInvalid, file_label.clone(), "not JSON")
            })?;
            closure.push(ClosureFile {
                rel,
                bytes,
                json,
                stamp: None,
            });
        }
        let sha256 = closure_hash(&closure);
        compile(schema_dir, name, &root, closure, sha256)
    }

    /// Whether any value of documents under this schema can be a secret:
    /// a `"writeOnly": true` is reachable from the schema's root (through
    /// `$ref`s too), or something we cannot follow is (then we assume yes).
    /// When true, peers other than the daemon's uid and root must see the
    /// hash of the redacted value instead of the source hash (SPEC §5).
    pub fn has_secrets(&self) -> bool {
        self.has_secrets
    }

    /// `value` with every secret replaced by `"<redacted>"` (a secret table
    /// or array is replaced whole). `value` is meant to be a document valid
    /// under this schema; for anything else the walk still hides whatever a
    /// `writeOnly` schema may apply to. The input is not modified.
    pub fn redact(&self, value: &serde_json::Value) -> serde_json::Value {
        let mut out = value.clone();
        if !self.has_secrets {
            return out;
        }
        for pointer in self.secret_pointers(value) {
            if let Some(slot) = out.pointer_mut(&pointer) {
                *slot = Value::String(REDACTED.to_string());
            }
        }
        out
    }

    /// The JSON pointers of every secret in `value` (each covers its whole
    /// subtree; none is under another).
    pub fn secret_pointers(&self, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if !self.has_secrets {
            return out;
        }
        let walker = Walker {
            resources: &self.resources,
        };
        let Some(root) = self.resources.get(&self.root) else {
            return out;
        };
        let start = vec![Node {
            file: &self.root,
            schema: root,
        }];
        walker.mark(value, start, String::new(), 0, &mut out);
        out
    }
}

/// A key as JSON text (quoted, escaped): keys are names, never secrets.
fn quote(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""))
}

/// Escapes one JSON pointer segment.
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Whether `pointer` is one of `prefixes` or under one of them.
fn is_under(prefixes: &[String], pointer: &str) -> bool {
    prefixes.iter().any(|p| {
        pointer == p
            || (pointer.starts_with(p.as_str()) && pointer.as_bytes().get(p.len()) == Some(&b'/'))
    })
}

// ---------------------------------------------------------------------------
// Walking schemas for `writeOnly`

/// One schema node and the closure file it lives in.
#[derive(Clone, Copy)]
struct Node<'s> {
    /// Relative path of the file (for resolving its `$ref`s).
    file: &'s str,
    /// The schema (an object or a boolean).
    schema: &'s Value,
}

/// Walks an instance and the schema nodes that may apply to it.
struct Walker<'s> {
    resources: &'s BTreeMap<String, Value>,
}

/// What applies at one instance location.
struct Applied<'s> {
    nodes: Vec<Node<'s>>,
    /// Some applying schema says `writeOnly: true`, or a `$ref` could not be
    /// followed (then we hide rather than guess).
    secret: bool,
}

impl<'s> Walker<'s> {
    /// Every schema node applying at one location: `seeds` and everything
    /// reachable from them through in-place applicators and `$ref`.
    fn expand(&self, seeds: Vec<Node<'s>>) -> Applied<'s> {
        let mut seen: HashSet<*const Value> = HashSet::new();
        let mut work = seeds;
        let mut nodes = Vec::new();
        let mut secret = false;
        while let Some(node) = work.pop() {
            if !seen.insert(node.schema as *const Value) {
                continue;
            }
            let Some(obj) = node.schema.as_object() else {
                continue;
            };
            if obj.get("writeOnly") == Some(&Value::Bool(true)) {
                secret = true;
            }
            if let Some(r) = obj.get("$ref") {
                match r.as_str().and_then(|r| self.resolve(node.file, r)) {
                    Some(target) => work.push(target),
                    None => secret = true,
                }
            }
            if obj.contains_key("$dynamicRef") || obj.contains_key("$recursiveRef") {
                secret = true;
            }
            for key in ["allOf", "anyOf", "oneOf"] {
                if let Some(Value::Array(subs)) = obj.get(key) {
                    work.extend(subs.iter().map(|s| node.at(s)));
                }
            }
            for key in ["not", "if", "then", "else"] {
                if let Some(sub) = obj.get(key) {
                    work.push(node.at(sub));
                }
            }
            for key in ["dependentSchemas", "dependencies"] {
                if let Some(Value::Object(map)) = obj.get(key) {
                    work.extend(map.values().filter(|v| !v.is_array()).map(|s| node.at(s)));
                }
            }
            nodes.push(node);
        }
        Applied { nodes, secret }
    }

    /// The schemas that may apply to property `key` of an object.
    fn property(&self, nodes: &[Node<'s>], key: &str) -> Vec<Node<'s>> {
        let mut out = Vec::new();
        for node in nodes {
            let Some(obj) = node.schema.as_object() else {
                continue;
            };
            let named = obj
                .get("properties")
                .and_then(Value::as_object)
                .and_then(|p| p.get(key));
            if let Some(s) = named {
                out.push(node.at(s));
            } else if let Some(s) = obj.get("additionalProperties") {
                out.push(node.at(s));
            }
            if let Some(Value::Object(pp)) = obj.get("patternProperties") {
                out.extend(pp.values().map(|s| node.at(s)));
            }
            if let Some(s) = obj.get("unevaluatedProperties") {
                out.push(node.at(s));
            }
        }
        out
    }

    /// The schemas that may apply to item `index` of an array.
    fn item(&self, nodes: &[Node<'s>], index: usize) -> Vec<Node<'s>> {
        let mut out = Vec::new();
        for node in nodes {
            let Some(obj) = node.schema.as_object() else {
                continue;
            };
            if let Some(s) = obj
                .get("prefixItems")
                .and_then(Value::as_array)
                .and_then(|a| a.get(index))
            {
                out.push(node.at(s));
            }
            match obj.get("items") {
                Some(Value::Array(tuple)) => {
                    if let Some(s) = tuple.get(index) {
                        out.push(node.at(s));
                    }
                }
                Some(s) => out.push(node.at(s)),
                None => {}
            }
            for key in ["additionalItems", "unevaluatedItems", "contains"] {
                if let Some(s) = obj.get(key) {
                    out.push(node.at(s));
                }
            }
        }
        out
    }

    /// Records in `out` the pointer of every secret under `value`.
    fn mark(
        &self,
        value: &Value,
        seeds: Vec<Node<'s>>,
        pointer: String,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        if seeds.is_empty() {
            return;
        }
        let applied = self.expand(seeds);
        // Deeper than any parsed document can be: hide rather than recurse.
        if applied.secret || depth > document::MAX_DEPTH {
            out.push(pointer);
            return;
        }
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let child = self.property(&applied.nodes, k);
                    let p = format!("{pointer}/{}", escape_pointer(k));
                    self.mark(v, child, p, depth.saturating_add(1), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = self.item(&applied.nodes, i);
                    let p = format!("{pointer}/{i}");
                    self.mark(v, child, p, depth.saturating_add(1), out);
                }
            }
            _ => {}
        }
    }

    /// The node a `$ref` found in `file` points at, if we can follow it.
    fn resolve(&self, file: &'s str, reference: &str) -> Option<Node<'s>> {
        let (path, fragment) = match reference.split_once('#') {
            Some((p, f)) => (p, f),
            None => (reference, ""),
        };
        let target_file: &'s str = if path.is_empty() {
            file
        } else {
            let rel = resolve_relative(file, path).ok()?;
            self.resources.get_key_value(&rel)?.0.as_str()
        };
        let doc = self.resources.get(target_file)?;
        let schema = if fragment.is_empty() {
            doc
        } else if fragment.starts_with('/') {
            doc.pointer(&percent_decode(fragment))?
        } else {
            find_anchor(doc, fragment)?
        };
        Some(Node {
            file: target_file,
            schema,
        })
    }
}

impl<'s> Node<'s> {
    /// A subschema of this node (same file).
    fn at(&self, schema: &'s Value) -> Node<'s> {
        Node {
            file: self.file,
            schema,
        }
    }
}

/// The subschema of `doc` declaring `"$anchor": name` (searched without
/// recursion).
fn find_anchor<'v>(doc: &'v Value, name: &str) -> Option<&'v Value> {
    let mut work = vec![doc];
    while let Some(v) = work.pop() {
        match v {
            Value::Object(map) => {
                if map.get("$anchor").and_then(Value::as_str) == Some(name) {
                    return Some(v);
                }
                work.extend(map.values());
            }
            Value::Array(items) => work.extend(items.iter()),
            _ => {}
        }
    }
    None
}

/// Minimal `%XX` decoding of a URI fragment (JSON pointers in `$ref` may
/// percent-encode characters).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i.saturating_add(1)..i.saturating_add(3))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i = i.saturating_add(3);
                continue;
            }
        }
        out.push(b);
        i = i.saturating_add(1);
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// Resolves the path part of a `$ref` found in closure file `from` (both
/// relative to the schema directory, `/`-separated). Refuses schemes,
/// absolute paths and anything that climbs out of the schema directory.
fn resolve_relative(from: &str, path: &str) -> Result<String, String> {
    if let Some(colon) = path.find(':') {
        let before = path.get(..colon).unwrap_or("");
        if !before.contains('/') {
            return Err(format!(
                "$ref {} is a URI with a scheme; only files inside the schema directory can be referenced and nothing is fetched",
                quote(path)
            ));
        }
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(format!(
            "$ref {} is an absolute path; only relative references inside the schema directory are allowed",
            quote(path)
        ));
    }
    if path.contains('\\') || path.contains('\0') || path.contains('?') {
        return Err(format!(
            "$ref {} is not a plain relative file path",
            quote(path)
        ));
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop(); // the referring file's own name
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "$ref {} points outside the schema directory",
                        quote(path)
                    ));
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(format!("$ref {} does not name a file", quote(path)));
    }
    Ok(parts.join("/"))
}

/// Every `$ref` string found anywhere in `v` (searched without recursion).
fn collect_refs(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    let mut work = vec![v];
    while let Some(v) = work.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.as_str());
                }
                work.extend(map.values());
            }
            Value::Array(items) => work.extend(items.iter()),
            _ => {}
        }
    }
    out
}

/// Whether a `writeOnly: true`, `$dynamicRef`/`$recursiveRef`, or a `$ref`
/// we cannot follow is reachable from `root` (following `$ref`s across the
/// closure). Errs towards `true`.
fn reaches_secret(resources: &BTreeMap<String, Value>, root: &str) -> bool {
    let Some(doc) = resources.get(root) else {
        return false;
    };
    let walker = Walker { resources };
    let mut seen: HashSet<*const Value> = HashSet::new();
    let mut work: Vec<Node<'_>> = vec![Node {
        file: root,
        schema: doc,
    }];
    while let Some(node) = work.pop() {
        if !seen.insert(node.schema as *const Value) {
            continue;
        }
        match node.schema {
            Value::Object(map) => {
                if map.get("writeOnly") == Some(&Value::Bool(true))
                    || map.contains_key("$dynamicRef")
                    || map.contains_key("$recursiveRef")
                {
                    return true;
                }
                if let Some(Value::String(r)) = map.get("$ref") {
                    match walker.resolve(node.file, r) {
                        Some(target) => work.push(target),
                        None => return true,
                    }
                }
                work.extend(map.values().map(|v| node.at(v)));
            }
            Value::Array(items) => work.extend(items.iter().map(|v| node.at(v))),
            _ => {}
        }
    }
    false
}

// ---------------------------------------------------------------------------
// Loading and compiling

/// Serves the closure files to the validator from memory; everything else
/// is refused (the validator never reads a file or the network itself).
struct ClosureRetriever {
    resources: HashMap<String, Value>,
}

impl jsonschema::Retrieve for ClosureRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let s = s.split_once('#').map(|(a, _)| a).unwrap_or(s);
        match self.resources.get(s) {
            Some(v) => Ok(v.clone()),
            None => Err(
                format!("{s} is not a file of the schema directory (nothing is fetched)").into(),
            ),
        }
    }
}

/// Loads schemas from one directory and keeps each compiled validator for
/// as long as its closure's bytes do not change (compile once, reuse).
pub struct SchemaCache {
    /// The last compiled schema of each document NAME; reused while the
    /// closure's hash is unchanged.
    compiled: HashMap<String, Arc<Schema>>,
    /// The last compile failure of each NAME with the closure hash that
    /// caused it, so unchanged broken bytes are not recompiled every reload.
    failed: HashMap<String, (String, Rejection)>,
    /// For each compiled NAME, every closure file with its [`Stamp`] taken
    /// just before it was read; absent when any stamp is too recent to
    /// trust (see [`RACY`]). What [`SchemaCache::load_trusting_stat`] checks.
    stamps: HashMap<String, Vec<(String, Stamp)>>,
    /// How recent a change may be before its stamp is not trusted.
    racy: Duration,
    /// How many closures were read from disk (tests check the fast path).
    reads: u64,
}

/// A change less than this old may be followed, within one tick of the
/// file system's clock, by another that leaves size and times the same
/// (the "racy" case git also guards against): such a stamp is not trusted.
const RACY: Duration = Duration::from_secs(1);

/// What `stat` (symlinks followed) says about one file: any write,
/// replacement or retarget of the path changes at least one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of `path` now, if it can be had.
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether the last change is at least `racy` older than `now`.
    fn settled(&self, now: SystemTime, racy: Duration) -> bool {
        let newest = self.mtime.max(self.ctime);
        let Ok(since) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let Ok(secs) = i64::try_from(since.as_secs()) else {
            return false;
        };
        let now = (secs, i64::from(since.subsec_nanos()));
        let racy_secs = i64::try_from(racy.as_secs()).unwrap_or(i64::MAX);
        let limit = (
            now.0.saturating_sub(racy_secs),
            now.1.saturating_sub(i64::from(racy.subsec_nanos())),
        );
        // Normalise a negative nanosecond part.
        let limit = if limit.1 < 0 {
            (
                limit.0.saturating_sub(1),
                limit.1.saturating_add(1_000_000_000),
            )
        } else {
            limit
        };
        newest <= limit
    }
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache")
            .field("compiled", &self.compiled.len())
            .field("failed", &self.failed.len())
            .field("stamped", &self.stamps.len())
            .finish()
    }
}

impl Default for SchemaCache {
    fn default() -> Self {
        SchemaCache {
            compiled: HashMap::new(),
            failed: HashMap::new(),
            stamps: HashMap::new(),
            racy: RACY,
            reads: 0,
        }
    }
}

/// One file of a closure, as read.
struct ClosureFile {
    rel: String,
    bytes: Vec<u8>,
    json: Value,
    /// Its stamp taken just before the read (`None` when not from disk).
    stamp: Option<Stamp>,
}

impl SchemaCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema of document `name` from `schema_dir`: `E_NO_SCHEMA` when
    /// `NAME.schema.json` does not exist, `E_SCHEMA_INVALID` when it (or a
    /// file it references) is not JSON, not a valid schema, or references
    /// anything outside `schema_dir`. Re-reads the files every call (cheap)
    /// and recompiles only when their bytes changed.
    ///
    /// The rejection's `file` is the schema file at fault (for
    /// `E_NO_SCHEMA`, the missing `NAME.schema.json`).
    pub fn load(&mut self, schema_dir: &Path, name: &str) -> Result<Arc<Schema>, Rejection> {
        let root = format!("{name}.schema.json");
        self.reads = self.reads.saturating_add(1);
        self.stamps.remove(name);
        let closure = read_closure(schema_dir, &root, name)?;
        let sha256 = closure_hash(&closure);
        let now = SystemTime::now();
        let stamps: Option<Vec<(String, Stamp)>> = closure
            .iter()
            .map(|f| {
                f.stamp
                    .filter(|s| s.settled(now, self.racy))
                    .map(|s| (f.rel.clone(), s))
            })
            .collect();
        if let Some(cached) = self.compiled.get(name) {
            if cached.sha256 == sha256 {
                if let Some(stamps) = stamps {
                    self.stamps.insert(name.to_string(), stamps);
                }
                return Ok(Arc::clone(cached));
            }
        }
        if let Some((failed_sha, rejection)) = self.failed.get(name) {
            if *failed_sha == sha256 {
                return Err(rejection.clone());
            }
        }
        match compile(schema_dir, name, &root, closure, sha256.clone()) {
            Ok(schema) => {
                let schema = Arc::new(schema);
                self.failed.remove(name);
                self.compiled.insert(name.to_string(), Arc::clone(&schema));
                if let Some(stamps) = stamps {
                    self.stamps.insert(name.to_string(), stamps);
                }
                Ok(schema)
            }
            Err(rejection) => {
                self.failed
                    .insert(name.to_string(), (sha256, rejection.clone()));
                Err(rejection)
            }
        }
    }

    /// Forgets schemas of documents not in `names` (for a daemon whose
    /// documents come and go).
    pub fn retain(&mut self, names: &HashSet<String>) {
        self.compiled.retain(|k, _| names.contains(k));
        self.failed.retain(|k, _| names.contains(k));
        self.stamps.retain(|k, _| names.contains(k));
    }

    /// [`SchemaCache::load`], except that a compiled schema whose closure
    /// files all still `stat` (symlinks followed) exactly as they did just
    /// before they were last read — same device, inode, size, modification
    /// and change times, the last change older than a second — is returned
    /// without reading or hashing anything. For implicit reloads, which
    /// are backed by a periodic full pass that uses [`SchemaCache::load`].
    ///
    /// A `$ref` added to the closure needs a write to a closure file, which
    /// changes that file's stamp, so the closure's file list cannot go
    /// stale either.
    pub fn load_trusting_stat(
        &mut self,
        schema_dir: &Path,
        name: &str,
    ) -> Result<Arc<Schema>, Rejection> {
        if let (Some(stamps), Some(compiled)) = (self.stamps.get(name), self.compiled.get(name)) {
            let unchanged = stamps
                .iter()
                .all(|(rel, stamp)| Stamp::of(&schema_dir.join(rel)).as_ref() == Some(stamp));
            if unchanged {
                return Ok(Arc::clone(compiled));
            }
        }
        self.load(schema_dir, name)
    }

    /// How many closures this cache has read from disk.
    pub fn closure_reads(&self) -> u64 {
        self.reads
    }
}

fn label(schema_dir: &Path, rel: &str) -> String {
    crate::pipeline::display_path(&schema_dir.join(rel))
}

/// Reads `root` and every file its `$ref`s reach, root first.
fn read_closure(schema_dir: &Path, root: &str, name: &str) -> Result<Vec<ClosureFile>, Rejection> {
    let root_label = label(schema_dir, root);
    let root_path = schema_dir.join(root);
    match std::fs::metadata(&root_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Rejection::bare(
                Code::NoSchema,
                root_label.clone(),
                format!(
                    "no schema for document {}: {root_label} does not exist",
                    quote(name)
                ),
            ));
        }
        _ => {}
    }
    // A file that exists but cannot be read is an I/O problem (`E_IO`), not
    // a bad schema; a `$ref` to a file that does not exist is a bad schema.
    let io_code = |e: &std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Code::SchemaInvalid
        } else {
            Code::Io
        }
    };
    let canonical_dir = std::fs::canonicalize(schema_dir).map_err(|e| {
        Rejection::bare(
            io_code(&e),
            root_label.clone(),
            format!("schema directory: {}", document::io_reason(&e)),
        )
    })?;
    let mut files: Vec<ClosureFile> = Vec::new();
    let mut known: HashSet<String> = HashSet::new();
    known.insert(root.to_string());
    let mut queue: Vec<(String, Option<String>)> = vec![(root.to_string(), None)];
    while let Some((rel, referrer)) = queue.pop() {
        let file_label = label(schema_dir, &rel);
        // Errors about a referenced file are reported on the file holding
        // the `$ref` when the referenced one cannot even be read.
        let blame = referrer.as_deref().map(|r| label(schema_dir, r));
        let path = schema_dir.join(&rel);
        let canonical = std::fs::canonicalize(&path).map_err(|e| {
            let reason = document::io_reason(&e);
            match &blame {
                // Blamed on the referrer: name the file that failed.
                Some(at) => Rejection::bare(io_code(&e), at, format!("{file_label}: {reason}")),
                // The rejection's file is this one: name it once.
                None => Rejection::bare(io_code(&e), file_label.clone(), reason),
            }
        })?;
        if !canonical.starts_with(&canonical_dir) {
            let at = blame.clone().unwrap_or_else(|| file_label.clone());
            return Err(Rejection::bare(
                Code::SchemaInvalid,
                at,
                format!("{file_label} resolves outside the schema directory; not read"),
            ));
        }
        // Stamped before reading: a change during the read leaves a stamp
        // that no longer matches, never a matching stamp for stale bytes.
        let stamp = Stamp::of(&path);
        let bytes = document::read_capped(&canonical, document::DEFAULT_MAX_FILE_SIZE, &file_label)
            .map_err(|mut r| {
                if r.code != Code::Io {
                    r.code = Code::SchemaInvalid;
                }
                r
            })?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
            let text = e.to_string();
            let what = text.split(" at line ").next().unwrap_or("invalid JSON");
            Rejection::new(
                Code::SchemaInvalid,
                file_label.clone(),
                Problem::at(
                    "",
                    e.line().max(1),
                    e.column().max(1),
                    format!("not JSON: {what}"),
                ),
            )
        })?;
        for reference in collect_refs(&json) {
            let path_part = reference.split('#').next().unwrap_or("");
            if path_part.is_empty() {
                continue;
            }
            let target = resolve_relative(&rel, path_part)
                .map_err(|m| Rejection::bare(Code::SchemaInvalid, file_label.clone(), m))?;
            if known.insert(target.clone()) {
                if known.len() > MAX_CLOSURE_FILES {
                    return Err(Rejection::bare(
                        Code::SchemaInvalid,
                        file_label.clone(),
                        format!("more than {MAX_CLOSURE_FILES} files referenced"),
                    ));
                }
                queue.push((target, Some(rel.clone())));
            }
        }
        files.push(ClosureFile {
            rel,
            bytes,
            json,
            stamp,
        });
    }
    // Root first (it was read first), the rest in a stable order.
    if let Some((first, rest)) = files.split_first_mut() {
        let _ = first;
        rest.sort_by(|a, b| a.rel.cmp(&b.rel));
    }
    Ok(files)
}

/// SHA-256 over names and bytes of every closure file, in closure order.
fn closure_hash(files: &[ClosureFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update((f.rel.len() as u64).to_le_bytes());
        h.update(f.rel.as_bytes());
        h.update((f.bytes.len() as u64).to_le_bytes());
        h.update(&f.bytes);
    }
    document::hex(&h.finalize())
}

fn compile(
    schema_dir: &Path,
    name: &str,
    root: &str,
    closure: Vec<ClosureFile>,
    sha256: String,
) -> Result<Schema, Rejection> {
    let root_label = label(schema_dir, root);
    let files: Vec<PathBuf> = closure.iter().map(|f| schema_dir.join(&f.rel)).collect();
    let mut resources = BTreeMap::new();
    let mut sources = Vec::with_capacity(closure.len());
    for f in closure {
        sources.push((f.rel.clone(), Arc::from(f.bytes)));
        resources.insert(f.rel, f.json);
    }
    let Some(root_json) = resources.get(root) else {
        return Err(Rejection::bare(
            Code::SchemaInvalid,
            root_label,
            "schema not read",
        ));
    };
    // Check every closure file against its meta-schema first, so that a
    // mistake in a shared definitions file is reported on that file.
    meta_check(schema_dir, root, &resources)?;
    let retriever = ClosureRetriever {
        resources: resources
            .iter()
            .map(|(rel, v)| (format!("{BASE_URI}{rel}"), v.clone()))
            .collect(),
    };
    let validator = jsonschema::options()
        .with_base_uri(format!("{BASE_URI}{root}"))
        .with_retriever(retriever)
        .should_validate_formats(true)
        .with_pattern_options(crate::pipeline::limits::pattern_options())
        // Formats are assertions here, so a format we cannot check (often a
        // typo: "datetime") is a schema error, not a silent pass.
        .should_ignore_unknown_formats(false)
        .build(root_json)
        .map_err(|e| {
            let pointer = e.instance_path().as_str().to_string();
            let message = if matches!(e.kind(), ValidationErrorKind::Referencing(_)) {
                format!("unresolvable $ref: {}", one_line(&e.to_string()))
            } else {
                schema_error_message(&pointer, e.instance(), &e.to_string())
            };
            let at_fault = at_fault(&resources, root, &pointer, e.instance());
            Rejection::new(
                Code::SchemaInvalid,
                label(schema_dir, at_fault),
                Problem {
                    pointer,
                    line: None,
                    column: None,
                    message,
                },
            )
        })?;
    let has_secrets = reaches_secret(&resources, root);
    Ok(Schema {
        name: name.to_string(),
        sha256,
        files,
        sources,
        validator,
        resources,
        root: root.to_string(),
        has_secrets,
    })
}

/// The closure file a compile error at `pointer` (showing `instance`) is
/// in: the compiler reports a pointer into the file where it met the bad
/// keyword (a `$ref`'d one too) but not the file, so it is the file whose
/// value at that pointer is what the error shows — the root when it
/// matches there, else the first other file that does.
fn at_fault<'a>(
    resources: &'a BTreeMap<String, Value>,
    root: &'a str,
    pointer: &str,
    instance: &Value,
) -> &'a str {
    let holds = |v: &Value| v.pointer(pointer) == Some(instance);
    if resources.get(root).is_some_and(holds) {
        return root;
    }
    resources
        .iter()
        .find(|(rel, v)| rel.as_str() != root && holds(v))
        .map_or(root, |(rel, _)| rel.as_str())
}

/// Validates each closure file against the meta-schema of its draft (its own
/// `$schema`, else the root's; files under a custom meta-schema are left to
/// the compiler, which refuses them since it cannot fetch it).
fn meta_check(
    schema_dir: &Path,
    root: &str,
    resources: &BTreeMap<String, Value>,
) -> Result<(), Rejection> {
    use jsonschema::Draft;
    let draft_of = |v: &Value| {
        v.get("$schema")
            .and_then(Value::as_str)
            .map(Draft::from_schema_uri)
    };
    let root_draft = resources.get(root).and_then(draft_of).unwrap_or_default();
    for (rel, json) in resources {
        let draft = draft_of(json).unwrap_or(root_draft);
        let meta = match draft {
            Draft::Draft4 => jsonschema::draft4::meta::validator(),
            Draft::Draft6 => jsonschema::draft6::meta::validator(),
            Draft::Draft7 => jsonschema::draft7::meta::validator(),
            Draft::Draft201909 => jsonschema::draft201909::meta::validator(),
            Draft::Draft202012 => jsonschema::draft202012::meta::validator(),
            _ => continue,
        };
        let first = meta.iter_errors(json).next();
        if let Some(e) = first {
            let pointer = e.instance_path().as_str().to_string();
            let message = schema_error_message(&pointer, e.instance(), &e.to_string());
            return Err(Rejection::new(
                Code::SchemaInvalid,
                label(schema_dir, rel),
                Problem {
                    pointer,
                    line: None,
                    column: None,
                    message,
                },
            ));
        }
    }
    Ok(())
}

/// A readable message for a schema that fails its meta-schema: the common
/// mistake (a misspelt `type`) gets its own words.
fn schema_error_message(pointer: &str, instance: &Value, raw: &str) -> String {
    let segments = document::pointer_segments(pointer).unwrap_or_default();
    let n = segments.len();
    let in_type = segments.last().map(String::as_str) == Some("type")
        || (n >= 2 && segments.get(n - 2).map(String::as_str) == Some("type")); // ok: n >= 2
    if in_type {
        const TYPES: [&str; 7] = [
            "array", "boolean", "integer", "null", "number", "object", "string",
        ];
        let unknown = match instance {
            Value::String(t) => Some(t.as_str()),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .find(|t| !TYPES.contains(t)),
            _ => None,
        };
        if let Some(t) = unknown.filter(|t| !TYPES.contains(t)) {
            return format!(
                "unknown type {} (expected one of {})",
                quote(t),
                TYPES.join(", ")
            );
        }
    }
    if segments.last().map(String::as_str) == Some("format") && raw.starts_with("Unknown format") {
        if let Value::String(f) = instance {
            return format!(
                "unknown format {} (formats are asserted; use a known one such as date-time, date, email, uri, hostname, ipv4)",
                quote(f)
            );
        }
    }
    format!("not a valid JSON Schema: {}", one_line(raw))
}

/// Collapses whitespace runs (messages are printed one per line).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, v: &Value) {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }

    #[test]
    fn relative_refs_stay_inside() {
        assert_eq!(resolve_relative("a.json", "b.json").unwrap(), "b.json");
        assert_eq!(resolve_relative("d/a.json", "b.json").unwrap(), "d/b.json");
        assert_eq!(resolve_relative("d/a.json", "../b.json").unwrap(), "b.json");
        assert!(resolve_relative("a.json", "../b.json").is_err());
        assert!(resolve_relative("a.json", "/etc/passwd").is_err());
        assert!(resolve_relative("a.json", "https://example.com/x.json").is_err());
        assert!(resolve_relative("a.json", "file:///etc/passwd").is_err());
        assert!(resolve_relative("a.json", "urn:x").is_err());
    }

    #[test]
    fn cache_reuses_until_bytes_change() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "c.schema.json",
            &json!({"$defs": {"p": {"type": "integer"}}}),
        );
        write(
            dir.path(),
            "a.schema.json",
            &json!({"type": "object", "properties": {"x": {"$ref": "c.schema.json#/$defs/p"}}}),
        );
        let mut cache = SchemaCache::new();
        let s1 = cache.load(dir.path(), "a").unwrap();
        let s2 = cache.load(dir.path(), "a").unwrap();
        assert!(Arc::ptr_eq(&s1, &s2));
        assert_eq!(s1.files.len(), 2);
        write(
            dir.path(),
            "c.schema.json",
            &json!({"$defs": {"p": {"type": "string"}}}),
        );
        let s3 = cache.load(dir.path(), "a").unwrap();
        assert_ne!(s1.sha256, s3.sha256);
    }

    /// The stat fast path: an unchanged closure is neither read nor hashed;
    /// a same-size in-place rewrite of a shared `$ref` file (its mtime put
    /// back) is still seen (the change time moves), and so is a swap; a
    /// stamp of a change under a second old is never trusted.
    #[test]
    fn stat_fast_path_reads_only_changed_closures() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let shared = |t: &str| json!({"$defs": {"p": {"type": t}}});
        write(d, "c.schema.json", &shared("integer"));
        for name in ["a", "b"] {
            write(
                d,
                &format!("{name}.schema.json"),
                &json!({"properties": {"x": {"$ref": "c.schema.json#/$defs/p"}}}),
            );
        }
        write(d, "lone.schema.json", &json!({"type": "object"}));
        let mut cache = SchemaCache::new();
        cache.racy = Duration::ZERO;
        let a1 = cache.load(d, "a").unwrap();
        let lone1 = cache.load(d, "lone").unwrap();
        let reads = cache.closure_reads();
        assert!(Arc::ptr_eq(&a1, &cache.load_trusting_stat(d, "a").unwrap()));
        assert!(Arc::ptr_eq(
            &lone1,
            &cache.load_trusting_stat(d, "lone").unwrap()
        ));
        assert_eq!(cache.closure_reads(), reads, "unchanged closures were read");

        // In place, same size, modification time restored: only ctime moves.
        let c = d.join("c.schema.json");
        let mtime = std::fs::metadata(&c).unwrap().modified().unwrap();
        let before = std::fs::read(&c).unwrap();
        write(d, "c.schema.json", &shared("boolean"));
        assert_eq!(std::fs::read(&c).unwrap().len(), before.len());
        std::fs::File::options()
            .write(true)
            .open(&c)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let a2 = cache.load_trusting_stat(d, "a").unwrap();
        assert_ne!(a1.sha256, a2.sha256, "the shared file's change was missed");
        assert!(Arc::ptr_eq(
            &lone1,
            &cache.load_trusting_stat(d, "lone").unwrap()
        ));
        assert_eq!(cache.closure_reads(), reads + 1, "only `a` is re-read");

        // Replaced by a rename: a new inode.
        let tmp = d.join("c.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&shared("string")).unwrap()).unwrap();
        std::fs::rename(&tmp, &c).unwrap();
        let a3 = cache.load_trusting_stat(d, "a").unwrap();
        assert_ne!(a2.sha256, a3.sha256);

        // A recent change is not trusted: every call reads.
        let mut cautious = SchemaCache::new();
        cautious.racy = Duration::from_secs(3600);
        cautious.load(d, "b").unwrap();
        cautious.load_trusting_stat(d, "b").unwrap();
        assert_eq!(cautious.closure_reads(), 2);
    }

    #[test]
    fn secrets_are_found_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "c.schema.json",
            &json!({"$defs": {"secret": {"type": "string", "writeOnly": true}}}),
        );
        write(
            dir.path(),
            "a.schema.json",
            &json!({
                "type": "object",
                "properties": {
                    "db": {"type": "object", "properties": {
                        "password": {"$ref": "c.schema.json#/$defs/secret"},
                        "user": {"type": "string"}
                    }},
                    "tokens": {"type": "array", "items": {"$ref": "#/$defs/tok"}}
                },
                "$defs": {"tok": {"writeOnly": true}}
            }),
        );
        let mut cache = SchemaCache::new();
        let s = cache.load(dir.path(), "a").unwrap();
        assert!(s.has_secrets());
        let v = json!({"db": {"password": "hunter2", "user": "u"}, "tokens": ["a", "b"]});
        assert_eq!(
            s.redact(&v),
            json!({"db": {"password": "<redacted>", "user": "u"}, "tokens": ["<redacted>", "<redacted>"]})
        );
    }

    #[test]
    fn a_compile_error_in_a_referenced_file_is_blamed_on_that_file() {
        for (what, bad) in [
            ("format", json!({"type": "string", "format": "datetime"})),
            ("pattern", json!({"type": "string", "pattern": "(unclosed"})),
        ] {
            let dir = tempfile::tempdir().unwrap();
            write(
                dir.path(),
                "common.schema.json",
                &json!({"$defs": {"ok": {"type": "integer"}, "bad": bad}}),
            );
            write(
                dir.path(),
                "a.schema.json",
                &json!({"type": "object", "properties": {
                    "n": {"$ref": "common.schema.json#/$defs/ok"},
                    "when": {"$ref": "common.schema.json#/$defs/bad"}
                }}),
            );
            let err = SchemaCache::new().load(dir.path(), "a").unwrap_err();
            assert_eq!(err.code, Code::SchemaInvalid, "{what}: {err:?}");
            assert!(
                err.file.ends_with("common.schema.json"),
                "{what}: blamed on {} ({err:?})",
                err.file
            );
            let pointer = &err.problems[0].pointer;
            assert!(pointer.starts_with("/$defs/bad"), "{what}: {pointer}");
        }
    }
}
