//! Logs: the `tracing` subscriber of `hotconf run`, and every event of
//! SPEC §6 with its stable `event` field, in one place so their names and
//! fields stay consistent.
//!
//! Event names are part of the contract: `startup`, `reload_started`,
//! `document_accepted`, `document_rejected`, `document_missing`,
//! `document_removed`, `snapshot_published`, `reload_finished`, `shutdown`.
//! Lists of document names are logged as one comma-separated field.
//!
//! What this module does not do: decide anything. The reloader calls the
//! per-document functions as it decides; [`LogObserver`] logs the start and
//! end of each reload. Nothing here ever logs a document value: rejections
//! are printed through [`Rejection`], whose messages never hold secrets.

use std::path::Path;

use tracing::{debug, info, warn};

use crate::pipeline::display_path;
use crate::pipeline::rejection::Rejection;
use crate::store::snapshot::Snapshot;
use crate::store::status::ReloadObserver;
use crate::store::status::{ReloadOutcome, Status, Trigger};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (no ANSI colours unless stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// Text lines for the journal: each starts with its syslog priority
    /// (`<4>` for WARN, sd-daemon(3)) and carries no timestamp (journald
    /// stamps entries itself). Chosen by itself when stderr is the journal
    /// (`JOURNAL_STREAM`) and the format is text.
    Journald,
}

/// Whether stderr is connected to the journal: `JOURNAL_STREAM` (set by
/// systemd as `DEVICE:INODE`) names the same file as fd 2 (a child that
/// inherited the variable but not the stream is not).
#[cfg(feature = "daemon")]
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    st.st_dev == dev && st.st_ino == ino
}

#[cfg(feature = "daemon")]
/// Wraps an event format with the `<N>` syslog priority prefix that
/// journald reads from a stream (ERROR 3, WARN 4, INFO 6, DEBUG/TRACE 7).
struct Priority<F>(F);

