//! JSON-RPC error objects and the error codes of the backend wire (DESIGN.md 4.1).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Standard JSON-RPC 2.0 codes and llmbasedos' per-service bases.
pub mod code {
    /// The frame is not valid UTF-8 JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Valid JSON, but not a JSON-RPC 2.0 message (or a frame over the size limit).
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;

    /// Base of the fs service's codes.
    pub const FS_BASE: i32 = -32010;
    /// Base of the sync service's codes.
    pub const SYNC_BASE: i32 = -32020;
    /// Base of the mail service's codes.
    pub const MAIL_BASE: i32 = -32030;
    /// Base of the agent service's codes.
    pub const AGENT_BASE: i32 = -32040;
}

/// The codes a service derives from its base: `base` for a failure of the
/// operation, `base-1` invalid value, `base-2` permission denied, `base-3`
/// not found. Further codes (`base-4` …) are documented in the service's
/// caps.json.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCodes {
    pub base: i32,
}

impl ServiceCodes {
    pub const fn new(base: i32) -> ServiceCodes {
        ServiceCodes { base }
    }

    pub const fn failed(self) -> i32 {
        self.base
    }

    pub const fn invalid_value(self) -> i32 {
        self.base - 1
    }

    pub const fn permission_denied(self) -> i32 {
        self.base - 2
    }

    pub const fn not_found(self) -> i32 {
        self.base - 3
    }

    /// A further documented code: `base - offset`.
    pub const fn custom(self, offset: i32) -> i32 {
        self.base - offset
    }
}

/// The longest message an error object carries on the wire
/// ([`ErrorObject::bounded`]): a few sentences saying what was wrong and
/// what to do, with any quoted client value cut short by
/// [`crate::text::echo`] long before this.
pub const MESSAGE_LIMIT: usize = 1024;

/// The most compact-JSON bytes of `data` an error object carries on the
/// wire; larger data is left out ([`ErrorObject::bounded`]).
pub const DATA_LIMIT: usize = 1024;

/// A JSON-RPC error object. The message is for people: it says what was
/// wrong and what to do, and never carries secrets or internals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    pub fn new(code: i32, message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> ErrorObject {
        self.data = Some(data);
        self
    }

    pub fn method_not_found(method: &str) -> ErrorObject {
        ErrorObject::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {}", crate::text::echo(method)),
        )
    }

    pub fn invalid_params(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(code::INVALID_PARAMS, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(code::INVALID_REQUEST, message)
    }

    pub fn internal(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(code::INTERNAL_ERROR, message)
    }

    /// This error as it may go on the wire: the message cut to
    /// [`MESSAGE_LIMIT`] bytes (at a character boundary, saying how long it
    /// was), and `data` left out when its JSON exceeds [`DATA_LIMIT`].
    /// Errors quote client values through [`crate::text`] already; this is
    /// the last line of defence, so that no error path can send a megabyte
    /// back.
    #[must_use]
    pub fn bounded(mut self) -> ErrorObject {
        if self.message.len() > MESSAGE_LIMIT {
            self.message = crate::text::bounded(&self.message, MESSAGE_LIMIT).into_owned();
        }
        if self
            .data
            .as_ref()
            .is_some_and(|data| !json_fits(data, DATA_LIMIT))
        {
            self.data = None;
        }
        self
    }
}

