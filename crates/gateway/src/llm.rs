//! The LLM proxy behind `mcp.llm.chat`: one OpenAI-compatible chat
//! completions API (OpenAI, llama.cpp's `llama-server`, vLLM, Ollama all
//! speak it), reached with the gateway's HTTP client.
//!
//! With `stream`, the completion is asked for as server-sent events and
//! every piece of text is handed to the caller as it arrives; the answer is
//! always the whole message with the token usage the API reported. The API
//! key never appears in an error or a log line.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::{Llm, LlmKey};

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

/// One more API (`llm.providers`).
struct Api {
    name: String,
    endpoint: String,
    api_key: Option<String>,
    tokenize: Option<String>,
    models: globset::GlobSet,
}

/// Where a model's requests go.
struct Route<'a> {
    endpoint: &'a str,
    api_key: Option<&'a str>,
    tokenize: Option<&'a str>,
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
    /// The proxy of the configuration; reads the API key.
    pub fn new(config: &Llm) -> anyhow::Result<LlmProxy> {
        let api_key = load_key(&config.key, "llm")?;
        let mut providers = Vec::new();
        for (index, provider) in config.providers.iter().enumerate() {
            let mut models = globset::GlobSetBuilder::new();
            for pattern in &provider.models {
                models.add(globset::Glob::new(pattern)?);
            }
            providers.push(Api {
                name: provider.name.clone(),
                endpoint: format!("{}/chat/completions", provider.url.trim_end_matches('/')),
                api_key: load_key(&provider.key, &format!("llm.providers[{index}]"))?,
                tokenize: provider.tokenize_url.clone(),
                models: models.build()?,
            });
        }
        Ok(LlmProxy {
            aliases: config.aliases.iter().cloned().collect(),
            providers,
            http: client::web_client()?,
            endpoint: format!("{}/chat/completions", config.url.trim_end_matches('/')),
            tokenize: config.tokenize_url.clone(),
            model: config.model.clone(),
            api_key,
            timeout: config.timeout,
        })
    }

    /// The model asked for when a request names none.
    pub fn default_model(&self) -> &str {
        &self.model
    }

    /// The model a request's name stands for (an alias, or itself; none:
    /// the configured default).
    pub fn resolve(&self, asked: Option<&str>) -> String {
        let name = asked.unwrap_or(&self.model);
        self.aliases
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// The API that serves `model`: the first provider whose patterns
    /// match, else the default one.
    fn route(&self, model: &str) -> Route<'_> {
        match self.providers.iter().find(|api| api.models.is_match(model)) {
            Some(api) => Route {
                endpoint: &api.endpoint,
                api_key: api.api_key.as_deref(),
                tokenize: api.tokenize.as_deref(),
            },
            None => Route {
                endpoint: &self.endpoint,
                api_key: self.api_key.as_deref(),
                tokenize: self.tokenize.as_deref(),
            },
        }
    }

    /// The prompt's tokens: by the provider's tokenizer (llama.cpp's
    /// `/tokenize`) when configured and reachable, else
    /// [`estimate_prompt`], which never counts fewer.
    pub async fn count_prompt(&self, messages: &[ChatMessage], model: &str) -> u64 {
        let Some(url) = self.route(model).tokenize else {
            return estimate_prompt(messages);
        };
        let mut total = 3;
        for message in messages {
            let asked = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json!({ "content": message.content }).to_string())
                .send();
            let counted = async {
                let response = tokio::time::timeout(Duration::from_secs(10), asked)
                    .await
                    .ok()?
                    .ok()?;
                let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
                Some(body.get("tokens")?.as_array()?.len() as u64)
            };
            match counted.await {
                Some(tokens) => total += tokens + 4 + message.role.len() as u64,
                None => return estimate_prompt(messages),
            }
        }
        total
    }

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

/// An API key from its credential or file (`what` names the section).
fn load_key(key: &LlmKey, what: &str) -> anyhow::Result<Option<String>> {
    Ok(match key {
        LlmKey::None => None,
        LlmKey::File(path) => Some(read_key(path, &format!("{what}.api_key_file"))?),
        LlmKey::Credential(name) => {
            let Some(directory) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                anyhow::bail!(
                    "{what}.api_key_credential {name:?} needs systemd credentials: add LoadCredential={name}:/path/to/key to the gateway's unit"
                );
            };
            Some(read_key(
                &std::path::Path::new(&directory).join(name),
                &format!("{what}.api_key_credential"),
            )?)
        }
    })
}

fn read_key(path: &std::path::Path, key: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("{key}: cannot read {}: {error}", path.display()))?;
    let api_key = text.trim();
    anyhow::ensure!(!api_key.is_empty(), "{key}: {} is empty", path.display());
    Ok(api_key.to_owned())
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

