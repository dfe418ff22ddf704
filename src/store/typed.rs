//! Typed views for programs that embed hotconf: a Rust type registered for a
//! document name, checked by the reloader and served beside the JSON value.
//!
//! An embedding program registers `T: DeserializeOwned + Send + Sync +
//! 'static` for a document name on [`ReloadConfig`](crate::ReloadConfig)
//! before it spawns the reloader ([`TypeRegistry::register`]). From then on
//! the reloader, after a candidate passes its schema, deserializes it into
//! `T`. If that fails the candidate is rejected with `E_TYPE` like any other
//! rejection (the last good version stays served, the document's state is
//! `error`, no generation, a `document_rejected` warning). If it succeeds the
//! `T` is stored in the [`ServedDocument`] that gets published, so readers
//! never deserialize anything.
//!
//! # Performance model
//!
//! - `T` is built **once per accepted version**, on the reloader thread,
//!   before the snapshot holding it is published. Readers share it as an
//!   `Arc<T>`.
//! - [`Store::typed`] and [`TypedView::load`] cost what
//!   [`Store::load`] costs (a lock-free `ArcSwap` load, a few atomic
//!   operations, no allocation), plus a map lookup of the name, a `TypeId`
//!   comparison and one reference-count increment. Call them on every
//!   request rather than caching the result.
//! - Two reads of the same document version return the same `Arc`, so
//!   `Arc::ptr_eq` tells a synchronous loop whether its document changed.
//! - Holding an `Arc<T>` pins that version of `T` (and only it) in memory
//!   until the last clone is dropped; it never blocks the reloader. Keep
//!   one across a unit of work so that the work sees one consistent
//!   configuration, and load again for the next one.
//! - [`TypedView::changed`] sleeps on the store's generation channel and
//!   wakes the task only when *this* document's generation changes (an
//!   accepted edit or a removal), not for other documents' publishes, and
//!   never for rejections.
//!
//! This module does not read files, does not decide when to reload and does
//! not format anything but the `E_TYPE` problem it builds.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::pipeline::document::{self, Parsed, Target};
use crate::pipeline::rejection::{Code, Problem, Rejection};
use crate::pipeline::schema::{Schema, REDACTED};
use crate::store::handle::{Handle, SlotSink};
use crate::store::snapshot::ServedDocument;
use crate::store::Store;

/// A typed value as it is stored in a snapshot: any registered `T`.
pub type AnyTyped = Arc<dyn Any + Send + Sync>;

/// Longer offending strings are quoted by their first this-many characters
/// (as schema violations are).
const MAX_QUOTED: usize = 64;

/// Messages that come from a type's own `Deserialize` code are cut here: a
/// custom error could be arbitrarily long.
const MAX_MESSAGE: usize = 300;

/// What deserializing a document's value gives.
type Decoded = Result<AnyTyped, serde_path_to_error::Error<serde_json::Error>>;

/// One registered type, erased to plain function pointers so that the
/// registry is `Clone` and `Send` whatever `T` is.
#[derive(Clone, Copy)]
struct Registration {
    /// `std::any::type_name::<T>()`, for messages and `Debug`.
    type_name: &'static str,
    /// Deserializes a document's value into `T`, tracking the path.
    decode: fn(&Value) -> Decoded,
    /// Whether a stored typed value is a `T`.
    is: fn(&(dyn Any + Send + Sync)) -> bool,
}

/// Deserializes `value` into `T` (without cloning it) and erases the type.
fn decode<T: DeserializeOwned + Send + Sync + 'static>(value: &Value) -> Decoded {
    let typed: T = serde_path_to_error::deserialize(value)?;
    Ok(Arc::new(typed))
}

/// Whether `value` is a `T`.
fn is<T: Send + Sync + 'static>(value: &(dyn Any + Send + Sync)) -> bool {
    value.is::<T>()
}

