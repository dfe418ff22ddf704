//! The state directory (`--state-dir`, SPEC §7): the last good snapshot,
//! persisted after every publish and restored at startup, so that a restart
//! with a broken file on disk still serves the last good configuration and
//! generations continue.
//!
//! What is persisted, for every served document: the exact source bytes
//! that were accepted, the exact bytes of every file of its schema closure
//! as they were when it was accepted, its generation, `loaded_at`, source
//! path and hashes; and the snapshot's generation and publish time. On disk:
//!
//! ```text
//! STATE_DIR/state.json      the manifest: JSON, with a checksum of its body
//! STATE_DIR/blobs/SHA256    content-addressed bytes (documents, schema files)
//! STATE_DIR/lock            flock'd by the daemon that owns the directory
//! ```
//!
//! Writes are crash-safe: each file is written to a temp file, fsynced,
//! renamed into place, and its directory fsynced; blobs before the manifest
//! that names them, so a manifest on disk only ever names blobs that are
//! there. Blobs no manifest names are deleted after the manifest is in
//! place. Files are created 0600 and directories 0700: documents may hold
//! secrets.
//!
//! Restoring treats every byte as untrusted: size caps, names and hashes
//! checked before use, every checksum verified, and every document re-parsed
//! and re-validated against its persisted schema by the same pipeline as a
//! reload (so what is restored is exactly what a reload would have built).
//! Any problem makes the whole state ignored with a WARN (`state_ignored`):
//! a part of a snapshot is never served. A state written for another config
//! or schema directory is ignored too.
//!
//! Who does what: [`Persister::open`] runs once at startup, before the
//! store exists, and its snapshot seeds the store (`Store::with_snapshot`);
//! the startup reload then compares the files on disk with it as with any
//! served snapshot. From then on the reloader owns the `Persister`: it
//! hands over the bytes of each accepted document ([`Persister::accepted`])
//! and calls [`Persister::persist`] after each publish, before the reload
//! counts as finished. Nothing here decides what is served, and a failed
//! persist never unpublishes anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::observe::logging;
use crate::pipeline::document;
use crate::pipeline::schema::Schema;
use crate::pipeline::{self, Limits};
use crate::store::snapshot::Snapshot;
use crate::store::status::PersistStatus;

/// The manifest's file name inside the state directory.
pub const MANIFEST: &str = "state.json";

/// The directory of content-addressed blobs inside the state directory.
pub const BLOBS: &str = "blobs";

/// The lock file inside the state directory.
const LOCK: &str = "lock";

/// The manifest's format tag; anything else is not restored.
const FORMAT: &str = "hotconf-state/1";

/// A manifest larger than this is not read (it names blobs; it holds no
/// content, so even thousands of documents stay far below).
const MAX_MANIFEST_SIZE: u64 = 16 * 1024 * 1024;

/// A manifest naming more documents than this is not restored.
const MAX_DOCUMENTS: usize = 10_000;

/// A document whose persisted schema closure has more files than this is
/// not restored (the schema loader refuses larger closures too).
const MAX_SCHEMA_FILES: usize = 256;

/// Schema files are capped as the schema loader caps them.
const MAX_SCHEMA_FILE_SIZE: u64 = document::DEFAULT_MAX_FILE_SIZE;

/// All blobs of one restore together may not exceed this.
const MAX_TOTAL_SIZE: u64 = 1024 * 1024 * 1024;

/// The manifest file: a format tag, the body, and the SHA-256 of the
/// body's compact JSON text (so any flipped byte is caught).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// Always [`FORMAT`].
    format: String,
    /// Lower-case hex SHA-256 of `serde_json::to_vec(&body)`.
    checksum: String,
    /// A [`Body`], kept as a `Value` so the checksum is computed over
    /// exactly what was parsed.
    body: Value,
}

/// What the manifest says.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The snapshot generation.
    generation: u64,
    /// When that snapshot was published, nanoseconds since the epoch.
    published_at_ns: u64,
    /// The canonical config directory it was written for.
    config_dir: String,
    /// The canonical schema directory it was written for.
    schema_dir: String,
    /// The served documents by name.
    documents: BTreeMap<String, DocEntry>,
}

/// One served document in the manifest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocEntry {
    /// The snapshot generation in which it last changed.
    generation: u64,
    /// When that version was loaded, nanoseconds since the epoch.
    loaded_at_ns: u64,
    /// The file it was read from.
    source: String,
    /// SHA-256 of its source bytes: also the name of their blob.
    sha256: String,
    /// SHA-256 of its schema closure (as `Schema::sha256` computes it).
    schema_sha256: String,
    /// The closure's files, the schema itself first.
    schema: Vec<FileEntry>,
}

