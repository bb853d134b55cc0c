//! HTTP: Streamable HTTP at `/mcp` (MCP 2025-03-26 to 2025-11-25, and 2026-07-28) and
//! WebSocket at `/ws` (the seed's transport), behind one guard that checks
//! `Host` and `Origin` (DNS-rebinding protection), then the path (404 for
//! any other, before any token is asked for), then the bearer token.
//!
//! [`serve`] is the accept loop (hyper's HTTP/1 connections, not
//! `axum::serve`, which has neither a header timeout nor a connection
//! cap): a client has `http_header_timeout_secs` to send each request's
//! headers, which also closes idle keep-alive connections and slowloris
//! ones; connections are capped ([`crate::front::Budget`]), and at the cap
//! the oldest connection that has not yet sent a request is closed to make
//! room: a flood of idle connections churns itself out while a client that
//! sends its request at once gets through. When every connection is
//! serving requests, new ones wait in the kernel's backlog. A refused
//! request closes its connection (`Connection: close`), so only admitted
//! clients keep connections past their first request.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use futures::{FutureExt, Stream, StreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use proto::mcp::{ProtocolVersion, RequestMeta};
use proto::{ErrorObject, Message, RequestId, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{Answer, Gateway, Session};
use crate::front::AcceptBackoff;
use crate::transport::{OUTPUT_HIGH_WATER, StreamClient};

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// Who is calling, as the guard established it.
#[derive(Clone, Debug)]
struct Identity(String);

/// The TCP peer of a request (for the logs of refusals).
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// A TCP connection as the accept loop sees it.
#[derive(Debug, Default)]
struct Slot {
    /// Set when the connection's first request reached the router: from
    /// then on it is a client's, not a candidate to make room.
    served: AtomicBool,
    /// Closes the connection at once.
    evict: CancellationToken,
}

/// A connection's stream with its slot: the slot is freed when the stream
/// closes, also after a WebSocket upgrade took it over from hyper.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` fires, with at
/// most `max_connections` connections open (see the module's docs).
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let header_timeout = gateway.config.http_header_timeout;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let service = TowerToHyperService::new(router(gateway));
    let slots = Arc::new(Semaphore::new(max_connections));
    // Connections that had not sent a request when they were accepted, the
    // oldest first; entries of served or closed ones are skipped (and
    // pruned now and then).
    let mut unserved: VecDeque<Arc<Slot>> = VecDeque::new();
    let mut backoff = AcceptBackoff::new("http");
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(error) => {
                    backoff.failed(&error).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                while let Some(slot) = unserved.pop_front() {
                    if !slot.served.load(Ordering::Relaxed) && !slot.evict.is_cancelled() {
                        tracing::debug!(
                            "at the connection limit: closing the oldest connection that sent no request"
                        );
                        slot.evict.cancel();
                        break;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        if unserved.len() >= 2 * max_connections {
            unserved
                .retain(|slot| !slot.served.load(Ordering::Relaxed) && !slot.evict.is_cancelled());
        }
        let slot = Arc::new(Slot::default());
        unserved.push_back(slot.clone());
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let task = async move {
            // A hyper connection allocates its buffers when it is made: one
            // that has sent nothing is only waited on (within the header
            // timeout), so an idle flood costs less memory (debug build:
            // 8.2 against 10.7 KiB per idle connection).
            let first_bytes = tokio::time::timeout(header_timeout, stream.readable());
            tokio::select! {
                ready = first_bytes => if !matches!(ready, Ok(Ok(()))) {
                    return;
                },
                () = slot.evict.cancelled() => return,
                () = shutdown.cancelled() => return,
            }
            let io = TokioIo::new(Counted {
                stream,
                _permit: permit,
            });
            let marker = slot.clone();
            let per_request = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    marker.served.store(true, Ordering::Relaxed);
                    request.extensions_mut().insert(Peer(peer));
                    hyper::service::Service::call(&service, request)
                },
            );
            let connection = builder.serve_connection(io, per_request).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "HTTP connection ended");
                    }
                }
                () = slot.evict.cancelled() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        };
        connections.spawn(task);
    }
    connections.close();
    connections.wait().await;
}

