//! Where the control socket lives (SPEC §4), decided by one function for the
//! daemon and the client so the two can never disagree.
//!
//! Order: `--socket` / `$HOTCONF_SOCKET`, then `$RUNTIME_DIRECTORY/hotconf.sock`
//! (systemd's `RuntimeDirectory=`), then — for clients only, and only if it
//! exists — `/run/hotconf/hotconf.sock`, then `$XDG_RUNTIME_DIR/hotconf.sock`,
//! then `/tmp/hotconf-$UID/hotconf.sock`. Empty variables count as unset.
//!
//! This module only decides paths and prepares the `/tmp` fallback
//! directory; creating the socket itself is `control`'s job.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the socket inside a runtime directory.
pub const SOCKET_NAME: &str = "hotconf.sock";

/// Where a system-wide daemon (systemd `RuntimeDirectory=hotconf`) listens;
/// clients look here when their own environment does not say.
pub const SYSTEM_SOCKET: &str = "/run/hotconf/hotconf.sock";

/// Who is asking: the daemon creates the socket, the client connects to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `hotconf run`.
    Daemon,
    /// `hotconf status|get|reload|watch`.
    Client,
}

/// Which rule of the resolution order chose the path (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--socket` or `$HOTCONF_SOCKET`.
    Explicit,
    /// `$RUNTIME_DIRECTORY`.
    RuntimeDirectory,
    /// `/run/hotconf/hotconf.sock` (clients only).
    System,
    /// `$XDG_RUNTIME_DIR`.
    XdgRuntimeDir,
    /// `/tmp/hotconf-$UID/`.
    TmpFallback,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Explicit => "--socket/$HOTCONF_SOCKET",
            Origin::RuntimeDirectory => "$RUNTIME_DIRECTORY",
            Origin::System => SYSTEM_SOCKET,
            Origin::XdgRuntimeDir => "$XDG_RUNTIME_DIR",
            Origin::TmpFallback => "/tmp fallback",
        })
    }
}

/// A resolved socket path and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPath {
    /// Where the socket is (or is to be created).
    pub path: PathBuf,
    /// Which rule chose it.
    pub origin: Origin,
}

/// Resolves the socket path from the process environment (SPEC §4).
/// `explicit` is `--socket` (clap already folds `$HOTCONF_SOCKET` into it;
/// the variable is read here too for library callers).
pub fn resolve_socket(explicit: Option<&Path>, role: Role) -> SocketPath {
    resolve_socket_with(
        explicit,
        role,
        |k| std::env::var_os(k),
        current_uid(),
        present,
    )
}

/// Whether `path` exists, or might: a path we may not even look at (a
/// directory on the way we cannot search) counts as present, so the client
/// reports "permission denied on …" there instead of falling back to a
/// path where no daemon runs.
fn present(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::PermissionDenied,
    }
}

/// [`resolve_socket`] with the environment, uid and file-existence test
/// supplied by the caller (so the order can be tested).
pub fn resolve_socket_with(
    explicit: Option<&Path>,
    role: Role,
    env: impl Fn(&str) -> Option<OsString>,
    uid: u32,
    exists: impl Fn(&Path) -> bool,
) -> SocketPath {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let found = |path: PathBuf, origin| SocketPath { path, origin };
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return found(p.to_path_buf(), Origin::Explicit);
    }
    if let Some(p) = var("HOTCONF_SOCKET") {
        return found(PathBuf::from(p), Origin::Explicit);
    }
    // systemd joins several RuntimeDirectory= entries with ':'; the first is ours.
    if let Some(dir) = var("RUNTIME_DIRECTORY").and_then(|v| {
        v.to_str()
            .map(|s| s.split(':').find(|d| !d.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| Some(PathBuf::from(v)))
    }) {
        return found(dir.join(SOCKET_NAME), Origin::RuntimeDirectory);
    }
    if role == Role::Client && exists(Path::new(SYSTEM_SOCKET)) {
        return found(PathBuf::from(SYSTEM_SOCKET), Origin::System);
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return found(PathBuf::from(dir).join(SOCKET_NAME), Origin::XdgRuntimeDir);
    }
    found(fallback_dir(uid).join(SOCKET_NAME), Origin::TmpFallback)
}