/// One schema closure file in the manifest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    /// Path relative to the schema directory.
    path: String,
    /// SHA-256 of its bytes: also the name of their blob.
    sha256: String,
}

/// The exact inputs a served document was accepted with.
#[derive(Clone)]
struct Accepted {
    /// SHA-256 of `bytes`.
    sha256: String,
    /// The document's source bytes.
    bytes: Arc<[u8]>,
    /// The schema closure's hash.
    schema_sha256: String,
    /// The closure's files: (relative path, SHA-256, bytes), root first.
    schema: Vec<(String, String, Arc<[u8]>)>,
}

/// Writes the last good snapshot to the state directory and reads it back
/// at startup. See the module docs for the layout and the guarantees.
///
/// Holds in memory the accepted bytes of every served document (the
/// snapshot holds only parsed values), so that any later persist can write
/// the complete state even if an earlier one failed.
pub struct Persister {
    /// The state directory.
    dir: PathBuf,
    /// Canonical config directory: a state written for another is ignored.
    config_dir: String,
    /// Canonical schema directory, likewise.
    schema_dir: String,
    /// Accepted inputs of the served documents, by name.
    sources: BTreeMap<String, Accepted>,
    /// Blobs known to be on disk intact (verified or written by us): not
    /// written again.
    on_disk: HashSet<String>,
    /// Held while this process owns the directory (`flock`); `Err` says why
    /// it could not be had, and then nothing is written.
    lock: Result<Arc<File>, String>,
    /// What `/v1/status` says about the state directory.
    status: PersistStatus,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("dir", &self.dir)
            .field("documents", &self.sources.len())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Persister {
    /// Opens the state directory `dir` (creating it 0700 if needed), takes
    /// its lock, and restores the persisted snapshot if there is a valid
    /// one for these config and schema directories. Never fails: an
    /// unusable directory is logged (ERROR `persist_failed`) and every later
    /// persist reports it; an absent state is logged (INFO `state_absent`);
    /// a corrupt, partial or foreign state is ignored (WARN
    /// `state_ignored`). `limits` caps each persisted document as a reload
    /// caps files.
    pub fn open(
        dir: &Path,
        config_dir: &Path,
        schema_dir: &Path,
        limits: Limits,
    ) -> (Persister, Option<Snapshot>) {
        let lock = create_private_dir(dir).and_then(|()| lock(dir));
        if let Err(e) = &lock {
            logging::persist_failed(dir, None, e);
        }
        let mut persister = Persister {
            dir: dir.to_path_buf(),
            config_dir: identity(config_dir),
            schema_dir: identity(schema_dir),
            sources: BTreeMap::new(),
            on_disk: HashSet::new(),
            status: PersistStatus {
                dir: dir.to_path_buf(),
                last_error: lock.as_ref().err().map(|e| (e.clone(), SystemTime::now())),
                ..PersistStatus::default()
            },
            lock: lock.map(Arc::new),
        };
        match persister.restore(schema_dir, limits) {
            Ok(None) => {
                logging::state_absent(dir);
                (persister, None)
            }
            Ok(Some(snapshot)) => {
                let names: Vec<String> = snapshot.documents.keys().cloned().collect();
                logging::state_restored(dir, snapshot.generation, &names);
                persister.status.restored_generation = Some(snapshot.generation);
                persister.status.persisted_generation = Some(snapshot.generation);
                (persister, Some(snapshot))
            }
            Err(reason) => {
                logging::state_ignored(dir, &reason);
                (persister, None)
            }
        }
    }

    /// Remembers the exact inputs `name` was accepted with: its source
    /// `bytes` and its `schema` (whose closure files it keeps). Called by
    /// the reloader for each document it publishes.
    pub fn accepted(&mut self, name: &str, bytes: &[u8], schema: &Schema) {
        let files = schema
            .sources()
            .map(|(rel, b)| (rel.to_string(), document::sha256_hex(b), Arc::from(b)))
            .collect();
        self.sources.insert(
            name.to_string(),
            Accepted {
                sha256: document::sha256_hex(bytes),
                bytes: Arc::from(bytes),
                schema_sha256: schema.sha256.clone(),
                schema: files,
            },
        );
    }

    /// Persists `snapshot` unless it is already what the state directory
    /// holds (or is generation 0: nothing was ever published). Returns
    /// `None` when there was nothing to do, else whether it worked; the
    /// result is also in [`Persister::status`] and in the logs (ERROR
    /// `persist_failed`, DEBUG `state_persisted`). A failure is retried by
    /// the next call, so a reload after the disk has been freed repairs it.
    pub fn persist(&mut self, snapshot: &Snapshot) -> Option<Result<(), String>> {
        if snapshot.generation == 0 || self.status.persisted_generation == Some(snapshot.generation)
        {
            return None;
        }
        let result = self.write(snapshot);
        match &result {
            Ok(()) => {
                self.status.persisted_generation = Some(snapshot.generation);
                self.status.last_error = None;
                logging::state_persisted(&self.dir, snapshot.generation);
            }
            Err(e) => {
                self.status.last_error = Some((e.clone(), SystemTime::now()));
                logging::persist_failed(&self.dir, Some(snapshot.generation), e);
            }
        }
        Some(result)
    }

    /// Why the state directory cannot be used, when another process holds
    /// its lock (naming that process's pid when known): `hotconf run`
    /// refuses to start then, since two daemons would overwrite each other.
    pub fn in_use(&self) -> Option<&str> {
        self.lock
            .as_ref()
            .err()
            .map(String::as_str)
            .filter(|e| e.starts_with(IN_USE))
    }

    /// Whether [`Persister::open`] restored a snapshot (the store started
    /// from it).
    pub fn restored(&self) -> bool {
        self.status.restored_generation.is_some()
    }

    /// What `/v1/status` shows about the state directory.
    pub fn status(&self) -> PersistStatus {
        self.status.clone()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes blobs, then the manifest, then deletes unreferenced blobs.
    fn write(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        if let Err(e) = &self.lock {
            return Err(e.clone());
        }
        // Only what is served is kept in memory and on disk.
        self.sources
            .retain(|name, _| snapshot.documents.contains_key(name));
        let blobs_dir = self.dir.join(BLOBS);
        create_private_dir(&blobs_dir)?;
        // Never chmod or write through a symlink planted as `blobs`.
        match std::fs::symlink_metadata(&blobs_dir) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => return Err(format!("{} is not a directory", blobs_dir.display())),
        }
        // Blob names are source hashes, which would let whoever can list
        // them test guesses of a weak secret: ours, and private, even if
        // something made the directory looser.
        std::fs::set_permissions(&blobs_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", blobs_dir.display()))?;

        let mut documents = BTreeMap::new();
        let mut wanted: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
        for (name, doc) in &snapshot.documents {
            let Some(src) = self
                .sources
                .get(name)
                .filter(|s| s.sha256 == doc.sha256 && s.schema_sha256 == doc.schema_sha256)
            else {
                // The reloader hands over every accepted document; this
                // would be a bug, and a partial state must not be written.
                return Err(format!(
                    "the accepted bytes of document {name:?} are not known; nothing written"
                ));
            };
            wanted.insert(src.sha256.clone(), src.bytes.clone());
            for (_, sha, bytes) in &src.schema {
                wanted.insert(sha.clone(), bytes.clone());
            }
            documents.insert(
                name.clone(),
                DocEntry {
                    generation: doc.generation,
                    loaded_at_ns: to_ns(doc.loaded_at),
                    source: doc.source.to_string_lossy().into_owned(),
                    sha256: src.sha256.clone(),
                    schema_sha256: src.schema_sha256.clone(),
                    schema: src
                        .schema
                        .iter()
                        .map(|(path, sha, _)| FileEntry {
                            path: path.clone(),
                            sha256: sha.clone(),
                        })
                        .collect(),
                },
            );
        }

        let mut wrote_blob = false;
        for (sha, bytes) in &wanted {
            // Written or verified earlier and still there: content-addressed,
            // so the same name is the same bytes.
            if self.on_disk.contains(sha) && blobs_dir.join(sha).is_file() {
                continue;
            }
            write_file(&blobs_dir, sha, bytes)?;
            wrote_blob = true;
        }
        if wrote_blob {
            sync_dir(&blobs_dir)?;
        }
        self.on_disk.extend(wanted.keys().cloned());

        let body = Body {
            generation: snapshot.generation,
            published_at_ns: to_ns(snapshot.published_at),
            config_dir: self.config_dir.clone(),
            schema_dir: self.schema_dir.clone(),
            documents,
        };
        let body = serde_json::to_value(&body).map_err(|e| format!("manifest: {e}"))?;
        let checksum = checksum(&body)?;
        let manifest = Manifest {
            format: FORMAT.to_string(),
            checksum,
            body,
        };
        let mut text =
            serde_json::to_vec_pretty(&manifest).map_err(|e| format!("manifest: {e}"))?;
        text.push(b'\n');
        write_file(&self.dir, MANIFEST, &text)?;
        sync_dir(&self.dir)?;

        // The manifest no longer names anything else: garbage.
        self.collect_garbage(&blobs_dir, &wanted);
        Ok(())
    }

    /// Deletes blobs not in `wanted` and temp files a crash left behind.
    /// Best effort: a leftover blob costs only space.
    fn collect_garbage(&mut self, blobs_dir: &Path, wanted: &BTreeMap<String, Arc<[u8]>>) {
        let Ok(entries) = std::fs::read_dir(blobs_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let stale_temp = name.starts_with('.') && name.ends_with(".tmp");
            let garbage = (is_sha256(name) && !wanted.contains_key(name)) || stale_temp;
            if garbage && std::fs::remove_file(entry.path()).is_ok() {
                self.on_disk.remove(name);
            }
        }
    }

    /// Reads and verifies the persisted snapshot. `Ok(None)`: there is none.
    /// `Err`: why it is not usable (it is then ignored as a whole).
    fn restore(&mut self, schema_dir: &Path, limits: Limits) -> Result<Option<Snapshot>, String> {
        let path = self.dir.join(MANIFEST);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            _ => {}
        }
        regular_file(&path, MANIFEST)?;
        let raw =
            document::read_capped(&path, MAX_MANIFEST_SIZE, MANIFEST).map_err(|r| r.summary())?;
        let manifest: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| format!("{MANIFEST} is not a hotconf state manifest: {e}"))?;
        if manifest.format != FORMAT {
            return Err(format!(
                "{MANIFEST} has format {:?}, not {FORMAT:?}",
                manifest.format
            ));
        }
        if checksum(&manifest.body)? != manifest.checksum {
            return Err(format!(
                "{MANIFEST} is corrupt: its checksum does not match"
            ));
        }
        let body: Body = serde_json::from_value(manifest.body)
            .map_err(|e| format!("{MANIFEST} is not a hotconf state manifest: {e}"))?;
        if body.config_dir != self.config_dir || body.schema_dir != self.schema_dir {
            return Err(format!(
                "it was written for --config-dir {} and --schema-dir {}, not {} and {}",
                body.config_dir, body.schema_dir, self.config_dir, self.schema_dir
            ));
        }
        if body.generation == 0 {
            return Err(format!("{MANIFEST} names generation 0"));
        }
        if body.generation > MAX_GENERATION {
            return Err(format!(
                "{MANIFEST} names generation {}, beyond any a daemon reaches \
                 ({MAX_GENERATION}): forged or corrupt",
                body.generation
            ));
        }
        if body.documents.len() > MAX_DOCUMENTS {
            return Err(format!(
                "{MANIFEST} names more than {MAX_DOCUMENTS} documents"
            ));
        }

        let mut blobs = Blobs {
            dir: self.dir.join(BLOBS),
            read: HashMap::new(),
            total: 0,
        };
        let mut documents = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for (name, entry) in body.documents {
            let file_name = format!("{name}.toml");
            if document::document_name(OsStr::new(&file_name)) != Some(name.as_str()) {
                return Err(format!(
                    "{MANIFEST} names a document {name:?}, which is not a document name"
                ));
            }
            if entry.generation == 0 || entry.generation > body.generation {
                return Err(format!(
                    "document {name}: generation {} is not within 1..={}",
                    entry.generation, body.generation
                ));
            }
            if entry.schema.is_empty() || entry.schema.len() > MAX_SCHEMA_FILES {
                return Err(format!(
                    "document {name}: {} schema files (1..={MAX_SCHEMA_FILES} expected)",
                    entry.schema.len()
                ));
            }
            let bytes = blobs.read(&entry.sha256, limits.max_file_size)?;
            let mut closure = Vec::with_capacity(entry.schema.len());
            let mut files = Vec::with_capacity(entry.schema.len());
            for f in &entry.schema {
                let b = blobs.read(&f.sha256, MAX_SCHEMA_FILE_SIZE)?;
                closure.push((f.path.clone(), b.to_vec()));
                files.push((f.path.clone(), f.sha256.clone(), b));
            }
            let schema = Schema::from_sources(schema_dir, &name, closure).map_err(|r| {
                format!(
                    "document {name}: its persisted schema is not usable: {}",
                    r.summary()
                )
            })?;
            if schema.sha256 != entry.schema_sha256 {
                return Err(format!(
                    "document {name}: its persisted schema's checksum does not match"
                ));
            }
            let source = PathBuf::from(&entry.source);
            let label = pipeline::display_path(&source);
            // The same verdict a reload gives, from the same bytes: what was
            // accepted then is accepted now, or the state is not used.
            let parsed = pipeline::evaluate(&label, &bytes, &schema).map_err(|r| {
                format!(
                    "document {name}: its persisted version does not pass its persisted schema: {}",
                    r.summary()
                )
            })?;
            let mut doc =
                crate::store::served_document(&source, &bytes, parsed.value, &schema, None);
            doc.generation = entry.generation;
            doc.loaded_at = from_ns(entry.loaded_at_ns);
            documents.insert(name.clone(), Arc::new(doc));
            sources.insert(
                name,
                Accepted {
                    sha256: entry.sha256,
                    bytes,
                    schema_sha256: entry.schema_sha256,
                    schema: files,
                },
            );
        }
        self.sources = sources;
        self.on_disk = blobs.read.into_keys().collect();
        Ok(Some(Snapshot {
            generation: body.generation,
            published_at: from_ns(body.published_at_ns),
            documents,
        }))
    }
}