struct HttpSession {
    session: Arc<Session>,
    identity: String,
    /// The GET stream's source; taken by the one open stream.
    notifications: Mutex<Option<mpsc::Receiver<Message>>>,
    last_used: Mutex<Instant>,
}

/// A session unused this long is forgotten (its client must initialize again).
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Sessions kept at most, for all clients together.
const MAX_SESSIONS: usize = 1024;
/// Sessions one client (one token) may have open: one token cannot take
/// the whole store, and no client's session is ever dropped to make room
/// for another's.
const MAX_SESSIONS_PER_CLIENT: usize = 128;

/// Why no session was opened.
enum SessionRefusal {
    ClientFull,
    GatewayFull,
}

impl IntoResponse for SessionRefusal {
    fn into_response(self) -> HttpResponse {
        let (status, message) = match self {
            SessionRefusal::ClientFull => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this client has {MAX_SESSIONS_PER_CLIENT} open sessions: end unused ones (DELETE /mcp with their Mcp-Session-Id) or use stateless requests; idle sessions expire after {} min",
                    SESSION_IDLE.as_secs() / 60
                ),
            ),
            SessionRefusal::GatewayFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the gateway holds its maximum of {MAX_SESSIONS} sessions; retry later or use stateless requests"
                ),
            ),
        };
        json_error(status, None, ErrorObject::invalid_request(message))
    }
}

impl HttpState {
    /// Forgets idle sessions; then whether `identity` may open one more.
    fn room_for_session(&self, identity: &str) -> Result<(), SessionRefusal> {
        let mut sessions = self.sessions();
        sessions.retain(|_, session| {
            let idle = session
                .last_used
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed()
                >= SESSION_IDLE;
            if idle {
                session.session.cancel_all();
            }
            !idle
        });
        let own = sessions
            .values()
            .filter(|session| session.identity == identity)
            .count();
        if own >= MAX_SESSIONS_PER_CLIENT {
            return Err(SessionRefusal::ClientFull);
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(SessionRefusal::GatewayFull);
        }
        Ok(())
    }
}

#[derive(Clone)]
struct HttpState {
    gateway: Arc<Gateway>,
    sessions: Arc<Mutex<HashMap<String, Arc<HttpSession>>>>,
}

impl HttpState {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HttpSession>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The paths the gateway serves; the guard answers 404 for any other.
const ROUTES: [&str; 2] = ["/mcp", "/ws"];

/// The HTTP application: `/mcp` and `/ws`, guarded.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let max_message = gateway.config.max_message;
    let state = HttpState {
        gateway,
        sessions: Arc::new(Mutex::new(HashMap::new())),
    };
    Router::new()
        .route(
            "/mcp",
            get(open_stream).post(post_message).delete(end_session),
        )
        .route("/ws", get(websocket))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(max_message))
        .with_state(state)
}

