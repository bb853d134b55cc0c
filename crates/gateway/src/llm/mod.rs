//! The LLM proxy behind `mcp.llm.chat`: one OpenAI-compatible chat
//! completions API (OpenAI, llama.cpp's `llama-server`, vLLM, Ollama all
//! speak it), reached with the gateway's HTTP client.
//!
//! With `stream`, the completion is asked for as server-sent events and
//! every piece of text is handed to the caller as it arrives; the answer is
//! always the whole message with the token usage the API reported. The API
//! key never appears in an error or a log line.
//!
//! `providers` says where a model's requests go (aliases, more APIs, their
//! keys), `usage` counts a prompt's tokens before the call, `stream` reads
//! a streamed answer and cuts it at the client's quota.

mod providers;
mod stream;
mod usage;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::providers::Api;
pub use self::stream::CUT_NOTICE;
use self::stream::read_stream;
pub use self::usage::estimate_prompt;

/// Roles a chat message may have.
const ROLES: &[&str] = &["system", "user", "assistant", "tool", "developer"];

/// `mcp.llm.chat` params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatParams {
    pub messages: Vec<ChatMessage>,
    /// The model [default: the configured one].
    pub model: Option<String>,
    /// Send the text as it is generated (notifications), then the answer.
    #[serde(default)]
    pub stream: bool,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What went wrong, said for the person at the client.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    InvalidParams(String),
    #[error("the language model API at {url} cannot be reached ({reason}); is it running?")]
    Unreachable { url: String, reason: String },
    #[error(
        "the language model API refused the API key (HTTP {status}); check the gateway's llm key"
    )]
    Unauthorized { status: u16 },
    #[error("the language model API answered HTTP {status}: {message}")]
    Api { status: u16, message: String },
    #[error("the language model API did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the language model API sent something that is not a chat completion: {0}")]
    Protocol(String),
}

/// The proxy: where the API is and how to authenticate.
pub struct LlmProxy {
    http: reqwest::Client,
    endpoint: String,
    /// llama.cpp's `/tokenize`, when configured: prompts are counted by
    /// the model's own tokenizer.
    tokenize: Option<String>,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    /// Model aliases (`fast` → `local-7b`).
    aliases: std::collections::HashMap<String, String>,
    /// More APIs, by model name; the first that matches serves it.
    providers: Vec<Api>,
}

impl std::fmt::Debug for LlmProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmProxy")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field(
                "providers",
                &self
                    .providers
                    .iter()
                    .map(|api| api.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl LlmProxy {
    /// Asks for a completion; with `params.stream`, each piece of text goes
    /// to `pieces` as it arrives. Returns the `mcp.llm.chat` result.
    /// `cap`: the answer's tokens allowed by the client's quota; a stream
    /// that reaches it is cut there, with a final piece saying so.
    pub async fn chat(
        &self,
        params: ChatParams,
        pieces: Option<mpsc::UnboundedSender<String>>,
        cap: Option<u64>,
    ) -> Result<Value, LlmError> {
        validate(&params)?;
        let model = self.resolve(params.model.as_deref());
        let route = self.route(&model);
        let mut body = json!({
            "model": model,
            "messages": params.messages,
            "stream": params.stream,
        });
        if let Some(temperature) = params.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(max_tokens) = params.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if params.stream {
            body["stream_options"] = json!({ "include_usage": true });
        }
        let mut request = self
            .http
            .post(route.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = route.api_key {
            request = request.bearer_auth(key);
        }
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|error| LlmError::Unreachable {
                    url: route.endpoint.to_owned(),
                    reason: without_url(error),
                })?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                return Err(LlmError::Unauthorized {
                    status: status.as_u16(),
                });
            }
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                return Err(LlmError::Api {
                    status: status.as_u16(),
                    message: api_message(&text),
                });
            }
            if params.stream {
                read_stream(response, &model, pieces, cap).await
            } else {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|error| LlmError::Protocol(without_url(error)))?;
                let completion: Value = serde_json::from_slice(&bytes)
                    .map_err(|error| LlmError::Protocol(error.to_string()))?;
                whole_completion(&completion, &model)
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| LlmError::Timeout(self.timeout))?
    }
}

fn validate(params: &ChatParams) -> Result<(), LlmError> {
    if params.messages.is_empty() {
        return Err(LlmError::InvalidParams(
            "messages is empty: give at least one {\"role\": \"user\", \"content\": \"…\"}"
                .to_owned(),
        ));
    }
    for (index, message) in params.messages.iter().enumerate() {
        if !ROLES.contains(&message.role.as_str()) {
            return Err(LlmError::InvalidParams(format!(
                "messages[{index}].role is {:?}; use one of {}",
                message.role,
                ROLES.join(", ")
            )));
        }
    }
    if let Some(temperature) = params.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        return Err(LlmError::InvalidParams(format!(
            "temperature is {temperature}; it goes from 0 to 2"
        )));
    }
    Ok(())
}

/// An HTTP error's description, without its URL (some APIs carry keys
/// in the query) but with its cause.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    match std::error::Error::source(&error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// The `error.message` of an OpenAI-style error body, else the body.
fn api_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .or_else(|| value.get("error"))
        })
        .and_then(Value::as_str)
        .map_or_else(|| body.trim().to_owned(), str::to_owned);
    let mut message: String = message.chars().take(500).collect();
    if message.is_empty() {
        message = "(no details)".to_owned();
    }
    message
}

/// The result of a whole (not streamed) completion.
fn whole_completion(completion: &Value, asked: &str) -> Result<Value, LlmError> {
    let choice = completion
        .pointer("/choices/0")
        .ok_or_else(|| LlmError::Protocol("no choices".to_owned()))?;
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(result(
        completion
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(asked),
        content,
        choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        completion.get("usage").cloned().unwrap_or(Value::Null),
    ))
}

fn result(model: &str, content: &str, finish_reason: Value, usage: Value) -> Value {
    json!({
        "model": model,
        "message": { "role": "assistant", "content": content },
        "finish_reason": finish_reason,
        "usage": usage,
    })
}