/// Blobs read during one restore: each verified once, their total capped.
struct Blobs {
    /// `STATE_DIR/blobs`.
    dir: PathBuf,
    /// Verified blobs by SHA-256.
    read: HashMap<String, Arc<[u8]>>,
    /// Bytes read so far.
    total: u64,
}

impl Blobs {
    /// The blob named `sha256`, at most `max` bytes, verified against its
    /// name. The name is checked first: it becomes a path.
    fn read(&mut self, sha256: &str, max: u64) -> Result<Arc<[u8]>, String> {
        if !is_sha256(sha256) {
            return Err(format!(
                "{MANIFEST} names a blob {sha256:?}, which is not a SHA-256"
            ));
        }
        if let Some(b) = self.read.get(sha256) {
            return Ok(b.clone());
        }
        let label = format!("{BLOBS}/{sha256}");
        regular_file(&self.dir.join(sha256), &label)?;
        let bytes =
            document::read_capped(&self.dir.join(sha256), max, &label).map_err(|r| r.summary())?;
        if document::sha256_hex(&bytes) != sha256 {
            return Err(format!("{label} is corrupt: its checksum does not match"));
        }
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.total = self.total.saturating_add(size);
        if self.total > MAX_TOTAL_SIZE {
            return Err(format!("the state is larger than {MAX_TOTAL_SIZE} bytes"));
        }
        let bytes: Arc<[u8]> = Arc::from(bytes);
        self.read.insert(sha256.to_string(), bytes.clone());
        Ok(bytes)
    }
}