fn json_error(status: StatusCode, id: Option<RequestId>, error: ErrorObject) -> HttpResponse {
    let body = serde_json::to_vec(&Response::error(id, error)).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A refusal of the guard: logged (rate-limited, with the peer, never a
/// token), answered with the reason, and the connection closed after it,
/// so that a refused client keeps no connection open.
fn refuse(
    state: &HttpState,
    request: &HttpRequest,
    status: StatusCode,
    message: String,
) -> HttpResponse {
    let peer = request
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "unknown".to_owned(), |peer| peer.0.to_string());
    state
        .gateway
        .refusals
        .refused("http", &peer, &proto::text::escaped(&message));
    let mut response = json_error(status, None, ErrorObject::invalid_request(message));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `host[:port]` → host (keeping IPv6 brackets).
fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

async fn guard(
    State(state): State<HttpState>,
    mut request: HttpRequest,
    next: Next,
) -> HttpResponse {
    let config = &state.gateway.config;
    // A request target in absolute form names its own host, which the
    // Host check below would not see; only proxies get those.
    if request.uri().authority().is_some() {
        let message = "the request target must be a path (/mcp), not an absolute URL".to_owned();
        return refuse(&state, &request, StatusCode::BAD_REQUEST, message);
    }
    let headers = request.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        let message = "more than one Host header: send exactly one".to_owned();
        return refuse(&state, &request, StatusCode::BAD_REQUEST, message);
    }
    let host = host.and_then(|value| value.to_str().ok()).unwrap_or("");
    let host_allowed = LOOPBACK_HOSTS.contains(&host_without_port(host))
        || config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == host || allowed == host_without_port(host));
    if !host_allowed {
        let message = format!(
            "Host {:?} is not allowed (add it to auth.allowed_hosts to serve it)",
            proto::text::echo(host)
        );
        return refuse(&state, &request, StatusCode::FORBIDDEN, message);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        let loopback = (origin.starts_with("http://") || origin.starts_with("https://"))
            && LOOPBACK_HOSTS.contains(&host_without_port(authority));
        if !loopback
            && !config
                .allowed_origins
                .iter()
                .any(|allowed| allowed == origin)
        {
            let message = format!(
                "Origin {:?} is not allowed (add it to auth.allowed_origins to serve it)",
                proto::text::echo(origin)
            );
            return refuse(&state, &request, StatusCode::FORBIDDEN, message);
        }
    }
    // Only now, past the Host and Origin checks (a foreign page learns
    // nothing), are unknown paths told apart: 404, not 401, so that a host
    // following the MCP authorization specification, which probes
    // `/.well-known/oauth-protected-resource`, finds no OAuth to start.
    if !ROUTES.contains(&request.uri().path()) {
        let message = format!("no such path: this gateway serves {}", ROUTES.join(" and "));
        let mut response = json_error(
            StatusCode::NOT_FOUND,
            None,
            ErrorObject::invalid_request(message),
        );
        // Not admitted: the connection ends, as after a refusal.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let identity = if config.no_auth {
        "local (no auth)".to_owned()
    } else {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match presented.and_then(|token| config.token_holder(token.trim())) {
            Some(holder) => format!("token:{holder}"),
            None => {
                // No `resource_metadata`: the gateway offers no OAuth; the
                // challenge says, as the body does, how to pass the token.
                let (error, message) = match presented {
                    None => ("", "a bearer token is required"),
                    Some(_) => (
                        r#", error="invalid_token""#,
                        "the bearer token is not valid",
                    ),
                };
                let how = format!("send Authorization: Bearer <token>; {}", config.token_hint);
                let challenge = format!(
                    r#"Bearer realm="llmbasedos"{error}, error_description="{}""#,
                    how.replace(['"', '\\'], "'")
                );
                let mut response = refuse(
                    &state,
                    &request,
                    StatusCode::UNAUTHORIZED,
                    format!("{message}: {how}"),
                );
                if let Ok(challenge) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge);
                } else {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Bearer realm="llmbasedos""#),
                    );
                }
                return response;
            }
        }
    };
    request.extensions_mut().insert(Identity(identity));
    next.run(request).await
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
}

/// A session id that names no session of this client.
struct UnknownSession;

impl IntoResponse for UnknownSession {
    fn into_response(self) -> HttpResponse {
        json_error(
            StatusCode::NOT_FOUND,
            None,
            ErrorObject::invalid_request("unknown or expired session: send initialize again"),
        )
    }
}

