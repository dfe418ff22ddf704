//! Prometheus metrics (SPEC §5), encoded with `prometheus-client`.
//!
//! Two kinds: what only the reloader sees happen — reload counts and
//! durations — is recorded as it happens through [`ReloadObserver`]; what is
//! a *state* — generation, document validity, served hashes, last success —
//! is read from the [`Store`] at scrape time, so it can never drift from
//! what `/v1/status` says.
//!
//! With `--state-dir`, `hotconf_state_persist_ok` and
//! `hotconf_state_persisted_generation` say whether the last good snapshot
//! is safely on disk.
//!
//! Served hashes are always the redacted ones (`redacted_sha256`): metrics
//! may be scraped over TCP by anyone who can reach the port.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::pipeline::rejection::Code;
use crate::store::snapshot::Snapshot;
use crate::store::status::ReloadObserver;
use crate::store::status::{DocState, ReloadOutcome, Status, Trigger};
use crate::store::Store;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of [`Metrics::encode_text`]'s output: the classic
/// Prometheus text format, which `promtool check metrics` reads.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (as Prometheus's scrapes
/// do). No header at all gets OpenMetrics too; anything else (`*/*`,
/// `text/plain`) gets the classic text format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_none_or(|a| a.contains("application/openmetrics-text"))
}

/// Labels of `hotconf_rejections_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    /// The stable rejection code (`E_SCHEMA`, ...).
    code: &'static str,
}

/// Labels of `hotconf_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The crate version.
    version: &'static str,
}

/// Labels of `hotconf_reloads_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    /// `startup`, `watch`, `signal` or `api`.
    trigger: &'static str,
    /// `ok` (something applied, nothing rejected), `rejected` (this reload
    /// rejected a document) or `unchanged` (nothing new to apply).
    result: &'static str,
}

/// Labels of per-document gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DocLabels {
    /// The document name.
    document: String,
}

/// Labels of `hotconf_document_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    /// The document name.
    document: String,
    /// Hash of what is served (redacted when the document holds secrets).
    sha256: String,
}

/// The daemon's metrics: event counters kept here, state read at scrape.
#[derive(Debug)]
pub struct Metrics {
    /// `hotconf_reloads_total{trigger,result}`.
    reloads: Family<ReloadLabels, Counter>,
    /// `hotconf_reload_duration_seconds`.
    duration: Histogram,
    /// `hotconf_rejections_total{code}`.
    rejections: Family<CodeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Bucket bounds of the reload duration histogram, in seconds: a reload is
/// normally milliseconds; seconds mean something is wrong.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    /// Fresh metrics with every `trigger`×`result` series present at 0, so
    /// rate() and alerts work before the first reload of each kind.
    pub fn new() -> Self {
        let reloads = Family::<ReloadLabels, Counter>::default();
        for trigger in [
            Trigger::Startup,
            Trigger::Watch,
            Trigger::Signal,
            Trigger::Api,
        ] {
            for result in ["ok", "rejected", "unchanged"] {
                if trigger == Trigger::Startup && result == "unchanged" {
                    continue;
                }
                let _ = reloads.get_or_create(&ReloadLabels {
                    trigger: trigger.as_str(),
                    result,
                });
            }
        }
        let rejections = Family::<CodeLabels, Counter>::default();
        for code in [
            Code::Io,
            Code::TooLarge,
            Code::Encoding,
            Code::Parse,
            Code::Schema,
            Code::SchemaInvalid,
            Code::NoSchema,
            Code::Missing,
            Code::Type,
        ] {
            let _ = rejections.get_or_create(&CodeLabels {
                code: code.as_str(),
            });
        }
        Metrics {
            reloads,
            duration: Histogram::new(DURATION_BUCKETS),
            rejections,
        }
    }

    /// Records one finished reload.
    pub fn record(&self, outcome: &ReloadOutcome) {
        let result = if !outcome.rejected.is_empty() {
            "rejected"
        } else if outcome.accepted.is_empty()
            && outcome.removed.is_empty()
            && outcome.trigger != Trigger::Startup
        {
            "unchanged"
        } else {
            "ok"
        };
        self.reloads
            .get_or_create(&ReloadLabels {
                trigger: outcome.trigger.as_str(),
                result,
            })
            .inc();
        self.duration.observe(outcome.duration.as_secs_f64());
    }

