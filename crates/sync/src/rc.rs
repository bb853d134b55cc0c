//! The client of the private `rclone rcd`: **the one place that names rc
//! methods**. [`RcCall`] is the allow-list — a call the server can make is
//! a variant here, and [`RcClient::call`] takes nothing else — so
//! `core/command`, `config/*`, `options/set`, every `operations/*` but
//! `operations/check` (which reads both sides and writes nothing) and
//! every other rc method are unreachable through the server whatever a
//! client sends.
//!
//! Transport: HTTP/1.1 with Basic authentication (the credentials generated
//! for this rcd's start), on a loopback TCP port or, where rclone supports
//! it, a UNIX socket. One connection per call: on loopback that is a few
//! tens of microseconds, and a connection can never be left half-read by a
//! cancelled caller.

use std::path::PathBuf;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Every rc method the server ever calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcCall {
    /// Readiness probe after a start.
    CoreVersion,
    SyncSync,
    SyncCopy,
    SyncMove,
    /// A `check` job, on rclone 1.63 and later ([`crate::rcd::check_runner`]).
    OperationsCheck,
    JobStatus,
    JobStop,
    /// Stats of one job's group (`_group`).
    CoreStats,
    /// Forgets a finished job's group, so rclone's memory stays flat.
    CoreStatsDelete,
}

impl RcCall {
    /// Every call, for tests that compare rclone's log with the allow-list.
    pub const ALL: [RcCall; 9] = [
        RcCall::CoreVersion,
        RcCall::SyncSync,
        RcCall::SyncCopy,
        RcCall::SyncMove,
        RcCall::OperationsCheck,
        RcCall::JobStatus,
        RcCall::JobStop,
        RcCall::CoreStats,
        RcCall::CoreStatsDelete,
    ];

    pub fn path(self) -> &'static str {
        match self {
            RcCall::CoreVersion => "core/version",
            RcCall::SyncSync => "sync/sync",
            RcCall::SyncCopy => "sync/copy",
            RcCall::SyncMove => "sync/move",
            RcCall::OperationsCheck => "operations/check",
            RcCall::JobStatus => "job/status",
            RcCall::JobStop => "job/stop",
            RcCall::CoreStats => "core/stats",
            RcCall::CoreStatsDelete => "core/stats-delete",
        }
    }
}

/// Where an rcd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum RcError {
    #[error("cannot reach rclone's rc server: {0}")]
    Connect(std::io::Error),
    #[error("rclone's rc server broke off the exchange: {0}")]
    Http(String),
    /// rclone answered with an error (its `error` text, bounded).
    #[error("rclone: {message}")]
    Rclone { status: u16, message: String },
    #[error("rclone's rc server sent an answer that is not JSON")]
    Malformed,
    /// An answer over [`MAX_ANSWER`] bytes: refused before it is all read.
    #[error("rclone's rc server sent an answer over {limit} bytes")]
    TooLarge { limit: usize },
}

/// The largest rc answer read: job status and stats are kilobytes; the
/// calls made never ask rclone for per-file lists, so anything near this
/// is a fault, not data to hold in memory.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A client for one start of the rcd.
#[derive(Clone)]
pub struct RcClient {
    address: Address,
    authorization: String,
}

impl std::fmt::Debug for RcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials are never printed.
        f.debug_struct("RcClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl RcClient {
    pub fn new(address: Address, user: &str, password: &str) -> RcClient {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        RcClient {
            address,
            authorization: format!("Basic {token}"),
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Calls one allowed rc method with JSON params.
    pub async fn call(&self, call: RcCall, params: &Value) -> Result<Value, RcError> {
        let body = serde_json::to_vec(params).map_err(|_| RcError::Malformed)?;
        let request = Request::post(format!("/{}", call.path()))
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| RcError::Http(error.to_string()))?;
        let response = match &self.address {
            Address::Tcp(address) => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(RcError::Connect)?;
                let _ = stream.set_nodelay(true);
                exchange(stream, request).await?
            }
            Address::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(RcError::Connect)?;
                exchange(stream, request).await?
            }
        };
        let (status, body) = response;
        let value: Value = match serde_json::from_slice(&body) {
            Ok(value) => value,
            // 401 and friends come as plain text.
            Err(_) if status >= 300 => Value::Null,
            Err(_) => return Err(RcError::Malformed),
        };
        if status >= 300 {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("request refused");
            return Err(RcError::Rclone {
                status,
                message: proto::text::bounded(message, 512).into_owned(),
            });
        }
        Ok(value)
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), RcError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| RcError::Http(error.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| RcError::Http(error.to_string()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<LengthLimitError>() {
                    RcError::TooLarge { limit: MAX_ANSWER }
                } else {
                    RcError::Http(error.to_string())
                }
            })?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An rc server whose answer never ends (a fault) costs at most
    /// MAX_ANSWER bytes of memory and gives a typed error.
    #[tokio::test]
    async fn an_answer_over_the_bound_is_refused_before_it_is_all_read() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rc.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("binds");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accepts");
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let length = MAX_ANSWER * 2;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.expect("head");
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < length {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let client = RcClient::new(Address::Unix(path), "u", "p");
        let answer = client.call(RcCall::CoreStats, &serde_json::json!({})).await;
        assert!(
            matches!(answer, Err(RcError::TooLarge { limit: MAX_ANSWER })),
            "{answer:?}"
        );
        let sent = server.await.expect("server");
        assert!(sent < MAX_ANSWER * 2, "the client read it all: {sent}");
    }
}
