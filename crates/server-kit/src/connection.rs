//! One client connection: read frames, run requests concurrently, answer each
//! by id.
//!
//! Everything of a connection runs in one task. Handler futures are polled
//! by that task (a `FuturesUnordered`), not spawned: a request that needs no
//! blocking work is answered without waking another thread, which is what
//! keeps a round trip within a few microseconds of the raw socket. Work that
//! blocks goes to the blocking pool through [`crate::Context::blocking`].
//!
//! Writes are batched: the task answers everything that is ready before it
//! writes, so a pipelining client gets many responses per system call.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use proto::codec::CodecError;
use proto::jsonrpc::take_meta;
use proto::{
    DelimitedCodec, ErrorObject, Frame, Message, Notification, Request, RequestId, Response, code,
};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, PeerCredentials, Progress};
use crate::error::HandlerError;
use crate::server::Server;

/// Bounds of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Requests whose handlers run at once.
    pub max_in_flight: usize,
    /// Requests read and waiting for a handler slot; past this the
    /// connection stops reading until a slot frees (backpressure).
    pub max_queued: usize,
    /// The largest message accepted or sent.
    pub max_message: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_in_flight: 64,
            max_queued: 1024,
            max_message: proto::DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Write what is buffered once this much is waiting, even if more answers are ready.
const FLUSH_AT: usize = 64 * 1024;

/// The write buffer a connection starts with, and goes back to after a
/// large answer.
const WRITE_BUFFER: usize = 16 * 1024;

/// The most write buffer a connection keeps between batches. A batch of
/// small answers stops at [`FLUSH_AT`] plus one answer, which the buffer's
/// doubling fits in 128 KiB, so the hot path never gives its buffer up; a
/// buffer past this held a large answer, and keeping it would pin that
/// answer's size for the connection's life (issue 12: 32 connections that
/// each sent 8 MB once kept about 290 MiB).
const WRITE_BUFFER_KEPT: usize = 2 * FLUSH_AT;

/// Queue of progress notifications from handlers to the connection.
const OUTGOING_QUEUE: usize = 256;

struct Completion {
    id: RequestId,
    method: Arc<str>,
    /// `None` when the request was cancelled: MCP sends no response then.
    outcome: Option<Result<Box<RawValue>, HandlerError>>,
}

enum Event {
    Outgoing(Bytes),
    Done(Completion),
    Frame(Option<Result<Frame, CodecError>>),
    Shutdown,
    Flush,
    Finished,
}

struct Connection<'a> {
    server: &'a Server,
    peer: PeerCredentials,
    codec: DelimitedCodec,
    limits: ConnectionLimits,
    outgoing_tx: mpsc::Sender<Bytes>,
    outgoing_rx: mpsc::Receiver<Bytes>,
    in_flight: FuturesUnordered<BoxFuture<'static, Completion>>,
    queued: VecDeque<Request>,
    /// Every request read and not yet answered, running or queued.
    active: HashMap<RequestId, CancellationToken>,
    write_buffer: BytesMut,
}

