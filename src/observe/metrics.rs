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

use crate::store::snapshot::Snapshot;
use crate::store::status::ReloadObserver;
use crate::store::status::{DocState, ReloadOutcome, Status, Trigger};
use crate::store::Store;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
                let _ = reloads.get_or_create(&ReloadLabels {
                    trigger: trigger.as_str(),
                    result,
                });
            }
        }
        Metrics {
            reloads,
            duration: Histogram::new(DURATION_BUCKETS),
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
    fn reload_finished(&self, outcome: &ReloadOutcome, _status: &Status, _snapshot: &Snapshot) {
        self.record(outcome);
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
