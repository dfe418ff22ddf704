//! The file watcher on its own, without a daemon: real inotify on temp
//! directories, a channel as the sink. Proves the state machine: final
//! content signals at once, bare modifications wait for quiet, droppings are
//! deferred, lost directories are re-watched.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotconf::reload::Unsettled;
use hotconf::watch::{WatchHealth, WatchSignal, Watcher};

use common::{wait_until, DEADLINE};

/// A watcher on one temp directory whose signals land in a channel.
struct Rig {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    unsettled: Arc<Unsettled>,
    health: Arc<WatchHealth>,
    rx: Receiver<(Instant, WatchSignal)>,
    _watcher: Watcher,
}

impl Rig {
    fn new(debounce: Duration) -> Rig {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("configs");
        std::fs::create_dir(&dir).expect("mkdir");
        Self::on(tmp, dir, debounce)
    }

    fn on(tmp: tempfile::TempDir, dir: PathBuf, debounce: Duration) -> Rig {
        let unsettled = Arc::new(Unsettled::default());
        let health = Arc::new(WatchHealth::new());
        let (tx, rx) = channel();
        let watcher = Watcher::start(
            std::slice::from_ref(&dir),
            debounce,
            unsettled.clone(),
            health.clone(),
            move |s| {
                let _ = tx.send((Instant::now(), s));
            },
        )
        .expect("start watcher");
        let rig = Rig {
            _tmp: tmp,
            dir,
            unsettled,
            health,
            rx,
            _watcher: watcher,
        };
        // The watcher announces itself with a rescan once watches exist.
        assert_eq!(
            rig.next(DEADLINE),
            Some(WatchSignal::Rescan),
            "initial rescan"
        );
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The next signal within `timeout`.
    fn next(&self, timeout: Duration) -> Option<WatchSignal> {
        self.rx.recv_timeout(timeout).ok().map(|(_, s)| s)
    }

    /// The next signal within `timeout`, with when it was sent.
    fn next_at(&self, timeout: Duration) -> Option<(Instant, WatchSignal)> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Discards signals until none arrives for `quiet`.
    fn drain(&self, quiet: Duration) {
        while self.rx.recv_timeout(quiet).is_ok() {}
    }
}

fn rename_save(dir: &Path, name: &str, text: &str) -> Instant {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write tmp");
    let t = Instant::now();
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
    t
}

#[test]
fn rename_into_place_signals_at_once_every_time() {
    // A long debounce: anything waiting for it would miss the deadline.
    let rig = Rig::new(Duration::from_secs(30));
    for i in 0..5 {
        let t = rename_save(&rig.dir, "app.toml", &format!("v = {i}\n"));
        let (at, s) = rig.next_at(DEADLINE).expect("signal after rename");
        assert_eq!(s, WatchSignal::Changed);
        assert!(at >= t, "signal came from this rename");
        assert!(at - t < Duration::from_secs(5), "not debounced");
        assert!(!rig.unsettled.contains(&rig.path("app.toml")));
        // The temp file's events (create, close, rename away) are deferred
        // to the debounce; they may not be consumed yet, nothing else is.
        assert_eq!(rig.next(Duration::from_millis(50)), None);
    }
}

#[test]
fn write_then_close_is_unsettled_until_close() {
    let rig = Rig::new(Duration::from_secs(30));
    let path = rig.path("app.toml");
    for i in 0..3 {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        f.write_all(format!("a = {i}\n").as_bytes()).expect("write");
        assert!(
            wait_until(DEADLINE, || rig.unsettled.contains(&path)),
            "a bare modification marks the path unsettled"
        );
        // No signal while it is open (debounce is 30 s).
        assert_eq!(rig.next(Duration::from_millis(200)), None);
        f.write_all(b"b = 2\n").expect("write rest");
        let t = Instant::now();
        drop(f);
        let (at, s) = rig.next_at(DEADLINE).expect("signal on close");
        assert_eq!(s, WatchSignal::Changed);
        assert!(at >= t);
        assert!(!rig.unsettled.contains(&path), "close settles");
    }
}

#[test]
fn bare_modification_settles_after_quiet() {
    let debounce = Duration::from_millis(300);
    let rig = Rig::new(debounce);
    let path = rig.path("app.toml");
    std::fs::write(&path, "a = 1\n").expect("write");
    rig.drain(Duration::from_millis(600));
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    // Modifications 100 ms apart keep resetting the timer (trailing edge).
    let mut last = Instant::now();
    for i in 0..5 {
        f.write_all(format!("k{i} = {i}\n").as_bytes())
            .expect("write");
        last = Instant::now();
        assert!(wait_until(DEADLINE, || rig.unsettled.contains(&path)));
        if let Some((at, s)) = rig.next_at(Duration::from_millis(100)) {
            panic!("signal {s:?} {:?} after a write, before quiet", at - last);
        }
    }
    let (at, s) = rig.next_at(DEADLINE).expect("signal after quiet");
    assert_eq!(s, WatchSignal::Changed);
    assert!(at - last >= debounce, "waited for {debounce:?} of quiet");
    assert!(!rig.unsettled.contains(&path));
    drop(f);
    assert_eq!(
        rig.next(DEADLINE),
        Some(WatchSignal::Changed),
        "close signals too"
    );
}

#[test]
fn droppings_are_deferred_and_still_looked_at() {
    let debounce = Duration::from_millis(400);
    let rig = Rig::new(debounce);
    let t = Instant::now();
    for name in ["4913", "app.toml~", ".app.toml.swp", "sedAbc123"] {
        std::fs::write(rig.path(name), "x").expect("write dropping");
    }
    std::fs::remove_file(rig.path("4913")).expect("rm");
    let (at, s) = rig.next_at(DEADLINE).expect("deferred look");
    assert_eq!(s, WatchSignal::Changed);
    assert!(at - t >= debounce, "deferred, not immediate: {:?}", at - t);
    assert_eq!(
        rig.next(Duration::from_millis(600)),
        None,
        "one look for the lot"
    );
    assert!(!rig.unsettled.contains(&rig.path("app.toml~")));
}

#[test]
fn vim_style_save_never_signals_mid_dance() {
    // vim: probe 4913, rename the original to app.toml~, write a new file,
    // set its metadata, close it, delete the backup. The only immediate
    // signal is the close, when the new content is complete.
    let rig = Rig::new(Duration::from_secs(30));
    let path = rig.path("app.toml");
    std::fs::write(&path, "v = 0\n").expect("write");
    rig.drain(Duration::from_millis(300));
    for i in 1..=3 {
        std::fs::write(rig.path("4913"), "").expect("probe");
        std::fs::remove_file(rig.path("4913")).expect("rm probe");
        std::fs::rename(&path, rig.path("app.toml~")).expect("backup");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(format!("v = {i}\n").as_bytes()).expect("write");
        assert!(wait_until(DEADLINE, || rig.unsettled.contains(&path)));
        assert_eq!(
            rig.next(Duration::from_millis(100)),
            None,
            "nothing mid-save"
        );
        let perms = f.metadata().expect("meta").permissions();
        f.set_permissions(perms).expect("chmod");
        assert_eq!(
            rig.next(Duration::from_millis(100)),
            None,
            "chmod is not the end"
        );
        drop(f);
        assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Changed));
        assert!(!rig.unsettled.contains(&path));
        std::fs::remove_file(rig.path("app.toml~")).expect("rm backup");
    }
}

