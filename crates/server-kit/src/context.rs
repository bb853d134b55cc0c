//! What a handler gets besides its params: who is calling, a way to report
//! progress, a cancellation signal, and a way to run blocking work.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proto::{DelimitedCodec, Notification, RequestId};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::HandlerError;

/// The connecting process, as the kernel reports it (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// Per-request context handed to every handler.
#[derive(Clone, Debug)]
pub struct Context {
    request_id: RequestId,
    method: Arc<str>,
    peer: PeerCredentials,
    meta: Option<Arc<Map<String, Value>>>,
    progress: Progress,
    cancel: CancellationToken,
}

impl Context {
    pub(crate) fn new(
        request_id: RequestId,
        method: Arc<str>,
        peer: PeerCredentials,
        meta: Option<Map<String, Value>>,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Context {
        Context {
            request_id,
            method,
            peer,
            meta: meta.map(Arc::new),
            progress,
            cancel,
        }
    }

    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn peer(&self) -> PeerCredentials {
        self.peer
    }

    /// The request's MCP `_meta` object, if it carried one.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.meta.as_deref()
    }

    /// Reports progress; does nothing when the request carried no
    /// `_meta.progressToken`. Notifications are sent in the order reported,
    /// and all of them before the response.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        self.progress.report(progress, total, message).await;
    }

    /// A handle for reporting progress from blocking code (see [`Context::blocking`]).
    pub fn progress_handle(&self) -> Progress {
        self.progress.clone()
    }

    /// Whether the client cancelled this request (or the connection closed).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the request is cancelled. An async handler is dropped at
    /// its next await point anyway; this is for work that wants to clean up.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The cancellation token, to be checked by blocking code.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs short blocking work (one small file read, a stat) on this very
    /// thread, telling the runtime first so that its other tasks move to
    /// another thread meanwhile (`block_in_place`). Unlike
    /// [`Context::blocking`] no thread hand-off lies on the way to the
    /// answer, which for a 4 KiB read is most of the cost. Long work (walks,
    /// inference) belongs in [`Context::blocking`], where it can be cancelled.
    pub fn blocking_in_place<T>(&self, work: impl FnOnce() -> T) -> T {
        match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
            // A single-threaded runtime has nowhere to move its tasks: run it.
            _ => work(),
        }
    }

    /// Runs blocking work (file trees, ONNX inference) on the blocking pool,
    /// off the async runtime. Long work should poll
    /// [`Context::cancellation_token`] and stop when it fires.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T, HandlerError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(HandlerError::internal)
    }
}

/// Sends `notifications/progress` for one request, if it asked for them.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Option<Arc<ProgressInner>>,
}

#[derive(Debug)]
struct ProgressInner {
    token: Value,
    outgoing: mpsc::Sender<Bytes>,
    codec: DelimitedCodec,
}

impl Progress {
    pub(crate) fn new(
        token: Option<Value>,
        outgoing: &mpsc::Sender<Bytes>,
        codec: &DelimitedCodec,
    ) -> Progress {
        Progress {
            inner: token.map(|token| {
                Arc::new(ProgressInner {
                    token,
                    outgoing: outgoing.clone(),
                    codec: codec.clone(),
                })
            }),
        }
    }

    /// Whether the client asked for progress.
    pub fn is_requested(&self) -> bool {
        self.inner.is_some()
    }

    fn frame(
        inner: &ProgressInner,
        progress: f64,
        total: Option<f64>,
        message: Option<&str>,
    ) -> Option<Bytes> {
        let mut params = json!({"progressToken": inner.token, "progress": progress});
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        let notification = Notification {
            method: proto::mcp::method::NOTIFICATIONS_PROGRESS.to_owned(),
            params: Some(params),
        };
        let mut buffer = BytesMut::new();
        inner.codec.encode_json(&notification, &mut buffer).ok()?;
        Some(buffer.freeze())
    }

    pub async fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        if let Some(inner) = &self.inner
            && let Some(frame) = Self::frame(inner, progress, total, message)
        {
            // A closed connection has nobody to tell: ignore.
            let _ = inner.outgoing.send(frame).await;
        }
    }

    /// As [`Progress::report`], from a thread outside the async runtime.
    pub fn report_blocking(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        if let Some(inner) = &self.inner
            && let Some(frame) = Self::frame(inner, progress, total, message)
        {
            let _ = inner.outgoing.blocking_send(frame);
        }
    }
}
