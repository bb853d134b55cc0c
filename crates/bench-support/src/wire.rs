//! A blocking client of the NUL-delimited backend wire, as the integration
//! tests use it: every frame the server sends must be a valid JSON-RPC
//! message, or the test fails; every read is bounded.
//!
//! Two ways to call: [`Client::call`] with an id the test chooses, whose
//! answer must be the very next frame (the framework's tests check exactly
//! that), and [`Client::outcome`] (with [`Client::ok`], [`Client::err`])
//! with ids numbered by the client, skipping the notifications (progress)
//! that come before the answer.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use proto::{ErrorObject, Message, Notification, Request, RequestId, Response};
use serde_json::Value;

use crate::PATIENCE;

/// What [`Client::receive_within`] found.
#[derive(Debug)]
pub enum Received {
    Message(Message),
    /// The server closed the connection.
    Closed,
    /// Nothing complete arrived in time.
    Timeout,
}

/// A blocking client of the NUL-delimited wire.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
    /// How much of `pending` holds no NUL: a large answer arriving in
    /// pieces is scanned once, not from its start for every piece.
    scanned: usize,
    /// The id [`Client::send_request`] gives next.
    next_id: i64,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|error| panic!("connect to {}: {error}", path.display()));
        Client::from_stream(stream)
    }

    pub fn from_stream(stream: UnixStream) -> Client {
        Client {
            stream,
            pending: Vec::new(),
            scanned: 0,
            next_id: 1,
        }
    }

    /// A second handle on the same connection, e.g. for a writer thread.
    pub fn writer(&self) -> UnixStream {
        self.stream.try_clone().expect("clone the stream")
    }

    /// Raw bytes, framed or not.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    pub fn send(&mut self, message: impl Into<Message>) {
        self.write(&frame(&message.into()));
    }

    /// Sends a request; `Value::Null` params are left out.
    pub fn request(&mut self, id: impl Into<RequestId>, method: &str, params: Value) {
        self.send(request(id, method, params));
    }

    /// Like [`Client::request`], but a write the server refuses (it has
    /// closed the connection, e.g. while shutting down) is returned rather
    /// than a panic.
    pub fn try_request(
        &mut self,
        id: impl Into<RequestId>,
        method: &str,
        params: Value,
    ) -> std::io::Result<()> {
        self.stream
            .write_all(&frame(&request(id, method, params).into()))
    }

    /// Sends a request with the next id of this client, without waiting;
    /// returns the id.
    pub fn send_request(&mut self, method: &str, params: Value) -> RequestId {
        let id = RequestId::Number(self.next_id);
        self.next_id += 1;
        self.send(Request {
            id: id.clone(),
            method: method.to_owned(),
            params: Some(params),
        });
        id
    }

    /// Sends a notification (e.g. `notifications/cancelled`).
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(Notification {
            method: method.to_owned(),
            params: Some(params),
        });
    }

    /// Sends a request and returns the outcome of its response, which must
    /// be the next frame.
    pub fn call(
        &mut self,
        id: impl Into<RequestId>,
        method: &str,
        params: Value,
    ) -> Result<Value, ErrorObject> {
        let id = id.into();
        self.request(id.clone(), method, params);
        let response = self.response();
        assert_eq!(
            response.id,
            Some(id),
            "expected the answer to {method}, got {response:?}"
        );
        response.outcome
    }

    /// One call with the next id of this client; notifications before its
    /// answer are skipped, anything else fails the test.
    pub fn outcome(&mut self, method: &str, params: Value) -> Result<Value, ErrorObject> {
        let id = self.send_request(method, params);
        loop {
            match self.receive() {
                Message::Response(response) if response.id.as_ref() == Some(&id) => {
                    return response.outcome;
                }
                Message::Notification(_) => {}
                other => panic!("expected the answer to {method} ({id:?}), got {other:?}"),
            }
        }
    }

    /// A call that must succeed.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.outcome(method, params.clone()) {
            Ok(result) => result,
            Err(error) => panic!("{method} {} failed: {error}", shorten(&params)),
        }
    }

    /// A call that must fail.
    pub fn err(&mut self, method: &str, params: Value) -> ErrorObject {
        match self.outcome(method, params.clone()) {
            Ok(result) => panic!(
                "{method} {} succeeded with {}",
                shorten(&params),
                shorten(&result)
            ),
            Err(error) => error,
        }
    }

    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shut down the writing half");
    }

    pub fn receive_within(&mut self, within: Duration) -> Received {
        let deadline = Instant::now() + within;
        let mut chunk = vec![0_u8; 256 * 1024];
        loop {
            if let Some(offset) = self.pending[self.scanned..]
                .iter()
                .position(|byte| *byte == 0)
            {
                let end = self.scanned + offset;
                self.scanned = 0;
                let mut frame: Vec<u8> = self.pending.drain(..=end).collect();
                frame.pop();
                let message = Message::from_slice(&frame).unwrap_or_else(|invalid| {
                    panic!(
                        "the server sent an invalid JSON-RPC frame ({invalid}): {}",
                        shorten_bytes(&frame)
                    )
                });
                return Received::Message(message);
            }
            self.scanned = self.pending.len();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Received::Timeout;
            }
            self.stream
                .set_read_timeout(Some(remaining))
                .expect("set the read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(
                        self.pending.is_empty(),
                        "the server closed the connection in the middle of a frame: {}",
                        shorten_bytes(&self.pending)
                    );
                    return Received::Closed;
                }
                Ok(read) => self.pending.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return Received::Closed;
                }
                Err(error) => panic!("read from the server: {error}"),
            }
        }
    }

    /// The next frame; fails the test if none arrives in [`PATIENCE`].
    pub fn receive(&mut self) -> Message {
        match self.receive_within(PATIENCE) {
            Received::Message(message) => message,
            Received::Closed => panic!("the server closed the connection instead of answering"),
            Received::Timeout => panic!("no frame from the server within {PATIENCE:?}"),
        }
    }

    /// The next frame, which must be a response.
    pub fn response(&mut self) -> Response {
        match self.receive() {
            Message::Response(response) => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Fails the test if any frame arrives within `duration`.
    pub fn expect_silence(&mut self, duration: Duration) {
        match self.receive_within(duration) {
            Received::Timeout | Received::Closed => {}
            Received::Message(message) => panic!("expected no frame, got {message:?}"),
        }
    }

    /// Fails the test unless the server closes the connection (without
    /// sending anything more) within [`PATIENCE`].
    pub fn expect_closed(&mut self) {
        match self.receive_within(PATIENCE) {
            Received::Closed => {}
            Received::Message(message) => {
                panic!("expected the connection to close, got {message:?}")
            }
            Received::Timeout => panic!("the connection is still open after {PATIENCE:?}"),
        }
    }
}

pub fn request(id: impl Into<RequestId>, method: &str, params: Value) -> Request {
    Request {
        id: id.into(),
        method: method.to_owned(),
        params: (!params.is_null()).then_some(params),
    }
}

/// A message as it goes on the wire: compact JSON and its NUL.
pub fn frame(message: &Message) -> Vec<u8> {
    let mut bytes = message.to_vec();
    bytes.push(0);
    bytes
}

/// A JSON value cut to a readable length for failure messages.
pub fn shorten(value: &Value) -> String {
    shorten_text(&value.to_string())
}

fn shorten_bytes(bytes: &[u8]) -> String {
    shorten_text(&String::from_utf8_lossy(bytes))
}

fn shorten_text(text: &str) -> String {
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_owned()
    }
}