#[test]
fn symlink_swap_signals_at_once() {
    // The ConfigMap layout: app.toml -> ..data/app.toml, ..data -> ..TS.
    let rig = Rig::new(Duration::from_secs(30));
    let ts = |i: u32| format!("..2026_11_26_00_00_{i:02}.000000001");
    let write_version = |i: u32| {
        let d = rig.path(&ts(i));
        std::fs::create_dir(&d).expect("mkdir ts");
        std::fs::write(d.join("app.toml"), format!("v = {i}\n")).expect("write");
        std::os::unix::fs::symlink(ts(i), rig.path("..data_tmp")).expect("link tmp");
        let t = Instant::now();
        std::fs::rename(rig.path("..data_tmp"), rig.path("..data")).expect("swap");
        t
    };
    write_version(0);
    std::os::unix::fs::symlink("..data/app.toml", rig.path("app.toml")).expect("link");
    rig.drain(Duration::from_millis(300));
    for i in 1..=3 {
        let t = write_version(i);
        std::fs::remove_dir_all(rig.path(&ts(i - 1))).expect("rm old");
        // Signals for the new directory and the tmp link may come first;
        // one must come from the swap itself.
        let mut got = false;
        while let Some((at, s)) = rig.next_at(Duration::from_secs(2)) {
            assert_eq!(s, WatchSignal::Changed);
            if at >= t {
                got = true;
                break;
            }
        }
        assert!(got, "the swap signals at once");
    }
}

