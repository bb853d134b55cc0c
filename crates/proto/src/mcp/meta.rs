//! The `_meta` of requests: a progress token in both eras, and in the
//! modern era the per-request protocol version, client capabilities and
//! client info that replace the `initialize` handshake.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ClientCapabilities, Implementation, JsonObject, LoggingLevel, ProtocolVersion,
    UnsupportedProtocolVersion, meta_key,
};
use crate::error::ErrorObject;

/// Associates progress notifications with the request that asked for them.
/// Like [`crate::RequestId`], a string or an integer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProgressToken {
    Number(i64),
    String(String),
}

impl From<i64> for ProgressToken {
    fn from(number: i64) -> Self {
        ProgressToken::Number(number)
    }
}

impl From<&str> for ProgressToken {
    fn from(text: &str) -> Self {
        ProgressToken::String(text.to_owned())
    }
}

/// A request's `_meta`, read leniently: every field is optional so that the
/// same type reads a legacy request (at most a progress token) and a modern
/// one. [`RequestMeta::validate_modern`] enforces the modern requirements.
///
/// The serde names are the [`meta_key`] constants (serde needs literals; a
/// test keeps them in step).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestMeta {
    #[serde(rename = "progressToken", skip_serializing_if = "Option::is_none")]
    pub progress_token: Option<ProgressToken>,
    #[serde(
        rename = "io.modelcontextprotocol/protocolVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<String>,
    #[serde(
        rename = "io.modelcontextprotocol/clientCapabilities",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_capabilities: Option<ClientCapabilities>,
    #[serde(
        rename = "io.modelcontextprotocol/clientInfo",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_info: Option<Implementation>,
    /// 2026-07-28's replacement for `logging/setLevel`: without it the
    /// server sends no `notifications/message` for this request.
    #[serde(
        rename = "io.modelcontextprotocol/logLevel",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_level: Option<LoggingLevel>,
    /// Every other key (trace context, extension keys), kept as it came.
    #[serde(flatten)]
    pub other: JsonObject,
}

impl RequestMeta {
    /// Reads a `_meta` object, such as the one [`crate::jsonrpc::take_meta`]
    /// returns.
    pub fn from_map(meta: &JsonObject) -> Result<RequestMeta, RequestMetaError> {
        RequestMeta::deserialize(meta)
            .map_err(|error| RequestMetaError::Malformed(error.to_string()))
    }

    /// Reads `params._meta`; absent params or an absent `_meta` give the
    /// empty metadata of a legacy request.
    pub fn from_params(params: Option<&Value>) -> Result<RequestMeta, RequestMetaError> {
        match params.and_then(|params| params.get("_meta")) {
            None => Ok(RequestMeta::default()),
            Some(Value::Object(meta)) => RequestMeta::from_map(meta),
            Some(_) => Err(RequestMetaError::Malformed(
                "`_meta` must be an object".to_owned(),
            )),
        }
    }

    /// Takes `_meta` out of a request's params and reads it, once: what
    /// is left are the method's own params. Absent params or an absent
    /// `_meta` give the empty metadata of a legacy request; positional
    /// params have none.
    pub fn take(params: &mut Option<Value>) -> Result<RequestMeta, RequestMetaError> {
        let Some(Value::Object(object)) = params else {
            return Ok(RequestMeta::default());
        };
        match object.remove("_meta") {
            None => Ok(RequestMeta::default()),
            Some(meta @ Value::Object(_)) => RequestMeta::deserialize(meta)
                .map_err(|error| RequestMetaError::Malformed(error.to_string())),
            Some(_) => Err(RequestMetaError::Malformed(
                "`_meta` must be an object".to_owned(),
            )),
        }
    }

    /// Whether `params._meta` asks for progress, read without parsing the
    /// rest of `_meta` (for a transport that must choose how to answer
    /// before the dispatcher reads the request).
    pub fn requests_progress(params: Option<&Value>) -> bool {
        params
            .and_then(|params| params.get("_meta"))
            .and_then(|meta| meta.get(meta_key::PROGRESS_TOKEN))
            .is_some_and(|token| token.is_string() || token.is_i64())
    }

    /// The era of a request is decided by whether it names a protocol
    /// version in `_meta`: modern requests must, legacy ones never do.
    pub fn is_modern(&self) -> bool {
        self.protocol_version.is_some()
    }

    /// The modern per-request checks: a protocol version we serve and
    /// declared client capabilities (an empty object is a declaration).
    pub fn validate_modern(&self) -> Result<ProtocolVersion, RequestMetaError> {
        let requested = self
            .protocol_version
            .as_deref()
            .ok_or(RequestMetaError::Missing(meta_key::PROTOCOL_VERSION))?;
        let version = ProtocolVersion::accept_modern(requested)?;
        if self.client_capabilities.is_none() {
            return Err(RequestMetaError::Missing(meta_key::CLIENT_CAPABILITIES));
        }
        Ok(version)
    }

    /// The `_meta` a modern client puts on each request.
    pub fn modern(
        client_capabilities: ClientCapabilities,
        client_info: Implementation,
    ) -> RequestMeta {
        RequestMeta {
            protocol_version: Some(ProtocolVersion::LATEST.as_str().to_owned()),
            client_capabilities: Some(client_capabilities),
            client_info: Some(client_info),
            ..RequestMeta::default()
        }
    }
}

/// Why a request's `_meta` cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestMetaError {
    #[error("params._meta is malformed: {0}")]
    Malformed(String),
    #[error("params._meta is missing {0:?}, which every 2026-07-28 request must carry")]
    Missing(&'static str),
    #[error(transparent)]
    UnsupportedVersion(#[from] UnsupportedProtocolVersion),
}

impl From<RequestMetaError> for ErrorObject {
    /// A malformed or incomplete `_meta` is invalid params (`-32602`); an
    /// unsupported version is `-32022` with the supported list.
    fn from(error: RequestMetaError) -> ErrorObject {
        match error {
            RequestMetaError::UnsupportedVersion(unsupported) => unsupported.into(),
            other => ErrorObject::invalid_params(other.to_string()),
        }
    }
}

/// The result `_meta` with which a modern server names itself (servers
/// SHOULD put it on every result).
pub fn server_info_meta(server_info: &Implementation) -> JsonObject {
    let mut meta = JsonObject::new();
    meta.insert(
        meta_key::SERVER_INFO.to_owned(),
        serde_json::to_value(server_info).expect("Implementation always serializes"),
    );
    meta
}