/// Whether `value`'s compact JSON takes at most `limit` bytes; stops
/// serializing as soon as it does not.
fn json_fits(value: &Value, limit: usize) -> bool {
    struct Budget(usize);
    impl std::io::Write for Budget {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(bytes.len())
                .ok_or(std::io::ErrorKind::FileTooLarge)?;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(limit), value).is_ok()
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ErrorObject {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_classic_message_gives_back_its_plain_text_and_its_hint() {
        let hint = ErrorHint {
            action: "create it".to_owned(),
            method: "mcp.fs.mkdir".to_owned(),
            arguments: json!({ "parents": true })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let classic = hint.classic_message("/a does not exist");
        assert_eq!(
            classic,
            "/a does not exist; create it with mcp.fs.mkdir (parents: true)"
        );
        let error = ErrorObject::new(-32013, classic.clone()).with_data(json!({ "hint": hint }));
        let read = ErrorHint::of(&error).expect("the hint in data");
        assert_eq!(read, hint);
        assert_eq!(read.plain(&classic), "/a does not exist");
        // A message that does not end with the hint (cut to its bound) is kept.
        assert_eq!(
            hint.plain("/a does not ex… (9000 bytes)"),
            "/a does not ex… (9000 bytes)"
        );
    }

    #[test]
    fn bounded_cuts_long_messages_and_drops_large_data() {
        let long = "é".repeat(MESSAGE_LIMIT); // twice the limit in bytes
        let object = ErrorObject::new(-32010, long)
            .with_data(json!({ "paths": vec!["/a/long/path"; 10_000] }))
            .bounded();
        assert_eq!(object.data, None);
        assert!(
            object.message.len() <= MESSAGE_LIMIT + 32,
            "{}",
            object.message.len()
        );
        assert!(
            object
                .message
                .ends_with(&format!("({} bytes)", 2 * MESSAGE_LIMIT))
        );

        let small = ErrorObject::new(-32010, "no such file").with_data(json!({ "hint": "ls" }));
        assert_eq!(small.clone().bounded(), small);
    }

    #[test]
    fn a_method_not_found_quotes_the_name_in_part() {
        let name = "m".repeat(1 << 20);
        let message = ErrorObject::method_not_found(&name).message;
        assert!(message.len() < 300, "{}", message.len());
        assert!(message.starts_with("method not found: mmm"), "{message}");
    }

    #[test]
    fn service_codes_follow_the_design() {
        let fs = ServiceCodes::new(code::FS_BASE);
        assert_eq!(
            [
                fs.failed(),
                fs.invalid_value(),
                fs.permission_denied(),
                fs.not_found(),
                fs.custom(4)
            ],
            [-32010, -32011, -32012, -32013, -32014]
        );
    }
}

/// What a domain error carries in the JSON-RPC error's `data`, so clients
/// match data, never text: the error's kind (`not_found`, `already_exists`,
/// ...) and, when there is one, what the caller can do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<ErrorHint>,
}

/// A next step as data: the method to call and the arguments to call it
/// with (every one a param of that method). Each vocabulary renders it in
/// its own words: method names for classic callers, tool names for MCP
/// hosts, commands in the shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorHint {
    /// What following the hint does, for people: "create it", "see what exists".
    pub action: String,
    /// The wire method, e.g. `mcp.fs.mkdir`.
    pub method: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

impl ErrorHint {
    /// The hint an error carries in `data.hint`, if any.
    pub fn of(error: &ErrorObject) -> Option<ErrorHint> {
        serde_json::from_value(error.data.as_ref()?.get("hint")?.clone()).ok()
    }

    /// `message` with the hint in method names after it, as classic
    /// callers read it; [`ErrorHint::plain`] takes it off again.
    pub fn classic_message(&self, message: &str) -> String {
        format!("{message}; {}", self.render(&self.method))
    }

    /// What a [`ErrorHint::classic_message`] said before its hint, so
    /// another vocabulary can put the hint in its own words (a message
    /// cut to its length bound keeps its text).
    pub fn plain<'a>(&self, message: &'a str) -> &'a str {
        message
            .strip_suffix(&self.render(&self.method))
            .and_then(|rest| rest.strip_suffix("; "))
            .unwrap_or(message)
    }

    /// The hint in words, calling the method `name` (a method name or a
    /// tool name): `create it with mcp.fs.mkdir (path: "/a", parents: true)`.
    pub fn render(&self, name: &str) -> String {
        if self.arguments.is_empty() {
            return format!("{} with {name}", self.action);
        }
        let arguments: Vec<String> = self
            .arguments
            .iter()
            .map(|(key, value)| format!("{key}: {value}"))
            .collect();
        format!("{} with {name} ({})", self.action, arguments.join(", "))
    }
}
