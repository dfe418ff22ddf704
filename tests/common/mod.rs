//! Shared support for integration tests that drive the real `hotconf`
//! binary: temp directories, a daemon that is killed on drop, log capture,
//! deadline-based waiting and a minimal HTTP/1.1 client over a unix socket.
//!
//! Never sleep bare: wait on a condition with a deadline ([`wait_until`]).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous default deadline: CI is a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hotconf")
}

/// Polls `cond` every few milliseconds until it is true or `timeout` passes.
/// Returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A temp directory with `configs/` and `schemas/` inside.
pub struct Env {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    pub configs: PathBuf,
    pub schemas: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let configs = dir.path().join("configs");
        let schemas = dir.path().join("schemas");
        std::fs::create_dir(&configs).expect("mkdir configs");
        std::fs::create_dir(&schemas).expect("mkdir schemas");
        Env {
            dir,
            configs,
            schemas,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Default socket path inside the temp dir.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("hotconf.sock")
    }

    /// Writes `configs/NAME.toml` atomically (temp file + rename).
    pub fn write_doc(&self, name: &str, text: &str) {
        let tmp = self.configs.join(format!(".{name}.toml.tmp"));
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, self.configs.join(format!("{name}.toml"))).expect("rename");
    }

    /// Writes `schemas/FILE` atomically.
    pub fn write_schema_file(&self, file: &str, text: &str) {
        let tmp = self.schemas.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, self.schemas.join(file)).expect("rename");
    }

    /// Writes `schemas/NAME.schema.json`.
    pub fn write_schema(&self, name: &str, schema: &serde_json::Value) {
        self.write_schema_file(&format!("{name}.schema.json"), &schema.to_string());
    }

    /// Base `hotconf run` arguments for this env (dirs, socket, JSON logs).
    pub fn run_args(&self) -> Vec<String> {
        vec![
            "run".into(),
            "--config-dir".into(),
            self.configs.display().to_string(),
            "--schema-dir".into(),
            self.schemas.display().to_string(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--log-format".into(),
            "json".into(),
        ]
    }
}

/// A running `hotconf` process whose output is captured line by line; killed
/// on drop so a failing test never leaks a daemon.
pub struct Daemon {
    pub child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

fn collect(reader: impl Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(l) => sink.lock().expect("log lock").push(l),
                Err(_) => break,
            }
        }
    });
}

impl Daemon {
    /// Spawns `hotconf ARGS` with extra environment variables.
    pub fn spawn(args: &[String], envs: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Tests must not inherit the developer's or CI's hotconf settings.
        for (k, _) in std::env::vars() {
            if k.starts_with("HOTCONF_") || k == "NOTIFY_SOCKET" || k == "WATCHDOG_USEC" {
                cmd.env_remove(k);
            }
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::from_command(cmd)
    }

    /// Spawns a prepared command (stdout/stderr are captured here).
    pub fn from_command(mut cmd: Command) -> Daemon {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hotconf");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        if let Some(e) = child.stderr.take() {
            collect(e, stderr.clone());
        }
        if let Some(o) = child.stdout.take() {
            collect(o, stdout.clone());
        }
        Daemon {
            child,
            stderr,
            stdout,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (`libc::SIGHUP`, `libc::SIGTERM`, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Captured stderr lines so far (the logs).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("log lock").clone()
    }

    /// Captured stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("log lock").clone()
    }

    /// Log lines parsed as JSON (non-JSON lines are skipped).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.stderr_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// JSON log records whose `event` field (top level or under `fields`)
    /// equals `event`.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.json_logs()
            .into_iter()
            .filter(|v| log_event(v) == Some(event))
            .collect()
    }

    /// Waits until at least `n` log records with this event exist.
    pub fn wait_event_count(&self, event: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.events(event).len() >= n)
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.status {
            return Some(s);
        }
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(20));
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the control socket answers `GET /v1/status`.
    pub fn wait_ready(&self, socket: &Path) -> bool {
        wait_until(DEADLINE, || {
            http(socket, "GET", "/v1/status", None)
                .map(|r| r.status == 200)
                .unwrap_or(false)
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `event` field of a JSON log record (tracing-subscriber puts event
/// fields under `fields`; accept either place).
pub fn log_event(v: &serde_json::Value) -> Option<&str> {
    v.get("event")
        .or_else(|| v.get("fields").and_then(|f| f.get("event")))
        .and_then(|e| e.as_str())
}

/// A field of a JSON log record, top level or under `fields`.
pub fn log_field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.get(name)
        .or_else(|| v.get("fields").and_then(|f| f.get(name)))
}

/// An HTTP response read by [`http`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request over a unix socket with `Connection: close`.
/// Handles `Content-Length` and chunked bodies.
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(660)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        rest.to_string()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// A small schema: an object with the given properties (all required),
/// no additional properties.
pub fn strict_schema(props: serde_json::Value) -> serde_json::Value {
    let required: Vec<String> = props
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    serde_json::json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The value of the first sample of `metric` carrying every label of
/// `labels` in a parsed Prometheus scrape (counters, gauges, untyped).
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}
