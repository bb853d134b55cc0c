//! The LLM relay: `mcp.llm.chat`, streamed as progress or `mcp.llm.delta`.

use std::sync::Arc;

use proto::mcp::{self, ProgressNotificationParams, method};
use proto::{ErrorObject, RequestId};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Gateway, Reply, Session, code};
use crate::licensing::{Client, Licensing, Refusal};
use crate::llm::{ChatParams, LlmError, LlmProxy};

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
        let mut params = params;
        // The tier's models, then the tokens reserved before the call.
        let held = match (session.client(), &self.licensing) {
            (Some(client), Some(licensing)) => Some(
                self.reserve(session, client, licensing, llm, &mut params)
                    .await?,
            ),
            _ => None,
        };
        let cap = held
            .as_ref()
            .and_then(|(reservation, _)| reservation.completion);
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
        let outcome = llm.chat(params, pieces, cap).await;
        if let Some(forwarder) = forwarder {
            // Every piece is queued before the answer.
            let _ = forwarder.await;
        }
        if let (Some((reservation, prompt)), Some(licensing)) = (held, &self.licensing) {
            let used = match &outcome {
                Ok(answer) => spent(answer, prompt),
                // Nothing was generated: nothing is charged.
                Err(
                    LlmError::InvalidParams(_)
                    | LlmError::Unreachable { .. }
                    | LlmError::Unauthorized { .. }
                    | LlmError::Api { .. },
                ) => 0,
                // It may have been: the reservation stands.
                Err(_) => reservation.amount,
            };
            let ledger = licensing.ledger.clone();
            let settled =
                tokio::task::spawn_blocking(move || ledger.settle(&reservation, used)).await;
            if !matches!(settled, Ok(Ok(()))) {
                tracing::error!(client = %session.identity(), "cannot settle a token reservation; it stays charged");
            }
        }
        outcome.map(Reply::Other).map_err(|error| match error {
            LlmError::InvalidParams(message) => ErrorObject::invalid_params(message),
            LlmError::Timeout(_) => ErrorObject::new(code::SERVICE_TIMEOUT, error.to_string()),
            other => ErrorObject::new(code::SERVICE_UNAVAILABLE, other.to_string()),
        })
    }
}

impl Gateway {
    /// The model must be the tier's; then the prompt's tokens and the
    /// answer's `max_tokens` are reserved in the ledger, or the call is
    /// refused before it reaches the provider. Without `max_tokens`, the
    /// call gets what the quota leaves, and the provider is told so.
    async fn reserve(
        &self,
        session: &Session,
        client: &Arc<Client>,
        licensing: &Licensing,
        llm: &LlmProxy,
        params: &mut ChatParams,
    ) -> Result<(licence::Reservation, u64), ErrorObject> {
        let refuse = |refusal: Refusal| {
            super::rights::log_refusal(client, "mcp.llm.chat", None, &refusal);
            super::rights::refusal_error(session.client(), &refusal)
        };
        // The tier's list applies to the model that runs (an alias resolved).
        let model = llm.resolve(params.model.as_deref());
        client.allows_model(&model).map_err(refuse)?;
        let prompt = llm.count_prompt(&params.messages, &model).await;
        let ask = licence::Ask {
            prompt,
            max_tokens: params.max_tokens.map(u64::from),
        };
        let ledger = licensing.ledger.clone();
        let identity = client.identity.clone();
        let quotas = client.tier().quotas;
        let now = licensing.now();
        let reserved =
            tokio::task::spawn_blocking(move || ledger.reserve(&identity, ask, &quotas, now))
                .await
                .map_err(|_| ErrorObject::internal("the token ledger's task failed"))?;
        let reservation = reserved.map_err(|error| match error {
            licence::QuotaError::Storage(problem) => {
                tracing::error!(%problem, "token ledger");
                ErrorObject::internal("the token ledger cannot be used; the gateway's log says why")
            }
            quota => refuse(Refusal::Quota(quota)),
        })?;
        if let Some(completion) = reservation.completion {
            params.max_tokens = Some(u32::try_from(completion).unwrap_or(u32::MAX));
        }
        Ok((reservation, prompt))
    }
}

/// What an answer cost: the provider's `usage.total_tokens`, else the
/// prompt's count plus the answer's.
fn spent(answer: &serde_json::Value, prompt: u64) -> u64 {
    let usage = &answer["usage"];
    if let Some(total) = usage["total_tokens"].as_u64() {
        return total;
    }
    prompt + usage["completion_tokens"].as_u64().unwrap_or(0)
}
