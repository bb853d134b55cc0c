//! POST `/mcp`: one JSON-RPC message (or, in MCP 2025-03-26, a batch),
//! answered as JSON or, for a request with progress, as an SSE stream.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::Stream;
use proto::mcp::{ProtocolVersion, RequestMeta};
use proto::{ErrorObject, Incoming, InvalidMessage, Message, RequestId, Response};
use tokio::sync::{mpsc, oneshot};

use super::sessions::{HttpSession, find_session, new_session_id};
use super::{HttpState, Identity, PROTOCOL_HEADER, SESSION_HEADER, json_error};
use crate::dispatch::{Answer, Session};
use crate::transport::batch;

pub(super) async fn post_message(
    State(state): State<HttpState>,
    axum::Extension(Identity(identity)): axum::Extension<Identity>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    if let Some(refusal) = refuse_protocol_header(&headers) {
        return refusal;
    }
    let message = match Incoming::from_slice(&body) {
        Ok(Incoming::One(message)) => message,
        Ok(Incoming::Batch(entries)) => {
            return post_batch(&state, &headers, &identity, entries).await;
        }
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
    // The dispatcher reads `_meta` (once); here only the token's presence.
    let has_progress = RequestMeta::requests_progress(request.params.as_ref());
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
            let mut reply = json_answer(&answer);
            if let Some(seconds) = retry_after(&answer) {
                reply
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            reply
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A batch (MCP 2025-03-26 sessions only): answered as one JSON array, or
/// 202 when no entry wants an answer. Its requests' progress is not
/// streamed (a host that wants it sends the request alone, with
/// `Accept: text/event-stream`).
async fn post_batch(
    state: &HttpState,
    headers: &HeaderMap,
    identity: &str,
    entries: Vec<Result<Message, InvalidMessage>>,
) -> HttpResponse {
    let gateway = &state.gateway;
    let base = match find_session(state, headers, identity) {
        Ok(Some(existing)) => existing.session.clone(),
        Ok(None) => gateway.session(identity.to_owned(), mpsc::channel(1).0),
        Err(unknown) => return unknown.into_response(),
    };
    if let Some(error) = batch::refusal(&base, entries.len()) {
        return json_error(StatusCode::BAD_REQUEST, None, error);
    }
    let session = base.fork(mpsc::channel(1).0);
    let answers = batch::run(gateway, &session, entries).await;
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    json_answer(&answers)
}

/// The 400 for an `MCP-Protocol-Version` header that names no revision we
/// speak (on every method); without a header the session's negotiated
/// revision holds (a 2025-03-26 host sends none).
pub(super) fn refuse_protocol_header(headers: &HeaderMap) -> Option<HttpResponse> {
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

pub(super) fn json_reply(response: Option<Response>) -> HttpResponse {
    match response {
        Some(response) => json_answer(&response),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// An answer as a JSON body (raw result text written as it is).
/// A licence refusal's `retry_after_ms` (in a JSON-RPC error's data or a
/// refused tool call's structured content), in whole seconds, rounded up,
/// for `Retry-After`.
fn retry_after(answer: &Answer) -> Option<u64> {
    let Answer::Response(response) = answer else {
        return None;
    };
    let millis = match &response.outcome {
        Err(error) => error.data.as_ref()?.get("retry_after_ms")?.as_u64()?,
        Ok(result) if result.get("isError") == Some(&serde_json::Value::Bool(true)) => result
            .get("structuredContent")?
            .get("retry_after_ms")?
            .as_u64()?,
        Ok(_) => return None,
    };
    Some(millis.div_ceil(1000).max(1))
}

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
pub(super) struct CancelOnDrop {
    pub(super) session: Arc<Session>,
    pub(super) id: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.session.cancel(id);
        }
    }
}

pub(super) fn sse_event(message: &Message) -> Event {
    Event::default()
        .event("message")
        .data(String::from_utf8_lossy(&message.to_vec()))
}

/// A POST's SSE stream: the request's notifications, then its answer
/// (written from the [`Answer`], raw result text as it is). Dropped early
/// (the client left), it cancels the request.
pub(super) fn request_stream(
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
