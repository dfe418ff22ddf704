//! The HTTP API: routes, handlers, blocking queries and JSON errors.
//!
//! Handlers only read the store (and ask the reloader, for `POST
//! /v1/reload`); they never write it. A blocking query waits on the store's
//! generation channel — woken by publishes only, never by rejections — and
//! on the server's shutdown signal, never on a timer loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::Peer;
use super::views;
use crate::history::plan::{Candidate, Planner};
use crate::history::History;
use crate::observe::metrics::{self, Metrics};
use crate::reload::{ReloadHandle, ReloaderGone};
use crate::store::snapshot::Snapshot;
use crate::store::status::{ReloadOutcome, Trigger};
use crate::store::Store;

/// `X-Hotconf-Generation`: the generation the answer reflects.
pub const GENERATION_HEADER: HeaderName = HeaderName::from_static("x-hotconf-generation");
/// `X-Hotconf-Instance`: the daemon start that answered.
pub const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-hotconf-instance");

/// Longest `wait` of a blocking query.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// `wait` of a blocking query that gives an `index` but no `wait`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The boxed future of [`ReloadService::reload`].
pub type ReloadFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ReloadOutcome, ReloaderGone>> + Send + 'a>>;

/// Something that performs explicit reloads for the API: the daemon's
/// [`ReloadHandle`], or a stand-in in tests.
pub trait ReloadService: Send + Sync + 'static {
    /// Requests a reload and waits for its outcome.
    fn reload(&self, trigger: Trigger) -> ReloadFuture<'_>;
}

impl ReloadService for ReloadHandle {
    fn reload(&self, trigger: Trigger) -> ReloadFuture<'_> {
        Box::pin(ReloadHandle::reload(self, trigger))
    }
}

/// What every handler can reach.
pub(crate) struct Api {
    /// The served snapshot and status.
    pub store: Arc<Store>,
    /// Performs `POST /v1/reload`.
    pub reloader: Arc<dyn ReloadService>,
    /// Encodes `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The outputs' own status, merged into `/v1/status` and `/metrics`.
    pub outputs: Option<crate::output::Outputs>,
    /// Serves `GET /v1/history`.
    pub history: Option<Arc<History>>,
    /// Judges `POST /v1/plan`.
    pub planner: Option<Arc<Planner>>,
    /// Peers running as this uid (or root) are trusted.
    pub daemon_uid: u32,
    /// Turns true at shutdown: blocking queries answer at once.
    pub shutdown: watch::Receiver<bool>,
    /// Blocking queries waiting right now (see [`super::Running::waiting_queries`]).
    pub waiting: Arc<AtomicUsize>,
    /// Rate limit of the `reload_forbidden` warning, per uid.
    pub reload_refusals: super::refusals::RefusalLog,
}

/// Counts one parked blocking query for as long as it lives, however it
/// ends (answer, timeout, or the client going away and the future being
/// dropped).
struct Parked(Arc<AtomicUsize>);

impl Parked {
    fn new(counter: &Arc<AtomicUsize>) -> Parked {
        counter.fetch_add(1, Ordering::Relaxed);
        Parked(counter.clone())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type Shared = State<Arc<Api>>;

/// The full API served on the unix socket.
pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/config", get(config_all))
        .route("/v1/config/{*path}", get(config_one))
        .route("/v1/reload", post(reload))
        .route("/v1/history", get(history))
        .route("/v1/plan", post(plan))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

/// `/metrics` and the probes `/-/healthy`, `/-/ready` (as Prometheus
/// names them), for `--metrics-listen`: nothing that reads configuration.
pub(crate) fn metrics_router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

/// A JSON error `{code, message}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// `?index=N&wait=DURATION&instance=ID` as received.
#[derive(Debug, Default, Deserialize)]
struct RawBlocking {
    index: Option<String>,
    wait: Option<String>,
    instance: Option<String>,
}

/// A parsed blocking query: wait while the watched generation equals
/// `index`, at most `wait`. `instance` is the daemon start the client got
/// `index` from: generations restart with the daemon, so an index from
/// another start says nothing about this one and the query answers at once.
#[derive(Debug, Clone)]
struct Blocking {
    index: Option<u64>,
    wait: Duration,
    instance: Option<String>,
}

fn blocking(q: Result<Query<RawBlocking>, QueryRejection>) -> Result<Blocking, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let Query(raw) = q.map_err(|e| bad(e.body_text()))?;
    let index = raw
        .index
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("index {s:?} is not a generation number")))
        })
        .transpose()?;
    let wait = match raw.wait {
        None => DEFAULT_WAIT,
        Some(s) => parse_wait(&s)
            .ok_or_else(|| bad(format!("wait {s:?} is not a duration (use units: 30s, 5m)")))?,
    };
    Ok(Blocking {
        index,
        wait: wait.min(MAX_WAIT),
        instance: raw.instance,
    })
}

