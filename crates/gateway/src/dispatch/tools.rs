//! Tools: `tools/list` (every service's methods and upstream tools, paged)
//! and `tools/call` (a backend method or an upstream server's tool).

use std::sync::Arc;
use std::time::Duration;

use client::CallError;
use proto::ErrorObject;
use proto::mcp::{self, CallToolResult, ListToolsResult, method};
use proto::text::echo;
use serde_json::{Map, Value, json};

use super::backend::forward_progress;
use super::{Gateway, Session, human, to_value};
use crate::registry::{ToolTarget, UpstreamLink};

/// Tools per `tools/list` page.
pub(super) const TOOLS_PAGE: usize = 100;

impl Gateway {
    pub(super) fn list_tools(&self, params: Option<&Value>) -> Result<Value, ErrorObject> {
        let snapshot = self.registry.snapshot();
        let start = match params.and_then(|params| params.get("cursor")) {
            None | Some(Value::Null) => 0,
            Some(Value::String(cursor)) => cursor
                .parse::<usize>()
                .ok()
                .filter(|start| *start <= snapshot.tools.len())
                .ok_or_else(|| {
                    ErrorObject::invalid_params(
                        "invalid cursor: pass back a nextCursor from tools/list",
                    )
                })?,
            Some(_) => return Err(ErrorObject::invalid_params("cursor must be a string")),
        };
        let end = (start + TOOLS_PAGE).min(snapshot.tools.len());
        let result = ListToolsResult {
            tools: snapshot.tools[start..end].to_vec(),
            next_cursor: (end < snapshot.tools.len()).then(|| end.to_string()),
            ..ListToolsResult::default()
        };
        to_value(&result)
    }

    pub(super) async fn call_tool(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_else(|| json!({}));
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorObject::invalid_params("tools/call needs a string \"name\""))?;
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(arguments @ Value::Object(_)) => arguments.clone(),
            Some(_) => {
                return Err(ErrorObject::invalid_params(
                    "tools/call \"arguments\" must be an object",
                ));
            }
        };
        let snapshot = self.registry.snapshot();
        let result = match snapshot.tool_targets.get(name) {
            None => {
                return Err(ErrorObject::invalid_params(format!(
                    "unknown tool: {}; tools/list names the available ones",
                    echo(name)
                )));
            }
            Some(ToolTarget::Upstream { link, name }) => {
                return self
                    .call_upstream(session, link, name, arguments, progress_token)
                    .await;
            }
            Some(ToolTarget::Method(method)) => {
                let Some(service) = snapshot.methods.get(method) else {
                    return Err(ErrorObject::internal(
                        "the tool's service vanished; list the tools again",
                    ));
                };
                // Only an MCP host gets media as content blocks (`_content`);
                // classic callers keep the backend's own shape.
                let mut arguments = arguments;
                if let Value::Object(object) = &mut arguments {
                    object.insert(
                        "_meta".to_owned(),
                        json!({ mcp::meta_key::CONTENT_BLOCKS: true }),
                    );
                }
                match self
                    .call_backend(session, service, method, Some(arguments), progress_token)
                    .await
                {
                    Ok(Value::Object(object)) => tool_result(object),
                    Ok(other) => CallToolResult::text(other.to_string()),
                    // The model reads the message and can correct its call.
                    Err(error) => CallToolResult::error(tool_error_message(&error)),
                }
            }
        };
        to_value(&result)
    }

    /// A tool of a third-party server: its result passes through as it is.
    pub(super) async fn call_upstream(
        &self,
        session: &Arc<Session>,
        link: &Arc<UpstreamLink>,
        tool: &str,
        arguments: Value,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Value, ErrorObject> {
        let params = json!({ "name": tool, "arguments": arguments });
        let (progress, forwarder) = forward_progress(session, progress_token);
        let call = link.client.call(method::TOOLS_CALL, Some(params), progress);
        let outcome = tokio::time::timeout(self.config.backend_timeout, call).await;
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(Duration::from_secs(1), forwarder).await;
        }
        match outcome {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(CallError::Server(error))) => Err(error),
            Ok(Err(_)) => to_value(&CallToolResult::error(format!(
                "the {} server stopped while handling the call; it is being restarted, retry shortly",
                link.name
            ))),
            Err(_) => to_value(&CallToolResult::error(format!(
                "the {} server did not answer within {}",
                link.name,
                human(self.config.backend_timeout)
            ))),
        }
    }
}

/// A backend's result as an MCP tool result. An object may carry
/// `_content`, MCP content blocks (an image, audio) meant for the host; the
/// rest is the structured result, also given as JSON text when there are
/// no such blocks.
pub(super) fn tool_result(mut object: Map<String, Value>) -> CallToolResult {
    let blocks = match object.remove("_content") {
        Some(blocks) => match serde_json::from_value::<Vec<mcp::Content>>(blocks) {
            Ok(blocks) => blocks,
            Err(error) => {
                tracing::warn!(%error, "ignoring malformed _content in a backend result");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let mut result = CallToolResult::structured(Value::Object(object));
    if !blocks.is_empty() {
        result.content = blocks;
    }
    result
}

/// A backend error's message for an MCP host: a hint in the error's data
/// ([`proto::ErrorHint`]) is rendered with the tool's name instead of
/// the method's, so a host that follows it calls a tool that exists.
pub(super) fn tool_error_message(error: &ErrorObject) -> String {
    let Some(hint) = proto::ErrorHint::of(error) else {
        return error.message.clone();
    };
    let Some(tool) = proto::caps::tool_name(&hint.method) else {
        return error.message.clone();
    };
    let plain = hint.plain(&error.message);
    format!("{plain}; {}", hint.render(&format!("the {tool} tool")))
}
