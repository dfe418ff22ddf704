//! Claiming the control socket's path: refuse a live daemon's socket,
//! replace a stale one, and create ours with its final mode and group
//! before anyone can reach it.
//!
//! No window in which the socket is more open than asked: it is bound inside
//! a fresh 0700 directory next to the target (nobody else can connect
//! through it), chmod/chown'ed there, then renamed into place — the rename
//! is atomic and also replaces a stale socket without a moment where the
//! path is missing. The process umask is never touched (other threads run).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// How to create the control socket.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Where the socket goes (already resolved, see `paths`).
    pub path: PathBuf,
    /// Its permission bits (`--socket-mode`, default 0660).
    pub mode: u32,
    /// Its group, a name or a numeric gid (`--socket-group`).
    pub group: Option<String>,
}

/// Why the control socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on the path: it is never clobbered.
    #[error("another hotconf is already serving {0} (stop it, or choose another --socket)")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// `--socket-group` names no known group.
    #[error("unknown group {0:?} (--socket-group)")]
    UnknownGroup(String),
    /// The TCP metrics address could not be bound.
    #[error("cannot listen on {addr} for --metrics-listen: {source}")]
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Any other failure, with the path it concerns.
    #[error("cannot create the control socket {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

/// The socket file this daemon created; removed on drop if it is still
/// ours (same inode), so a successor's socket is never deleted.
#[derive(Debug)]
pub struct SocketFile {
    /// Where it is.
    path: PathBuf,
    /// Device and inode of our socket, to recognise it at removal.
    id: (u64, u64),
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether our socket is still at its path (not removed, not replaced,
    /// its directory not deleted).
    pub fn in_place(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Creates the listening socket at `opts.path` (see the module docs).
pub fn claim(opts: &SocketOptions) -> Result<(UnixListener, SocketFile), BindError> {
    let path = &opts.path;
    let io_err = |source: io::Error| BindError::Io {
        path: path.clone(),
        source,
    };
    let gid = opts.group.as_deref().map(resolve_group).transpose()?;
    check_existing(path)?;

    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = create_private_dir(parent).map_err(io_err)?;
    let staged = private.path().join("s");
    let result = stage(&staged, opts.mode, gid)
        .map_err(io_err)
        .and_then(|staged_ok| {
            // A daemon that started since our first check would be clobbered by
            // the rename; checking again narrows that race to the rename itself.
            check_existing(path)?;
            std::fs::rename(&staged, path).map_err(io_err)?;
            Ok(staged_ok)
        });
    // Removes the staged socket (if the rename did not happen) and the dir.
    let _ = private.close();
    let (listener, id) = result?;
    Ok((
        listener,
        SocketFile {
            path: path.clone(),
            id,
        },
    ))
}

/// Binds at `staged` (inside the private directory) and gives the socket
/// its final mode and group. Returns the listener and the socket's identity.
fn stage(staged: &Path, mode: u32, gid: Option<u32>) -> io::Result<(UnixListener, (u64, u64))> {
    let listener = UnixListener::bind(staged)?;
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(mode & 0o777))?;
    if gid.is_some() {
        std::os::unix::fs::chown(staged, None, gid)?;
    }
    let meta = std::fs::symlink_metadata(staged)?;
    Ok((listener, (meta.dev(), meta.ino())))
}

/// Ok when the path is free or holds a stale socket (nobody answers).
fn check_existing(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket(path.to_path_buf()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BindError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A fresh 0700 directory in `parent` with a short name (socket paths are
/// limited to ~107 bytes, so the staged path must not be much longer than
/// the final one).
fn create_private_dir(parent: &Path) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".hc")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
}

/// A group name or numeric gid → gid.
pub fn resolve_group(group: &str) -> Result<u32, BindError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    // getgrnam_r through nix, so that groups from NSS (LDAP, systemd-userdb)
    // resolve as they do for every other tool; /etc/group alone would not.
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(BindError::UnknownGroup(group.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_with_mode_and_replaces_stale() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("hotconf.sock");
        let opts = SocketOptions {
            path: path.clone(),
            mode: 0o640,
            group: Some("0".into()),
        };
        let (listener, file) = claim(&opts).expect("claim");
        let meta = std::fs::metadata(&path).expect("stat");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o640);
        // Live: refused, and the error names the path.
        let err = claim(&opts).expect_err("in use");
        assert!(matches!(err, BindError::InUse(_)), "{err}");
        assert!(err.to_string().contains("hotconf.sock"));
        // Stale (listener gone, file left): replaced.
        drop(listener);
        std::mem::forget(file);
        let (_l2, file2) = claim(&opts).expect("replace stale");
        drop(file2);
        assert!(!path.exists(), "removed on drop");
        // Nothing left behind in the directory.
        let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("ls").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn refuses_a_regular_file_and_unknown_groups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("hotconf.sock");
        std::fs::write(&path, "x").expect("write");
        let opts = SocketOptions {
            path: path.clone(),
            mode: 0o660,
            group: None,
        };
        assert!(matches!(claim(&opts), Err(BindError::NotASocket(_))));
        assert!(matches!(
            resolve_group("no-such-group-hopefully"),
            Err(BindError::UnknownGroup(_))
        ));
        assert_eq!(resolve_group("root").ok(), Some(0));
        assert_eq!(resolve_group("42").ok(), Some(42));
    }
}
