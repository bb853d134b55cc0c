//! JSON-RPC 2.0 messages: requests, notifications, responses and error objects.
//!
//! Parsing is strict about the envelope (so that a malformed message gets a
//! precise `-32600` answer) and lazy about the payload: `params` and `result`
//! stay [`serde_json::Value`]s for the layer that knows their schema.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{ErrorObject, code};

/// The only protocol version this crate speaks.
pub const JSONRPC_VERSION: &str = "2.0";

/// A request id: JSON-RPC allows numbers and strings. Fractional numbers and
/// `null` are refused when parsing because MCP forbids them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(number) => write!(f, "{number}"),
            RequestId::String(text) => write!(f, "{text:?}"),
        }
    }
}

impl From<i64> for RequestId {
    fn from(number: i64) -> Self {
        RequestId::Number(number)
    }
}

impl From<&str> for RequestId {
    fn from(text: &str) -> Self {
        RequestId::String(text.to_owned())
    }
}

impl RequestId {
    fn from_value(value: &Value) -> Option<RequestId> {
        match value {
            Value::String(text) => Some(RequestId::String(text.clone())),
            Value::Number(number) => number.as_i64().map(RequestId::Number),
            _ => None,
        }
    }
}

/// A call that expects exactly one [`Response`] with the same id.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    /// An object (named params) or an array (positional params), if present.
    pub params: Option<Value>,
}

/// A one-way message: no response is ever sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Option<Value>,
}

/// The answer to a request. `id` is `None` only when the request was so
/// malformed that its id could not be read (JSON-RPC then answers `"id": null`).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub id: Option<RequestId>,
    pub outcome: Result<Value, ErrorObject>,
}

impl Response {
    pub fn success(id: RequestId, result: Value) -> Response {
        Response {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    pub fn error(id: Option<RequestId>, error: ErrorObject) -> Response {
        Response {
            id,
            outcome: Err(error),
        }
    }
}

/// Any JSON-RPC 2.0 message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request(Request),
    Notification(Notification),
    Response(Response),
}

impl From<Request> for Message {
    fn from(request: Request) -> Self {
        Message::Request(request)
    }
}

impl From<Notification> for Message {
    fn from(notification: Notification) -> Self {
        Message::Notification(notification)
    }
}

impl From<Response> for Message {
    fn from(response: Response) -> Self {
        Message::Response(response)
    }
}

/// Why an incoming frame is not a usable message, with what to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidMessage {
    /// The request id, when it could be read: the error response carries it.
    pub id: Option<RequestId>,
    /// `-32700` (not JSON) or `-32600` (JSON, but not a JSON-RPC message).
    pub error: ErrorObject,
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl std::error::Error for InvalidMessage {}

/// A frame from a peer that may send JSON-RPC batches (MCP 2025-03-26
/// requires a server to accept them; 2025-06-18 dropped them): one message,
/// or a batch whose entries are read one by one, so that one bad entry is
/// answered on its own and the others still run.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    One(Message),
    Batch(Vec<Result<Message, InvalidMessage>>),
}

impl Incoming {
    /// Parses one frame: a JSON array is a batch (an empty one is `-32600`,
    /// as JSON-RPC 2.0 says), anything else goes through
    /// [`Message::from_slice`].
    pub fn from_slice(bytes: &[u8]) -> Result<Incoming, InvalidMessage> {
        let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
        if first != Some(&b'[') {
            return Message::from_slice(bytes).map(Incoming::One);
        }
        let entries: Vec<Value> =
            serde_json::from_slice(bytes).map_err(|error| InvalidMessage {
                id: None,
                error: ErrorObject::new(code::PARSE_ERROR, format!("parse error: {error}")),
            })?;
        if entries.is_empty() {
            return Err(invalid(
                None,
                "an empty batch: a JSON-RPC batch holds at least one message",
            ));
        }
        Ok(Incoming::Batch(
            entries.into_iter().map(Message::from_value).collect(),
        ))
    }
}

