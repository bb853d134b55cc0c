//! An MCP client over Streamable HTTP (2025-11-25): each message is a POST;
//! a request is answered as JSON or as an SSE stream carrying its
//! notifications (progress) and then its response. The session id the
//! server gives at `initialize` is sent back on every later message.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::StreamExt;
use proto::{ErrorObject, Message, Notification, Request, RequestId};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::connection::{CallError, ProgressSender};

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// A Streamable HTTP endpoint.
#[derive(Debug)]
pub struct HttpConnection {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    session: Mutex<Option<String>>,
    protocol: Mutex<Option<String>>,
    next_id: AtomicI64,
    max_message: usize,
}

fn transport_error(error: impl std::fmt::Display) -> CallError {
    CallError::Connect(std::io::Error::other(error.to_string()))
}

impl HttpConnection {
    /// A client for `url` (`http://` or `https://`, verified against the
    /// system's certificate store); `bearer` is sent as `Authorization`.
    pub fn new(
        url: &str,
        bearer: Option<String>,
        max_message: usize,
    ) -> Result<HttpConnection, CallError> {
        let http = web_client().map_err(transport_error)?;
        Ok(HttpConnection {
            http,
            url: url.to_owned(),
            bearer,
            session: Mutex::new(None),
            protocol: Mutex::new(None),
            next_id: AtomicI64::new(1),
            max_message,
        })
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(value) = session.and_then(|session| HeaderValue::from_str(&session).ok()) {
            headers.insert(SESSION_HEADER, value);
        }
        let protocol = self
            .protocol
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(value) = protocol.and_then(|protocol| HeaderValue::from_str(&protocol).ok()) {
            headers.insert(PROTOCOL_HEADER, value);
        }
        if let Some(value) = self
            .bearer
            .as_ref()
            .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok())
        {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        headers
    }

    /// POSTs one message with the session's headers.
    async fn post(&self, message: &Message) -> Result<reqwest::Response, CallError> {
        self.http
            .post(&self.url)
            .headers(self.headers())
            .body(message.to_vec())
            .send()
            .await
            .map_err(transport_error)
    }

    /// Calls `method`; progress for it is forwarded as in
    /// [`crate::Connection::call`].
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = match (params, progress.is_some()) {
            (Some(Value::Object(mut object)), true) => {
                let meta = object.entry("_meta").or_insert_with(|| json!({}));
                if let Value::Object(meta) = meta {
                    meta.insert(proto::mcp::meta_key::PROGRESS_TOKEN.to_owned(), json!(id));
                }
                Some(Value::Object(object))
            }
            (params, _) => params,
        };
        let request = Message::Request(Request {
            id: RequestId::Number(id),
            method: method.to_owned(),
            params,
        });
        let response = self.post(&request).await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND
            && self
                .session
                .lock()
                .map(|session| session.is_some())
                .unwrap_or(false)
        {
            // The server forgot the session (it restarted): start over.
            return Err(CallError::Closed);
        }
        if method == proto::mcp::method::INITIALIZE
            && let Some(session) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|value| value.to_str().ok())
        {
            *self
                .session
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(session.to_owned());
        }
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|kind| kind.starts_with("text/event-stream"));
        let outcome = if is_stream {
            self.read_stream(response, id, progress.as_ref()).await?
        } else {
            let body = response.bytes().await.map_err(transport_error)?;
            match Message::from_slice(&body) {
                Ok(Message::Response(answer)) => answer.outcome,
                _ if !status.is_success() => Err(ErrorObject::internal(format!(
                    "the server answered HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ))),
                _ => Err(ErrorObject::internal(
                    "the server's answer is not a JSON-RPC response",
                )),
            }
        };
        if method == proto::mcp::method::INITIALIZE
            && let Ok(result) = &outcome
            && let Some(version) = result.get("protocolVersion").and_then(Value::as_str)
        {
            *self
                .protocol
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(version.to_owned());
        }
        outcome.map_err(CallError::Server)
    }

    /// Reads an SSE answer: notifications for this request, then its response.
    async fn read_stream(
        &self,
        response: reqwest::Response,
        id: i64,
        progress: Option<&ProgressSender>,
    ) -> Result<Result<Value, ErrorObject>, CallError> {
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk.map_err(transport_error)?);
            if buffer.len() > self.max_message {
                return Err(CallError::TooLarge(format!(
                    "an SSE event over {} bytes",
                    self.max_message
                )));
            }
            while let Some(data) = take_event(&mut buffer) {
                if data.is_empty() {
                    continue;
                }
                match Message::from_slice(data.as_bytes()) {
                    Ok(Message::Response(answer)) if answer.id == Some(RequestId::Number(id)) => {
                        return Ok(answer.outcome);
                    }
                    Ok(Message::Notification(Notification {
                        method,
                        params: Some(params),
                    })) if method == proto::mcp::method::NOTIFICATIONS_PROGRESS => {
                        if let Some(progress) = progress {
                            let _ = progress.send(params);
                        }
                    }
                    _ => {}
                }
            }
        }
        Err(CallError::Closed)
    }

    /// Sends a notification (answered 202 Accepted).
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), CallError> {
        let message = Message::Notification(Notification {
            method: method.to_owned(),
            params,
        });
        let response = self.post(&message).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(CallError::Server(ErrorObject::internal(format!(
                "the server refused a notification: HTTP {}",
                response.status()
            ))))
        }
    }
}

