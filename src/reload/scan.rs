//! Reload step 1, *scan*: what is on disk. Lists the config directory,
//! loads each listed document's schema (through the reloader's
//! [`SchemaCache`]) and reads its bytes, hashing both; reads the whole set
//! again if a file was replaced in the middle; and leaves out files the
//! watcher knows are still being written — after waiting for them, up to
//! `--debounce`, when the reload is explicit (an operator's SIGHUP or
//! `hotconf reload` must not publish a file a writer is still producing,
//! SPEC §2).
//!
//! It judges nothing (that is [`super::judge`]) and decides nothing about
//! what is served (that is [`super::plan`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::observe::logging;
use crate::pipeline::document;
use crate::pipeline::rejection::{Code, Rejection};
use crate::pipeline::schema::{Schema, SchemaCache};
use crate::pipeline::{self, Limits};
use crate::store::snapshot::ServedDocument;
use crate::watch::Unsettled;

/// How many times one reload reads the document set while files keep
/// being replaced under it, before it settles for the last read.
const MAX_SCANS: u32 = 5;

/// How long an implicit reload waits for the watcher to catch up with the
/// events before its reads ended (normally tens of microseconds); past it
/// the reads are set aside, never trusted.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a verdict depends on: the document's bytes and its schema closure
/// (or why either could not be had).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Key {
    /// SHA-256 of the bytes, or why they could not be read.
    pub(super) doc: Result<String, Rejection>,
    /// SHA-256 of the schema closure, or why it could not be loaded.
    pub(super) schema: Result<String, Rejection>,
}

impl Key {
    /// The key of what is served.
    pub(super) fn of_served(d: &ServedDocument) -> Key {
        Key {
            doc: Ok(d.sha256.clone()),
            schema: Ok(d.schema_sha256.clone()),
        }
    }
}

/// One listed document as read.
pub(super) struct Scanned {
    /// Where it was listed.
    pub(super) path: PathBuf,
    /// The file as the operator sees it in messages.
    pub(super) label: String,
    /// Its bytes, or why they could not be read.
    pub(super) bytes: Result<Vec<u8>, Rejection>,
    /// Its schema, or why it could not be loaded.
    pub(super) schema: Result<Arc<Schema>, Rejection>,
    /// Both hashes, for comparison.
    pub(super) key: Key,
}

/// Where a scan reads and what it may skip.
pub(super) struct Sources<'a> {
    /// Directory of `NAME.toml` documents.
    pub(super) config_dir: &'a Path,
    /// Directory of `NAME.schema.json` schemas.
    pub(super) schema_dir: &'a Path,
    /// Limits applied to every document read.
    pub(super) limits: &'a Limits,
    /// Files still being written (skipped; explicit scans wait first).
    pub(super) unsettled: &'a Unsettled,
    /// Whether a schema closure whose files all `stat` as when last read
    /// may be reused unread (watch reloads; the poll and explicit reloads
    /// re-read and hash everything).
    pub(super) trust_schema_stat: bool,
    /// How long an explicit scan waits for files still being written.
    pub(super) debounce: Duration,
}

/// What one scan found.
#[derive(Default)]
pub(super) struct Scan {
    /// Every listed document (name → path).
    pub(super) listing: BTreeMap<String, PathBuf>,
    /// Whether the listing may remove documents: explicit, and the
    /// directory could be listed (an unreadable directory never removes
    /// anything: it is more likely a mount or permission problem than an
    /// operator's decision).
    pub(super) authoritative: bool,
    /// The documents read, in listing order.
    pub(super) read: Vec<(String, Scanned)>,
    /// Listed documents found present (read, even if then left out as
    /// unsettled): whatever absence was being timed for them is over.
    pub(super) present: BTreeSet<String>,
    /// Listed documents left out because they are still being written.
    pub(super) skipped: HashSet<String>,
    /// Listed documents deleted between listing and reading.
    pub(super) vanished: Vec<String>,
    /// Explicit scans: documents found still being written that settled
    /// while the scan waited, and were then read complete.
    pub(super) waited: Vec<String>,
}

/// Reads one listed document and its schema.
fn read_one(sources: &Sources<'_>, schemas: &mut SchemaCache, name: &str, path: &Path) -> Scanned {
    let label = pipeline::display_path(path);
    let loaded = if sources.trust_schema_stat {
        schemas.load_trusting_stat(sources.schema_dir, name)
    } else {
        schemas.load(sources.schema_dir, name)
    };
    let schema = loaded.map_err(|mut r| {
        if r.code == Code::NoSchema {
            // As `check` says it: on the document, which lacks something.
            r.file = label.clone();
        }
        r
    });
    let bytes = pipeline::read_document(path, sources.limits, &label);
    let key = Key {
        doc: match &bytes {
            Ok(b) => Ok(document::sha256_hex(b)),
            Err(r) => Err(r.clone()),
        },
        schema: match &schema {
            Ok(s) => Ok(s.sha256.clone()),
            Err(r) => Err(r.clone()),
        },
    };
    Scanned {
        path: path.to_path_buf(),
        label,
        bytes,
        schema,
        key,
    }
}

