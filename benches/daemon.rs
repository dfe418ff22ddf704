//! End-to-end figures of a running `hotconf run` (the release binary cargo
//! builds for benches), each beside a baseline taken in the same run:
//!
//! - idle RSS and threads;
//! - control-socket requests/s with 1 and 16 keep-alive clients, beside an
//!   unrouted `GET` (the socket + HTTP floor);
//! - fan-out: blocking queries woken by one publish, beside one query alone;
//! - memory: a 4 MiB document, 400 clients that never read it, the document
//!   replaced by a small one; 10,000 publishing reloads;
//! - peak RSS of `hotconf check` per document size, beside an empty one;
//! - one edit → served with 10 … 10,000 documents.
//!
//! ```text
//! cargo bench --bench daemon            # everything
//! cargo bench --bench daemon -- fanout  # sections whose name contains "fanout"
//! ```
//!
//! Not a criterion bench: each figure needs a daemon process, files and
//! sockets around it. Nothing here is asserted; it prints a table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hotconf");

/// A daemon on its own socket in a temp directory; killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("hotconf.sock");
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config-dir")
            .arg(dir.join("configs"))
            .arg("--schema-dir")
            .arg(dir.join("schemas"))
            .arg("--socket")
            .arg(&socket)
            .args(["--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hotconf run");
        let d = Daemon { child, socket };
        let deadline = Instant::now() + Duration::from_secs(600);
        while request(&d.socket, "GET", "/v1/status").is_err() {
            assert!(Instant::now() < deadline, "daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn proc_status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory with `configs/` and `schemas/`.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("configs")).unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    dir
}

/// The repository's own configs and schemas.
fn repository_configs() -> tempfile::TempDir {
    let dir = scratch();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["configs", "schemas"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    dir
}

/// Rename-save, as editors do.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Status, generation header and body length of one keep-alive answer.
fn read_response(s: &mut UnixStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, u64, usize)> {
    buf.clear();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let header = |name: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let len = header("content-length:") as usize;
    let generation = header("x-hotconf-generation:");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, generation, len))
}

fn send(s: &mut UnixStream, method: &str, path: &str) -> std::io::Result<()> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes())
}