    /// Counts the rejections of one finished reload by code (`status` is
    /// the state after it, where each rejected document's error is).
    fn record_rejections(&self, outcome: &ReloadOutcome, status: &Status) {
        for name in &outcome.rejected {
            if let Some(e) = status
                .documents
                .get(name)
                .and_then(|d| d.last_error.as_ref())
            {
                self.rejections
                    .get_or_create(&CodeLabels {
                        code: e.rejection.code.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// The classic Prometheus text format (0.0.4) of everything: the
    /// OpenMetrics exposition with counters' HELP/TYPE named like their
    /// `_total` samples, and without `# UNIT`, `_created` and `# EOF`,
    /// which that format does not have.
    pub fn encode_text(&self, store: &Store) -> String {
        to_text_format(&self.encode(store))
    }

    /// The Prometheus/OpenMetrics text exposition of everything, state
    /// read from `store` now.
    pub fn encode(&self, store: &Store) -> String {
        let snapshot = store.load_full();
        let status = store.status();
        let registry = self.registry(&snapshot, &status);
        let mut out = String::new();
        // ok: encoding into a String cannot fail (fmt::Write for String is
        // infallible) and every metric here encodes without error.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        // The process metrics go before the closing `# EOF`.
        let body_len = out.strip_suffix("# EOF\n").map_or(out.len(), str::len);
        out.truncate(body_len);
        out.push_str(&process_metrics(true));
        out.push_str("# EOF\n");
        out
    }

    /// A registry for one scrape: the long-lived counters (shared handles)
    /// plus state gauges computed from `snapshot` and `status`.
    fn registry(&self, snapshot: &Snapshot, status: &Status) -> Registry {
        let mut r = Registry::with_prefix("hotconf");
        r.register(
            "reloads",
            "Reloads run (every explicit one; implicit ones that found a change), by trigger and \
             result: ok = applied with nothing rejected, rejected = it rejected a document, \
             unchanged = nothing new to apply",
            self.reloads.clone(),
        );
        r.register_with_unit(
            "reload_duration",
            "How long reloads took",
            Unit::Seconds,
            self.duration.clone(),
        );

        r.register(
            "rejections",
            "Documents rejected by reloads, by rejection code",
            self.rejections.clone(),
        );

        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "hotconf's version (value 1)", build);

        let watch_ok = Gauge::<i64>::default();
        watch_ok.set(i64::from(status.watch_degraded.is_none()));
        r.register(
            "watch_healthy",
            "0 while file watching is degraded and changes arrive by the poll only, else 1",
            watch_ok,
        );

        let generation = Gauge::<i64>::default();
        generation.set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
        r.register(
            "generation",
            "Generation of the served snapshot",
            generation,
        );

        let successful = Gauge::<i64>::default();
        successful.set(i64::from(status.last_reload.is_some() && status.all_ok()));
        r.register(
            "last_reload_successful",
            "1 when every document is ok after the last reload",
            successful,
        );

        let success_ts = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        success_ts.set(status.last_success_at.map(unix_seconds).unwrap_or(0.0));
        r.register(
            "last_reload_success_timestamp_seconds",
            "When the last reload after which every document was ok ended",
            success_ts,
        );

        let valid = Family::<DocLabels, Gauge>::default();
        let names = status
            .documents
            .keys()
            .chain(snapshot.documents.keys())
            .collect::<std::collections::BTreeSet<_>>();
        for name in names {
            let ok = status
                .documents
                .get(name)
                .map(|d| d.state == DocState::Ok)
                .unwrap_or(true);
            valid
                .get_or_create(&DocLabels {
                    document: name.clone(),
                })
                .set(i64::from(ok));
        }
        r.register(
            "document_valid",
            "1 when the document is ok, 0 when its file is rejected or missing",
            valid,
        );

        let info = Family::<InfoLabels, Gauge>::default();
        for (name, doc) in &snapshot.documents {
            info.get_or_create(&InfoLabels {
                document: name.clone(),
                sha256: doc.redacted_sha256.clone(),
            })
            .set(1);
        }
        r.register(
            "document_info",
            "The content hash of each served document (redacted hash if it holds secrets)",
            info,
        );

        // Only with --state-dir: a failing persist is otherwise invisible
        // until the restart that needed it.
        if let Some(p) = &status.persist {
            let ok = Gauge::<i64>::default();
            ok.set(i64::from(p.last_error.is_none()));
            r.register(
                "state_persist_ok",
                "1 when the last persist to --state-dir worked (alert on 0)",
                ok,
            );
            let persisted = Gauge::<i64>::default();
            persisted.set(
                p.persisted_generation
                    .map(|g| i64::try_from(g).unwrap_or(i64::MAX))
                    .unwrap_or(0),
            );
            r.register(
                "state_persisted_generation",
                "Generation of the snapshot on disk in --state-dir (0: none)",
                persisted,
            );
        }
        r
    }
}

impl ReloadObserver for Metrics {
    fn reload_finished(&self, outcome: &ReloadOutcome, status: &Status, _snapshot: &Snapshot) {
        self.record(outcome);
        self.record_rejections(outcome, status);
    }
}

/// Rewrites an OpenMetrics exposition (this module's, or one with more
/// families appended before its `# EOF`) as the classic text format.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 512);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((kind, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(&format!("{kind}{name}_total {tail}\n"));
                continue;
            }
        } else if line
            .split(['{', ' '])
            .next()
            .is_some_and(|n| n.ends_with("_created"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `process_*` metrics of this process from `/proc` (Linux), named as
/// Prometheus's client libraries name them; whatever cannot be read is left
/// out.
/// `openmetrics` names the CPU counter's family without `_total`, as that
/// format wants.
pub fn process_metrics(openmetrics: bool) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    let page = rustix::param::page_size();
    let ticks = rustix::param::clock_ticks_per_second();
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the parenthesised command name, which may hold spaces.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(") "))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
    // proc(5): utime is field 14, stime 15, starttime 22, rss 24 (1-based,
    // counting the pid and command, which `fields` lacks).
    if let (Some(rss), true) = (field(21), page > 0) {
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss * page as f64,
        );
    }
    if let (Some(start), Some(boot), true) = (field(19), boot_time(), ticks > 0) {
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot + start / ticks as f64,
        );
    }
    if let (Some(u), Some(s), true) = (field(11), field(12), ticks > 0) {
        let family = if openmetrics {
            "process_cpu_seconds"
        } else {
            "process_cpu_seconds_total"
        };
        out.push_str(&format!(
            "# HELP {family} Total user and system CPU time spent in seconds.\n\
             # TYPE {family} counter\nprocess_cpu_seconds_total {}\n",
            (u + s) / ticks as f64
        ));
    }
    let mut gauge = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Some(soft) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            soft as f64,
        );
    }
    out
}

/// The boot time (`btime` of `/proc/stat`), unix seconds.
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
