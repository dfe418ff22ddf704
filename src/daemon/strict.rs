//! sshd-`StrictModes`-like checks of the config and schema directories:
//! a directory another user may write to lets that user decide what a
//! (root) daemon serves — new documents, or symlinks to files they could
//! not read themselves. Found at startup; logged loudly (WARN
//! `unsafe_directory`) and kept in `/v1/status` `warnings`.
//!
//! This warns; it refuses nothing. What is refused is a document symlink
//! to another owner's file (`pipeline::document::check_symlink`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why `dir` or one of its ancestors can be written by a uid other than
/// root and `own`, if it can (the first such directory, from the top).
/// A sticky directory (`/tmp`) above it is fine: others cannot replace the
/// entries in it they do not own.
pub fn writable_by_others(dir: &Path, own: u32) -> Option<String> {
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let chain: Vec<&Path> = real.ancestors().collect();
    for (depth, d) in chain.iter().enumerate().rev() {
        let Ok(meta) = std::fs::metadata(d) else {
            continue;
        };
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0 && depth > 0;
        if meta.uid() != 0 && meta.uid() != own {
            return Some(format!("{} is owned by uid {}", d.display(), meta.uid()));
        }
        if mode & 0o002 != 0 && !sticky {
            return Some(format!("{} is writable by every user", d.display()));
        }
        if mode & 0o020 != 0 && !sticky && meta.gid() != 0 {
            return Some(format!(
                "{} is writable by group {}",
                d.display(),
                meta.gid()
            ));
        }
    }
    None
}

/// Every warning about `config_dir`, `schema_dir` and the directories of
/// the documents' symlink targets, for a daemon running as `own`.
pub fn directory_warnings(config_dir: &Path, schema_dir: &Path, own: u32) -> Vec<String> {
    let mut dirs: Vec<(&str, PathBuf)> = vec![
        ("config directory", config_dir.to_path_buf()),
        ("schema directory", schema_dir.to_path_buf()),
    ];
    if let Ok(entries) = std::fs::read_dir(config_dir) {
        for entry in entries.flatten().take(10_000) {
            let path = entry.path();
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if !is_link {
                continue;
            }
            if let Some(parent) = std::fs::canonicalize(&path)
                .ok()
                .and_then(|t| t.parent().map(Path::to_path_buf))
            {
                dirs.push(("directory of a document symlink's target", parent));
            }
        }
    }
    let mut out = Vec::new();
    for (what, dir) in dirs {
        if let Some(why) = writable_by_others(&dir, own) {
            let line = format!(
                "{what} {}: {why}; other users can change what is served \
                 (make it writable by root and the daemon's user only)",
                dir.display()
            );
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_world_writable_directory_is_reported_and_a_private_one_is_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("configs");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let own = crate::control::paths::current_uid();
        assert_eq!(writable_by_others(&dir, own), None);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let why = writable_by_others(&dir, own).expect("reported");
        assert!(why.contains("writable by every user"), "{why}");
    }
}
