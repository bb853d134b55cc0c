//! Handler errors and their one translation into JSON-RPC error objects.

use std::fmt;

use proto::{ErrorData, ErrorObject, ServiceCodes};
use serde_json::Value;

/// What a handler returns when it fails. The variant chooses the code
/// (DESIGN.md 4.1); the message is shown to the client as written, so it must
/// say what was wrong and what to do, and never carry secrets. Only
/// [`HandlerError::Internal`] is hidden: it is logged, and the client is told
/// that an internal error happened, with a reference to find it in the log.
#[derive(Debug)]
pub enum HandlerError {
    /// `-32602`: params that passed the schema but still make no sense.
    InvalidParams(String),
    /// `base-1`: a value that cannot be used (a malformed path, a bad range).
    InvalidValue(String),
    /// `base-2`: the operation is not allowed.
    PermissionDenied(String),
    /// `base-3`: the thing asked for does not exist.
    NotFound(String),
    /// `base`: the operation failed for a reason the client may act on.
    Failed(String),
    /// `base-offset`: a further code documented in the service's caps.json.
    Service {
        offset: i32,
        message: String,
        data: Option<Value>,
    },
    /// A bug or an unexpected failure: logged, never shown.
    Internal(Box<dyn std::error::Error + Send + Sync>),
    /// Another handler error (its code and message) with `data` for the
    /// client to match ([`ErrorData`]).
    WithData(Box<HandlerError>, Value),
}

impl HandlerError {
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> HandlerError {
        HandlerError::Internal(error.into())
    }

    /// This error with [`ErrorData`] in the wire error's `data`.
    pub fn with_data(self, data: &ErrorData) -> HandlerError {
        match serde_json::to_value(data) {
            Ok(data) => HandlerError::WithData(Box::new(self), data),
            Err(_) => self,
        }
    }

    /// The one place where a handler error becomes a wire error.
    /// `reference` identifies the request in the log for internal errors.
    /// The message and data are bounded ([`ErrorObject::bounded`]): a
    /// handler that quotes a client's value whole still sends a short
    /// error.
    pub(crate) fn to_error_object(
        &self,
        codes: ServiceCodes,
        reference: &dyn fmt::Display,
    ) -> ErrorObject {
        let object = match self {
            HandlerError::InvalidParams(message) => ErrorObject::invalid_params(message.clone()),
            HandlerError::InvalidValue(message) => {
                ErrorObject::new(codes.invalid_value(), message.clone())
            }
            HandlerError::PermissionDenied(message) => {
                ErrorObject::new(codes.permission_denied(), message.clone())
            }
            HandlerError::NotFound(message) => ErrorObject::new(codes.not_found(), message.clone()),
            HandlerError::Failed(message) => ErrorObject::new(codes.failed(), message.clone()),
            HandlerError::Service {
                offset,
                message,
                data,
            } => ErrorObject {
                code: codes.custom(*offset),
                message: message.clone(),
                data: data.clone(),
            },
            HandlerError::Internal(_) => ErrorObject::internal(format!(
                "internal error while handling the request; the server log has the details under request {reference}"
            )),
            HandlerError::WithData(error, data) => ErrorObject {
                data: Some(data.clone()),
                ..error.to_error_object(codes, reference)
            },
        };
        object.bounded()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::InvalidParams(message)
            | HandlerError::InvalidValue(message)
            | HandlerError::PermissionDenied(message)
            | HandlerError::NotFound(message)
            | HandlerError::Failed(message)
            | HandlerError::Service { message, .. } => f.write_str(message),
            HandlerError::Internal(error) => write!(f, "internal error: {error}"),
            HandlerError::WithData(error, _) => error.fmt(f),
        }
    }
}

impl std::error::Error for HandlerError {}

/// Why a server cannot be assembled: its caps and its handlers disagree.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Caps(#[from] proto::CapsError),
    #[error(
        "caps file {origin} declares {method} but the server has no handler for it; add a handler or remove the method from the caps file"
    )]
    MissingHandler { origin: String, method: String },
    #[error(
        "the server registers a handler for {method}, which caps file {origin} does not declare; declare it in the caps file or remove the handler"
    )]
    UnknownMethod { origin: String, method: String },
    #[error("the server registers two handlers for {method}")]
    DuplicateHandler { method: String },
    #[error(
        "caps file {origin} has no \"error_base\"; every llmbasedos service declares the base of its error codes"
    )]
    MissingErrorBase { origin: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_kind_to_its_code_and_hides_internals() {
        let codes = ServiceCodes::new(-32090);
        let cases = [
            (HandlerError::InvalidParams("p".into()), -32602, "p"),
            (HandlerError::InvalidValue("v".into()), -32091, "v"),
            (HandlerError::PermissionDenied("d".into()), -32092, "d"),
            (HandlerError::NotFound("n".into()), -32093, "n"),
            (HandlerError::Failed("f".into()), -32090, "f"),
            (
                HandlerError::Service {
                    offset: 5,
                    message: "s".into(),
                    data: None,
                },
                -32095,
                "s",
            ),
        ];
        for (error, code, message) in cases {
            let object = error.to_error_object(codes, &"7");
            assert_eq!((object.code, object.message.as_str()), (code, message));
        }
        let careless = HandlerError::Service {
            offset: 5,
            message: format!("cannot use {}", "x".repeat(12 << 20)),
            data: Some(serde_json::json!({ "content": "y".repeat(12 << 20) })),
        };
        let object = careless.to_error_object(codes, &"8");
        assert!(object.message.len() <= proto::error::MESSAGE_LIMIT + 32);
        assert!(
            object.message.starts_with("cannot use xxx"),
            "{}",
            &object.message[..40]
        );
        assert_eq!(object.data, None);
        let secret = HandlerError::internal("password=hunter2 in /etc/secret");
        let object = secret.to_error_object(codes, &"42");
        assert_eq!(object.code, -32603);
        assert!(!object.message.contains("hunter2"), "{}", object.message);
        assert!(object.message.contains("42"), "{}", object.message);
    }
}