/// The Rust types an embedding program registered, by document name. Part
/// of [`ReloadConfig`](crate::ReloadConfig) (its `types` field), so it is
/// fixed when the reloader is spawned. Empty for the `hotconf` binary.
#[derive(Clone, Default)]
pub struct TypeRegistry {
    /// Document name → its type.
    types: BTreeMap<String, Registration>,
    /// Document name → the slot of its [`Handle`], for names registered
    /// through [`TypeRegistry::handle`]; the reloader fills them.
    sinks: BTreeMap<String, Arc<dyn SlotSink>>,
}

impl std::fmt::Debug for TypeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.types.iter().map(|(n, r)| (n, r.type_name)))
            .finish()
    }
}

impl TypeRegistry {
    /// Requires document `name` to deserialize into `T`: a candidate that is
    /// valid under its schema but does not fit `T` is rejected with
    /// `E_TYPE`, and every accepted version carries its `T` (read it with
    /// [`Store::typed`] or a [`TypedView`]). Registering a name again
    /// replaces its type. A name that is not a document name
    /// (`^[A-Za-z0-9][A-Za-z0-9_-]*$`) simply never matches a document.
    pub fn register<T>(&mut self, name: impl Into<String>) -> &mut Self
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let name = name.into();
        self.sinks.remove(&name);
        self.types.insert(
            name,
            Registration {
                type_name: std::any::type_name::<T>(),
                decode: decode::<T>,
                is: is::<T>,
            },
        );
        self
    }

    /// Registers `T` for document `name` as [`TypeRegistry::register`]
    /// does, and returns a [`Handle`] to its own slot, which the reloader
    /// fills with every accepted version (registering the name again
    /// replaces type and slot: the earlier handle is no longer filled).
    pub fn handle<T>(&mut self, name: impl Into<String>) -> Handle<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let name = name.into();
        let (handle, sink) = Handle::new(&name);
        self.register::<T>(name.clone());
        self.sinks.insert(name, sink);
        handle
    }

    /// The slots of handles, by document name.
    pub(crate) fn sinks(&self) -> impl Iterator<Item = (&str, &Arc<dyn SlotSink>)> {
        self.sinks.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The name of the type registered for document `name`, if any.
    pub fn type_name(&self, name: &str) -> Option<&'static str> {
        self.types.get(name).map(|r| r.type_name)
    }

    /// Whether no type is registered.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The typed value of a candidate of document `name` that passed its
    /// schema: `Ok(None)` when no type is registered for it, `E_TYPE` when
    /// it does not deserialize. Runs on the reloader, once per candidate.
    pub(crate) fn build(
        &self,
        name: &str,
        label: &str,
        parsed: &Parsed,
        schema: &Schema,
    ) -> Result<Option<AnyTyped>, Rejection> {
        let Some(registration) = self.types.get(name) else {
            return Ok(None);
        };
        match (registration.decode)(&parsed.value) {
            Ok(typed) => Ok(Some(typed)),
            Err(e) => Err(type_rejection(
                label,
                registration.type_name,
                parsed,
                schema,
                &e,
            )),
        }
    }

    /// Whether a served document carries what its registration asks for (a
    /// value of the registered type, or nothing when no type is
    /// registered). A document served without its typed value — e.g. one
    /// restored from a persisted snapshot — must be judged again even
    /// though its bytes have not changed.
    pub(crate) fn is_satisfied_by(&self, name: &str, doc: &ServedDocument) -> bool {
        match self.types.get(name) {
            None => true,
            Some(r) => doc.typed.as_deref().is_some_and(r.is),
        }
    }
}