/// `/tmp/hotconf-$UID`, the last-resort socket directory.
pub fn fallback_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/hotconf-{uid}"))
}

/// The effective uid of this process.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Prepares the directory of a daemon's socket: for the `/tmp` fallback,
/// creates the private 0700 directory (see [`prepare_private_dir`]); other
/// locations are the operator's (or systemd's) to provide.
pub fn prepare_socket_dir(socket: &SocketPath) -> io::Result<()> {
    if socket.origin == Origin::TmpFallback {
        if let Some(dir) = socket.path.parent() {
            prepare_private_dir(dir, current_uid())?;
        }
    }
    Ok(())
}

/// Makes sure `dir` is a real directory (not a symlink) owned by `uid` with
/// mode 0700, creating it if needed. Refuses a directory another user owns:
/// in a shared `/tmp` anyone could have created it first to intercept the
/// socket.
pub fn prepare_private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(annotate(dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| annotate(dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a directory; refusing to use it", dir.display()),
        ));
    }
    if meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by us (uid {uid}); refusing to use it",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        // Ours, but too open (created by hand?): close it before using it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| annotate(dir, e))?;
    }
    Ok(())
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)], role: Role, system_exists: bool) -> SocketPath {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        resolve_socket_with(None, role, |k| map.get(k).cloned(), 1000, |_| system_exists)
    }

    #[test]
    fn order_matches_the_spec() {
        let all = [
            ("HOTCONF_SOCKET", "/a/s.sock"),
            ("RUNTIME_DIRECTORY", "/run/hc:/run/other"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ];
        let p = resolve(&all, Role::Daemon, true);
        assert_eq!(p.path, PathBuf::from("/a/s.sock"));
        let p = resolve(&all[1..], Role::Client, true);
        assert_eq!(p.path, PathBuf::from("/run/hc/hotconf.sock"));
        let p = resolve(&all[2..], Role::Client, true);
        assert_eq!(p.path, PathBuf::from(SYSTEM_SOCKET));
        assert_eq!(p.origin, Origin::System);
        let p = resolve(&all[2..], Role::Daemon, true);
        assert_eq!(p.path, PathBuf::from("/run/user/1000/hotconf.sock"));
        let p = resolve(&all[2..], Role::Client, false);
        assert_eq!(p.path, PathBuf::from("/run/user/1000/hotconf.sock"));
        let p = resolve(&[("XDG_RUNTIME_DIR", "")], Role::Daemon, false);
        assert_eq!(p.path, PathBuf::from("/tmp/hotconf-1000/hotconf.sock"));
        assert_eq!(p.origin, Origin::TmpFallback);
        let explicit = resolve_socket_with(
            Some(Path::new("x.sock")),
            Role::Client,
            |_| Some(OsString::from("/ignored")),
            0,
            |_| true,
        );
        assert_eq!(explicit.path, PathBuf::from("x.sock"));
    }

    #[test]
    fn private_dir_is_created_0700_and_foreign_owner_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hotconf-x");
        prepare_private_dir(&dir, current_uid()).expect("create");
        let meta = std::fs::metadata(&dir).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o700);
        // Too open but ours: tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare_private_dir(&dir, current_uid()).expect("reuse");
        let meta = std::fs::metadata(&dir).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o700);
        // Someone else's: refused.
        let err = prepare_private_dir(&dir, current_uid().wrapping_add(1)).expect_err("refuse");
        assert!(err.to_string().contains("owned by uid"), "{err}");
        // A file in the way: refused.
        let file = tmp.path().join("f");
        std::fs::write(&file, "").expect("write");
        assert!(prepare_private_dir(&file, current_uid()).is_err());
    }
}