/// Serves one connection until the client is done or `shutdown` fires and
/// the requests already read are answered.
pub(crate) async fn serve_connection(
    server: Arc<Server>,
    stream: UnixStream,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) {
    let peer = match stream.peer_cred() {
        Ok(credentials) => PeerCredentials {
            uid: credentials.uid(),
            gid: credentials.gid(),
            pid: credentials.pid(),
        },
        Err(error) => {
            tracing::warn!(%error, "cannot read the peer's credentials; closing the connection");
            return;
        }
    };
    tracing::debug!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, "connection opened");
    let codec = DelimitedCodec::nul(limits.max_message);
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    // Readable events only: the client reading an answer does not wake us.
    let (read_half, mut write_half) = match unix_io::split_tokio(stream) {
        Ok(halves) => halves,
        Err(error) => {
            tracing::warn!(%error, "cannot register the connection; closing it");
            return;
        }
    };
    let mut frames = FramedRead::with_capacity(read_half, codec.clone(), 16 * 1024);
    let mut connection = Connection {
        server: &server,
        peer,
        codec,
        limits,
        outgoing_tx,
        outgoing_rx,
        in_flight: FuturesUnordered::new(),
        queued: VecDeque::new(),
        active: HashMap::new(),
        write_buffer: BytesMut::with_capacity(WRITE_BUFFER),
    };
    let shutdown_signal = shutdown.cancelled();
    tokio::pin!(shutdown_signal);
    let mut reading = true;
    loop {
        let event = poll_fn(|cx| {
            if connection.write_buffer.len() >= FLUSH_AT {
                return Poll::Ready(Event::Flush);
            }
            if let Poll::Ready(Some(frame)) = connection.outgoing_rx.poll_recv(cx) {
                return Poll::Ready(Event::Outgoing(frame));
            }
            if let Poll::Ready(Some(done)) = connection.in_flight.poll_next_unpin(cx) {
                return Poll::Ready(Event::Done(done));
            }
            if reading {
                if shutdown_signal.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Shutdown);
                }
                if connection.queued.len() < connection.limits.max_queued
                    && let Poll::Ready(frame) = frames.poll_next_unpin(cx)
                {
                    return Poll::Ready(Event::Frame(frame));
                }
            }
            if !connection.write_buffer.is_empty() {
                return Poll::Ready(Event::Flush);
            }
            if !reading && connection.in_flight.is_empty() && connection.queued.is_empty() {
                return Poll::Ready(Event::Finished);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Outgoing(frame) => connection.write_buffer.extend_from_slice(&frame),
            Event::Done(completion) => connection.complete(completion),
            Event::Frame(Some(Ok(Frame::Message(bytes)))) => connection.handle_frame(&bytes),
            Event::Frame(Some(Ok(Frame::TooLarge { limit }))) => {
                let error = ErrorObject::invalid_request(format!(
                    "message exceeds the limit of {limit} bytes and was discarded; send smaller messages"
                ));
                connection.respond(Response::error(None, error));
            }
            Event::Frame(Some(Err(error))) => {
                tracing::debug!(%error, "read failed; answering what is in flight");
                reading = false;
            }
            Event::Frame(None) => {
                reading = false;
                // End of stream is either a half-close (the client still
                // reads its answers) or the client gone. If it is gone,
                // nobody waits for what is running: cancel it.
                if peer_hung_up(write_half.stream()) {
                    tracing::debug!(
                        pending = connection.active.len(),
                        "client gone; cancelling its requests"
                    );
                    connection.cancel_all();
                }
            }
            Event::Shutdown => {
                tracing::debug!(
                    pending = connection.active.len(),
                    "shutting down: no new requests on this connection"
                );
                reading = false;
            }
            Event::Flush => {
                if let Err(error) = write_half.write_all(&connection.write_buffer).await {
                    tracing::debug!(%error, "write failed; dropping the connection's requests");
                    break;
                }
                if connection.write_buffer.capacity() > WRITE_BUFFER_KEPT {
                    connection.write_buffer = BytesMut::with_capacity(WRITE_BUFFER);
                } else {
                    connection.write_buffer.clear();
                }
            }
            Event::Finished => break,
        }
    }
    connection.cancel_all();
    tracing::debug!(uid = peer.uid, "connection closed");
}