#[test]
fn deleted_and_recreated_directory_is_watched_again() {
    let rig = Rig::new(Duration::from_millis(100));
    for i in 0..3 {
        std::fs::remove_dir_all(&rig.dir).expect("rm dir");
        // Gone: a rescan or deferred look follows; drain it.
        rig.drain(Duration::from_millis(400));
        std::fs::create_dir(&rig.dir).expect("mkdir");
        assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Rescan), "re-watched");
        rename_save(&rig.dir, "app.toml", &format!("v = {i}\n"));
        assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Changed), "round {i}");
        rig.drain(Duration::from_millis(300));
    }
    assert_eq!(rig.health.degraded(), None);
}

#[test]
fn directory_renamed_away_and_replaced_is_watched_again() {
    let rig = Rig::new(Duration::from_millis(100));
    let old = rig.dir.with_file_name("configs.old");
    for i in 0..3 {
        let new = rig.dir.with_file_name("configs.new");
        std::fs::create_dir(&new).expect("mkdir new");
        std::fs::rename(&rig.dir, &old).expect("mv away");
        std::fs::rename(&new, &rig.dir).expect("mv into place");
        assert!(
            wait_until(DEADLINE, || rig.next(Duration::from_millis(10))
                == Some(WatchSignal::Rescan)),
            "re-watched"
        );
        rig.drain(Duration::from_millis(300));
        // Writes into the old directory are not ours any more.
        std::fs::write(old.join("app.toml"), "stale = true\n").expect("write old");
        assert_eq!(
            rig.next(Duration::from_millis(300)),
            None,
            "old dir unwatched"
        );
        rename_save(&rig.dir, "app.toml", &format!("v = {i}\n"));
        assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Changed), "round {i}");
        rig.drain(Duration::from_millis(300));
        std::fs::remove_dir_all(&old).expect("rm old");
        rig.drain(Duration::from_millis(300));
    }
}

#[test]
fn directory_missing_at_start_is_watched_when_it_appears() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("later");
    let rig = Rig::on(tmp, dir.clone(), Duration::from_millis(100));
    std::fs::create_dir(&dir).expect("mkdir");
    assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Rescan));
    rename_save(&dir, "app.toml", "v = 1\n");
    assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Changed));
}

#[test]
fn new_file_is_unsettled_until_written_and_closed() {
    // `cp`, `echo >`: the creation of a regular file is not final content.
    let rig = Rig::new(Duration::from_secs(30));
    let path = rig.path("new.toml");
    let mut f = std::fs::File::create(&path).expect("create");
    assert!(wait_until(DEADLINE, || rig.unsettled.contains(&path)));
    assert_eq!(
        rig.next(Duration::from_millis(200)),
        None,
        "empty file not signalled"
    );
    f.write_all(b"a = 1\n").expect("write");
    drop(f);
    assert_eq!(rig.next(DEADLINE), Some(WatchSignal::Changed));
    assert!(!rig.unsettled.contains(&path));
}

#[test]
fn reads_do_not_signal() {
    // The reloader's own reads must not feed back into reloads.
    let rig = Rig::new(Duration::from_millis(50));
    std::fs::write(rig.path("app.toml"), "a = 1\n").expect("write");
    rig.drain(Duration::from_millis(300));
    for _ in 0..20 {
        let _ = std::fs::read(rig.path("app.toml")).expect("read");
        let _ = std::fs::read_dir(&rig.dir).expect("list").count();
    }
    assert_eq!(rig.next(Duration::from_millis(300)), None);
}

