//! One HTTP/1.1 exchange with the daemon over its unix socket (hyper's
//! client on a tokio `UnixStream`), after checking who serves the socket:
//! a socket someone else planted must not be believed.
//!
//! Trusted: a socket served by root or by our own uid; or one served by
//! another uid that owns the socket file, when no directory on the socket's
//! real path is writable by anyone but root and that uid (as under
//! `/run/hotconf`: nobody else could have put a socket there). A socket in
//! a shared directory (`/tmp`, group-writable) served by a third uid is
//! refused.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// Largest answer the client accepts (a whole config can be big, but not
/// this big).
const MAX_BODY: usize = 256 << 20;

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("no hotconf daemon is running at {path} ({source})")]
    NotRunning {
        /// The socket tried.
        path: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The socket, or a directory on the way to it, may not be used by us.
    #[error(
        "permission denied on {denied} (connecting to {path}; is your user in the \
         socket's group, hotconf-readers for the shipped unit?)"
    )]
    Forbidden {
        /// The socket tried.
        path: PathBuf,
        /// The first path on the way that refused us (a directory we may
        /// not search, or the socket itself).
        denied: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The socket is served by a user we do not trust.
    #[error(
        "refusing {path}: it is served by uid {uid}, neither root nor us (uid {own}), \
         and {why}"
    )]
    Untrusted {
        /// The socket.
        path: PathBuf,
        /// The server's uid.
        uid: u32,
        /// Our uid.
        own: u32,
        /// Why its location does not rule out planting.
        why: String,
    },
    /// The exchange broke or the answer is not what the API sends.
    #[error("{0}")]
    Protocol(String),
    /// The daemon answered with an error (`{code, message}`).
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The error message.
        message: String,
    },
    /// Writing our own output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

/// A received answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body bytes.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON when the status is 2xx; otherwise the API error.
    pub fn json_ok(&self) -> Result<Value, ClientError> {
        let parsed: Result<Value, _> = serde_json::from_slice(&self.body);
        if (200..300).contains(&self.status) {
            return parsed.map_err(|e| ClientError::Protocol(format!("answer is not JSON: {e}")));
        }
        let v = parsed.unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Err(ClientError::Api {
            status: self.status,
            code: field("code").unwrap_or_else(|| "unknown".into()),
            message: field("message")
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned()),
        })
    }
}

/// Where to reach the daemon. Each request uses a fresh connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The socket path.
    path: PathBuf,
}

impl Connection {
    /// A connection to the socket at `path`.
    pub fn new(path: PathBuf) -> Self {
        Connection { path }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str, timeout: Option<Duration>) -> Result<Answer, ClientError> {
        self.request(Method::GET, uri, timeout).await
    }

    /// One request; `timeout` bounds the whole exchange.
    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        timeout: Option<Duration>,
    ) -> Result<Answer, ClientError> {
        self.request_with_body(method, uri, Bytes::new(), timeout)
            .await
    }

    /// One request carrying `body` (JSON); `timeout` bounds the whole
    /// exchange.
    pub async fn request_with_body(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Answer, ClientError> {
        let exchange = self.exchange(method, uri, body);
        match timeout {
            None => exchange.await,
            Some(t) => tokio::time::timeout(t, exchange).await.map_err(|_| {
                ClientError::Protocol(format!(
                    "{} did not answer within {}s",
                    self.path.display(),
                    t.as_secs()
                ))
            })?,
        }
    }

    async fn exchange(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let stream = UnixStream::connect(&self.path).await.map_err(|source| {
            let path = self.path.clone();
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                let denied = first_denied(&path);
                ClientError::Forbidden {
                    path,
                    denied,
                    source,
                }
            } else {
                ClientError::NotRunning { path, source }
            }
        })?;
        let own = crate::control::paths::current_uid();
        let cred = stream.peer_cred().map_err(|e| {
            ClientError::Protocol(format!("cannot read the server's credentials: {e}"))
        })?;
        if cred.uid() != 0 && cred.uid() != own {
            if let Err(why) = unplantable(&self.path, cred.uid()) {
                return Err(ClientError::Untrusted {
                    path: self.path.clone(),
                    uid: cred.uid(),
                    own,
                    why,
                });
            }
        }
        let broken = |e: hyper::Error| {
            ClientError::Protocol(format!("talking to {}: {e}", self.path.display()))
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(broken)?;
        let driver = tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, "localhost");
        if !body.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::Protocol(format!("bad request {uri:?}: {e}")))?;
        let response = sender.send_request(request).await.map_err(broken)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok(Answer { status, body })
    }
}

/// The first path on the way to `socket` we may not use: the directory
/// whose entries we cannot look up, or the socket itself.
fn first_denied(socket: &Path) -> PathBuf {
    let mut ancestors: Vec<&Path> = socket.ancestors().collect();
    ancestors.reverse();
    for p in ancestors {
        if let Err(e) = std::fs::symlink_metadata(p) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                // Looking `p` up failed: its parent is the one we cannot search.
                return p.parent().unwrap_or(p).to_path_buf();
            }
        }
    }
    socket.to_path_buf()
}

/// Ok when nobody but root and `server` could have created the socket at
/// `socket`: the socket file is `server`'s, and no directory on its real
/// path is writable by another uid (owner root or `server`, no group or
/// world write). A sticky directory (`/tmp`) may be writable by all when it
/// is not the socket's own directory: the sticky bit keeps others from
/// replacing the root's or `server`'s entry in it. Otherwise why not, for
/// the message.
fn unplantable(socket: &Path, server: u32) -> Result<(), String> {
    let real = std::fs::canonicalize(socket)
        .map_err(|e| format!("its real path cannot be checked ({e})"))?;
    let meta = std::fs::symlink_metadata(&real)
        .map_err(|e| format!("{} cannot be checked ({e})", real.display()))?;
    if meta.uid() != server {
        return Err(format!(
            "the socket file is owned by uid {}, not the uid serving it",
            meta.uid()
        ));
    }
    for (depth, dir) in real.ancestors().skip(1).enumerate() {
        let meta = std::fs::metadata(dir)
            .map_err(|e| format!("{} cannot be checked ({e})", dir.display()))?;
        if meta.uid() != 0 && meta.uid() != server {
            return Err(format!(
                "{} belongs to uid {}, who could have planted it",
                dir.display(),
                meta.uid()
            ));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && (depth == 0 || !sticky) {
            return Err(format!(
                "{} is writable by other users, who could have planted it",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Percent-encodes a path (`NAME/json/pointer`) for a request URI: keeps
/// unreserved characters and `/`, encodes everything else byte by byte.
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode_path("app/a b/%?#"), "app/a%20b/%25%3F%23");
        assert_eq!(encode_path("app/x~1y/é"), "app/x~1y/%C3%A9");
    }
}