impl Message {
    /// Parses one frame. Invalid UTF-8 and invalid JSON give `-32700`; JSON
    /// that is not a single JSON-RPC 2.0 message gives `-32600`.
    pub fn from_slice(bytes: &[u8]) -> Result<Message, InvalidMessage> {
        // Well-formed messages (nearly all) are read straight into their
        // parts; anything else takes the general path, which says precisely
        // what is wrong. Both agree on every message (tested).
        if let Some(message) = Envelope::read(bytes) {
            return Ok(message);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|error| InvalidMessage {
            id: None,
            error: ErrorObject::new(code::PARSE_ERROR, format!("parse error: {error}")),
        })?;
        Message::from_value(value)
    }

    /// Classifies an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Message, InvalidMessage> {
        let mut object = match value {
            Value::Object(object) => object,
            Value::Array(_) => {
                return Err(invalid(
                    None,
                    "batch requests are not supported: send one JSON-RPC message per frame",
                ));
            }
            other => {
                return Err(invalid(
                    None,
                    format!(
                        "a JSON-RPC message must be an object, not {}",
                        kind_of(&other)
                    ),
                ));
            }
        };
        let raw_id = object.remove("id");
        let id = match &raw_id {
            None => None,
            Some(value) => match RequestId::from_value(value) {
                Some(id) => Some(id),
                None if value.is_null() && !object.contains_key("method") => None,
                None => {
                    return Err(invalid(
                        None,
                        format!(
                            "\"id\" must be a string or an integer, not {}",
                            kind_of(value)
                        ),
                    ));
                }
            },
        };
        match object.get("jsonrpc") {
            Some(Value::String(version)) if version == JSONRPC_VERSION => {}
            Some(other) => {
                return Err(invalid(
                    id,
                    format!(
                        "\"jsonrpc\" must be \"2.0\", not {}",
                        crate::text::echo_value(other)
                    ),
                ));
            }
            None => return Err(invalid(id, "missing \"jsonrpc\": \"2.0\"")),
        }
        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return Err(invalid(id, "\"method\" must be a string"));
            };
            let params = match object.remove("params") {
                None => None,
                Some(params @ (Value::Object(_) | Value::Array(_))) => Some(params),
                Some(other) => {
                    return Err(invalid(
                        id,
                        format!(
                            "\"params\" must be an object or an array, not {}",
                            kind_of(&other)
                        ),
                    ));
                }
            };
            return Ok(match id {
                Some(id) => Message::Request(Request { id, method, params }),
                None => Message::Notification(Notification { method, params }),
            });
        }
        if raw_id.is_none() {
            return Err(invalid(
                None,
                "a JSON-RPC message needs a \"method\" (request or notification) or an \"id\" with \"result\" or \"error\" (response)",
            ));
        }
        match (object.remove("result"), object.remove("error")) {
            (Some(result), None) => match id {
                Some(id) => Ok(Message::Response(Response::success(id, result))),
                None => Err(invalid(
                    None,
                    "a successful response needs a string or integer \"id\"",
                )),
            },
            (None, Some(error)) => {
                let error: ErrorObject = serde_json::from_value(error).map_err(|problem| {
                    invalid(id.clone(), format!("malformed \"error\" object: {problem}"))
                })?;
                Ok(Message::Response(Response::error(id, error)))
            }
            (Some(_), Some(_)) => Err(invalid(
                id,
                "a response has \"result\" or \"error\", not both",
            )),
            (None, None) => Err(invalid(id, "a response needs \"result\" or \"error\"")),
        }
    }

    /// Serializes the message as compact JSON (no delimiter).
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a JSON-RPC message always serializes")
    }
}

/// A well-formed message's parts, read without building a JSON tree for the
/// envelope (the hot path of every hop).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    method: Option<String>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    error: Option<ErrorObject>,
}