#[test]
fn symlink_targets_outside_the_directory_are_watched() {
    // notify-rs/notify#381: a watch on a directory says nothing about the
    // files its symlinks point to. Documents that are symlinks elsewhere
    // must still be seen when their target is edited.
    let rig = Rig::new(Duration::from_secs(30));
    let elsewhere = rig.dir.with_file_name("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("real.toml"), "v = 0\n").expect("write");
    std::os::unix::fs::symlink(elsewhere.join("real.toml"), rig.path("app.toml")).expect("ln");
    assert_eq!(
        rig.next(DEADLINE),
        Some(WatchSignal::Changed),
        "the link itself"
    );
    rig.drain(Duration::from_millis(200));
    let key = rig.path("app.toml");
    for i in 1..=3 {
        // In place, with a pause: unsettled under the link's path.
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(elsewhere.join("real.toml"))
            .expect("open target");
        f.write_all(format!("v = {i}\n").as_bytes()).expect("write");
        assert!(
            wait_until(DEADLINE, || rig.unsettled.contains(&key)),
            "target mid-write marks the link unsettled"
        );
        drop(f);
        assert_eq!(
            rig.next(DEADLINE),
            Some(WatchSignal::Changed),
            "target closed"
        );
        assert!(!rig.unsettled.contains(&key));
        // Rename-save of the target.
        rename_save(&elsewhere, "real.toml", &format!("v = {i}0\n"));
        assert_eq!(
            rig.next(DEADLINE),
            Some(WatchSignal::Changed),
            "target renamed"
        );
        rig.drain(Duration::from_millis(100));
    }
    // Re-pointing the link moves the watch to the new target's directory.
    let other = rig.dir.with_file_name("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("real.toml"), "v = 100\n").expect("write");
    let tmp = rig.path(".app.toml.lnk");
    std::os::unix::fs::symlink(other.join("real.toml"), &tmp).expect("ln tmp");
    std::fs::rename(&tmp, rig.path("app.toml")).expect("ln -sf");
    assert_eq!(
        rig.next(DEADLINE),
        Some(WatchSignal::Changed),
        "link re-pointed"
    );
    rig.drain(Duration::from_millis(200));
    std::fs::write(other.join("real.toml"), "v = 101\n").expect("write new target");
    assert_eq!(
        rig.next(DEADLINE),
        Some(WatchSignal::Changed),
        "new target watched"
    );
    rig.drain(Duration::from_millis(200));
    std::fs::write(elsewhere.join("real.toml"), "v = 102\n").expect("write old target");
    assert_eq!(
        rig.next(Duration::from_millis(300)),
        None,
        "old target unwatched"
    );
}

#[test]
fn queue_overflow_asks_for_a_rescan() {
    // Stall the event thread inside the sink, flood the directory past the
    // kernel's queue (fs.inotify.max_queued_events, 16384 by default), then
    // let it go: the overflow must come out as a rescan.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("configs");
    std::fs::create_dir(&dir).expect("mkdir");
    let gate = Arc::new(std::sync::Mutex::new(()));
    let (tx, rx) = channel();
    let held = gate.clone();
    let _watcher = Watcher::start(
        std::slice::from_ref(&dir),
        Duration::from_millis(50),
        Arc::new(Unsettled::default()),
        Arc::new(WatchHealth::new()),
        move |s| {
            let _pass = held.lock();
            let _ = tx.send(s);
        },
    )
    .expect("start");
    assert_eq!(rx.recv_timeout(DEADLINE).ok(), Some(WatchSignal::Rescan));
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let closed = gate.lock().expect("gate");
    // This signal's sink call blocks the event thread.
    rename_save(&dir, "app.toml", "v = 1\n");
    // Each write is four events (create, open, modify, close).
    for i in 0..limit / 3 {
        std::fs::write(dir.join(format!("x{}", i % 64)), "x").expect("flood");
    }
    drop(closed);
    let mut saw_rescan = false;
    while let Ok(s) = rx.recv_timeout(Duration::from_secs(5)) {
        if s == WatchSignal::Rescan {
            saw_rescan = true;
            break;
        }
    }
    assert!(saw_rescan, "no rescan after an overflow");
}
