//! One pipelined connection to a NUL-framed JSON-RPC socket.
//!
//! Any number of tasks call through one [`Connection`] at once; a reader
//! task matches answers to callers by id. A call that is dropped before its
//! answer (timeout, client gone) sends `notifications/cancelled` so the
//! server stops working on it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Message, Notification, Request, RequestId};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

/// Why a call got no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with a JSON-RPC error.
    #[error("{0}")]
    Server(ErrorObject),
    /// The connection closed before the answer arrived.
    #[error("the server closed the connection before answering")]
    Closed,
    /// The request could not be written (the server was gone already).
    #[error("cannot send the request: {0}")]
    Send(std::io::Error),
    /// The request is larger than the message limit.
    #[error("the request is too large: {0}")]
    TooLarge(String),
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
}

/// What a caller receives for one call besides its result.
pub type ProgressSender = mpsc::UnboundedSender<Value>;

struct Pending {
    /// The result as the server wrote it: a caller that only passes it on
    /// (the gateway) never builds a JSON tree for it.
    reply: oneshot::Sender<Result<Box<RawValue>, CallError>>,
    progress: Option<ProgressSender>,
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    /// Our own ids as keys: a fast hash is safe.
    pending: Mutex<foldhash::HashMap<i64, Pending>>,
    next_id: AtomicI64,
    closed: AtomicBool,
    codec: DelimitedCodec,
    notifications: Option<mpsc::UnboundedSender<Notification>>,
}

/// A connection; cheap to clone, all clones share it. When the last clone
/// is dropped the reader stops and the socket closes: the reader holds the
/// shared state but not `_handles`, so a connection nobody can call through
/// never lingers as an open descriptor (on both sides).
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    /// Dropping the last one drops the sender, which ends the reader.
    _handles: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The default bound of a connection's messages: the largest answer a
/// gateway of the default message limit sends (a tool result carries a
/// backend's result twice, `proto::mcp::CallToolResult::size_bound`); what
/// this side sends is bounded by the gateway's own limit anyway.
pub const DEFAULT_ANSWER_BOUND: usize =
    proto::mcp::CallToolResult::size_bound(proto::DEFAULT_MAX_MESSAGE);

/// Options of a connection.
#[derive(Debug, Default)]
pub struct ConnectOptions {
    /// The largest message in either direction (default
    /// [`DEFAULT_ANSWER_BOUND`]: what a gateway's answer may be).
    pub max_message: Option<usize>,
    /// Where notifications other than progress go (none: dropped).
    pub notifications: Option<mpsc::UnboundedSender<Notification>>,
}

impl Connection {
    /// Connects to a NUL-framed socket (the gateway's backend pools).
    ///
    /// The socket waits for readable events only ([`unix_io`]), as the
    /// serving sides do. Registered for writable events too, it signalled
    /// each time the server read a request, and in the gateway's
    /// multi-threaded runtime that woke a worker from `epoll_wait` with
    /// nothing to do: MCP `tools/call` of a 4 KiB `fs_read` through the
    /// stdio bridge cost the gateway 4.0 context switches per call with it
    /// and 3.0 without (with the tool-result and timer changes of the same
    /// measurement). [`Connection::from_stream`] keeps tokio's
    /// registration for the single-threaded clients (the shell, the web
    /// console), where the early wake once measured faster.
    pub async fn connect(path: &Path, options: ConnectOptions) -> std::io::Result<Connection> {
        let stream = UnixStream::connect(path).await?;
        let codec = DelimitedCodec::nul(options.max_message.unwrap_or(DEFAULT_ANSWER_BOUND));
        let (read_half, write_half) = unix_io::split_tokio(stream)?;
        Ok(Connection::from_io(read_half, write_half, codec, options))
    }

    /// Takes over a connected UNIX stream (NUL-delimited messages).
    ///
    /// The socket keeps tokio's registration (readable and writable), unlike
    /// the serving side (`unix_io`): the server reading a request then
    /// wakes this side early, and measured with every process on one CPU
    /// that makes the gateway's relay faster, not slower (no-op cost over a
    /// direct call, p50: 22.4 µs as is, 24.5 µs with readable-only).
    pub fn from_stream(stream: UnixStream, options: ConnectOptions) -> Connection {
        let codec = DelimitedCodec::nul(options.max_message.unwrap_or(DEFAULT_ANSWER_BOUND));
        let (read_half, write_half) = stream.into_split();
        Connection::from_io(read_half, write_half, codec, options)
    }