#[cfg(feature = "daemon")]
impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The levels `--log-level` accepts, least to most verbose.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `--log-level` value: a level, or comma-separated `tracing`
/// directives where each one is a level or `TARGET=LEVEL`. A bare word that
/// is not a level is refused: `tracing` would read it as a target name and
/// silently log nothing at all (`verbose`, `debugg`).
#[cfg(feature = "daemon")]
pub fn parse_log_filter(value: &str) -> Result<String, String> {
    let valid = || {
        format!(
            "valid levels: {}; or directives such as info,hotconf=debug",
            LEVELS.join(", ")
        )
    };
    let is_level = |l: &str| LEVELS.iter().any(|v| v.eq_ignore_ascii_case(l.trim()));
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(format!("empty log level ({})", valid()));
    }
    for d in &directives {
        let level = match d.rsplit_once('=') {
            Some((_, level)) => level,
            None => d,
        };
        if !is_level(level) {
            return Err(format!(
                "unknown log level {level:?} in {value:?} ({})",
                valid()
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(value)
        .map_err(|e| format!("invalid log filter {value:?}: {e} ({})", valid()))?;
    Ok(value.to_string())
}

/// Installs the global subscriber (the daemon's; an embedding program
/// installs its own): `format` to stderr, filtered by `level`
/// (`info`, `debug`, or any `tracing` filter directive). ANSI colours only
/// when stderr is a terminal. Fails on a bad directive or when a subscriber
/// is already installed.
#[cfg(feature = "daemon")]
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = if format == LogFormat::Text && stderr_is_journal() {
        LogFormat::Journald
    } else {
        format
    };
    let installed = match format {
        LogFormat::Journald => builder
            .with_ansi(false)
            .event_format(Priority(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .try_init(),
        LogFormat::Json => builder
            .json()
            // Event fields at the top level: `{"event":"startup",...}`.
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Names as one field: `a,b,c` (empty when none).
fn names(list: &[String]) -> String {
    list.join(",")
}

/// `startup`: the daemon begins (before the first load).
pub fn startup(instance: &str, config_dir: &Path, schema_dir: &Path, all_or_nothing: bool) {
    info!(
        event = "startup",
        version = env!("CARGO_PKG_VERSION"),
        instance,
        config_dir = %display_path(config_dir),
        schema_dir = %display_path(schema_dir),
        all_or_nothing,
        "hotconf starting"
    );
}

/// `no_documents`: the config directory holds no `NAME.toml` at startup;
/// the daemon runs (documents may arrive), but this is usually a wrong
/// `--config-dir`.
pub fn no_documents(config_dir: &Path) {
    warn!(
        event = "no_documents",
        config_dir = %display_path(config_dir),
        "no documents found in {} (expected NAME.toml files); serving nothing until some appear",
        display_path(config_dir)
    );
}

/// `shutdown`: the daemon is stopping (after in-flight work finished).
pub fn shutdown(reason: &str, generation: u64) {
    info!(event = "shutdown", reason, generation, "hotconf stopped");
}

/// `document_accepted`: a new version of `name` is published. `sha256` is
/// the hash untrusted peers see (the redacted one for a document holding
/// secrets), never a source hash that would let a log reader test guesses.
pub fn document_accepted(name: &str, source: &Path, generation: u64, sha256: &str) {
    info!(
        event = "document_accepted",
        document = name,
        file = %display_path(source),
        generation,
        sha256,
        "{name}: accepted (generation {generation})"
    );
}

/// `document_accepted` for a document whose file is back to what is
/// served (after a rejection or an absence): it is `ok` again, nothing is
/// published.
pub fn document_recovered(name: &str, serving: Option<u64>) {
    info!(
        event = "document_accepted",
        document = name,
        generation = serving.unwrap_or(0),
        republished = false,
        "{name}: ok again (the file is what is served)"
    );
}

/// `document_rejected`: one WARN line per document, with the first
/// problem's location and every problem compiler-style in `errors`.
/// `serving` is the generation of the last good version still served.
pub fn document_rejected(name: &str, rejection: &Rejection, serving: Option<u64>) {
    let first = rejection.problems.first();
    let lines = rejection.lines();
    let kept = match serving {
        Some(g) => format!("last good version (generation {g}) still served"),
        None => "not served".to_string(),
    };
    // The event's message is the compiler-style line an operator can act
    // on; `reason` is the bare problem text, `errors` every problem.
    warn!(
        event = "document_rejected",
        document = name,
        code = rejection.code.as_str(),
        file = %rejection.file,
        line = first.and_then(|p| p.line).map(|l| l as u64),
        column = first.and_then(|p| p.column).map(|c| c as u64),
        pointer = first.map(|p| p.pointer.as_str()).unwrap_or(""),
        reason = first.map(|p| p.message.as_str()).unwrap_or(""),
        problems = lines.len() as u64,
        errors = %lines.join("; "),
        serving = serving,
        "{}; {kept}",
        rejection.summary()
    );
}

/// `document_missing`: an implicit reload found the file gone for longer
/// than `--debounce`; the last good version (if any) is still served.
pub fn document_missing(name: &str, serving: Option<u64>) {
    warn!(
        event = "document_missing",
        document = name,
        code = "E_MISSING",
        serving,
        "{name}: file is gone; still serving its last good version until an explicit reload"
    );
}

/// `document_removed`: an explicit reload found the file gone and stopped
/// serving it.
pub fn document_removed(name: &str, source: &Path) {
    info!(
        event = "document_removed",
        document = name,
        file = %display_path(source),
        "{name}: removed (its file is gone)"
    );
}

/// `snapshot_published`: a new generation is served.
pub fn snapshot_published(generation: u64, changed: &[String], removed: &[String]) {
    info!(
        event = "snapshot_published",
        generation,
        changed = %names(changed),
        removed = %names(removed),
        "generation {generation} published"
    );
}

/// The config directory could not be listed; nothing is removed because of
/// it. WARN for an explicit reload, DEBUG for the poll (which would repeat
/// it every period; the documents turn `missing` instead).
pub fn config_dir_unreadable(dir: &Path, error: &std::io::Error, explicit: bool) {
    if explicit {
        warn!(event = "config_dir_unreadable", dir = %dir.display(), %error, "cannot list the config directory");
    } else {
        debug!(event = "config_dir_unreadable", dir = %dir.display(), %error, "cannot list the config directory");
    }
}

/// A reload panicked (a bug); the last published snapshot stays served and
/// the reloader goes on with the next request.
pub fn reload_panicked() {
    tracing::error!(
        event = "reload_panicked",
        "a reload failed unexpectedly; still serving the last published snapshot"
    );
}

/// An implicit look that found nothing to do: not a reload, debug only.
pub fn nothing_changed(trigger: Trigger) {
    debug!(
        event = "nothing_changed",
        trigger = trigger.log_name(),
        "no change found"
    );
}

/// `state_restored`: the persisted snapshot was read, verified and seeds
/// the store (the startup reload then compares the files with it).
pub fn state_restored(dir: &Path, generation: u64, documents: &[String]) {
    info!(
        event = "state_restored",
        state_dir = %dir.display(),
        generation,
        documents = %names(documents),
        "restored generation {generation} from {}",
        dir.display()
    );
}

/// `state_absent`: the state directory holds no snapshot yet.
pub fn state_absent(dir: &Path) {
    info!(
        event = "state_absent",
        state_dir = %dir.display(),
        "no persisted snapshot in {}",
        dir.display()
    );
}

/// `state_ignored`: the persisted snapshot is corrupt, partial or written
/// for other directories; it is not used at all (generations restart).
pub fn state_ignored(dir: &Path, reason: &str) {
    warn!(
        event = "state_ignored",
        state_dir = %dir.display(),
        reason,
        "ignoring the persisted snapshot in {}: {reason}",
        dir.display()
    );
}

/// `state_persisted`: a generation is safely on disk.
pub fn state_persisted(dir: &Path, generation: u64) {
    debug!(
        event = "state_persisted",
        state_dir = %dir.display(),
        generation,
        "generation {generation} persisted"
    );
}

/// `persist_failed`: the state directory could not be written. What is
/// served is unaffected, but a restart would not find this generation.
pub fn persist_failed(dir: &Path, generation: Option<u64>, error: &str) {
    tracing::error!(
        event = "persist_failed",
        state_dir = %dir.display(),
        generation,
        error,
        "cannot persist the snapshot to {}: {error}; still serving it, but a restart would not find it",
        dir.display()
    );
}

/// `serving_persisted`: at startup some documents are invalid on disk and
/// the daemon runs anyway on the persisted snapshot. `served` are served
/// from it (their last good version); `not_served` were never persisted.
pub fn serving_persisted(dir: &Path, generation: u64, served: &[String], not_served: &[String]) {
    let unserved = if not_served.is_empty() {
        String::new()
    } else {
        format!(
            "; not served (invalid and never persisted): {}",
            names(not_served)
        )
    };
    warn!(
        event = "serving_persisted",
        state_dir = %dir.display(),
        generation,
        documents = %names(served),
        not_served = %names(not_served),
        "invalid on disk, serving the last good version persisted in {}: {}{unserved}",
        dir.display(),
        names(served)
    );
}

/// Logs `reload_started` and `reload_finished`. Register it with the
/// reloader; it keeps no state.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogObserver;

impl ReloadObserver for LogObserver {
    fn reload_started(&self, trigger: Trigger) {
        info!(
            event = "reload_started",
            trigger = trigger.log_name(),
            "reload started"
        );
    }

    fn reload_finished(&self, outcome: &ReloadOutcome, status: &Status, snapshot: &Snapshot) {
        let not_ok: Vec<String> = status
            .documents
            .iter()
            .filter(|(_, d)| d.state != crate::store::status::DocState::Ok)
            .map(|(n, _)| n.clone())
            .collect();
        let duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
        info!(
            event = "reload_finished",
            trigger = outcome.trigger.log_name(),
            generation = snapshot.generation,
            accepted = %names(&outcome.accepted),
            rejected = %names(&outcome.rejected),
            removed = %names(&outcome.removed),
            waited_for = %names(&outcome.waited),
            deferred = %names(&outcome.deferred),
            not_ok = %names(&not_ok),
            ok = not_ok.is_empty(),
            documents = snapshot.documents.len() as u64,
            duration_ms,
            "reload finished: {} accepted, {} rejected, {} removed; generation {}",
            outcome.accepted.len(),
            outcome.rejected.len(),
            outcome.removed.len(),
            snapshot.generation
        );
    }
}
