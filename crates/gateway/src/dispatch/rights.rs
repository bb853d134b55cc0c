//! Rights on every path: [`Gateway::authorize`] is the one check every
//! request passes before it reaches its concern (`route` calls it first;
//! the classic raw fast path, which does not go through `route`, calls it
//! too). It takes one request from the client's bucket, names the call
//! (the method, the tool and what it goes to, the resource's service, the
//! prompt's service) and asks the client's tier. [`subject`] says, for
//! every method `route` knows, what names it; a test holds `route`'s
//! method table against it, so a new entry point cannot skip the check.
//!
//! A refusal is written in the vocabulary of the call: the original's
//! codes for a JSON-RPC error (-32001 rate, -32002 permission, -32003
//! quota, -32004 model), an `isError` tool result for `tools/call`, with
//! the same `data` (kind, client, tier, `retry_after_ms`). Every refusal
//! is logged with the client, the path and the reason, never contents.
//!
//! Next to it: `delegation` (a delegate acting for a client, the caller
//! block), `licence_check` (what a client may see of its rights),
//! `builtin` (the gateway's own tools, named here under both names).

use std::sync::Arc;

use proto::ErrorObject;
use proto::mcp::{CallToolResult, method};
use serde_json::{Value, json};

use super::{Gateway, Reply, Session};
use crate::licensing::{Client, Refusal};
use crate::registry::ToolTarget;

use super::builtin::builtin_tool_method;

/// The original llmbasedos's codes, kept for the classic vocabulary.
pub mod code {
    pub const AUTHENTICATION: i32 = -32000;
    pub const RATE_LIMITED: i32 = -32001;
    pub const PERMISSION_DENIED: i32 = -32002;
    pub const QUOTA_EXCEEDED: i32 = -32003;
    pub const MODEL_NOT_ALLOWED: i32 = -32004;
}

/// What names a call, for the tier's patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subject {
    /// Protocol bookkeeping and lists (lists are filtered instead).
    Free,
    /// `tools/call`: the tool and what it goes to.
    Tool,
    /// `resources/read`, `resources/subscribe`: the owning service.
    Resource,
    /// `prompts/get`: the prompt's service.
    Prompt,
    /// `completion/complete`: the prompt or resource it completes.
    Completion,
    /// Every other name: a classic method, the LLM relay, a backend
    /// method called directly.
    Method,
}

/// Every MCP method `route` handles, and what names it. Anything else is
/// [`Subject::Method`].
pub(super) const ROUTED: &[(&str, Subject)] = &[
    (method::INITIALIZE, Subject::Free),
    (method::PING, Subject::Free),
    (method::SERVER_DISCOVER, Subject::Free),
    (method::TOOLS_LIST, Subject::Free),
    (method::TOOLS_CALL, Subject::Tool),
    (method::RESOURCES_LIST, Subject::Free),
    (method::RESOURCES_TEMPLATES_LIST, Subject::Free),
    (method::RESOURCES_READ, Subject::Resource),
    (method::RESOURCES_SUBSCRIBE, Subject::Resource),
    (method::RESOURCES_UNSUBSCRIBE, Subject::Free),
    (method::PROMPTS_LIST, Subject::Free),
    (method::PROMPTS_GET, Subject::Prompt),
    (method::LOGGING_SET_LEVEL, Subject::Free),
    (method::COMPLETION_COMPLETE, Subject::Completion),
];

pub(super) fn subject(name: &str) -> Subject {
    ROUTED
        .iter()
        .find(|(routed, _)| *routed == name)
        .map_or(Subject::Method, |(_, subject)| *subject)
}

/// The name of a service's resource reads and prompt gets, for patterns.
pub(super) fn resource_name(service: &str) -> String {
    format!("mcp.{service}.resources.read")
}

pub(super) fn prompt_name(service: &str) -> String {
    format!("mcp.{service}.prompts.get")
}

/// The names of an upstream server's tool.
pub(super) fn upstream_name(link: &str, tool: &str) -> String {
    format!("upstream.{link}.{tool}")
}

impl Gateway {
    /// The one check every request passes (see the module).
    pub(super) fn authorize(
        &self,
        session: &Session,
        name: &str,
        params: Option<&Value>,
    ) -> Result<(), Refusal> {
        let Some(client) = session.client() else {
            return Ok(());
        };
        let outcome = client
            .admit()
            .and_then(|()| self.allowed(client, name, params));
        if let Err(refusal) = &outcome {
            log_refusal(client, name, params, refusal);
        }
        outcome
    }

