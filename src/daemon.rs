//! `hotconf run`: wires the store, the reloader, the watcher, signals, the
//! control socket and systemd together. Thin: the work lives in the modules
//! it starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (no ANSI colours unless stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `hotconf run` is configured with (flags / `HOTCONF_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory of `NAME.toml` documents.
    pub config_dir: PathBuf,
    /// Directory of `NAME.schema.json` schemas.
    pub schema_dir: PathBuf,
    /// Control socket path; `None` resolves as SPEC §4 says.
    pub socket: Option<PathBuf>,
    /// Quiet time after a bare modification before it is read.
    pub debounce: Duration,
    /// Larger files are rejected unread.
    pub max_file_size: u64,
    /// Period of the checksum poll; zero disables it.
    pub poll_interval: Duration,
    /// One rejected document rejects the whole reload.
    pub all_or_nothing: bool,
    /// Mode of the control socket.
    pub socket_mode: u32,
    /// Group of the control socket.
    pub socket_group: Option<String>,
    /// TCP address serving `/metrics` only.
    pub metrics_listen: Option<SocketAddr>,
    /// Text or JSON logs.
    pub log_format: LogFormat,
    /// `tracing` filter directive (`info`, `debug`, `hotconf=trace`...).
    pub log_level: String,
    /// Where the last good snapshot is persisted.
    pub state_dir: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub fn run(settings: Settings) -> i32 {
    let _ = settings;
    eprintln!("hotconf run: not implemented yet");
    1
}