/// The `E_TYPE` rejection for a value that `serde` could not turn into the
/// registered type: at the JSON pointer of the offending value (mapped back
/// to its line and column in the TOML source), with serde's message made
/// safe to print (no secret, no long value).
fn type_rejection(
    label: &str,
    type_name: &str,
    parsed: &Parsed,
    schema: &Schema,
    error: &serde_path_to_error::Error<serde_json::Error>,
) -> Rejection {
    let (mut pointer, found) = resolve(&parsed.value, error.path());
    let secrets = schema.secret_pointers(&parsed.value);
    let secret = secrets.iter().any(|s| related(s, &pointer));
    let raw = error.inner().to_string();
    let mut target = Target::Value;
    if let Some(key) = unknown_field(&raw) {
        // An unknown field is the key's fault (as `additionalProperties` is):
        // point at the key. The path usually ends at it already.
        let segment = format!("/{}", escape_segment(key));
        if pointer.ends_with(&segment) {
            target = Target::Key;
        } else if parsed
            .value
            .pointer(&format!("{pointer}{segment}"))
            .is_some()
        {
            pointer.push_str(&segment);
            target = Target::Key;
        }
    }
    let message = safe_message(&raw, found, secret);
    let message = format!("{message} (registered type {type_name})");
    match document::locate(&parsed.text, &pointer, target) {
        Some((line, column)) => Rejection::new(
            Code::Type,
            label,
            Problem::at(pointer, line, column, message),
        ),
        None => Rejection::new(
            Code::Type,
            label,
            Problem {
                pointer,
                line: None,
                column: None,
                message,
            },
        ),
    }
}

/// The JSON pointer of the deepest value of `root` that `path` leads to,
/// and that value. serde's path may stop short (flattened or untagged
/// data are buffered without a path) or name an enum variant, which in a
/// document is a key only when the variant carries data; whatever does not
/// lead to a value is left out, so the pointer always exists.
fn resolve<'v>(root: &'v Value, path: &serde_path_to_error::Path) -> (String, &'v Value) {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    let mut here = root;
    for segment in path {
        let next = match (segment, here) {
            (Segment::Map { key } | Segment::Enum { variant: key }, Value::Object(map)) => {
                map.get(key.as_str()).map(|v| (key.clone(), v))
            }
            (Segment::Seq { index }, Value::Array(items)) => {
                items.get(*index).map(|v| (index.to_string(), v))
            }
            _ => None,
        };
        match next {
            Some((key, value)) => {
                pointer.push('/');
                pointer.push_str(&escape_segment(&key));
                here = value;
            }
            // A variant name that is not a key (a unit variant, or an
            // internally tagged enum) adds nothing; the rest is unknown.
            None if matches!(segment, Segment::Enum { .. }) => continue,
            None => break,
        }
    }
    (pointer, here)
}

/// Whether one of the pointers is the other or inside it.
fn related(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner == outer
            || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
    };
    inside(a, b) || inside(b, a)
}

/// Escapes one JSON pointer segment.
fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The key of serde's "unknown field `KEY`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// serde's `message` about `value`, safe to print. serde quotes the
/// offending value whole ("invalid type: string \"hunter2\", expected
/// u32"): the value is described again here, as `<redacted>` when it is or
/// holds a secret (`secret`), its beginning only when it is long. Messages
/// that quote nothing but names (missing or unknown fields, lengths) are
/// kept; any other message about a secret is replaced, since a type's own
/// `Deserialize` code may quote the value in it.
fn safe_message(message: &str, value: &Value, secret: bool) -> String {
    const QUOTING: [&str; 3] = ["invalid type: ", "invalid value: ", "unknown variant "];
    const NAMES_ONLY: [&str; 4] = [
        "missing field ",
        "unknown field ",
        "duplicate field ",
        "invalid length ",
    ];
    for prefix in QUOTING {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // The expectation comes last and from the type, not the document.
        let expected = rest
            .rfind(", expected ")
            .and_then(|at| rest.get(at..))
            .unwrap_or("");
        let shown = if secret {
            REDACTED.to_string()
        } else if value.is_object() || value.is_array() {
            // serde's words are then about a key (an enum variant) or a
            // value its path does not reach (flattened data): keep them.
            return truncate(message, MAX_MESSAGE);
        } else {
            describe(value)
        };
        let prefix = prefix.trim_end_matches([' ', ':']);
        return format!("{prefix}: {shown}{}", truncate(expected, MAX_MESSAGE));
    }
    if secret && !NAMES_ONLY.iter().any(|p| message.starts_with(p)) {
        return format!("{REDACTED} does not fit the registered type");
    }
    truncate(message, MAX_MESSAGE)
}

