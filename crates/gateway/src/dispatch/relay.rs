//! The LLM relay: `mcp.llm.chat`, streamed as progress or `mcp.llm.delta`.

use std::sync::Arc;

use proto::mcp::{self, ProgressNotificationParams, method};
use proto::{ErrorObject, RequestId};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Gateway, Reply, Session, code};
use crate::llm::{ChatParams, LlmError};

/// The notification that carries a streamed piece of a request without a
/// progress token.
const DELTA: &str = "mcp.llm.delta";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Delta<'a> {
    request_id: &'a RequestId,
    delta: String,
}

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
        params: ChatParams,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Reply, ErrorObject> {
        let Some(llm) = &self.llm else {
            return Err(ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                "no language model is configured: add an llm section (url, model) to gateway.yaml, or start `llmbasedos up --llm-url URL`",
            ));
        };
        let (pieces, forwarder) = if params.stream {
            let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
            let session = session.clone();
            let id = id.clone();
            let forwarder = tokio::spawn(async move {
                let mut count: u64 = 0;
                while let Some(piece) = receiver.recv().await {
                    count += 1;
                    let (name, params) = match &progress_token {
                        Some(token) => (
                            method::NOTIFICATIONS_PROGRESS,
                            serde_json::to_value(ProgressNotificationParams {
                                message: Some(piece),
                                ..ProgressNotificationParams::new(token.clone(), count as f64)
                            }),
                        ),
                        None => (
                            DELTA,
                            serde_json::to_value(Delta {
                                request_id: &id,
                                delta: piece,
                            }),
                        ),
                    };
                    if let Ok(params) = params {
                        session.notify(name, Some(params));
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
        outcome.map(Reply::Other).map_err(|error| match error {
            LlmError::InvalidParams(message) => ErrorObject::invalid_params(message),
            LlmError::Timeout(_) => ErrorObject::new(code::SERVICE_TIMEOUT, error.to_string()),
            other => ErrorObject::new(code::SERVICE_UNAVAILABLE, other.to_string()),
        })
    }
}
