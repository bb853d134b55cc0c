//! Tools: `tools/list` and `tools/call`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CacheScope, Content, Icon, JsonObject, RequestMeta, ResultType};

/// A tool the client can call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema (2020-12 unless `$schema` says otherwise) whose root is
    /// `"type": "object"`.
    pub input_schema: JsonObject,
    /// The schema `structuredContent` conforms to. 2025-11-25 requires an
    /// object root; 2026-07-28 allows any schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<ToolAnnotations>,
    /// Task support (2025-11-25 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<ToolExecution>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icons: Vec<Icon>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<JsonObject>,
}

impl Tool {
    pub fn new(name: impl Into<String>, input_schema: JsonObject) -> Tool {
        Tool {
            name: name.into(),
            input_schema,
            ..Tool::default()
        }
    }
}

/// Hints about a tool's behaviour. Hints only: never trust them from an
/// untrusted server. `None` means the spec's default, noted on each field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// Default true; meaningful only when not read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Default false; meaningful only when not read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// How a tool may run (2025-11-25).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolExecution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_support: Option<TaskSupport>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskSupport {
    #[default]
    Forbidden,
    Optional,
    Required,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListToolsResult {
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Cache hints, required by 2026-07-28.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_scope: Option<CacheScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_type: Option<ResultType>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<JsonObject>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToolParams {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<JsonObject>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<RequestMeta>,
}

impl CallToolParams {
    pub fn new(name: impl Into<String>, arguments: JsonObject) -> CallToolParams {
        CallToolParams {
            name: name.into(),
            arguments: Some(arguments),
            meta: None,
        }
    }
}

/// The result of a tool call. A tool that fails still answers with a
/// result, `is_error: true` and a message the model can read; protocol
/// errors (unknown tool, malformed request) are JSON-RPC errors instead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToolResult {
    #[serde(default)]
    pub content: Vec<Content>,
    /// Conforms to the tool's `outputSchema`. 2025-11-25 allows only an
    /// object here; 2026-07-28 any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// Absent means false, and false is not written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_type: Option<ResultType>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<JsonObject>,
}

impl CallToolResult {
    /// A successful result with one text block.
    pub fn text(text: impl Into<String>) -> CallToolResult {
        CallToolResult {
            content: vec![Content::text(text)],
            ..CallToolResult::default()
        }
    }

    /// A failed tool call, explained in one text block the model can act on.
    pub fn error(message: impl Into<String>) -> CallToolResult {
        CallToolResult {
            is_error: true,
            ..CallToolResult::text(message)
        }
    }

    /// The most bytes a message carrying a structured result can take when
    /// the result's JSON text is `result_bytes` long: the text as
    /// `structuredContent`, and again as the text block's string, in which
    /// each `"` and `\` takes two bytes (compact JSON holds no raw control
    /// character), plus what surrounds them (the envelope, the request id,
    /// a 2026-07-28 result's `_meta`). A transport bounding its answers by
    /// this for the largest result a backend may send delivers every one.
    pub const fn size_bound(result_bytes: usize) -> usize {
        result_bytes
            .saturating_mul(3)
            .saturating_add(Self::WRAPPING_BYTES)
    }

    /// What [`CallToolResult::size_bound`] allows around the result.
    pub const WRAPPING_BYTES: usize = 64 * 1024;

    /// A successful structured result, also given as a JSON text block for
    /// clients that only read `content`.
    pub fn structured(value: Value) -> CallToolResult {
        CallToolResult {
            content: vec![Content::text(value.to_string())],
            structured_content: Some(value),
            ..CallToolResult::default()
        }
    }
}