/// SHA-256 of a manifest body's compact JSON text.
fn checksum(body: &Value) -> Result<String, String> {
    let text = serde_json::to_vec(body).map_err(|e| format!("manifest: {e}"))?;
    Ok(document::sha256_hex(&text))
}

/// Whether `s` is 64 lower-case hex digits (a blob name; safe as a path).
fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A directory as the manifest records it: canonical when it can be.
fn identity(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Nanoseconds since the epoch (0 for a clock before 1970 or after 2554).
fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// The time `ns` nanoseconds after the epoch.
fn from_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_nanos(ns))
        .unwrap_or(UNIX_EPOCH)
}

/// The highest snapshot generation a state may name. Generations count
/// publishes one by one from 1; 2^53 − 1 (the largest integer every JSON
/// client reads exactly) is more than a publish per microsecond for 285
/// years, so a state beyond it was forged or corrupted — and served, it
/// would leave no room to count on (blocking queries would never see a
/// next generation).
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

/// Why a state directory is not safe to use: it must be a directory owned
/// by the daemon's uid, writable by nobody else, and hold no symlink where
/// hotconf keeps its files (`lock`, `blobs`, the manifest). Anything else
/// would let another user forge the served state or redirect the daemon's
/// writes; `hotconf run` refuses to start on it (exit 1).
pub fn check_state_dir(dir: &Path) -> Result<(), String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        // Created by `Persister::open`, 0700, ours.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect --state-dir {}: {e}", dir.display())),
    };
    let own = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(format!("--state-dir {} is not a directory", dir.display()));
    }
    if meta.uid() != own {
        return Err(format!(
            "--state-dir {} is owned by uid {}, not by the daemon's uid {own}: \
             another user could forge the state it serves (use systemd's StateDirectory= \
             or chown it)",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "--state-dir {} is writable by other users (mode {:04o}): they could forge \
             the state it serves (chmod 0700 it)",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    for name in [LOCK, BLOBS, MANIFEST] {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink; hotconf never follows one in its state directory \
                     (remove it)",
                    path.display()
                ))
            }
            Ok(m) if m.uid() != own => {
                return Err(format!(
                    "{} is owned by uid {}, not by the daemon's uid {own} (remove it)",
                    path.display(),
                    m.uid()
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fails unless `path` is a regular file (not a symlink): what restore
/// reads from the state directory.
fn regular_file(path: &Path, label: &str) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(_) => Err(format!("{label} is not a regular file")),
        Err(e) => Err(format!("cannot read {label}: {e}")),
    }
}

/// Creates `dir` (and its parents) 0700 if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Takes the exclusive lock of the state directory, so that two daemons
/// never write (and garbage-collect) the same one.
fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        // A symlink planted as `lock` must not make us create a file elsewhere.
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        // The holder wrote its pid there (best effort: it may be mid-write).
        let holder = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .map(|pid| format!("pid {pid}"))
            .unwrap_or_else(|| e.to_string());
        return Err(format!(
            "{IN_USE} {} is in use by another hotconf ({holder})",
            dir.display()
        ));
    }
    // Who holds it, for the message of a second daemon.
    let mut f = &file;
    let _ = f
        .set_len(0)
        .and_then(|()| writeln!(f, "{}", std::process::id()));
    Ok(file)
}

