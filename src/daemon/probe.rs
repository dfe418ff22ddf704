//! The watchdog's control-socket probe: `GET /v1/status` through the
//! client's own hyper connection, so the daemon checks its socket exactly as
//! `hotconf status` would reach it (and hand-written HTTP has no place here).
//!
//! What it does not do: decide when to ping; `observe::systemd` runs the
//! probes and pings only when all pass.

use std::path::PathBuf;

use crate::client::transport::Connection;
use crate::observe::systemd::Probe;

/// Passes when `GET /v1/status` on the control socket at `path` answers
/// `200`: the accept loop and the request handling both run.
pub(crate) fn control_socket(path: PathBuf) -> Probe {
    let conn = Connection::new(path);
    Probe::new("control_socket", move || {
        let conn = conn.clone();
        async move {
            let answer = conn
                .get("/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            if answer.status == 200 {
                Ok(())
            } else {
                Err(format!("unexpected answer: HTTP {}", answer.status))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn control_socket_probe_reads_the_status_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"[..],
                b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(answer).await.unwrap();
            }
        });
        let probe = super::control_socket(path.clone());
        assert_eq!(probe.check().await, Ok(()));
        assert!(probe.check().await.is_err());
        server.await.unwrap();
        assert!(probe.check().await.is_err(), "nobody listening");
    }
}
