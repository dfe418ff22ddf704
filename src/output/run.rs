//! One run of one output, on the output's own thread: compare with the
//! destination, write the candidate beside it (fsync), `check` it, rename
//! it into place (fsync the directory), `apply`. And the command runner:
//! an argv without a shell, a minimal environment, its own process group
//! killed at the timeout, the tail of its stderr kept for the reason.
//!
//! What it does not do: render (see `render`), decide when to run (see the
//! module root), or quote anything before it is scrubbed of secrets (the
//! caller scrubs every reason it gets from here).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::output::definition::Definition;

/// The `PATH` commands run with (nothing else of the daemon's environment
/// is passed on).
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of a command's stderr a reason quotes (its end).
const STDERR_TAIL: usize = 400;

/// At most this much stderr is read from a command (the rest is dropped).
const STDERR_CAP: usize = 64 << 10;

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The render is byte-identical to the destination: nothing written,
    /// nothing run.
    Unchanged,
    /// The candidate passed `check` (dry runs stop here; it was removed).
    Checked,
    /// The destination was replaced; `apply` ran (`Err`: it failed, the
    /// file stays).
    Replaced {
        /// The `apply` failure, if any.
        apply: Result<(), String>,
    },
}

/// Why a run stopped before replacing the destination (the old file is
/// untouched, the candidate removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `write` or `check`.
    pub stage: &'static str,
    /// Why, unscrubbed.
    pub reason: String,
}

/// Runs `def` with `rendered` as its new content. With `dry_run`, stops
/// after `check` (nothing replaced, nothing applied).
pub fn run(def: &Definition, rendered: &[u8], dry_run: bool) -> Result<Outcome, Failure> {
    if !dry_run {
        if let Ok(current) = std::fs::read(&def.destination) {
            if current == rendered {
                return Ok(Outcome::Unchanged);
            }
        }
    }
    let candidate = def.candidate();
    let fail = |stage, reason: String| {
        let _ = std::fs::remove_file(&candidate);
        Failure { stage, reason }
    };
    write_candidate(def, &candidate, rendered).map_err(|e| fail("write", e))?;
    if let Some(check) = &def.check {
        run_command(check, &candidate, def.timeout).map_err(|e| fail("check", e))?;
    }
    if dry_run {
        let _ = std::fs::remove_file(&candidate);
        return Ok(Outcome::Checked);
    }
    std::fs::rename(&candidate, &def.destination).map_err(|e| {
        fail(
            "write",
            format!("cannot rename the candidate into place: {e}"),
        )
    })?;
    if let Some(dir) = def.destination.parent() {
        // The rename is durable only once the directory is on disk too.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let apply = match &def.apply {
        Some(apply) => run_command(apply, &def.destination, def.timeout),
        None => Ok(()),
    };
    Ok(Outcome::Replaced { apply })
}

fn write_candidate(def: &Definition, candidate: &Path, bytes: &[u8]) -> Result<(), String> {
    // A candidate left by a crashed run is stale: this output's runs never
    // overlap.
    let _ = std::fs::remove_file(candidate);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(def.mode)
        .open(candidate)
        .map_err(|e| format!("cannot create {}: {e}", candidate.display()))?;
    // The umask may have narrowed the mode given at creation.
    file.set_permissions(std::fs::Permissions::from_mode(def.mode))
        .map_err(|e| format!("cannot set the mode: {e}"))?;
    if def.owner.is_some() || def.group.is_some() {
        let uid = def.owner.as_deref().map(lookup_user).transpose()?;
        let gid = def.group.as_deref().map(lookup_group).transpose()?;
        std::os::unix::fs::fchown(&file, uid, gid)
            .map_err(|e| format!("cannot change the owner: {e}"))?;
    }
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", candidate.display()))
}

/// A user name or uid → uid.
fn lookup_user(name: &str) -> Result<u32, String> {
    if let Ok(uid) = name.parse() {
        return Ok(uid);
    }
    let c = std::ffi::CString::new(name).map_err(|_| format!("no user {name:?}"))?;
    // SAFETY: getpwnam reads a NUL-terminated string and returns a pointer
    // into static storage or null; we only read one field at once, on the
    // output's thread (a race with another getpw* call could give a wrong
    // answer, never a memory error, as the field is a plain integer).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(format!("no user {name:?}"));
    }
    // SAFETY: non-null pointer returned by getpwnam, read at once.
    Ok(unsafe { (*pw).pw_uid })
}

