//! The step runners: `mcp` and `llm` through the gateway's UNIX socket (as
//! a client, carrying the starting caller's identity), `http` with
//! reqwest. Each takes rendered, typed input and returns JSON or a
//! [`StepError`]; none knows about JSON-RPC servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::model::HttpAuth;
use crate::store::StepError;

/// The `_meta` keys: a workflow's outgoing calls carry the starting caller
/// in `ON_BEHALF_OF`; the gateway names the caller in `CALLER`.
pub use proto::mcp::meta_key::{CALLER, ON_BEHALF_OF};

/// The identity a run acts for: the gateway's `caller.client` for a run a
/// client started, a schedule's configured `identity` for a scheduled one;
/// `None` when neither names one: the calls then carry no on_behalf_of and
/// go as the agent itself. A client's identity that is the agent's own
/// (luca-shell and the agent both running as llmuser) is passed on too: the
/// gateway takes that as no delegation at all, from anyone.
pub fn identity(caller: &Value) -> Option<&str> {
    let named = if caller.get("trigger").and_then(Value::as_str) == Some("schedule") {
        caller.get("identity")
    } else {
        caller.get("client")
    };
    named
        .and_then(Value::as_str)
        .filter(|identity| !identity.is_empty())
}

/// Sets `_meta[ON_BEHALF_OF]` in a call's params to `identity`, or removes
/// it: a workflow's own params cannot name a client to act for.
fn on_behalf_of(params: &mut serde_json::Map<String, Value>, identity: Option<&str>) {
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.remove(ON_BEHALF_OF);
    }
    let Some(identity) = identity else {
        return;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(meta) = meta {
        meta.insert(ON_BEHALF_OF.to_owned(), json!(identity));
    }
}

/// Calls through the gateway.
#[derive(Clone, Debug)]
pub struct Gateway {
    pool: std::sync::Arc<client::Pool>,
}

impl Gateway {
    pub fn new(socket: &Path, max_message: usize) -> Gateway {
        Gateway {
            pool: std::sync::Arc::new(client::Pool::new(socket, 8, max_message)),
        }
    }

    /// Calls `method` with `params`, on behalf of `caller`'s identity when
    /// it names one ([`identity`]); a step's own `_meta` never names one.
    pub async fn call(
        &self,
        method: &str,
        mut params: Value,
        caller: Option<&Value>,
    ) -> Result<Value, StepError> {
        if let Value::Object(map) = &mut params {
            on_behalf_of(map, caller.and_then(identity));
        }
        let params = match params {
            Value::Null => None,
            other => Some(other),
        };
        self.pool
            .call(method, params, None)
            .await
            .map_err(|error| match error {
                client::CallError::Server(object) => {
                    let kind = object
                        .data
                        .as_ref()
                        .and_then(|data| data.get("kind"))
                        .and_then(Value::as_str)
                        .unwrap_or("mcp_error")
                        .to_owned();
                    StepError {
                        kind,
                        message: format!("{method}: {}", object.message),
                        status: None,
                        code: Some(i64::from(object.code)),
                    }
                }
                client::CallError::Connect(error) => StepError::new(
                    "gateway_unavailable",
                    format!(
                        "cannot reach the gateway at {}: {error}; is llmbasedos-gateway running (gateway_socket in agent.yaml)?",
                        self.pool.path().display()
                    ),
                ),
                other => StepError::new("gateway_unavailable", format!("{method}: {other}")),
            })
    }
}

/// Secrets for `http` steps: named files from the configuration, then
/// `$CREDENTIALS_DIRECTORY/<name>` (systemd's `LoadCredential=`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub files: BTreeMap<String, PathBuf>,
    pub directory: Option<PathBuf>,
}

impl Credentials {
    pub fn secret(&self, name: &str) -> Result<String, StepError> {
        let path = self
            .files
            .get(name)
            .cloned()
            .or_else(|| self.directory.as_ref().map(|dir| dir.join(name)))
            .ok_or_else(|| {
                StepError::new(
                    "credential_missing",
                    format!("no credential named {name}: add it under http.credentials in agent.yaml or as a systemd credential"),
                )
            })?;
        let text = std::fs::read_to_string(&path).map_err(|error| {
            StepError::new(
                "credential_missing",
                format!(
                    "cannot read credential {name} ({}): {}",
                    path.display(),
                    error.kind()
                ),
            )
        })?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    }
}

