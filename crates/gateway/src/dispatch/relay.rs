//! The LLM relay: `mcp.llm.chat`, streamed as progress or `mcp.llm.delta`.

use std::sync::Arc;

use proto::mcp::{self, method};
use proto::text::echo;
use proto::{ErrorObject, RequestId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Gateway, Session, code};
use crate::llm::{ChatParams, LlmError};

impl Gateway {
    /// `mcp.llm.chat`: a completion from the configured model. With
    /// `stream`, the text goes out as it comes: as `notifications/progress`
    /// (`message` = the new text) when the request has a progress token,
    /// else as `mcp.llm.delta` notifications naming the request id; then
    /// the answer, with the whole message and the token usage.
    pub(super) async fn chat(
        &self,
        session: &Arc<Session>,
        id: &RequestId,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Value, ErrorObject> {
        let Some(llm) = &self.llm else {
            return Err(ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                "no language model is configured: add an llm section (url, model) to gateway.yaml, or start `llmbasedos up --llm-url URL`",
            ));
        };
        let params: ChatParams = serde_json::from_value(params.unwrap_or_else(|| json!({})))
            .map_err(|error| {
                ErrorObject::invalid_params(format!(
                    "invalid params for mcp.llm.chat: {}",
                    echo(&error.to_string())
                ))
            })?;
        let (pieces, forwarder) = if params.stream {
            let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
            let session = session.clone();
            let id = id.clone();
            let forwarder = tokio::spawn(async move {
                let mut count: u64 = 0;
                while let Some(piece) = receiver.recv().await {
                    count += 1;
                    match &progress_token {
                        Some(token) => session.notify(
                            method::NOTIFICATIONS_PROGRESS,
                            Some(json!({ "progressToken": token, "progress": count, "message": piece })),
                        ),
                        None => session.notify(
                            "mcp.llm.delta",
                            Some(json!({ "requestId": id, "delta": piece })),
                        ),
                    }
                }
            });
            (Some(sender), Some(forwarder))
        } else {
            (None, None)
        };
        let outcome = llm.chat(params, pieces).await;
        if let Some(forwarder) = forwarder {
            // Every piece is queued before the answer.
            let _ = forwarder.await;
        }
        outcome.map_err(|error| match error {
            LlmError::InvalidParams(message) => ErrorObject::invalid_params(message),
            LlmError::Timeout(_) => ErrorObject::new(code::SERVICE_TIMEOUT, error.to_string()),
            other => ErrorObject::new(code::SERVICE_UNAVAILABLE, other.to_string()),
        })
    }
}