impl Connection<'_> {
    fn handle_frame(&mut self, bytes: &[u8]) {
        match Message::from_slice(bytes) {
            Ok(Message::Request(request)) => self.accept(request),
            Ok(Message::Notification(notification)) => self.notification(&notification),
            Ok(Message::Response(response)) => {
                tracing::debug!(id = ?response.id, "ignoring a response: this server sends no requests");
            }
            Err(invalid) => self.respond(Response::error(invalid.id, invalid.error)),
        }
    }

    fn accept(&mut self, request: Request) {
        if self.active.contains_key(&request.id) {
            let error = ErrorObject::invalid_request(format!(
                "request id {} is already in use by a request in progress on this connection",
                proto::text::echo(&request.id.to_string())
            ));
            self.respond(Response::error(Some(request.id), error));
            return;
        }
        self.active
            .insert(request.id.clone(), CancellationToken::new());
        if self.in_flight.len() < self.limits.max_in_flight {
            self.start(request);
        } else {
            self.queued.push_back(request);
        }
    }

    fn start(&mut self, mut request: Request) {
        let Some(route) = self.server.route(&request.method) else {
            self.active.remove(&request.id);
            let error = ErrorObject::method_not_found(&request.method);
            self.respond(Response::error(Some(request.id), error));
            return;
        };
        let meta = take_meta(&mut request.params);
        let params = match Server::prepare_params(route, request.params) {
            Ok(params) => params,
            Err(error) => {
                self.active.remove(&request.id);
                self.respond(Response::error(Some(request.id), error));
                return;
            }
        };
        let token = self.active.get(&request.id).cloned().unwrap_or_default();
        let progress_token = meta
            .as_ref()
            .and_then(|meta| meta.get(proto::mcp::meta_key::PROGRESS_TOKEN))
            .filter(|token| token.is_string() || token.is_i64())
            .cloned();
        let progress = Progress::new(progress_token, &self.outgoing_tx, &self.codec);
        let context = Context::new(
            request.id.clone(),
            route.name.clone(),
            self.peer,
            meta,
            progress,
            token.clone(),
        );
        // A panicking handler fails its request, not the connection.
        let handler = std::panic::AssertUnwindSafe((route.handler)(context, params))
            .catch_unwind()
            .map(|outcome| {
                outcome.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    Err(HandlerError::internal(format!("handler panicked: {what}")))
                })
            });
        let id = request.id;
        let method = route.name.clone();
        self.in_flight.push(
            async move {
                tokio::select! {
                    biased;
                    () = token.cancelled() => Completion { id, method, outcome: None },
                    outcome = handler => Completion { id, method, outcome: Some(outcome) },
                }
            }
            .boxed(),
        );
    }

    fn notification(&mut self, notification: &Notification) {
        if notification.method != proto::mcp::method::NOTIFICATIONS_CANCELLED {
            tracing::debug!(method = %notification.method, "ignoring notification");
            return;
        }
        let request_id = notification
            .params
            .as_ref()
            .and_then(|params| params.get("requestId"))
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
        let Some(request_id) = request_id else {
            tracing::debug!("notifications/cancelled without a usable requestId");
            return;
        };
        if let Some(token) = self.active.get(&request_id) {
            tracing::debug!(id = %request_id, "request cancelled by the client");
            token.cancel();
            if let Some(position) = self
                .queued
                .iter()
                .position(|queued| queued.id == request_id)
            {
                self.queued.remove(position);
                self.active.remove(&request_id);
            }
        }
    }

    fn complete(&mut self, completion: Completion) {
        self.active.remove(&completion.id);
        // Progress a handler reported before it returned is already queued:
        // it goes out first, so that a client sees progress, then the answer.
        while let Ok(frame) = self.outgoing_rx.try_recv() {
            self.write_buffer.extend_from_slice(&frame);
        }
        let Some(outcome) = completion.outcome else {
            self.start_queued();
            return;
        };
        match outcome {
            Ok(result) => {
                self.check_result(&completion.method, &result);
                self.respond_raw(completion.id, &result);
            }
            Err(error) => {
                if let HandlerError::Internal(cause) = &error {
                    tracing::error!(id = %completion.id, method = %completion.method, error = %cause, "handler failed");
                }
                let error = error.to_error_object(self.server.codes(), &completion.id);
                self.respond(Response::error(Some(completion.id), error));
            }
        }
        self.start_queued();
    }

    fn cancel_all(&mut self) {
        self.queued.clear();
        for token in self.active.values() {
            token.cancel();
        }
    }

    fn start_queued(&mut self) {
        while self.in_flight.len() < self.limits.max_in_flight {
            let Some(request) = self.queued.pop_front() else {
                break;
            };
            self.start(request);
        }
    }

    /// In debug builds a result that breaks the method's own `result_schema`
    /// is logged: the contract and the code have drifted apart.
    fn check_result(&self, method: &str, result: &RawValue) {
        if cfg!(debug_assertions)
            && let Ok(result) = serde_json::from_str::<Value>(result.get())
            && let Some(validator) = self
                .server
                .route(method)
                .and_then(|route| route.compiled.result())
                .and_then(Result::ok)
            && let Some(error) = validator.iter_errors(&result).next()
        {
            tracing::error!(method, %error, "result does not match result_schema");
        }
    }

    /// Answers a request with a handler's result, written as it is.
    fn respond_raw(&mut self, id: RequestId, result: &RawValue) {
        let answer = RawSuccess { id: &id, result };
        match self.codec.encode_json(&answer, &mut self.write_buffer) {
            Ok(()) => {}
            Err(CodecError::OutgoingTooLarge { len, limit }) => {
                self.respond(Response::error(Some(id), result_too_large(len, limit)));
            }
            Err(error) => tracing::error!(%error, "cannot encode a response"),
        }
    }

    fn respond(&mut self, mut response: Response) {
        // Every error leaves through here: whatever made it, it is bounded.
        if let Err(error) = response.outcome {
            let had_data = error.data.is_some();
            let error = error.bounded();
            if had_data && error.data.is_none() {
                tracing::warn!(id = ?response.id, code = error.code, "an error's data is over {} bytes; sent without it", proto::error::DATA_LIMIT);
            }
            response.outcome = Err(error);
        }
        match self.codec.encode_json(&response, &mut self.write_buffer) {
            Ok(()) => {}
            Err(CodecError::OutgoingTooLarge { len, limit }) => {
                let response = Response::error(response.id, result_too_large(len, limit));
                if let Err(error) = self.codec.encode_json(&response, &mut self.write_buffer) {
                    tracing::error!(%error, "cannot encode an error response");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode a response"),
        }
    }
}

fn result_too_large(len: usize, limit: usize) -> ErrorObject {
    ErrorObject::new(
        code::INTERNAL_ERROR,
        format!("the result is {len} bytes, over the {limit}-byte message limit; ask for less"),
    )
}

/// A successful answer whose result is JSON text already.
struct RawSuccess<'a> {
    id: &'a RequestId,
    result: &'a RawValue,
}

impl serde::Serialize for RawSuccess<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", proto::jsonrpc::JSONRPC_VERSION)?;
        map.serialize_entry("id", self.id)?;
        map.serialize_entry("result", self.result)?;
        map.end()
    }
}

/// Whether the peer closed both directions (POLLHUP), as opposed to a
/// half-close after which it still reads.
fn peer_hung_up(stream: &std::os::unix::net::UnixStream) -> bool {
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout: poll only reports readiness.
    let ready = unsafe { libc::poll(&raw mut poll, 1, 0) };
    ready == 1 && poll.revents & libc::POLLHUP != 0
}

/// How long [`crate::Server::serve`] waits for in-flight requests by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