/// Starts the message of a lock held by another process (see
/// [`Persister::in_use`]).
const IN_USE: &str = "the state directory";

/// Writes `dir/name` atomically: a temp file in `dir`, written, fsynced,
/// renamed over `name`. The caller fsyncs `dir` (once for many files).
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    // A leftover of a crash (perhaps with other permissions) goes first.
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| format!("cannot write {}: {e}", target.display()))
}

/// fsyncs a directory, making the renames into it durable.
fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::schema::SchemaCache;

    /// A temp dir with `configs/`, `schemas/` (one schema: `port`) and the
    /// path of a state dir.
    struct Fixture {
        dir: tempfile::TempDir,
        schemas: SchemaCache,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(dir.path().join("configs")).expect("configs");
            std::fs::create_dir(dir.path().join("schemas")).expect("schemas");
            let f = Fixture {
                dir,
                schemas: SchemaCache::new(),
            };
            f.schema(
                "app",
                r#"{"type":"object","properties":{"port":{"$ref":"defs.json#/port"}}}"#,
            );
            f.schema_file("defs.json", r#"{"port":{"type":"integer"}}"#);
            f
        }

        fn configs(&self) -> PathBuf {
            self.dir.path().join("configs")
        }

        fn schema_dir(&self) -> PathBuf {
            self.dir.path().join("schemas")
        }

        fn state(&self) -> PathBuf {
            self.dir.path().join("state")
        }

        fn schema(&self, name: &str, text: &str) {
            self.schema_file(&format!("{name}.schema.json"), text);
        }

        fn schema_file(&self, file: &str, text: &str) {
            std::fs::write(self.schema_dir().join(file), text).expect("write schema");
        }

        fn open(&self) -> (Persister, Option<Snapshot>) {
            Persister::open(
                &self.state(),
                &self.configs(),
                &self.schema_dir(),
                Limits::default(),
            )
        }

        /// Accepts `text` as document `name` into `p` and returns the
        /// snapshot `previous` + it at generation `generation`.
        fn accept(
            &mut self,
            p: &mut Persister,
            previous: &Snapshot,
            name: &str,
            text: &str,
            generation: u64,
        ) -> Snapshot {
            let schema = self
                .schemas
                .load(&self.schema_dir(), name)
                .expect("schema loads");
            let source = self.configs().join(format!("{name}.toml"));
            let parsed = pipeline::evaluate(name, text.as_bytes(), &schema).expect("valid");
            let mut doc = crate::store::served_document(
                &source,
                text.as_bytes(),
                parsed.value,
                &schema,
                None,
            );
            doc.generation = generation;
            p.accepted(name, text.as_bytes(), &schema);
            let mut documents = previous.documents.clone();
            documents.insert(name.to_string(), Arc::new(doc));
            Snapshot {
                generation,
                published_at: SystemTime::now(),
                documents,
            }
        }

        fn blobs(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.state().join(BLOBS))
                .expect("blobs dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    /// Persists `app` with `port = 1` at generation 3; returns the snapshot.
    fn persisted_app(f: &mut Fixture) -> Snapshot {
        let (mut p, restored) = f.open();
        assert!(restored.is_none());
        let snap = f.accept(&mut p, &Snapshot::empty(), "app", "port = 1\n", 3);
        assert_eq!(p.persist(&snap), Some(Ok(())));
        assert_eq!(p.status().persisted_generation, Some(3));
        snap
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A leftover temp file of a crash, even a read-only one, is no obstacle.
        let stale = dir.path().join(".x.tmp");
        std::fs::write(&stale, b"half").expect("stale");
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        write_file(dir.path(), "x", b"first").expect("write");
        write_file(dir.path(), "x", b"second").expect("overwrite");
        assert_eq!(
            std::fs::read(dir.path().join("x")).expect("read"),
            b"second"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")]);
        let mode = std::fs::metadata(dir.path().join("x"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "documents may hold secrets");
    }

    #[test]
    fn atomic_write_into_a_missing_directory_fails_without_panicking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write_file(&dir.path().join("nope"), "x", b"y").expect_err("fails");
        assert!(err.contains("cannot write"), "{err}");
    }

    #[test]
    fn a_persisted_snapshot_is_restored_exactly() {
        let mut f = Fixture::new();
        let snap = persisted_app(&mut f);
        let (p, restored) = f.open();
        let restored = restored.expect("restored");
        assert_eq!(restored.generation, 3);
        assert_eq!(restored.published_at, snap.published_at);
        let (a, b) = (&restored.documents["app"], &snap.documents["app"]);
        assert_eq!(a.value, b.value);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.schema_sha256, b.schema_sha256);
        assert_eq!(a.generation, 3);
        assert_eq!(a.loaded_at, b.loaded_at);
        assert_eq!(a.source, b.source);
        assert_eq!(p.status().restored_generation, Some(3));
        let mode = std::fs::metadata(f.state())
            .expect("state")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn the_restored_schema_is_the_persisted_one_not_the_one_on_disk() {
        let mut f = Fixture::new();
        persisted_app(&mut f);
        // Stricter now: `port = 1` would fail it. The persisted one is used.
        f.schema_file("defs.json", r#"{"port":{"type":"integer","minimum":100}}"#);
        let (_, restored) = f.open();
        let restored = restored.expect("restored");
        assert_eq!(restored.documents["app"].value["port"], 1);
    }

    #[test]
    fn a_flipped_byte_in_a_blob_makes_the_whole_state_ignored() {
        let mut f = Fixture::new();
        let snap = persisted_app(&mut f);
        let blob = f.state().join(BLOBS).join(&snap.documents["app"].sha256);
        let mut bytes = std::fs::read(&blob).expect("blob");
        bytes[0] ^= 0x01;
        std::fs::write(&blob, bytes).expect("write");
        let (mut p, restored) = f.open();
        assert!(restored.is_none());
        assert_eq!(p.status().restored_generation, None);
        // The next persist repairs the state (it writes everything again).
        let snap = f.accept(&mut p, &Snapshot::empty(), "app", "port = 1\n", 1);
        assert_eq!(p.persist(&snap), Some(Ok(())));
        assert!(f.open().1.is_some());
    }

    #[test]
    fn a_flipped_byte_in_a_schema_blob_makes_the_whole_state_ignored() {
        let mut f = Fixture::new();
        persisted_app(&mut f);
        let defs = document::sha256_hex(br#"{"port":{"type":"integer"}}"#);
        let blob = f.state().join(BLOBS).join(defs);
        std::fs::write(&blob, br#"{"port":{"type":"integer"}} "#).expect("write");
        assert!(f.open().1.is_none());
    }

    #[test]
    fn a_missing_blob_makes_the_whole_state_ignored() {
        let mut f = Fixture::new();
        let snap = persisted_app(&mut f);
        std::fs::remove_file(f.state().join(BLOBS).join(&snap.documents["app"].sha256))
            .expect("rm");
        assert!(f.open().1.is_none());
    }

    #[test]
    fn a_truncated_garbage_or_tampered_manifest_is_ignored() {
        let mut f = Fixture::new();
        persisted_app(&mut f);
        let manifest = f.state().join(MANIFEST);
        let good = std::fs::read_to_string(&manifest).expect("manifest");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("garbage", vec![0xff, 0x00, 0x7b, 0x22]),
            ("not an object", b"[1,2,3]".to_vec()),
            // Valid JSON, wrong content: the checksum catches it.
            (
                "tampered",
                good.replace("\"generation\": 3", "\"generation\": 4")
                    .into_bytes(),
            ),
            ("deep", "[".repeat(100_000).into_bytes()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&manifest, &bytes).expect("write");
            assert!(f.open().1.is_none(), "{what} manifest must be ignored");
        }
        std::fs::write(&manifest, &good).expect("restore");
        assert!(f.open().1.is_some(), "the original is fine");
    }

    #[test]
    fn a_manifest_naming_paths_outside_the_state_dir_is_ignored() {
        let mut f = Fixture::new();
        let snap = persisted_app(&mut f);
        let manifest = f.state().join(MANIFEST);
        let good = std::fs::read_to_string(&manifest).expect("manifest");
        let mut v: Value = serde_json::from_str(&good).expect("json");
        let sha = snap.documents["app"].sha256.clone();
        for bad in ["../../etc/passwd", "/etc/passwd", ""] {
            let mut body = v["body"].clone();
            body["documents"]["app"]["sha256"] = Value::String(bad.into());
            v["checksum"] = Value::String(checksum(&body).expect("checksum"));
            v["body"] = body;
            std::fs::write(&manifest, v.to_string()).expect("write");
            assert!(f.open().1.is_none(), "{bad:?}");
        }
        let mut body = v["body"].clone();
        body["documents"]["app"]["sha256"] = Value::String(sha);
        body["documents"]["app"]["schema"][0]["path"] = Value::String("../app.schema.json".into());
        v["checksum"] = Value::String(checksum(&body).expect("checksum"));
        v["body"] = body;
        std::fs::write(&manifest, v.to_string()).expect("write");
        assert!(f.open().1.is_none());
    }

    #[test]
    fn a_state_written_for_another_config_dir_is_ignored() {
        let mut f = Fixture::new();
        persisted_app(&mut f);
        let other = f.dir.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        let (_, restored) = Persister::open(&f.state(), &other, &f.schema_dir(), Limits::default());
        assert!(restored.is_none());
    }

    #[test]
    fn unreferenced_blobs_are_collected_and_unchanged_ones_kept() {
        let mut f = Fixture::new();
        let snap = persisted_app(&mut f);
        let (mut p, restored) = f.open();
        assert!(restored.is_some());
        std::fs::write(f.state().join(BLOBS).join(".leftover.tmp"), b"x").expect("tmp");
        let next = f.accept(&mut p, &snap, "app", "port = 2\n", 4);
        assert_eq!(p.persist(&next), Some(Ok(())));
        let mut expected = vec![
            document::sha256_hex(b"port = 2\n"),
            document::sha256_hex(br#"{"port":{"type":"integer"}}"#),
            document::sha256_hex(
                br#"{"type":"object","properties":{"port":{"$ref":"defs.json#/port"}}}"#,
            ),
        ];
        expected.sort();
        assert_eq!(f.blobs(), expected);
        // Already persisted: nothing to do.
        assert_eq!(p.persist(&next), None);
    }

    #[test]
    fn persisting_without_the_accepted_bytes_writes_nothing() {
        let mut f = Fixture::new();
        let snap = persisted_app(&mut f);
        let (mut p, _) = f.open();
        let mut doc = crate::store::snapshot::ServedDocument::clone(&snap.documents["app"]);
        doc.sha256 = "0".repeat(64);
        let mut documents = snap.documents.clone();
        documents.insert("app".into(), Arc::new(doc));
        let bogus = Snapshot {
            generation: 9,
            published_at: SystemTime::now(),
            documents,
        };
        let err = p.persist(&bogus).expect("attempted").expect_err("refused");
        assert!(err.contains("not known"), "{err}");
        assert!(p.status().last_error.is_some());
        assert_eq!(f.open().1.expect("old state intact").generation, 3);
    }

    #[test]
    fn an_unusable_state_dir_fails_without_panicking() {
        let mut f = Fixture::new();
        // A file where the state directory should be.
        std::fs::write(f.state(), b"not a dir").expect("file");
        let (mut p, restored) = f.open();
        assert!(restored.is_none());
        assert!(p.status().last_error.is_some());
        let snap = f.accept(&mut p, &Snapshot::empty(), "app", "port = 1\n", 1);
        assert!(matches!(p.persist(&snap), Some(Err(_))));
        assert_eq!(p.status().persisted_generation, None);
    }

    #[test]
    fn a_failed_persist_is_retried_by_the_next_call() {
        let mut f = Fixture::new();
        let (mut p, _) = f.open();
        // Something in the way of the blobs directory, as a full or broken
        // disk would be.
        std::fs::write(f.state().join(BLOBS), b"in the way").expect("file");
        let snap = f.accept(
            &mut p,
            &Snapshot::empty(),
            "app",
            "port = 1
",
            1,
        );
        assert!(matches!(p.persist(&snap), Some(Err(_))));
        assert!(p.status().last_error.is_some());
        std::fs::remove_file(f.state().join(BLOBS)).expect("rm");
        assert_eq!(p.persist(&snap), Some(Ok(())));
        assert!(p.status().last_error.is_none());
        assert_eq!(f.open().1.expect("restored").generation, 1);
    }

    #[test]
    fn a_second_owner_of_the_state_dir_writes_nothing() {
        let mut f = Fixture::new();
        let (_first, _) = f.open();
        let (mut second, _) = f.open();
        let snap = f.accept(&mut second, &Snapshot::empty(), "app", "port = 1\n", 1);
        let err = second
            .persist(&snap)
            .expect("attempted")
            .expect_err("locked");
        assert!(err.contains("in use"), "{err}");
    }
}