/// A field that is there, even as `null` (which `Option` alone reads as
/// absent).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl Envelope<'_> {
    /// The message, if `bytes` is a well-formed one; `None` sends the
    /// caller down the general path.
    fn read(bytes: &[u8]) -> Option<Message> {
        let envelope: Envelope<'_> = serde_json::from_slice(bytes).ok()?;
        if envelope.jsonrpc.as_deref() != Some(JSONRPC_VERSION) {
            return None;
        }
        let id = match &envelope.id {
            None => None,
            Some(value) => Some(RequestId::from_value(value)?),
        };
        if let Some(method) = envelope.method {
            let params = match envelope.params {
                None => None,
                Some(params @ (Value::Object(_) | Value::Array(_))) => Some(params),
                Some(_) => return None,
            };
            return Some(match id {
                Some(id) => Message::Request(Request { id, method, params }),
                None => Message::Notification(Notification { method, params }),
            });
        }
        match (id, envelope.result, envelope.error) {
            (Some(id), Some(result), None) => {
                Some(Message::Response(Response::success(id, result)))
            }
            (Some(id), None, Some(error)) => {
                Some(Message::Response(Response::error(Some(id), error)))
            }
            _ => None,
        }
    }
}

fn invalid(id: Option<RequestId>, message: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        id,
        error: ErrorObject::new(code::INVALID_REQUEST, message),
    }
}

/// A short name for a JSON value's type, for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(if self.params.is_some() { 4 } else { 3 }))?;
        map.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("method", &self.method)?;
        if let Some(params) = &self.params {
            map.serialize_entry("params", params)?;
        }
        map.end()
    }
}

impl Serialize for Notification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(if self.params.is_some() { 3 } else { 2 }))?;
        map.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        map.serialize_entry("method", &self.method)?;
        if let Some(params) = &self.params {
            map.serialize_entry("params", params)?;
        }
        map.end()
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        map.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Request(request) => request.serialize(serializer),
            Message::Notification(notification) => notification.serialize(serializer),
            Message::Response(response) => response.serialize(serializer),
        }
    }
}