/// `30s`, `5m`, `1m30s`, `250ms`; bare digits are seconds (as Consul).
fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok().map(Duration::from_secs);
    }
    humantime::parse_duration(s).ok()
}

/// Whether a blocking query on the whole snapshot can answer: its
/// generation moved past `index`, or `index` is ahead of it (the daemon
/// restarted and counts from 1 again).
fn snapshot_ready(s: &Snapshot, index: u64) -> bool {
    s.generation != index
}

/// Whether a blocking query on document `name` can answer: the document's
/// own generation moved past `index`; or it is not served although the
/// client has seen it (`index > 0`: removed since); or `index` is ahead of
/// the snapshot (restart). A query with `index=0` on a document that is not
/// served waits for it to appear.
fn document_ready(s: &Snapshot, name: &str, index: u64) -> bool {
    if index > s.generation {
        return true;
    }
    match s.get(name) {
        Some(doc) => doc.generation > index,
        None => index > 0,
    }
}

/// Waits, if `q` asks to, until `ready(snapshot, index)`, `wait` runs out
/// or the server shuts down; returns the snapshot to answer with.
async fn wait_for(api: &Api, q: Blocking, ready: impl Fn(&Snapshot, u64) -> bool) -> Arc<Snapshot> {
    let Some(index) = q.index else {
        return api.store.load_full();
    };
    if q.instance
        .as_deref()
        .is_some_and(|i| i != api.store.instance())
    {
        return api.store.load_full();
    }
    // ok: `wait` is capped at MAX_WAIT, far from overflowing an Instant.
    let deadline = Instant::now() + q.wait;
    let mut generations = api.store.subscribe();
    let mut shutdown = api.shutdown.clone();
    let mut parked: Option<Parked> = None;
    loop {
        // Mark the current generation seen *before* loading: a publish after
        // this point wakes us, one before it is in what we load.
        generations.borrow_and_update();
        let snapshot = api.store.load_full();
        if ready(&snapshot, index) || *shutdown.borrow() {
            return snapshot;
        }
        if parked.is_none() {
            parked = Some(Parked::new(&api.waiting));
            let wait_ms = u64::try_from(q.wait.as_millis()).unwrap_or(u64::MAX);
            tracing::debug!(index, wait_ms, "blocking query waiting");
        }
        tokio::select! {
            changed = generations.changed() => {
                if changed.is_err() {
                    return api.store.load_full();
                }
            }
            _ = tokio::time::sleep_until(deadline) => return api.store.load_full(),
            stopping = shutdown.changed() => {
                if stopping.is_err() {
                    return api.store.load_full();
                }
            }
        }
    }
}

/// `NAME` or `NAME/json/pointer` → (NAME, pointer); the pointer keeps its
/// leading '/' (`""` is the whole document).
fn split_name_pointer(path: &str) -> (&str, &str) {
    match path.find('/') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    }
}

/// The request path's own parsing on untrusted input, for the fuzz targets
/// in `fuzz/`: the blocking-query parameters of `uri`, and the document name
/// and JSON pointer of a `/v1/config/NAME/...` path applied to `value`.
/// Panics only where the parsing broke one of its own promises.
pub(super) fn fuzz_request(uri: &axum::http::Uri, value: &serde_json::Value) {
    if let Ok(b) = blocking(Query::<RawBlocking>::try_from_uri(uri)) {
        assert!(b.wait <= MAX_WAIT, "wait not capped");
    }
    if let Some(rest) = uri.path().strip_prefix("/v1/config/") {
        let (name, pointer) = split_name_pointer(rest);
        assert!(!name.contains('/'), "name holds a '/'");
        assert!(pointer.is_empty() || pointer.starts_with('/'));
        let _ = value.get(name).and_then(|doc| doc.pointer(pointer));
    }
}