/// One request on a fresh connection.
fn request(socket: &Path, method: &str, path: &str) -> std::io::Result<(u16, u64, usize)> {
    let mut s = UnixStream::connect(socket)?;
    send(&mut s, method, path)?;
    read_response(&mut s, &mut Vec::new())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn idle() {
    let dir = repository_configs();
    let d = Daemon::start(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "idle: RSS {:.1} MiB, {} threads (repository configs)",
        d.rss_kib() as f64 / 1024.0,
        d.proc_status("Threads:")
    );
}

fn throughput() {
    let dir = repository_configs();
    let d = Daemon::start(dir.path(), &[]);
    for path in ["/v1/unrouted", "/v1/status", "/v1/config/app"] {
        for clients in [1usize, 16] {
            let until = Instant::now() + Duration::from_secs(3);
            let threads: Vec<_> = (0..clients)
                .map(|_| {
                    let socket = d.socket.clone();
                    std::thread::spawn(move || {
                        let mut s = UnixStream::connect(&socket).unwrap();
                        let mut buf = Vec::new();
                        let mut n = 0u64;
                        while Instant::now() < until {
                            send(&mut s, "GET", path).unwrap();
                            read_response(&mut s, &mut buf).unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            println!(
                "throughput: GET {path:<16} {clients:>2} keep-alive clients: {:>8.0} req/s",
                total as f64 / 3.0
            );
        }
    }
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 20_000,
        rlim_max: 20_000,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

fn fanout() {
    raise_nofile();
    let dir = repository_configs();
    let d = Daemon::start(dir.path(), &["--max-connections", "12000", "--no-watch"]);
    let app = dir.path().join("configs/app.toml");
    let original = std::fs::read_to_string(&app).unwrap();
    let mut control = UnixStream::connect(&d.socket).unwrap();
    let mut buf = Vec::new();
    for (round, n) in [1usize, 1000, 10_000].into_iter().enumerate() {
        let (_, generation, _) = request(&d.socket, "GET", "/v1/config/app").unwrap();
        let path = format!("/v1/config/app?index={generation}&wait=120s");
        let mut conns: Vec<UnixStream> = (0..n)
            .map(|_| {
                let mut s = UnixStream::connect(&d.socket).unwrap();
                send(&mut s, "GET", &path).unwrap();
                s
            })
            .collect();
        // Let every query park (no timing matters here, only that they wait).
        std::thread::sleep(Duration::from_millis(500 + n as u64 / 5));
        save(&app, &format!("{original}\n# round {round}\n"));
        send(&mut control, "POST", "/v1/reload").unwrap();
        read_response(&mut control, &mut buf).unwrap();
        let published = Instant::now();
        // Read the answers on a few threads; record when each is complete.
        let per = n.div_ceil(4).max(1);
        let mut handles = Vec::new();
        while !conns.is_empty() {
            let take = per.min(conns.len());
            let mine: Vec<UnixStream> = conns.drain(..take).collect();
            handles.push(std::thread::spawn(move || {
                let mut buf = Vec::new();
                mine.into_iter()
                    .map(|mut s| {
                        read_response(&mut s, &mut buf).unwrap();
                        Instant::now()
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let mut done: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|t| t.saturating_duration_since(published))
            .collect();
        done.sort();
        println!(
            "fanout: {n:>6} blocking queries, one publish: all answered {:.1} ms after the reload's answer (p50 {:.1} ms)",
            ms(*done.last().unwrap()),
            ms(percentile(&done, 0.5))
        );
    }
}

fn memory() {
    let dir = repository_configs();
    let d = Daemon::start(dir.path(), &["--no-watch"]);
    std::thread::sleep(Duration::from_secs(1));
    let idle = d.rss_kib();
    // ~4 MiB of long strings (under every default limit).
    let big: String = (0..1000)
        .map(|i| format!("k{i} = \"{}\"\n", "x".repeat(4180)))
        .collect();
    std::fs::write(dir.path().join("schemas/big.schema.json"), "{}").unwrap();
    std::fs::write(dir.path().join("configs/big.toml"), &big).unwrap();
    request(&d.socket, "POST", "/v1/reload").unwrap();
    let (_, _, len) = request(&d.socket, "GET", "/v1/config/big").unwrap();
    let loaded = d.rss_kib();
    let clients: Vec<UnixStream> = (0..400)
        .map(|_| {
            let mut s = UnixStream::connect(&d.socket).unwrap();
            send(&mut s, "GET", "/v1/config/big").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let pinned = d.rss_kib();
    drop(clients);
    std::thread::sleep(Duration::from_secs(2));
    let after = d.rss_kib();
    std::fs::write(dir.path().join("configs/big.toml"), "k = \"small\"\n").unwrap();
    request(&d.socket, "POST", "/v1/reload").unwrap();
    // The daemon trims its heap a second after a publish.
    std::thread::sleep(Duration::from_secs(3));
    let replaced = d.rss_kib();
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "memory: idle {:.1} MiB; {:.1} MiB document served: {:.1} MiB; 400 non-reading clients: {:.1} MiB (+{:.1}); they left: {:.1} MiB; replaced by a small document: {:.1} MiB ({:.2}x idle)",
        mib(idle),
        len as f64 / 1048576.0,
        mib(loaded),
        mib(pinned),
        mib(pinned.saturating_sub(loaded)),
        mib(after),
        mib(replaced),
        replaced as f64 / idle as f64
    );
    // 10,000 publishing reloads of a small document.
    let n = dir.path().join("configs/n.toml");
    std::fs::write(dir.path().join("schemas/n.schema.json"), "{}").unwrap();
    let mut s = UnixStream::connect(&d.socket).unwrap();
    let mut buf = Vec::new();
    std::fs::write(&n, "v = 0\n").unwrap();
    send(&mut s, "POST", "/v1/reload").unwrap();
    read_response(&mut s, &mut buf).unwrap();
    let before = d.rss_kib();
    let started = Instant::now();
    for i in 1..=10_000 {
        std::fs::write(&n, format!("v = {i}\n")).unwrap();
        send(&mut s, "POST", "/v1/reload").unwrap();
        read_response(&mut s, &mut buf).unwrap();
    }
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = d.rss_kib();
    println!(
        "memory: 10,000 publishing reloads ({:.2} ms each): RSS {:.1} → {:.1} MiB ({:+.2} MiB)",
        ms(elapsed) / 10_000.0,
        mib(before),
        mib(after),
        (after as f64 - before as f64) / 1024.0
    );
}

/// Peak RSS (KiB) of `hotconf check` on one document.
// The child is reaped by `wait4` (which also gives its peak RSS).
#[allow(clippy::zombie_processes)]
fn check_peak(dir: &Path, name: &str, text: &str) -> (u64, Duration) {
    std::fs::write(dir.join("configs").join(format!("{name}.toml")), text).unwrap();
    std::fs::write(
        dir.join("schemas").join(format!("{name}.schema.json")),
        "{}",
    )
    .unwrap();
    let started = Instant::now();
    let child = Command::new(BIN)
        .arg("check")
        .arg("--config-dir")
        .arg(dir.join("configs"))
        .arg("--schema-dir")
        .arg(dir.join("schemas"))
        .arg(dir.join("configs").join(format!("{name}.toml")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid pointers.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    (usage.ru_maxrss as u64, started.elapsed())
}

fn check_memory() {
    let dir = scratch();
    let kv = |bytes: usize| -> String {
        let mut out = String::new();
        let mut i = 0;
        while out.len() < bytes {
            out.push_str(&format!("key_{i} = \"value number {i}\"\nn_{i} = {i}\n"));
            i += 1;
        }
        out
    };
    let max_tables = format!("a = [{}]\n", vec!["{b=1}"; 99_999].join(", "));
    let max_keys: String = (0..200_000).map(|i| format!("k{i} = {i}\n")).collect();
    let over = format!("a = [{}]\n", vec!["{b=1}"; 590_000].join(", "));
    let cases: Vec<(&str, String)> = vec![
        ("empty (baseline)", String::new()),
        ("1 KB", kv(1024)),
        ("50 KB", kv(50 * 1024)),
        ("1 MB", kv(1024 * 1024)),
        (
            "4 MiB, long strings",
            (0..1000)
                .map(|i| format!("k{i} = \"{}\"\n", "x".repeat(4180)))
                .collect(),
        ),
        ("99,999 inline tables (at the value limit)", max_tables),
        ("200,000 keys (at the value limit)", max_keys),
        ("4 MiB of inline tables (refused)", over),
    ];
    for (i, (what, text)) in cases.iter().enumerate() {
        let (kib, took) = check_peak(dir.path(), &format!("d{i}"), text);
        println!(
            "check: {what:<44} {:>8.2} MiB text, peak RSS {:>6.1} MiB, {:>6.0} ms",
            text.len() as f64 / 1048576.0,
            kib as f64 / 1024.0,
            ms(took)
        );
    }
}

fn edit_served() {
    let counts: Vec<usize> = std::env::var("HOTCONF_BENCH_DOCS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000, 10_000]);
    for docs in counts {
        let dir = scratch();
        for i in 0..docs {
            std::fs::write(dir.path().join(format!("configs/d{i}.toml")), "v = 0\n").unwrap();
            std::fs::write(
                dir.path().join(format!("schemas/d{i}.schema.json")),
                r#"{"type":"object","properties":{"v":{"type":"integer"}}}"#,
            )
            .unwrap();
        }
        let d = Daemon::start(dir.path(), &[]);
        let target = dir.path().join("configs/d0.toml");
        let mut took = Vec::new();
        for k in 1..=15u64 {
            let (_, generation, _) = request(&d.socket, "GET", "/v1/config/d0").unwrap();
            let mut s = UnixStream::connect(&d.socket).unwrap();
            send(
                &mut s,
                "GET",
                &format!("/v1/config/d0?index={generation}&wait=60s"),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let t0 = Instant::now();
            save(&target, &format!("v = {k}\n"));
            read_response(&mut s, &mut Vec::new()).unwrap();
            took.push(t0.elapsed());
            // Let the watcher's deferred looks of this edit finish.
            std::thread::sleep(Duration::from_millis(300));
        }
        took.sort();
        println!(
            "edit→served: {docs:>6} documents, one rename-save: p50 {:.2} ms, max {:.2} ms (15 edits, default --debounce)",
            ms(percentile(&took, 0.5)),
            ms(*took.last().unwrap())
        );
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sections: [(&str, fn()); 6] = [
        ("idle", idle),
        ("throughput", throughput),
        ("fanout", fanout),
        ("memory", memory),
        ("check_memory", check_memory),
        ("edit_served", edit_served),
    ];
    for (name, f) in sections {
        if filter.is_empty() || filter.iter().any(|w| name.contains(w.as_str())) {
            f();
        }
    }
}
