//! Streamable HTTP sessions (`Mcp-Session-Id`): the store and its limits,
//! the GET stream of a session's notifications, DELETE to end one.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use proto::{ErrorObject, Message};
use tokio::sync::mpsc;

use super::post::{refuse_protocol_header, sse_event};
use super::{HttpState, Identity, SESSION_HEADER, json_error};
use crate::dispatch::Session;

pub(super) struct HttpSession {
    pub(super) session: Arc<Session>,
    pub(super) identity: String,
    /// The GET stream's source; taken by the one open stream.
    pub(super) notifications: Mutex<Option<mpsc::Receiver<Message>>>,
    pub(super) last_used: Mutex<Instant>,
}

/// A session unused this long is forgotten (its client must initialize again).
pub(super) const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Sessions kept at most, for all clients together.
pub(super) const MAX_SESSIONS: usize = 1024;
/// Sessions one client (one token) may have open: one token cannot take
/// the whole store, and no client's session is ever dropped to make room
/// for another's.
pub(super) const MAX_SESSIONS_PER_CLIENT: usize = 128;

/// Why no session was opened.
pub(super) enum SessionRefusal {
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
    pub(super) fn room_for_session(&self, identity: &str) -> Result<(), SessionRefusal> {
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

pub(super) fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
}

/// A session id that names no session of this client.
pub(super) struct UnknownSession;

impl IntoResponse for UnknownSession {
    fn into_response(self) -> HttpResponse {
        json_error(
            StatusCode::NOT_FOUND,
            None,
            ErrorObject::invalid_request("unknown or expired session: send initialize again"),
        )
    }
}

pub(super) fn find_session(
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

pub(super) fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the kernel provides random bytes");
    hex::encode(bytes)
}

/// GET `/mcp`: the session's stream of server notifications (2025-11-25).
pub(super) async fn open_stream(
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
pub(super) async fn end_session(
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