fn with_headers(mut resp: Response, generation: u64, instance: &str) -> Response {
    let h = resp.headers_mut();
    h.insert(GENERATION_HEADER, HeaderValue::from(generation));
    if let Ok(v) = HeaderValue::from_str(instance) {
        h.insert(INSTANCE_HEADER, v);
    }
    resp
}

async fn status(
    State(api): Shared,
    Extension(peer): Extension<Peer>,
    q: Result<Query<RawBlocking>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = blocking(q)?;
    // What the wait saw is a lower bound; answer with a matching pair.
    let _ = wait_for(&api, q, snapshot_ready).await;
    let (snapshot, status) = api.store.load_with_status();
    let trusted = peer.is_trusted(api.daemon_uid);
    let mut body = views::status(
        api.store.instance(),
        api.store.uptime(),
        &snapshot,
        &status,
        trusted,
    );
    if let (Some(outputs), Some(map)) = (&api.outputs, body.as_object_mut()) {
        let (outputs, file) = outputs.status().to_json(trusted);
        map.insert("outputs".into(), outputs);
        map.insert("outputs_file".into(), file);
    }
    Ok(with_headers(
        Json(body).into_response(),
        snapshot.generation,
        api.store.instance(),
    ))
}

async fn config_all(
    State(api): Shared,
    Extension(peer): Extension<Peer>,
    q: Result<Query<RawBlocking>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = blocking(q)?;
    let snapshot = wait_for(&api, q, snapshot_ready).await;
    let body = views::config(
        api.store.instance(),
        &snapshot,
        peer.is_trusted(api.daemon_uid),
    );
    Ok(with_headers(
        json_response(body),
        snapshot.generation,
        api.store.instance(),
    ))
}

async fn config_one(
    State(api): Shared,
    Extension(peer): Extension<Peer>,
    Path(path): Path<String>,
    q: Result<Query<RawBlocking>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = blocking(q)?;
    let (name, pointer) = split_name_pointer(&path);
    let snapshot = wait_for(&api, q, |s, index| document_ready(s, name, index)).await;
    let instance = api.store.instance();
    // 404s carry the generation too (0: not served), so a client can block
    // on a document's (re)appearance with the index it got.
    let not_found = |m: String, generation: u64| {
        let e = ApiError::new(StatusCode::NOT_FOUND, "not_found", m);
        with_headers(e.into_response(), generation, instance)
    };
    let Some(doc) = snapshot.get(name) else {
        return Ok(not_found(format!("no document {name:?} is served"), 0));
    };
    let trusted = peer.is_trusted(api.daemon_uid);
    if pointer.is_empty() {
        // The whole document: the version's one shared body, no copy.
        return Ok(with_headers(
            json_response(doc.body(trusted)),
            doc.generation,
            instance,
        ));
    }
    let value = views::visible_value(doc, trusted);
    let Some(part) = value.pointer(pointer) else {
        return Ok(not_found(
            format!("document {name:?} has no value at {pointer:?}"),
            doc.generation,
        ));
    };
    Ok(with_headers(
        Json(part).into_response(),
        doc.generation,
        instance,
    ))
}

/// A `200 application/json` response whose body is `body` itself (a
/// reference to a shared buffer, not a copy).
fn json_response(body: bytes::Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn reload(
    State(api): Shared,
    Extension(peer): Extension<Peer>,
) -> Result<Response, ApiError> {
    if !peer.is_trusted(api.daemon_uid) {
        if let Some(refused) = api.reload_refusals.note(peer.uid) {
            tracing::warn!(
                event = "reload_forbidden",
                peer_uid = peer.uid,
                peer_pid = peer.pid,
                refused,
                "refused POST /v1/reload from an untrusted peer \
                 (refused counts this uid's refusals since its last such line)"
            );
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "reload is only for root and the daemon's own user",
        ));
    }
    let outcome = api.reloader.reload(Trigger::Api).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let snapshot = api.store.load_full();
    let body = views::reload_result(&outcome, &snapshot, &api.store.status());
    Ok(with_headers(
        Json(body).into_response(),
        snapshot.generation,
        api.store.instance(),
    ))
}

/// `X-Hotconf-History-Index`: the id of the newest history entry (the
/// `index` of a blocking `GET /v1/history`).
pub const HISTORY_INDEX_HEADER: HeaderName = HeaderName::from_static("x-hotconf-history-index");

/// Most entries one `GET /v1/history` returns without `?limit=`.
const DEFAULT_HISTORY_LIMIT: usize = 20;