/// A group name or gid → gid.
fn lookup_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let c = std::ffi::CString::new(name).map_err(|_| format!("no group {name:?}"))?;
    // SAFETY: as in `lookup_user`, for getgrnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(format!("no group {name:?}"));
    }
    // SAFETY: non-null pointer returned by getgrnam, read at once.
    Ok(unsafe { (*gr).gr_gid })
}

/// Runs `argv` (`{candidate}` replaced by `candidate` in every argument)
/// without a shell, with only `PATH` and `LC_ALL=C` in its environment,
/// stdin and stdout on /dev/null, in its own process group, which is
/// killed when `timeout` passes. `Err` says why it failed: the exit status
/// and the tail of its stderr, or the timeout.
pub fn run_command(argv: &[String], candidate: &Path, timeout: Duration) -> Result<(), String> {
    let candidate = candidate.display().to_string();
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("{candidate}", &candidate))
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pid = child.id();
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr_tx = tx.clone();
    // The reader ends when every holder of the pipe is gone; a process that
    // escaped the group could hold it forever, so nobody waits on it long.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr {
            let _ = e.take(STDERR_CAP as u64).read_to_end(&mut buf);
        }
        let _ = stderr_tx.send(Event::Stderr(buf));
    });
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exited(child.wait()));
    });
    let deadline = std::time::Instant::now() + timeout;
    let mut exited = None;
    let mut stderr = Vec::new();
    let mut timed_out = false;
    while exited.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Exited(status)) => exited = Some(status),
            Ok(Event::Stderr(buf)) => stderr = buf,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !timed_out => {
                timed_out = true;
                kill_group(pid);
            }
            Err(_) => break,
        }
        if timed_out && exited.is_none() {
            // After SIGKILL the wait returns promptly.
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Event::Exited(status)) => exited = Some(status),
                Ok(Event::Stderr(buf)) => stderr = buf,
                Err(_) => break,
            }
        }
    }
    if timed_out {
        return Err(format!(
            "{program} timed out after {} and was killed",
            humantime::format_duration(timeout)
        ));
    }
    if stderr.is_empty() {
        // The exit came first; the pipe closes with it.
        if let Ok(Event::Stderr(buf)) = rx.recv_timeout(Duration::from_secs(1)) {
            stderr = buf;
        }
    }
    match exited {
        Some(Ok(status)) if status.success() => Ok(()),
        Some(Ok(status)) => {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            };
            Err(format!("{program} {how}{}", tail(&stderr)))
        }
        Some(Err(e)) => Err(format!("cannot wait for {program}: {e}")),
        None => Err(format!("lost track of {program}")),
    }
}

enum Event {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stderr(Vec<u8>),
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created for the child; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// `: <last lines of stderr>` on one line, or nothing.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if joined.is_empty() {
        return String::new();
    }
    let chars: Vec<char> = joined.chars().collect();
    let start = chars.len().saturating_sub(STDERR_TAIL);
    let cut: String = chars.get(start..).unwrap_or_default().iter().collect();
    if start > 0 {
        format!(": …{cut}")
    } else {
        format!(": {cut}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_reports_its_status_and_stderr() {
        let argv = [
            "sh",
            "-c",
            "echo 'bad {candidate}' >&2; echo \"$HOME\" >&2; exit 3",
        ]
        .map(String::from);
        let e = run_command(&argv, Path::new("/c"), Duration::from_secs(20)).unwrap_err();
        assert!(e.contains("exited with status 3: bad /c"), "{e}");
        assert!(!e.contains("/root"), "the environment is minimal: {e}");
    }

    #[test]
    fn a_hanging_command_is_killed_at_the_timeout() {
        let argv = ["sh", "-c", "sleep 600 & sleep 600"].map(String::from);
        let e = run_command(&argv, Path::new("/c"), Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("timed out after 200ms"), "{e}");
    }
}