fn find_session(
    state: &HttpState,
    headers: &HeaderMap,
    identity: &str,
) -> Result<Option<Arc<HttpSession>>, UnknownSession> {
    let Some(id) = session_id(headers) else {
        return Ok(None);
    };
    match state.sessions().get(id) {
        // A session belongs to whoever opened it.
        Some(session) if session.identity == identity => {
            *session
                .last_used
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
            Ok(Some(session.clone()))
        }
        _ => Err(UnknownSession),
    }
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the kernel provides random bytes");
    hex::encode(bytes)
}

async fn post_message(
    State(state): State<HttpState>,
    axum::Extension(Identity(identity)): axum::Extension<Identity>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    if let Some(refusal) = refuse_protocol_header(&headers) {
        return refusal;
    }
    let message = match Message::from_slice(&body) {
        Ok(message) => message,
        Err(invalid) => return json_error(StatusCode::BAD_REQUEST, invalid.id, invalid.error),
    };
    let existing = match find_session(&state, &headers, &identity) {
        Ok(existing) => existing,
        Err(unknown) => return unknown.into_response(),
    };
    let gateway = state.gateway.clone();
    let request = match message {
        Message::Request(request) => request,
        other => {
            let session = existing.map_or_else(
                || gateway.session(identity.clone(), mpsc::channel(1).0),
                |existing| existing.session.clone(),
            );
            gateway.handle(&session, other).await;
            return StatusCode::ACCEPTED.into_response();
        }
    };
    if request.method == proto::mcp::method::INITIALIZE {
        if let Err(refusal) = state.room_for_session(&identity) {
            return refusal.into_response();
        }
        let (notifications_tx, notifications_rx) = mpsc::channel(256);
        let session = gateway.session(identity.clone(), notifications_tx);
        let id = new_session_id();
        let response = gateway.handle(&session, Message::Request(request)).await;
        let http_session = Arc::new(HttpSession {
            session,
            identity,
            notifications: Mutex::new(Some(notifications_rx)),
            last_used: Mutex::new(Instant::now()),
        });
        state.sessions().insert(id.clone(), http_session);
        let mut reply = json_reply(response);
        if let Ok(value) = HeaderValue::from_str(&id) {
            reply.headers_mut().insert(SESSION_HEADER, value);
        }
        return reply;
    }
    let base = existing.map_or_else(
        || gateway.session(identity.clone(), mpsc::channel(1).0),
        |existing| existing.session.clone(),
    );
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    let has_progress = RequestMeta::from_params(request.params.as_ref())
        .ok()
        .is_some_and(|meta| meta.progress_token.is_some());
    let (events_tx, events_rx) = mpsc::channel(256);
    let session = base.fork(events_tx.clone());
    let cancel_on_drop = CancelOnDrop {
        session: session.clone(),
        id: Some(request.id.clone()),
    };
    if wants_stream && has_progress {
        let (answer_tx, answer_rx) = oneshot::channel();
        gateway.spawn_request(&session, request, move |answer| {
            let _ = answer_tx.send(answer);
        });
        drop(events_tx);
        return Sse::new(request_stream(events_rx, answer_rx, cancel_on_drop))
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    drop(events_tx);
    let (answer_tx, answer_rx) = oneshot::channel();
    gateway.spawn_request(&session, request, move |response| {
        let _ = answer_tx.send(response);
    });
    let mut cancel_on_drop = cancel_on_drop;
    match answer_rx.await {
        Ok(answer) => {
            cancel_on_drop.id = None;
            json_answer(&answer)
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The 400 for an `MCP-Protocol-Version` header that names no revision we
/// speak (on every method); without a header the session's negotiated
/// revision holds (a 2025-03-26 host sends none).
fn refuse_protocol_header(headers: &HeaderMap) -> Option<HttpResponse> {
    let version = headers.get(PROTOCOL_HEADER)?.to_str().unwrap_or("");
    if ProtocolVersion::SUPPORTED
        .iter()
        .any(|supported| supported.as_str() == version)
    {
        return None;
    }
    Some(json_error(
        StatusCode::BAD_REQUEST,
        None,
        ErrorObject::invalid_request(format!(
            "unsupported MCP-Protocol-Version {:?}; this gateway speaks {}",
            proto::text::echo(version),
            proto::mcp::SUPPORTED_PROTOCOL_VERSIONS.join(", ")
        )),
    ))
}

fn json_reply(response: Option<Response>) -> HttpResponse {
    match response {
        Some(response) => json_answer(&response),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// An answer as a JSON body (raw result text written as it is).
fn json_answer(answer: &impl serde::Serialize) -> HttpResponse {
    let body = serde_json::to_vec(answer).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Cancels the request if the HTTP exchange ends before its answer (the
/// client disconnected).
struct CancelOnDrop {
    session: Arc<Session>,
    id: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.session.cancel(id);
        }
    }
}

fn sse_event(message: &Message) -> Event {
    Event::default()
        .event("message")
        .data(String::from_utf8_lossy(&message.to_vec()))
}

/// A POST's SSE stream: the request's notifications, then its answer
/// (written from the [`Answer`], raw result text as it is). Dropped early
/// (the client left), it cancels the request.
fn request_stream(
    events: mpsc::Receiver<Message>,
    answer: oneshot::Receiver<Answer>,
    cancel_on_drop: CancelOnDrop,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (events, Some(answer), cancel_on_drop),
        |(mut events, answer, mut cancel_on_drop)| async move {
            let mut answer = answer?;
            // Every notification of the request is queued before its
            // answer is ready: taking ready notifications first keeps
            // them before the answer.
            tokio::select! {
                biased;
                Some(message) = events.recv() => {
                    Some((Ok(sse_event(&message)), (events, Some(answer), cancel_on_drop)))
                }
                outcome = &mut answer => {
                    let outcome = outcome.ok()?;
                    cancel_on_drop.id = None;
                    let event = Event::default()
                        .event("message")
                        .data(serde_json::to_string(&outcome).unwrap_or_default());
                    Some((Ok(event), (events, None, cancel_on_drop)))
                }
            }
        },
    )
}

/// GET `/mcp`: the session's stream of server notifications (2025-11-25).
async fn open_stream(
    State(state): State<HttpState>,
    axum::Extension(Identity(identity)): axum::Extension<Identity>,
    headers: HeaderMap,
) -> HttpResponse {
    if let Some(refusal) = refuse_protocol_header(&headers) {
        return refusal;
    }
    let session = match find_session(&state, &headers, &identity) {
        Ok(Some(session)) => session,
        Ok(None) => {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "POST, DELETE")],
            )
                .into_response();
        }
        Err(unknown) => return unknown.into_response(),
    };
    let Some(mut notifications) = session
        .notifications
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        return json_error(
            StatusCode::CONFLICT,
            None,
            ErrorObject::invalid_request("this session already has an open notification stream"),
        );
    };
    let mut changes = state.gateway.registry.subscribe();
    let (merged_tx, merged_rx) = mpsc::channel::<Message>(256);
    let wants = session.session.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                message = notifications.recv() => match message {
                    Some(message) => if merged_tx.send(message).await.is_err() { break },
                    None => break,
                },
                change = changes.recv() => {
                    if change.is_err() && merged_tx.is_closed() { break }
                    if wants.wants_list_changed() {
                        let notification = Message::Notification(proto::Notification {
                            method: proto::mcp::method::NOTIFICATIONS_TOOLS_LIST_CHANGED.to_owned(),
                            params: None,
                        });
                        if merged_tx.send(notification).await.is_err() { break }
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold(merged_rx, |mut merged| async move {
        let message = merged.recv().await?;
        Some((Ok::<_, Infallible>(sse_event(&message)), merged))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// DELETE `/mcp`: the client ends its session.
async fn end_session(
    State(state): State<HttpState>,
    axum::Extension(Identity(identity)): axum::Extension<Identity>,
    headers: HeaderMap,
) -> HttpResponse {
    if let Some(refusal) = refuse_protocol_header(&headers) {
        return refusal;
    }
    match find_session(&state, &headers, &identity) {
        Ok(Some(_)) => {
            if let Some(session) = session_id(&headers).and_then(|id| state.sessions().remove(id)) {
                session.session.cancel_all();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => json_error(
            StatusCode::BAD_REQUEST,
            None,
            ErrorObject::invalid_request("no Mcp-Session-Id given"),
        ),
        Err(unknown) => unknown.into_response(),
    }
}

/// `/ws`: JSON-RPC in WebSocket text frames, the seed's transport.
async fn websocket(
    State(state): State<HttpState>,
    axum::Extension(Identity(identity)): axum::Extension<Identity>,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let max_message = state.gateway.config.max_message;
    upgrade
        .max_message_size(max_message)
        // The library zeroes up to this much of its buffer before every
        // read attempt (several per message): small, since requests are.
        .read_buffer_size(2 * 1024)
        .on_upgrade(move |socket| serve_websocket(state.gateway, socket, identity))
}

async fn serve_websocket(gateway: Arc<Gateway>, socket: WebSocket, identity: String) {
    let (mut client, mut outgoing) = StreamClient::start(&gateway, identity);
    let (mut sink, mut stream) = socket.split();
    // Frames not yet taken by the socket, and their size: a peer that does
    // not read gets no more requests read past [`OUTPUT_HIGH_WATER`].
    let mut pending: VecDeque<WsMessage> = VecDeque::new();
    let mut pending_bytes = 0usize;
    loop {
        let read_more = client.reads_frames() && pending_bytes < OUTPUT_HIGH_WATER;
        tokio::select! {
            incoming = stream.next(), if read_more => match incoming {
                Some(Ok(WsMessage::Text(text))) => client.on_frame(&gateway, text.as_bytes()),
                Some(Ok(WsMessage::Binary(bytes))) => client.on_frame(&gateway, &bytes),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break,
            },
            message = outgoing.recv(), if pending_bytes < OUTPUT_HIGH_WATER => {
                let Some(message) = message else { break };
                queue_ws(&mut pending, &mut pending_bytes, &message);
            }
            answer = client.next_answer(&gateway) => if let Some(answer) = answer {
                // The request's progress notifications first.
                while let Ok(message) = outgoing.try_recv() {
                    queue_ws(&mut pending, &mut pending_bytes, &message);
                }
                queue_ws(&mut pending, &mut pending_bytes, &answer);
            },
            // The peer's buffer was full: wait for room.
            sent = send_pending(&mut sink, &mut pending, &mut pending_bytes), if !pending.is_empty() => {
                if sent.is_err() {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let sent = send_pending(&mut sink, &mut pending, &mut pending_bytes).now_or_never();
            if let Some(Err(_)) = sent {
                break;
            }
        }
    }
}

fn queue_ws(pending: &mut VecDeque<WsMessage>, bytes: &mut usize, message: &impl serde::Serialize) {
    if let Ok(text) = serde_json::to_string(message) {
        *bytes += text.len();
        pending.push_back(WsMessage::Text(text.into()));
    }
}

/// Hands the queued frames to the socket and flushes them; cancel-safe (a
/// frame leaves the queue only once the socket took it).
async fn send_pending(
    sink: &mut futures::stream::SplitSink<WebSocket, WsMessage>,
    pending: &mut VecDeque<WsMessage>,
    bytes: &mut usize,
) -> Result<(), axum::Error> {
    use futures::Sink;
    std::future::poll_fn(|cx| {
        while !pending.is_empty() {
            std::task::ready!(Pin::new(&mut *sink).poll_ready(cx))?;
            let message = pending.pop_front().expect("not empty");
            if let WsMessage::Text(text) = &message {
                *bytes -= text.len();
            }
            Pin::new(&mut *sink).start_send(message)?;
        }
        Pin::new(&mut *sink).poll_flush(cx)
    })
    .await
}