/// A value as a message shows it: TOML's words for its kind, and a scalar
/// quoted by at most its first [`MAX_QUOTED`] characters.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => {
            let head: String = s.chars().take(MAX_QUOTED).collect();
            let more = if head.len() < s.len() { "…" } else { "" };
            // ok: serializing a string cannot fail.
            let quoted = serde_json::to_string(&head).unwrap_or_default();
            format!("string {quoted}{more}")
        }
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "table".to_string(),
    }
}

/// `text` cut to `max` characters.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}…")
}

// ---------------------------------------------------------------------------
// Reading typed values

impl ServedDocument {
    /// This version's value as the type registered for the document, or
    /// `None` when no type is registered or `T` is not that type. The same
    /// `Arc` for every call on the same version (built once, when the
    /// version was accepted).
    pub fn typed<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.typed.clone()?.downcast::<T>().ok()
    }
}

impl Store {
    /// The served value of document `name` as its registered type `T`:
    /// `None` when it is not served, or `T` is not the type registered for
    /// it. Lock-free, no deserialization: see the module's performance
    /// model ([`crate::store::typed`]).
    pub fn typed<T: Send + Sync + 'static>(&self, name: &str) -> Option<Arc<T>> {
        self.load().get(name)?.typed::<T>()
    }

    /// A [`TypedView`] of document `name` as `T` (the same as
    /// [`TypedView::new`]).
    pub fn view<T: Send + Sync + 'static>(self: &Arc<Self>, name: &str) -> TypedView<T> {
        TypedView::new(self.clone(), name)
    }
}