/// `?limit=&since=` of `GET /v1/history`, beside the blocking ones.
#[derive(Debug, Default, Deserialize)]
struct RawHistory {
    limit: Option<String>,
    since: Option<String>,
}

/// `GET /v1/history`: the last reloads, newest first. A blocking query
/// (`?index=ID`) waits for an entry newer than `ID` — any recorded reload,
/// rejections and `missing` files included: history is not the snapshot.
async fn history(
    State(api): Shared,
    Extension(peer): Extension<Peer>,
    q: Result<Query<RawBlocking>, QueryRejection>,
    h: Result<Query<RawHistory>, QueryRejection>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let q = blocking(q)?;
    let Query(h) = h.map_err(|e| bad(e.body_text()))?;
    let number = |what: &str, s: Option<String>| -> Result<Option<u64>, ApiError> {
        s.map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("{what} {s:?} is not a number")))
        })
        .transpose()
    };
    let limit = number("limit", h.limit)?
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let since = number("since", h.since)?.unwrap_or(0);
    let Some(hist) = api.history.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this daemon keeps no history",
        ));
    };
    if let Some(index) = q.index {
        wait_for_history(&api, &hist, index, q.wait).await;
    }
    let trusted = peer.is_trusted(api.daemon_uid);
    let latest = hist.latest_id();
    let entries: Vec<serde_json::Value> = hist
        .entries(limit, since)
        .iter()
        .map(|e| e.to_json(trusted))
        .collect();
    let body = serde_json::json!({
        "instance": api.store.instance(),
        "latest": latest,
        "capacity": hist.capacity(),
        "entries": entries,
    });
    let mut resp = with_headers(
        Json(body).into_response(),
        api.store.load().generation,
        api.store.instance(),
    );
    resp.headers_mut()
        .insert(HISTORY_INDEX_HEADER, HeaderValue::from(latest));
    Ok(resp)
}

/// Waits until the history has an entry other than `index` (newer, or the
/// daemon restarted), `wait` runs out, or the server shuts down.
async fn wait_for_history(api: &Api, hist: &History, index: u64, wait: Duration) {
    // ok: `wait` is capped at MAX_WAIT, far from overflowing an Instant.
    let deadline = Instant::now() + wait;
    let mut latest = hist.subscribe();
    let mut shutdown = api.shutdown.clone();
    let mut parked: Option<Parked> = None;
    loop {
        if *latest.borrow_and_update() != index || *shutdown.borrow() {
            return;
        }
        if parked.is_none() {
            parked = Some(Parked::new(&api.waiting));
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            tracing::debug!(index, wait_ms, "blocking history query waiting");
        }
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            stopping = shutdown.changed() => {
                if stopping.is_err() {
                    return;
                }
            }
        }
    }
}

/// One candidate of a `POST /v1/plan` body: `content` (UTF-8 text) or
/// `bytes` (an array of byte values, for a file that is not UTF-8).
#[derive(Debug, Deserialize)]
struct RawCandidate {
    name: String,
    file: Option<String>,
    content: Option<String>,
    bytes: Option<Vec<u8>>,
}

/// The body of `POST /v1/plan` (empty: the config directory as it is).
#[derive(Debug, Default, Deserialize)]
struct RawPlan {
    #[serde(default)]
    documents: Vec<RawCandidate>,
}

/// `POST /v1/plan`: what an explicit reload would do with these candidates
/// (and the config directory as it is for every other document). Never
/// changes what is served, the status, the history or the metrics.
async fn plan(
    State(api): Shared,
    Extension(peer): Extension<Peer>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let raw: RawPlan = if body.iter().all(u8::is_ascii_whitespace) {
        RawPlan::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("plan body: {e}")))?
    };
    let mut candidates = Vec::new();
    for c in raw.documents {
        let file = std::ffi::OsString::from(format!("{}.toml", c.name));
        if crate::pipeline::document::document_name(&file).is_none() {
            return Err(bad(format!("{:?} is not a document name", c.name)));
        }
        let bytes = match (c.content, c.bytes) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(bytes)) => bytes,
            _ => {
                return Err(bad(format!(
                    "{}: give exactly one of content and bytes",
                    c.name
                )))
            }
        };
        candidates.push(Candidate {
            label: c.file.unwrap_or_else(|| format!("{}.toml", c.name)),
            name: c.name,
            bytes,
        });
    }
    let Some(planner) = api.planner.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this daemon cannot plan",
        ));
    };
    let trusted = peer.is_trusted(api.daemon_uid);
    let snapshot = api.store.load_full();
    let generation = snapshot.generation;
    // Reads files and compiles schemas: off the async workers.
    let judged = tokio::task::spawn_blocking(move || planner.plan(&snapshot, candidates, trusted))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let plan = judged
        .map_err(|r| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", r.summary()))?;
    Ok(with_headers(
        Json(plan.to_json()).into_response(),
        generation,
        api.store.instance(),
    ))
}