/// The end of the first complete SSE event in `buffer`: (length of the
/// event, length including its blank-line terminator).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer
        .windows(2)
        .position(|window| window == b"\n\n")
        .map(|at| (at, at + 2));
    let crlf = buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, at + 4));
    match (lf, crlf) {
        (Some(lf), Some(crlf)) => Some(if lf.0 <= crlf.0 { lf } else { crlf }),
        (one, other) => one.or(other),
    }
}

/// An HTTP client for other servers: TLS verified against the system's
/// certificate store, 30 s to connect.
pub fn web_client() -> Result<reqwest::Client, reqwest::Error> {
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
}

/// Takes the first complete server-sent event out of `buffer` (bytes as
/// they arrived): its data lines, joined. Also reads other SSE streams
/// (the gateway's LLM proxy reads OpenAI-style completions with it).
pub fn take_event(buffer: &mut Vec<u8>) -> Option<String> {
    let (event, with_terminator) = find_event_end(buffer)?;
    let data = event_data(&buffer[..event]);
    buffer.drain(..with_terminator);
    Some(data)
}

/// The `data:` lines of one SSE event, joined by newlines.
fn event_data(event: &[u8]) -> String {
    String::from_utf8_lossy(event)
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_their_data_joined() {
        let stream = b"event: message\ndata: {\"a\":\ndata: 1}\n\n: comment\r\n\r\ndata: x\n\n";
        let first = find_event_end(stream).expect("an event");
        assert_eq!(event_data(&stream[..first.0]), "{\"a\":\n1}");
        let rest = &stream[first.1..];
        let second = find_event_end(rest).expect("a comment event");
        assert_eq!(event_data(&rest[..second.0]), "");
        let rest = &rest[second.1..];
        let third = find_event_end(rest).expect("a third event");
        assert_eq!(event_data(&rest[..third.0]), "x");
        assert!(find_event_end(b"data: partial\n").is_none());
    }

    /// Regression: taking an event left part of its terminator behind, or
    /// (worse) drained past the end of the buffer.
    #[test]
    fn taking_events_leaves_exactly_the_rest() {
        let mut buffer = b"data: one\n\ndata: two\r\n\r\ndata: thr".to_vec();
        assert_eq!(take_event(&mut buffer).as_deref(), Some("one"));
        assert_eq!(take_event(&mut buffer).as_deref(), Some("two"));
        assert_eq!(take_event(&mut buffer), None);
        assert_eq!(buffer, b"data: thr");
    }
}