    /// [`Gateway::authorize`] alone, as every request passes it (the
    /// client's bucket, the call's names, the tier's patterns); public for
    /// the licence benchmark, which measures it.
    pub fn check_rights(
        &self,
        session: &Session,
        name: &str,
        params: Option<&Value>,
    ) -> Result<(), Refusal> {
        self.authorize(session, name, params)
    }

    fn allowed(&self, client: &Client, name: &str, params: Option<&Value>) -> Result<(), Refusal> {
        let field = |key: &str| {
            params
                .and_then(|params| params.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        match subject(name) {
            Subject::Free => Ok(()),
            // Every client's usage: for the machine's owner (root, the
            // gateway's own user: `llmbasedos status`) or a tier that
            // names it.
            Subject::Method if name == "mcp.licence.status" && is_owner(&client.identity) => Ok(()),
            Subject::Method => client.allows(&[name]),
            Subject::Tool => self.tool_allowed(client, field("name")),
            Subject::Resource => self.resource_allowed(client, field("uri")),
            Subject::Prompt => self.prompt_allowed(client, field("name")),
            Subject::Completion => {
                let reference = params.and_then(|params| params.get("ref"));
                let text = |key: &str| {
                    reference
                        .and_then(|reference| reference.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                match text("type") {
                    "ref/prompt" => self.prompt_allowed(client, text("name")),
                    _ => self.resource_allowed(client, text("uri")),
                }
            }
        }
    }

    pub(super) fn tool_allowed(&self, client: &Client, tool: &str) -> Result<(), Refusal> {
        if let Some(method) = builtin_tool_method(tool) {
            return client.allows(&[tool, method]);
        }
        let snapshot = self.registry.snapshot();
        match snapshot.tool_targets.get(tool) {
            Some(ToolTarget::Method(method)) => client.allows(&[tool, method]),
            // A tool the service made at run time (a workflow): its own
            // name, and the service method that runs it.
            Some(ToolTarget::Dynamic { method, .. }) => client.allows(&[tool, method]),
            Some(ToolTarget::Upstream { link, name }) => {
                client.allows(&[tool, &upstream_name(&link.name, name)])
            }
            None => client.allows(&[tool]),
        }
    }

    fn resource_allowed(&self, client: &Client, uri: &str) -> Result<(), Refusal> {
        let snapshot = self.registry.snapshot();
        match snapshot.resource_owner(uri) {
            Some((service, _)) => client.allows(&[&resource_name(&service.name), uri]),
            None => client.allows(&[uri]),
        }
    }

    fn prompt_allowed(&self, client: &Client, prompt: &str) -> Result<(), Refusal> {
        let snapshot = self.registry.snapshot();
        match snapshot.prompt(prompt) {
            Some((service, _, _)) => client.allows(&[&prompt_name(&service.name), prompt]),
            None => client.allows(&[prompt]),
        }
    }

    /// A refused call's answer: an `isError` tool result for `tools/call`,
    /// else the JSON-RPC error.
    pub(super) fn refused(
        &self,
        session: &Session,
        name: &str,
        refusal: &Refusal,
    ) -> Result<Reply, ErrorObject> {
        let error = refusal_error(session.client(), refusal);
        if name == method::TOOLS_CALL {
            let mut result = CallToolResult::error(error.message.clone());
            result.structured_content = error.data;
            return Ok(Reply::ToolCall(result));
        }
        Err(error)
    }

    /// Whether the client may see a tool in `tools/list`.
    pub(super) fn shows_tool(&self, session: &Session, tool: &str) -> bool {
        match session.client() {
            None => true,
            Some(client) => self.tool_allowed(client, tool).is_ok(),
        }
    }

    /// Whether the client may see a service's resources, prompts or
    /// method in lists.
    pub(super) fn shows(&self, session: &Session, names: &[&str]) -> bool {
        session
            .client()
            .is_none_or(|client| client.allows(names).is_ok())
    }
}

/// Root or the gateway's own user, on the UNIX socket.
fn is_owner(identity: &str) -> bool {
    // SAFETY: getuid cannot fail.
    let own = unsafe { libc::getuid() };
    identity
        .strip_prefix("uid:")
        .and_then(|uid| uid.parse::<u32>().ok())
        .is_some_and(|uid| uid == 0 || uid == own)
}

/// A refusal as a JSON-RPC error in the original's codes, with its data.
pub(super) fn refusal_error(client: Option<&Arc<Client>>, refusal: &Refusal) -> ErrorObject {
    let (code, kind, message, retry) = match refusal {
        Refusal::Permission { name } => (
            code::PERMISSION_DENIED,
            "permission_denied",
            format!(
                "{} is not allowed for this client's tier{}; licence_check (mcp.licence.check) shows what it may use{}",
                proto::text::echo(name),
                tier_of(client),
                further(client)
            ),
            None,
        ),
        Refusal::Rate { retry_after } => (
            code::RATE_LIMITED,
            "rate_limited",
            format!(
                "this client sent more requests than its tier allows{}; retry in {} ms",
                tier_of(client),
                retry_after.as_millis()
            ),
            Some(retry_after.as_millis()),
        ),
        Refusal::Quota(error) => {
            let retry = match error {
                licence::QuotaError::Exhausted { resets_at, .. } => Some(
                    (*resets_at - chrono::Utc::now())
                        .num_milliseconds()
                        .max(1)
                        .unsigned_abs() as u128,
                ),
                _ => None,
            };
            (
                code::QUOTA_EXCEEDED,
                "quota_exceeded",
                error.to_string(),
                retry,
            )
        }
        Refusal::Model { model } => (
            code::MODEL_NOT_ALLOWED,
            "model_not_allowed",
            format!(
                "the model {} is not allowed for this client's tier{}; licence_check lists the allowed models",
                proto::text::echo(model),
                tier_of(client)
            ),
            None,
        ),
        Refusal::Delegation { reason } => (
            code::PERMISSION_DENIED,
            "delegation_refused",
            reason.clone(),
            None,
        ),
    };
    let mut data = json!({
        "kind": kind,
        "client": client.map(|client| client.identity.as_str()),
        "tier": client.map(|client| client.tier().name.clone()),
    });
    if let Refusal::Permission { .. } = refusal
        && let Some(further) = client.and_then(|client| client.further())
    {
        data["how_to_get_further"] = json!(&*further);
    }
    if let Some(retry) = retry {
        data["retry_after_ms"] = json!(retry);
    }
    if let Refusal::Quota(licence::QuotaError::Exhausted {
        period,
        limit,
        used,
        asked,
        ..
    }) = refusal
    {
        data["period"] = json!(period);
        data["limit"] = json!(limit);
        data["used"] = json!(used);
        data["asked"] = json!(asked);
    }
    ErrorObject::new(code, message).with_data(data)
}

fn tier_of(client: Option<&Arc<Client>>) -> String {
    client.map_or_else(String::new, |client| format!(" ({})", client.tier().name))
}

/// What a refused client can do to get further, as the message's end.
fn further(client: Option<&Arc<Client>>) -> String {
    client
        .and_then(|client| client.further())
        .map_or_else(String::new, |further| format!(". {further}"))
}

/// Logs a refusal: who, which path, why; never params' contents.
pub(super) fn log_refusal(client: &Client, name: &str, params: Option<&Value>, refusal: &Refusal) {
    let target = params
        .and_then(|params| params.get("name").or_else(|| params.get("uri")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reason = match refusal {
        Refusal::Permission { .. } => "permission denied",
        Refusal::Rate { .. } => "rate limited",
        Refusal::Quota(_) => "token quota",
        Refusal::Model { .. } => "model not allowed",
        Refusal::Delegation { .. } => "delegation refused",
    };
    tracing::info!(
        client = %proto::text::escaped(&client.identity),
        tier = %client.tier().name,
        path = %proto::text::escaped(name),
        target = %proto::text::escaped(&proto::text::echo(target)),
        reason,
        "refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routed_method_has_one_subject() {
        for (index, (name, _)) in ROUTED.iter().enumerate() {
            assert!(
                !ROUTED[index + 1..].iter().any(|(other, _)| other == name),
                "{name} twice"
            );
        }
        assert_eq!(subject("tools/call"), Subject::Tool);
        assert_eq!(subject("mcp.fs.read"), Subject::Method);
    }
}