/// An `http` request, rendered.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub json: Option<Value>,
    pub body: Option<String>,
    pub auth: Option<HttpAuth>,
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// Sends an `http` step's request. The response is data from outside:
/// marked `untrusted`, bounded, and the secret (if any) scrubbed from it.
pub async fn http(
    client: &reqwest::Client,
    credentials: &Credentials,
    request: HttpRequest,
) -> Result<Value, StepError> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| StepError::new("invalid", "unknown HTTP method"))?;
    let url = reqwest::Url::parse(&request.url).map_err(|error| {
        StepError::new(
            "invalid",
            format!("{} is not a URL: {error}", proto::text::echo(&request.url)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::new(
            "invalid",
            "only http and https URLs are fetched",
        ));
    }
    let mut builder = client.request(method, url).timeout(request.timeout);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let mut secret = None;
    if let Some(auth) = &request.auth {
        let value = credentials.secret(&auth.credential)?;
        builder = match &auth.header {
            Some(header) => builder.header(header, &value),
            None => builder.bearer_auth(&value),
        };
        secret = Some(value);
    }
    if let Some(json) = &request.json {
        let bytes = serde_json::to_vec(json)
            .map_err(|error| StepError::new("invalid", format!("the JSON body: {error}")))?;
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
    } else if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let scrub = |text: String| match &secret {
        Some(secret) if !secret.is_empty() => text.replace(secret.as_str(), "[secret]"),
        _ => text,
    };
    let response = builder.send().await.map_err(|error| {
        let kind = if error.is_timeout() {
            "timeout"
        } else {
            "unreachable"
        };
        StepError::new(
            kind,
            scrub(format!("HTTP request failed: {}", without_url(&error))),
        )
    })?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            StepError::new(
                "unreachable",
                format!("reading the response: {}", without_url(&error)),
            )
        })?;
        if body.len() + chunk.len() > request.max_bytes {
            return Err(StepError::new(
                "too_large",
                format!(
                    "the response is larger than {} bytes (max_response_bytes)",
                    request.max_bytes
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text = scrub(String::from_utf8_lossy(&body).into_owned());
    let parsed = if content_type.contains("json") {
        serde_json::from_str::<Value>(&text).ok()
    } else {
        None
    };
    if !(200..300).contains(&status) {
        let mut error = StepError::new(
            "http_status",
            format!("HTTP {status}: {}", proto::text::bounded(&text, 200)),
        );
        error.status = Some(status);
        return Err(error);
    }
    Ok(json!({
        "status": status,
        "content_type": content_type,
        "body": text,
        "json": parsed,
        "untrusted": true,
    }))
}

/// reqwest's error without the URL (which may carry a token in its query).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// The `llm` step: a chat through `mcp.llm.chat`; with a schema, the answer
/// must be JSON valid against it, asked again (bounded) when it is not.
pub async fn llm(
    gateway: &Gateway,
    caller: Option<&Value>,
    mut request: Value,
    schema: Option<&Value>,
    retries: u32,
) -> Result<Value, StepError> {
    let validator =
        match schema {
            Some(schema) => Some(jsonschema::validator_for(schema).map_err(|error| {
                StepError::new("invalid", format!("the answer schema: {error}"))
            })?),
            None => None,
        };
    if let Some(schema) = schema
        && let Some(messages) = request.get_mut("messages").and_then(Value::as_array_mut)
    {
        messages.insert(
            0,
            json!({"role": "system", "content": format!(
                "Answer with only a JSON value valid against this JSON Schema, no prose: {schema}")}),
        );
    }
    let mut last_problem = String::new();
    for attempt in 0..=retries {
        let result = gateway
            .call("mcp.llm.chat", request.clone(), caller)
            .await?;
        let content = result
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(validator) = &validator else {
            return Ok(json!({
                "content": content,
                "model": result.get("model"),
                "usage": result.get("usage"),
                "attempts": attempt + 1,
            }));
        };
        let problem = match serde_json::from_str::<Value>(strip_fences(&content)) {
            Ok(answer) => match validator.validate(&answer) {
                Ok(()) => {
                    return Ok(json!({
                        "content": content,
                        "json": answer,
                        "model": result.get("model"),
                        "usage": result.get("usage"),
                        "attempts": attempt + 1,
                    }));
                }
                Err(error) => format!("the answer does not match the schema: {error}"),
            },
            Err(error) => format!("the answer is not JSON: {error}"),
        };
        if let Some(messages) = request.get_mut("messages").and_then(Value::as_array_mut) {
            messages.push(json!({"role": "assistant", "content": content}));
            messages.push(json!({"role": "user", "content": format!("{problem}. Answer again with only the JSON.")}));
        }
        last_problem = problem;
    }
    Err(StepError::new(
        "llm_schema",
        format!("after {} answers: {last_problem}", retries + 1),
    ))
}

fn strip_fences(text: &str) -> &str {
    let text = text.trim();
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_acts_for_the_identity_string_only() {
        let client = json!({"client": "token:alice", "tier": "free"});
        assert_eq!(identity(&client), Some("token:alice"));
        let scheduled = json!({"trigger": "schedule", "identity": "uid:1000"});
        assert_eq!(identity(&scheduled), Some("uid:1000"));
        let unnamed = json!({"trigger": "schedule", "identity": null});
        assert_eq!(identity(&unnamed), None);
        assert_eq!(identity(&json!({"client": ""})), None);
        // Only a schedule's caller names its identity that way.
        assert_eq!(identity(&json!({"identity": "token:root"})), None);
        assert_eq!(identity(&json!({})), None);

        let mut params = json!({"path": "/x", "_meta": {"progressToken": 1}});
        let map = params.as_object_mut().expect("object");
        on_behalf_of(map, identity(&client));
        assert_eq!(params["_meta"][ON_BEHALF_OF], "token:alice");
        assert_eq!(params["_meta"]["progressToken"], 1);
        assert_eq!(params["path"], "/x");
    }

    #[test]
    fn a_step_cannot_name_a_client_to_act_for() {
        let mut params = json!({"_meta": {ON_BEHALF_OF: "token:root"}});
        on_behalf_of(params.as_object_mut().expect("object"), None);
        assert_eq!(params["_meta"].get(ON_BEHALF_OF), None);
        let mut params = json!({"_meta": {ON_BEHALF_OF: "token:root"}});
        on_behalf_of(params.as_object_mut().expect("object"), Some("token:bob"));
        assert_eq!(params["_meta"][ON_BEHALF_OF], "token:bob");
        let mut params = json!({"_meta": "not an object"});
        on_behalf_of(params.as_object_mut().expect("object"), Some("token:bob"));
        assert_eq!(params["_meta"][ON_BEHALF_OF], "token:bob");
    }
}
