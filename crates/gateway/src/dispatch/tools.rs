//! Tools: `tools/list` (every service's methods and upstream tools, paged)
//! and `tools/call` (a backend method or an upstream server's tool).

use std::sync::Arc;

use client::CallError;
use proto::ErrorObject;
use proto::mcp::{
    self, CallToolParams, CallToolResult, JsonObject, ListToolsParams, ListToolsResult, method,
};
use proto::text::echo;
use serde_json::{Map, Value};

use super::backend::{Forwarder, MAX_WITH_PROGRESS, Quiet, forward_progress, quiet_for};
use super::{Gateway, Reply, Session, ToolReply, human, to_value};
use crate::registry::{ToolTarget, UpstreamLink};
use crate::tool_result;

/// Tools per `tools/list` page.
const TOOLS_PAGE: usize = 100;

impl Gateway {
    /// `tools/list`: a page of the snapshot's tools; the cursor is the
    /// index of the page's first tool.
    /// Only the tools the client's tier allows are listed (`rights`), the
    /// gateway's own (`licence_check`, `llm_chat`) first when licensed.
    pub(super) async fn list_tools(
        &self,
        session: &Session,
        params: ListToolsParams,
    ) -> Result<Reply, ErrorObject> {
        self.registry.dynamic_tools_listed().await;
        let snapshot = self.registry.snapshot();
        let filtered;
        let tools: &[mcp::Tool] = if session.client().is_some() {
            let mut visible = super::builtin::builtin_tools(self.llm.is_some());
            visible.extend(snapshot.tools.iter().cloned());
            visible.retain(|tool| self.shows_tool(session, &tool.name));
            filtered = visible;
            &filtered
        } else {
            &snapshot.tools
        };
        let start = match params.cursor {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .ok()
                .filter(|start| *start <= tools.len())
                .ok_or_else(|| {
                    ErrorObject::invalid_params(
                        "invalid cursor: pass back a nextCursor from tools/list",
                    )
                })?,
        };
        let end = (start + TOOLS_PAGE).min(tools.len());
        Ok(Reply::Tools(ListToolsResult {
            tools: tools[start..end].to_vec(),
            next_cursor: (end < tools.len()).then(|| end.to_string()),
            ..ListToolsResult::default()
        }))
    }

    /// `tools/call`: a backend method's result as a tool result (its
    /// failure too, so that the model can correct its call), or an
    /// upstream server's result as it came. A backend result that needs
    /// only wrapping is answered as the backend's text in `shape`
    /// ([`crate::tool_result`]).
    pub(super) async fn call_tool(
        &self,
        session: &Arc<Session>,
        params: CallToolParams,
        progress_token: Option<mcp::ProgressToken>,
        shape: tool_result::Shape,
    ) -> Result<ToolReply, ErrorObject> {
        let name = params.name.as_str();
        let arguments = params.arguments.unwrap_or_default();
        if let Some(method) = super::builtin::builtin_tool_method(name) {
            return self
                .call_builtin_tool(session, method, arguments, progress_token)
                .await;
        }
        let mut snapshot = self.registry.snapshot();
        if !snapshot.tool_targets.contains_key(name) {
            // Perhaps a run-time tool not listed yet (just after start).
            self.registry.dynamic_tools_listed().await;
            snapshot = self.registry.snapshot();
        }
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
                    .await
                    .map(|reply| ToolReply::Reply(Box::new(reply)));
            }
            Some(target @ (ToolTarget::Method(_) | ToolTarget::Dynamic { .. })) => {
                let (method, mut arguments) = match target {
                    ToolTarget::Dynamic { method, name } => {
                        // A run-time tool: the service's call method names it.
                        let mut params = JsonObject::new();
                        params.insert("name".to_owned(), Value::String(name.clone()));
                        params.insert("arguments".to_owned(), Value::Object(arguments));
                        (method, params)
                    }
                    ToolTarget::Method(method) | ToolTarget::Upstream { name: method, .. } => {
                        (method, arguments)
                    }
                };
                let Some(service) = snapshot.methods.get(method) else {
                    return Err(ErrorObject::internal(
                        "the tool's service vanished; list the tools again",
                    ));
                };
                // Only an MCP host gets media as content blocks (`_content`);
                // classic callers keep the backend's own shape.
                let mut meta = JsonObject::new();
                meta.insert(mcp::meta_key::CONTENT_BLOCKS.to_owned(), Value::Bool(true));
                arguments.insert("_meta".to_owned(), Value::Object(meta));
                let raw = match self
                    .call_backend_raw(
                        session,
                        service,
                        method,
                        Some(Value::Object(arguments)),
                        progress_token,
                    )
                    .await
                {
                    Ok(raw) => raw,
                    // The model reads the message and can correct its call.
                    Err(error) => {
                        let error = CallToolResult::error(tool_error_message(&error));
                        return Ok(ToolReply::Reply(Box::new(Reply::ToolCall(error))));
                    }
                };
                let raw = match tool_result::RawToolResult::wrap(raw, shape) {
                    Ok(result) => return Ok(ToolReply::Raw(result)),
                    Err(raw) => raw,
                };
                match serde_json::from_str::<Value>(raw.get()) {
                    Ok(Value::Object(object)) => tool_result(object),
                    Ok(other) => CallToolResult::text(other.to_string()),
                    Err(error) => CallToolResult::error(format!(
                        "the {} service's answer cannot be read: {error}",
                        service.name
                    )),
                }
            }
        };
        Ok(ToolReply::Reply(Box::new(Reply::ToolCall(result))))
    }

    /// A tool of a third-party server: its result passes through as it is.
    async fn call_upstream(
        &self,
        session: &Arc<Session>,
        link: &Arc<UpstreamLink>,
        tool: &str,
        arguments: JsonObject,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Reply, ErrorObject> {
        let params = to_value(&CallToolParams::new(tool, arguments))?;
        let (progress, forwarder) = forward_progress(session, progress_token);
        let call = link.client.call(method::TOOLS_CALL, Some(params), progress);
        let activity = forwarder.as_ref().map(Forwarder::activity);
        let outcome = quiet_for(self.config.backend_timeout, activity, call).await;
        if let Some(forwarder) = forwarder {
            forwarder.finish().await;
        }
        match outcome {
            Ok(Ok(result)) => Ok(Reply::UpstreamToolCall(result)),
            Ok(Err(CallError::Server(error))) => Err(error),
            Ok(Err(_)) => Ok(Reply::ToolCall(CallToolResult::error(format!(
                "the {} server stopped while handling the call; it is being restarted, retry shortly",
                link.name
            )))),
            Err(Quiet::Silent) => Ok(Reply::ToolCall(CallToolResult::error(format!(
                "the {} server did not answer within {}",
                link.name,
                human(self.config.backend_timeout)
            )))),
            Err(Quiet::TooLong) => Ok(Reply::ToolCall(CallToolResult::error(format!(
                "the {} server reported progress but did not finish within {}",
                link.name,
                human(MAX_WITH_PROGRESS)
            )))),
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