    /// Talks JSON-RPC over any byte streams with the given framing: a child
    /// process's stdout and stdin with newline framing, for instance.
    pub fn from_io<R, W>(
        reader: R,
        writer: W,
        codec: DelimitedCodec,
        options: ConnectOptions,
    ) -> Connection
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(Box::new(writer)),
            pending: Mutex::new(foldhash::HashMap::default()),
            next_id: AtomicI64::new(1),
            closed: AtomicBool::new(false),
            codec: codec.clone(),
            notifications: options.notifications,
        });
        let reader_shared = shared.clone();
        let (handles, unused) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(reader, codec).take_until(unused);
            while let Some(Ok(frame)) = frames.next().await {
                match frame {
                    Frame::Message(bytes) => reader_shared.dispatch(&reader_shared, &bytes),
                    Frame::TooLarge { limit } => {
                        tracing::warn!(limit, "the server sent a message over the limit; dropped");
                    }
                }
            }
            reader_shared.close();
        });
        Connection {
            shared,
            _handles: Arc::new(handles),
        }
    }

    /// Whether no call is waiting for an answer.
    pub fn is_idle(&self) -> bool {
        self.shared.lock_pending().is_empty()
    }

    /// Stops sending: the server answers what it has, then closes, and the
    /// connection's reader ends.
    pub async fn close(&self) {
        let mut writer = self.shared.writer.lock().await;
        let _ = writer.shutdown().await;
        self.shared.closed.store(true, Ordering::Release);
    }

    /// Whether the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Calls `method`. With `progress`, the request carries a progress
    /// token and every `notifications/progress` for it is forwarded (its
    /// params object). Dropping the future cancels the call on the server.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Value, CallError> {
        parse_result(&self.call_raw(method, params, progress).await?)
    }

    /// [`Connection::call`], with the result as the server's JSON text.
    pub async fn call_raw(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Box<RawValue>, CallError> {
        if self.is_closed() {
            // Nothing was sent: the caller may safely try another connection.
            return Err(CallError::Send(std::io::ErrorKind::NotConnected.into()));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let params = if progress.is_some() {
            with_progress_token(params, id)
        } else {
            params
        };
        let (reply, answer) = oneshot::channel();
        self.shared
            .lock_pending()
            .insert(id, Pending { reply, progress });
        let mut guard = CallGuard {
            connection: self,
            id,
            answered: false,
        };
        let request = Message::Request(Request {
            id: RequestId::Number(id),
            method: method.to_owned(),
            params,
        });
        self.send(&request).await?;
        let outcome = answer.await.unwrap_or(Err(CallError::Closed));
        guard.answered = true;
        outcome
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), CallError> {
        self.send(&Message::Notification(Notification {
            method: method.to_owned(),
            params,
        }))
        .await
    }

    async fn send(&self, message: &Message) -> Result<(), CallError> {
        self.shared.send(message).await
    }
}

/// A result as a JSON tree.
pub(crate) fn parse_result(raw: &RawValue) -> Result<Value, CallError> {
    serde_json::from_str(raw.get()).map_err(|error| {
        CallError::Server(ErrorObject::internal(format!(
            "the server's result cannot be read: {error}"
        )))
    })
}

/// An answer to one of our requests (our ids are integers), its result
/// left as text.
#[derive(Deserialize)]
struct Answer {
    id: i64,
    result: Option<Box<RawValue>>,
    error: Option<ErrorObject>,
}

fn with_progress_token(params: Option<Value>, id: i64) -> Option<Value> {
    let mut object = match params {
        Some(Value::Object(object)) => object,
        None => Map::new(),
        // Positional params cannot carry `_meta`: no progress then.
        other => return other,
    };
    let meta = object.entry("_meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        meta.insert(proto::mcp::meta_key::PROGRESS_TOKEN.to_owned(), json!(id));
    }
    Some(Value::Object(object))
}

impl Shared {
    async fn send(&self, message: &Message) -> Result<(), CallError> {
        // Room for a typical request up front: growing from nothing costs
        // several reallocations per message.
        let mut frame = BytesMut::with_capacity(512);
        self.codec
            .encode_json(message, &mut frame)
            .map_err(|error| CallError::TooLarge(error.to_string()))?;
        let mut writer = self.writer.lock().await;
        if let Err(error) = writer.write_all(&frame).await {
            drop(writer);
            self.close();
            return Err(CallError::Send(error));
        }
        Ok(())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<i64, Pending>> {
        // A panic while holding this lock leaves the map consistent.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dispatch(&self, this: &Arc<Shared>, bytes: &[u8]) {
        // Answers first, without a JSON tree for their results; anything
        // else (notifications, a server's requests, odd answers) is read
        // in full.
        if let Ok(answer) = serde_json::from_slice::<Answer>(bytes) {
            let outcome = match (answer.result, answer.error) {
                (Some(result), None) => Some(Ok(result)),
                (None, Some(error)) => Some(Err(CallError::Server(error))),
                _ => None,
            };
            if let Some(outcome) = outcome {
                if let Some(pending) = self.lock_pending().remove(&answer.id) {
                    let _ = pending.reply.send(outcome);
                }
                return;
            }
        }
        match Message::from_slice(bytes) {
            Ok(Message::Response(response)) => {
                let Some(RequestId::Number(id)) = response.id else {
                    tracing::warn!(id = ?response.id, "answer to no request of ours");
                    return;
                };
                if let Some(pending) = self.lock_pending().remove(&id) {
                    let outcome = response
                        .outcome
                        .map_err(CallError::Server)
                        .and_then(|value| {
                            RawValue::from_string(value.to_string()).map_err(|error| {
                                CallError::Server(ErrorObject::internal(error.to_string()))
                            })
                        });
                    let _ = pending.reply.send(outcome);
                }
            }
            Ok(Message::Notification(notification)) => {
                if notification.method == proto::mcp::method::NOTIFICATIONS_PROGRESS {
                    let token = notification
                        .params
                        .as_ref()
                        .and_then(|params| params.get(proto::mcp::meta_key::PROGRESS_TOKEN))
                        .and_then(Value::as_i64);
                    if let Some(token) = token {
                        if let Some(progress) = self
                            .lock_pending()
                            .get(&token)
                            .and_then(|pending| pending.progress.as_ref())
                        {
                            let _ = progress.send(notification.params.unwrap_or(Value::Null));
                        }
                        return;
                    }
                }
                if let Some(notifications) = &self.notifications {
                    let _ = notifications.send(notification);
                }
            }
            Ok(Message::Request(request)) => {
                // A server may ping; it gets nothing else from this client.
                let outcome = if request.method == proto::mcp::method::PING {
                    Ok(json!({}))
                } else {
                    Err(ErrorObject::method_not_found(&request.method))
                };
                // The shared state, not a handle: answering a ping must not
                // keep a connection alive that its users have dropped.
                let shared = this.clone();
                let response = Message::Response(proto::Response {
                    id: Some(request.id),
                    outcome,
                });
                tokio::spawn(async move {
                    let _ = shared.send(&response).await;
                });
            }
            Err(invalid) => tracing::warn!(error = %invalid, "unreadable message from the server"),
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, pending) in self.lock_pending().drain() {
            let _ = pending.reply.send(Err(CallError::Closed));
        }
    }
}

/// Cleans up a call that is dropped before its answer: forget it, and tell
/// the server to stop.
struct CallGuard<'a> {
    connection: &'a Connection,
    id: i64,
    answered: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        if self
            .connection
            .shared
            .lock_pending()
            .remove(&self.id)
            .is_none()
        {
            return;
        }
        let connection = self.connection.clone();
        let id = self.id;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let params = json!({ "requestId": id, "reason": "the caller gave up" });
                let _ = connection
                    .notify(proto::mcp::method::NOTIFICATIONS_CANCELLED, Some(params))
                    .await;
            });
        }
    }
}