/// How long `/-/healthy` waits for the reloader.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// `/-/healthy`: 200 while the process answers and the reloader finishes
/// an implicit look (silent when nothing changed) in time; 503 otherwise.
async fn healthy(State(api): Shared) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, api.reloader.reload(Trigger::Poll)).await {
        Ok(Ok(_)) => (StatusCode::OK, "hotconf is healthy.\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reloader did not answer in time\n",
        )
            .into_response(),
    }
}

/// `/-/ready`: 200 once the startup load is done (some reload finished),
/// 503 before.
async fn ready(State(api): Shared) -> Response {
    if api.store.status().last_reload.is_some() {
        (StatusCode::OK, "hotconf is ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the startup load is not done\n",
        )
            .into_response()
    }
}

async fn metrics(State(api): Shared, headers: axum::http::HeaderMap) -> Response {
    let mut text = api.metrics.encode(&api.store);
    if let Some(outputs) = &api.outputs {
        // One exposition: the outputs' families go before the closing EOF.
        if let Some(head) = text.strip_suffix("# EOF\n") {
            text = format!("{head}{}# EOF\n", outputs.encode_metrics());
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if metrics::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
    } else {
        let text = metrics::to_text_format(&text);
        ([(header::CONTENT_TYPE, metrics::TEXT_CONTENT_TYPE)], text).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::snapshot::ServedDocument;
    use http_body_util::BodyExt;

    fn served(value: serde_json::Value, redacted: Option<serde_json::Value>) -> ServedDocument {
        let value = Arc::new(value);
        let has_secrets = redacted.is_some();
        let bodies = match &redacted {
            Some(r) => {
                crate::store::snapshot::Bodies::with_redacted(serde_json::to_vec(r).unwrap())
            }
            None => Default::default(),
        };
        ServedDocument {
            redacted: redacted.map(Arc::new).unwrap_or_else(|| value.clone()),
            value,
            has_secrets,
            sha256: String::new(),
            redacted_sha256: String::new(),
            generation: 1,
            loaded_at: std::time::SystemTime::now(),
            source: "configs/big.toml".into(),
            schema_sha256: String::new(),
            typed: None,
            bodies,
        }
    }

    /// The body every response carries, taken back out of the response.
    async fn response_body(doc: &ServedDocument, trusted: bool) -> bytes::Bytes {
        let resp = json_response(doc.body(trusted));
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let frame = resp.into_body().frame().await.unwrap().unwrap();
        frame.into_data().unwrap()
    }

    /// A thousand concurrent readers of one document hold one buffer: every
    /// response body is the version's body itself (same address and
    /// length), not a serialization or a copy of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_body_for_many_concurrent_readers() {
        let doc = Arc::new(served(
            serde_json::json!({"k": "v".repeat(1 << 16), "n": [1, 2, 3]}),
            Some(serde_json::json!({"k": "<redacted>", "n": [1, 2, 3]})),
        ));
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let doc = doc.clone();
                tokio::spawn(async move { response_body(&doc, i % 2 == 0).await })
            })
            .collect();
        let mut bodies = Vec::new();
        for t in tasks {
            bodies.push(t.await.unwrap());
        }
        let full = doc.body(true);
        let redacted = doc.body(false);
        assert_eq!(full, serde_json::to_vec(&*doc.value).unwrap());
        assert_eq!(redacted, serde_json::to_vec(&*doc.redacted).unwrap());
        for (i, b) in bodies.iter().enumerate() {
            let want = if i % 2 == 0 { &full } else { &redacted };
            assert_eq!(
                (b.as_ptr(), b.len()),
                (want.as_ptr(), want.len()),
                "response {i} has its own copy"
            );
        }
        // Without secrets an untrusted peer shares the same buffer too.
        let plain = served(serde_json::json!({"a": 1}), None);
        assert_eq!(plain.body(false).as_ptr(), plain.body(true).as_ptr());
    }

    #[test]
    fn wait_parsing() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait(""), None);
    }
}