/// Lists and reads the document set, leaving out files still being
/// written (with the watcher's barrier). An explicit scan first waits, up
/// to `--debounce`, for such files to settle and reads the set again; what
/// is still being written then is left out (`skipped`): the watcher's
/// signal when it settles brings the follow-up reload.
pub(super) fn scan(sources: &Sources<'_>, schemas: &mut SchemaCache, explicit: bool) -> Scan {
    if !explicit {
        return scan_once(sources, schemas, false);
    }
    let deadline = std::time::Instant::now() + sources.debounce;
    let mut waited: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut found = scan_once(sources, schemas, true);
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if found.skipped.is_empty() || remaining.is_zero() {
            found.waited = waited
                .into_iter()
                .filter(|n| !found.skipped.contains(n))
                .collect();
            return found;
        }
        let paths: Vec<PathBuf> = found
            .skipped
            .iter()
            .filter_map(|n| found.listing.get(n).cloned())
            .collect();
        waited.extend(found.skipped.iter().cloned());
        sources.unsettled.wait_settled(&paths, remaining);
    }
}

/// One pass of [`scan`]: list, read, leave out unsettled files.
fn scan_once(sources: &Sources<'_>, schemas: &mut SchemaCache, explicit: bool) -> Scan {
    // Files still being written are left out; the barrier that makes that
    // exact starts before the listing opens the directory.
    let ticket = sources.unsettled.ticket(sources.config_dir);
    let (listing, authoritative, listing_ok) = match pipeline::list_documents(sources.config_dir) {
        Ok(listing) => (listing, explicit, true),
        Err(e) => {
            logging::config_dir_unreadable(sources.config_dir, &e, explicit);
            (BTreeMap::new(), false, false)
        }
    };

    // Schemas of documents that are gone need not stay compiled.
    let listed: HashSet<String> = listing.keys().cloned().collect();
    schemas.retain(&listed);

    // If a file was replaced while the set was being read (a ConfigMap
    // `..data` swap, a rename-save, a shared schema rewritten), the reads
    // may mix before and after: read the set again, so a reload never sees
    // a mix that never existed.
    let mut scans = 0u32;
    let mut scan = loop {
        let before = identities(&listing, sources.schema_dir);
        let mut scan = Scan::default();
        for (name, path) in &listing {
            if sources.unsettled.contains(path) {
                scan.skipped.insert(name.clone());
                continue;
            }
            let s = read_one(sources, schemas, name, path);
            if s.bytes.as_ref().is_err_and(|r| r.code == Code::Io)
                && std::fs::symlink_metadata(path).is_err()
            {
                // Deleted between listing and reading: absent, not broken.
                scan.vanished.push(name.clone());
                continue;
            }
            scan.present.insert(name.clone());
            scan.read.push((name.clone(), s));
        }
        scans = scans.saturating_add(1);
        if scans >= MAX_SCANS || identities(&listing, sources.schema_dir) == before {
            break scan;
        }
    };

    // The barrier: once the watcher has caught up with every event before
    // the end of the reads, a file it now knows to be mid-write was read
    // mid-write: skip it like any unsettled file.
    if let Some(ticket) = ticket.filter(|_| listing_ok) {
        let unsettled = sources.unsettled;
        if unsettled.catch_up(sources.config_dir, ticket, CATCH_UP_TIMEOUT) {
            let skipped = &mut scan.skipped;
            scan.read.retain(|(name, s)| {
                if !unsettled.contains(&s.path) {
                    return true;
                }
                skipped.insert(name.clone());
                false
            });
        } else if unsettled.ticket(sources.config_dir).is_some() {
            // Still watched, but the watcher did not catch up in time (a
            // starved thread on a loaded machine): nothing read can be shown
            // complete, so nothing read is trusted. The watcher's signals
            // for the events it has yet to process, or the poll, bring the
            // follow-up reload.
            tracing::warn!(
                event = "barrier_timeout",
                dir = %sources.config_dir.display(),
                "the file watcher is behind; this reload's reads are set aside"
            );
            let skipped = &mut scan.skipped;
            for (name, _) in scan.read.drain(..) {
                skipped.insert(name);
            }
        }
    }
    scan.listing = listing;
    scan.authoritative = authoritative;
    scan
}

/// What each listed file is (device, inode; symlinks followed): a change
/// means it was replaced.
fn identities(listing: &BTreeMap<String, PathBuf>, schema_dir: &Path) -> Identities {
    use std::os::unix::fs::MetadataExt;
    let documents = listing
        .values()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        .collect();
    // Schema files are shared by many documents and each document's
    // closure is read separately, so a swap or an in-place rewrite of a
    // shared file in the middle of the reads must be noticed too: identity
    // plus size and modification time, for every file of the directory.
    let mut schemas: Vec<SchemaIdentity> = std::fs::read_dir(schema_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let meta = std::fs::metadata(e.path())
                        .ok()
                        .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
                    (e.file_name(), meta)
                })
                .collect()
        })
        .unwrap_or_default();
    schemas.sort();
    Identities { documents, schemas }
}

/// One schema directory entry's name and (dev, inode, size, mtime s, ns).
type SchemaIdentity = (std::ffi::OsString, Option<(u64, u64, u64, i64, i64)>);

/// What must not change while a reload reads its inputs.
#[derive(Debug, PartialEq, Eq)]
struct Identities {
    /// Each listed document's (device, inode), in listing order.
    documents: Vec<Option<(u64, u64)>>,
    /// Every schema directory entry, sorted by name.
    schemas: Vec<SchemaIdentity>,
}
