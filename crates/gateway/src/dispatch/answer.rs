//! What a request gets back: a [`Response`], or a backend's result kept
//! as the backend wrote it ([`Answer::Raw`], [`Answer::Tool`]) and written
//! around its text without a parse.

use std::future::Future;
use std::pin::Pin;

use proto::{ErrorObject, RequestId, Response};
use serde_json::value::RawValue;

use crate::tool_result::RawToolResult;

/// The answer to one admitted request; `None` if it was cancelled.
pub type RequestFuture = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// What a request gets back.
#[derive(Debug)]
pub enum Answer {
    Response(Response),
    /// A backend's successful result, as the backend wrote it.
    Raw {
        id: RequestId,
        result: Box<RawValue>,
    },
    /// A backend tool's successful result as the backend wrote it, in the
    /// MCP tool result it is sent in ([`crate::tool_result`]).
    Tool {
        id: RequestId,
        result: RawToolResult,
    },
}

impl Answer {
    /// The request it answers.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Answer::Response(response) => response.id.as_ref(),
            Answer::Raw { id, .. } | Answer::Tool { id, .. } => Some(id),
        }
    }

    /// The answer as a [`Response`] (a raw result is parsed).
    pub fn into_response(self) -> Response {
        let (id, value) = match self {
            Answer::Response(response) => return response,
            Answer::Raw { id, result } => (id, serde_json::from_str(result.get())),
            Answer::Tool { id, result } => (id, result.into_value()),
        };
        match value {
            Ok(value) => Response::success(id, value),
            Err(error) => Response::error(
                Some(id),
                ErrorObject::internal(format!("a service's answer cannot be read: {error}")),
            ),
        }
    }
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Response(response) => response.serialize(serializer),
            Answer::Raw { id, result } => success(serializer, id, result),
            Answer::Tool { id, result } => success(serializer, id, result),
        }
    }
}

/// A successful response around a result that serializes itself.
fn success<S: serde::Serializer>(
    serializer: S,
    id: &RequestId,
    result: &impl serde::Serialize,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(3))?;
    map.serialize_entry("jsonrpc", proto::jsonrpc::JSONRPC_VERSION)?;
    map.serialize_entry("id", id)?;
    map.serialize_entry("result", result)?;
    map.end()
}