/// Takes the MCP `_meta` object out of named params, if there is one.
///
/// `_meta` is protocol metadata (progress token, protocol version), not an
/// argument, so it is removed before the params are validated.
pub fn take_meta(params: &mut Option<Value>) -> Option<Map<String, Value>> {
    match params {
        Some(Value::Object(object)) => match object.remove("_meta") {
            Some(Value::Object(meta)) => Some(meta),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_is_read_entry_by_entry() {
        let frame = br#" [{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"},{"id":2},7]"#;
        let Ok(Incoming::Batch(entries)) = Incoming::from_slice(frame) else {
            panic!("a batch");
        };
        assert_eq!(entries.len(), 4);
        assert!(matches!(&entries[0], Ok(Message::Request(request)) if request.method == "ping"));
        assert!(matches!(&entries[1], Ok(Message::Notification(_))));
        let Err(bad) = &entries[2] else {
            panic!("no jsonrpc")
        };
        assert_eq!(bad.id, Some(RequestId::Number(2)));
        assert_eq!(bad.error.code, code::INVALID_REQUEST);
        assert!(entries[3].is_err());
        let empty = Incoming::from_slice(b"[]").expect_err("empty");
        assert_eq!(empty.error.code, code::INVALID_REQUEST);
        assert!(
            empty.error.message.contains("empty batch"),
            "{}",
            empty.error.message
        );
        let broken = Incoming::from_slice(b"[{").expect_err("not JSON");
        assert_eq!(broken.error.code, code::PARSE_ERROR);
        assert!(matches!(
            Incoming::from_slice(br#"{"jsonrpc":"2.0","id":"a","method":"m"}"#),
            Ok(Incoming::One(Message::Request(_)))
        ));
    }

    /// The hot path and the general one classify every input alike.
    #[test]
    fn the_fast_path_agrees_with_the_strict_one() {
        let inputs = [
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}}"#,
            r#"{"jsonrpc":"2.0","id":"x","method":"m","params":[1,2]}"#,
            r#"{"jsonrpc":"2.0","method":"n"}"#,
            r#"{"jsonrpc":"2.0","method":"n","params":null}"#,
            r#"{"jsonrpc":"2.0","method":"n","params":3}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":-7,"method":"m","extra":true}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            r#"{"id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"x":[1,2,"\u0000"]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","result":1}"#,
            r#"{"jsonrpc":"2.0"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#,
            r#""text""#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m""#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\u{e9}\"}",
        ];
        for input in inputs {
            let general = serde_json::from_slice::<Value>(input.as_bytes())
                .map_err(|error| error.to_string())
                .map(Message::from_value);
            let hot = Envelope::read(input.as_bytes());
            match (&general, &hot) {
                (Ok(Ok(general)), Some(hot)) => assert_eq!(general, hot, "{input}"),
                // The hot path may decline anything; it must never accept
                // what the general path refuses.
                (_, None) => {}
                (general, Some(hot)) => {
                    panic!("{input}: hot path gave {hot:?}, general path {general:?}")
                }
            }
            assert_eq!(
                Message::from_slice(input.as_bytes()).is_ok(),
                matches!(general, Ok(Ok(_))),
                "{input}"
            );
        }
        // What the hot path is for: well-formed messages never fall back.
        for input in &inputs[..3] {
            assert!(Envelope::read(input.as_bytes()).is_some(), "{input}");
        }
    }

    #[test]
    fn classifies_messages() {
        let cases: &[(&str, Result<Message, i32>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}}"#,
                Ok(Message::Request(Request {
                    id: RequestId::Number(1),
                    method: "m".into(),
                    params: Some(json!({"a":1})),
                })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"m","params":[1,2]}"#,
                Ok(Message::Request(Request {
                    id: "x".into(),
                    method: "m".into(),
                    params: Some(json!([1, 2])),
                })),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"n"}"#,
                Ok(Message::Notification(Notification {
                    method: "n".into(),
                    params: None,
                })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"result":null}"#,
                Ok(Message::Response(Response::success(7.into(), Value::Null))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
                Ok(Message::Response(Response::error(
                    None,
                    ErrorObject::new(-32700, "bad"),
                ))),
            ),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#, Err(-32600)),
            (r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#, Err(-32600)),
            (r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#, Err(-32600)),
            (r#"{"id":1,"method":"m"}"#, Err(-32600)),
            (r#"{"jsonrpc":"2.0","id":1,"method":3}"#, Err(-32600)),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
                Err(-32600),
            ),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#, Err(-32600)),
            (r#""hello""#, Err(-32600)),
            (r#"{"jsonrpc":"2.0"}"#, Err(-32600)),
            (r#"{"jsonrpc":"2.0","id":1}"#, Err(-32600)),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#,
                Err(-32600),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
                Err(-32600),
            ),
            (r#"{"jsonrpc":"2.0","#, Err(-32700)),
            ("", Err(-32700)),
        ];
        for (input, expected) in cases {
            let got = Message::from_slice(input.as_bytes()).map_err(|invalid| invalid.error.code);
            assert_eq!(&got, expected, "input: {input}");
        }
    }

    #[test]
    fn invalid_request_keeps_a_readable_id() {
        let error = Message::from_slice(br#"{"jsonrpc":"1.0","id":"abc","method":"m"}"#)
            .expect_err("wrong version");
        assert_eq!(error.id, Some(RequestId::from("abc")));
        assert!(
            error.error.message.contains("\"2.0\""),
            "{}",
            error.error.message
        );
    }

    #[test]
    fn invalid_utf8_is_a_parse_error() {
        let error = Message::from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}")
            .expect_err("bad utf-8");
        assert_eq!(error.error.code, code::PARSE_ERROR);
    }

    #[test]
    fn serializes_round_trip() {
        let messages = [
            Message::Request(Request {
                id: 3.into(),
                method: "a.b".into(),
                params: None,
            }),
            Message::Notification(Notification {
                method: "notifications/progress".into(),
                params: Some(json!({"progressToken": "t", "progress": 1})),
            }),
            Message::Response(Response::error(
                Some("q".into()),
                ErrorObject::new(-32601, "no such method").with_data(json!({"method": "x"})),
            )),
            Message::Response(Response::success(4.into(), json!([1, "two"]))),
        ];
        for message in messages {
            let bytes = message.to_vec();
            assert_eq!(Message::from_slice(&bytes).expect("round trip"), message);
        }
    }

    #[test]
    fn take_meta_removes_only_meta() {
        let mut params = Some(json!({"_meta": {"progressToken": 5}, "path": "/a"}));
        let meta = take_meta(&mut params).expect("meta present");
        assert_eq!(meta.get("progressToken"), Some(&json!(5)));
        assert_eq!(params, Some(json!({"path": "/a"})));
    }
}