/// A prompt's tokens, never fewer than a byte-level tokenizer makes:
/// one per byte of every role and content, plus each message's framing.
pub fn estimate_prompt(messages: &[ChatMessage]) -> u64 {
    3 + messages
        .iter()
        .map(|message| (message.role.len() + message.content.len()) as u64 + 4)
        .sum::<u64>()
}

/// The final piece of a stream cut at the client's token quota.
pub const CUT_NOTICE: &str =
    "\n[llmbasedos: answer cut here: this client's token quota is reached]";

/// Reads `data:` events (`chat.completion.chunk`s, then `[DONE]`); with
/// `cap`, stops after that many pieces of text (each at least one token).
async fn read_stream(
    response: reqwest::Response,
    asked: &str,
    pieces: Option<mpsc::UnboundedSender<String>>,
    cap: Option<u64>,
) -> Result<Value, LlmError> {
    let mut counted: u64 = 0;
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut content = String::new();
    let mut model = asked.to_owned();
    let mut finish_reason = Value::Null;
    let mut usage = Value::Null;
    let mut done = false;
    while !done {
        let Some(bytes) = body.next().await else {
            break;
        };
        let bytes = bytes.map_err(|error| LlmError::Protocol(without_url(error)))?;
        buffer.extend_from_slice(&bytes);
        while let Some(data) = client::take_event(&mut buffer) {
            let data = data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|error| LlmError::Protocol(format!("an unreadable event: {error}")))?;
            if let Some(message) = chunk.pointer("/error/message").and_then(Value::as_str) {
                return Err(LlmError::Api {
                    status: 200,
                    message: message.to_owned(),
                });
            }
            if let Some(name) = chunk.get("model").and_then(Value::as_str) {
                name.clone_into(&mut model);
            }
            if let Some(choice) = chunk.pointer("/choices/0") {
                if let Some(piece) = choice.pointer("/delta/content").and_then(Value::as_str)
                    && !piece.is_empty()
                {
                    content.push_str(piece);
                    if let Some(pieces) = &pieces {
                        let _ = pieces.send(piece.to_owned());
                    }
                    counted += 1;
                    if cap.is_some_and(|cap| counted >= cap) {
                        // The quota ends here: nothing more is read.
                        if let Some(pieces) = &pieces {
                            let _ = pieces.send(CUT_NOTICE.to_owned());
                        }
                        let mut answer = result(
                            &model,
                            &content,
                            Value::String("quota".to_owned()),
                            json!({ "completion_tokens": counted }),
                        );
                        answer["cut"] = Value::String(format!(
                            "the answer was cut after {counted} tokens: this client's token quota is reached"
                        ));
                        return Ok(answer);
                    }
                }
                if let Some(reason) = choice
                    .get("finish_reason")
                    .filter(|reason| !reason.is_null())
                {
                    finish_reason = reason.clone();
                }
            }
            if let Some(reported) = chunk.get("usage").filter(|usage| !usage.is_null()) {
                usage = reported.clone();
            }
        }
    }
    if !done && finish_reason.is_null() {
        return Err(LlmError::Protocol(
            "the stream ended before the completion did".to_owned(),
        ));
    }
    Ok(result(&model, &content, finish_reason, usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Provider;

    #[test]
    fn aliases_and_providers_route_by_model() {
        let config = Llm {
            url: "http://127.0.0.1:9/v1".to_owned(),
            tokenize_url: Some("http://127.0.0.1:9/tokenize".to_owned()),
            aliases: vec![
                ("fast".to_owned(), "local-7b".to_owned()),
                ("smart".to_owned(), "gpt-4o".to_owned()),
            ],
            providers: vec![Provider {
                name: "openai".to_owned(),
                url: "https://api.example.invalid/v1/".to_owned(),
                models: vec!["gpt-*".to_owned()],
                key: LlmKey::None,
                tokenize_url: None,
            }],
            model: "local-7b".to_owned(),
            key: LlmKey::None,
            timeout: Duration::from_secs(5),
        };
        let proxy = LlmProxy::new(&config).expect("proxy");
        assert_eq!(proxy.resolve(None), "local-7b");
        assert_eq!(proxy.resolve(Some("smart")), "gpt-4o");
        assert_eq!(proxy.resolve(Some("other")), "other");
        let remote = proxy.route("gpt-4o");
        assert_eq!(
            remote.endpoint,
            "https://api.example.invalid/v1/chat/completions"
        );
        assert!(remote.tokenize.is_none());
        let local = proxy.route(&proxy.resolve(Some("fast")));
        assert_eq!(local.endpoint, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(local.tokenize, Some("http://127.0.0.1:9/tokenize"));
    }

    #[test]
    fn the_estimate_never_counts_fewer_than_bytes() {
        let messages = [ChatMessage {
            role: "user".to_owned(),
            content: "héllo wörld".to_owned(),
        }];
        assert!(estimate_prompt(&messages) >= "héllo wörld".len() as u64);
    }
}