/// One document of a [`Store`], read as its registered type `T`, with a
/// change subscription for async code.
///
/// [`TypedView::load`] is a lock-free read (see the module's performance
/// model). [`TypedView::changed`] waits until the document's generation
/// differs from the one this view last saw, as `tokio::sync::watch` does:
/// a new view has seen the generation served when it was made. Clones
/// share the store, not what they have seen.
pub struct TypedView<T> {
    /// Where the document is served.
    store: Arc<Store>,
    /// The document.
    name: Arc<str>,
    /// Wakes on every publish (of any document).
    generations: watch::Receiver<u64>,
    /// The document generation last seen (`None`: not served then).
    seen: Option<u64>,
    /// The type read; `fn() -> T` keeps the view `Send + Sync` for any `T`.
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedView<T> {
    fn clone(&self) -> Self {
        TypedView {
            store: self.store.clone(),
            name: self.name.clone(),
            generations: self.generations.clone(),
            seen: self.seen,
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TypedView<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedView")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .field("seen", &self.seen)
            .finish()
    }
}

impl<T: Send + Sync + 'static> TypedView<T> {
    /// A view of document `name` of `store` as `T`. `T` should be the type
    /// registered for `name` on the reloader's
    /// [`ReloadConfig`](crate::ReloadConfig); otherwise every load is
    /// `None`.
    pub fn new(store: Arc<Store>, name: &str) -> Self {
        let generations = store.subscribe();
        let seen = store.load().get(name).map(|d| d.generation);
        TypedView {
            store,
            name: name.into(),
            generations,
            seen,
            _type: PhantomData,
        }
    }

    /// The document's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The served version as `T`, lock-free: `None` while the document is
    /// not served (never valid, or removed) or when `T` is not its
    /// registered type. The same `Arc` until a new version is accepted.
    pub fn load(&self) -> Option<Arc<T>> {
        self.store.typed::<T>(&self.name)
    }

    /// The served version with the generation in which it was accepted.
    pub fn load_with_generation(&self) -> Option<(u64, Arc<T>)> {
        let snapshot = self.store.load();
        let doc = snapshot.get(&self.name)?;
        Some((doc.generation, doc.typed::<T>()?))
    }

    /// Waits until the document's generation differs from the one this
    /// view last saw (an accepted edit, its first acceptance, or its
    /// removal), marks it seen and returns the served value as
    /// [`TypedView::load`] would (`None` after a removal). Publishes of
    /// other documents and rejections do not wake it. Cancel-safe: a
    /// change is marked seen only when it is returned, so it may be used in
    /// `tokio::select!`.
    pub async fn changed(&mut self) -> Option<Arc<T>> {
        loop {
            // Mark the channel seen *before* looking, so a publish after the
            // look is not missed: it will wake the wait below.
            self.generations.borrow_and_update();
            let current = {
                let snapshot = self.store.load();
                snapshot
                    .get(&self.name)
                    .map(|d| (d.generation, d.typed::<T>()))
            };
            let generation = current.as_ref().map(|(g, _)| *g);
            if generation != self.seen {
                self.seen = generation;
                return current.and_then(|(_, typed)| typed);
            }
            if self.generations.changed().await.is_err() {
                // The sender lives in the store this view holds, so this
                // cannot happen; if it did, nothing could change any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        port: u16,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct App {
        server: Server,
        password: Option<u32>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Safe,
    }

    fn error(value: &Value) -> (String, String) {
        let e = match decode::<App>(value) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        };
        let (pointer, found) = resolve(value, e.path());
        (pointer, safe_message(&e.inner().to_string(), found, false))
    }

    #[test]
    fn paths_become_pointers() {
        let (p, m) = error(&json!({"server": {"port": 70000}}));
        assert_eq!(p, "/server/port");
        assert_eq!(m, "invalid value: integer 70000, expected u16");
        let (p, m) = error(&json!({"server": {"port": 1, "tags": ["a", 5]}}));
        assert_eq!(p, "/server/tags/1");
        assert_eq!(m, "invalid type: integer 5, expected a string");
        let (p, m) = error(&json!({"server": {}}));
        assert_eq!(p, "/server");
        assert_eq!(m, "missing field `port`");
        let (p, m) = error(&json!({"server": {"port": 1}, "mode": "slow"}));
        assert_eq!(p, "/mode");
        assert!(
            m.starts_with("unknown variant: string \"slow\", expected"),
            "{m}"
        );
        let (p, m) = error(&json!({"server": {"port": 1}, "mode": {"slow": 1}}));
        assert_eq!(p, "/mode");
        assert!(m.starts_with("unknown variant `slow`, expected"), "{m}");
    }

    #[test]
    fn unknown_field_is_reported_at_its_table() {
        let value = json!({"server": {"port": 1, "extra": true}});
        let Err(e) = decode::<App>(&value) else {
            panic!("expected an error")
        };
        let (p, _) = resolve(&value, e.path());
        assert_eq!(unknown_field(&e.inner().to_string()), Some("extra"));
        assert_eq!(p, "/server/extra");
    }

    #[test]
    fn secrets_and_long_values_are_not_quoted() {
        let value = json!("hunter2");
        let m = safe_message(
            "invalid type: string \"hunter2\", expected u32",
            &value,
            true,
        );
        assert_eq!(m, "invalid type: <redacted>, expected u32");
        let m = safe_message("custom: hunter2 is bad", &value, true);
        assert!(!m.contains("hunter2"), "{m}");
        let long = Value::String("x".repeat(1000));
        let m = safe_message("invalid type: string \"xxx…\", expected u32", &long, false);
        assert!(m.chars().count() < 120, "{m}");
    }

    #[test]
    fn related_pointers() {
        assert!(related("/a", "/a"));
        assert!(related("/a", "/a/b"));
        assert!(related("/a/b", "/a"));
        assert!(!related("/a", "/ab"));
    }
}
