//! The one dispatcher every transport feeds: the classic vocabulary (the
//! original Python llmbasedos's method names: `mcp.hello`,
//! `mcp.listCapabilities`, `mcp.<service>.<method>`) and standard MCP of
//! both eras (2025-03-26 to 2025-11-25 sessions, 2026-07-28 stateless
//! requests), on the same connection.
//!
//! This file owns the [`Gateway`], the gateway's own error [`code`]s and
//! the routing of a method to its concern:
//!
//! - `answer`: the [`Answer`] a request gets;
//! - `admission`: a client's session, a request's id and slot;
//! - `session`: one client's state, request slots and subscriptions;
//! - `lifecycle`: `initialize`, `server/discover`, `ping`,
//!   `logging/setLevel`;
//! - `era`: the typed `Reply` every handler returns, and the one step
//!   that shapes and serialises it for its era and revision;
//! - `tools`, `resources`, `prompts` (with completion): MCP's three
//!   primitives;
//! - `classic`: the classic vocabulary and its raw fast path;
//! - `relay`: the LLM relay, `mcp.llm.chat`;
//! - `backend`: calls to the backend servers, shared by all of them;
//! - `rights`: the one rights check, with `delegation`, `licence_check`
//!   and the gateway's own tools (`builtin`).

mod admission;
mod answer;
mod backend;
mod builtin;
mod classic;
mod delegation;
mod era;
mod licence_check;
mod lifecycle;
mod prompts;
mod relay;
mod resources;
mod rights;
mod session;
#[cfg(test)]
mod tests;
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::mcp::{
    CancelledNotificationParams, EmptyResult, Era, Implementation, ProtocolVersion, RequestMeta,
    method, parse_params,
};
use proto::text::{echo, escaped};
use proto::{ErrorObject, Message, Notification, Request, RequestId, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::licensing::Licensing;
use crate::llm::LlmProxy;
use crate::registry::Registry;
use crate::tool_result::{self, RawToolResult};

use self::era::{Reply, Shape};
pub use self::rights::code as licence_code;
pub use self::session::Session;

/// Error codes of the gateway itself, for direct calls in the classic vocabulary
/// (MCP tool calls report backend failures as tool results instead).
/// -32000..=-32004 are the original's licence codes ([`licence_code`]);
/// backends' own codes start at -32010 (`proto::error::code`).
pub mod code {
    /// The service's server is not running or not reachable.
    pub const SERVICE_UNAVAILABLE: i32 = -32006;
    /// This client had as many requests running as it may for longer than
    /// the backend timeout, and this one found no slot.
    pub const TOO_MANY_REQUESTS: i32 = -32005;
    /// The service did not answer within the backend timeout.
    pub const SERVICE_TIMEOUT: i32 = -32007;
}
pub use self::answer::{Answer, RequestFuture};

/// The gateway: configuration, services, and what it says about itself.
#[derive(Debug)]
pub struct Gateway {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    info: Implementation,
    /// Request slots per client identity, shared by all its sessions and
    /// connections, so that the limit holds per client, not per connection.
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The language model behind `mcp.llm.chat`, when one is configured.
    llm: Option<LlmProxy>,
    /// Every transport's refused clients, logged at a bounded rate.
    pub refusals: crate::front::RefusalLog,
    /// The licence, tiers, clients and token ledger (none: no limits).
    licensing: Option<Arc<Licensing>>,
}

impl Gateway {
    pub fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        llm: Option<LlmProxy>,
    ) -> Arc<Gateway> {
        Gateway::licensed(config, registry, llm, None)
    }

    /// A gateway whose clients have the rights and limits of `licensing`.
    pub fn licensed(
        config: Arc<Config>,
        registry: Arc<Registry>,
        llm: Option<LlmProxy>,
        licensing: Option<Arc<Licensing>>,
    ) -> Arc<Gateway> {
        let mut info = Implementation::new("llmbasedos", env!("CARGO_PKG_VERSION"));
        info.title = Some("llmbasedos gateway".to_owned());
        Arc::new(Gateway {
            config,
            registry,
            info,
            permits: Mutex::new(HashMap::new()),
            llm,
            refusals: crate::front::RefusalLog::default(),
            licensing,
        })
    }

    /// The licensing, when gateway.yaml has a licence section.
    pub fn licensing(&self) -> Option<&Arc<Licensing>> {
        self.licensing.as_ref()
    }

    /// Handles one message from a client. For a request, the returned
    /// response is to be sent; notifications return `None`.
    pub async fn handle(&self, session: &Arc<Session>, message: Message) -> Option<Response> {
        match message {
            Message::Request(request) => Some(self.request(session, request).await),
            Message::Notification(notification) => {
                self.notification(session, &notification);
                None
            }
            Message::Response(_) => None,
        }
    }

    /// Handles a notification from the client (cancellation, mostly).
    pub fn notification(&self, session: &Session, notification: &Notification) {
        match notification.method.as_str() {
            method::NOTIFICATIONS_INITIALIZED => {}
            method::NOTIFICATIONS_CANCELLED => {
                // A malformed cancellation cancels nothing (a notification
                // has no answer to carry an error).
                let id = notification.params.as_ref().and_then(|params| {
                    CancelledNotificationParams::deserialize(params)
                        .ok()?
                        .request_id
                });
                if let Some(id) = id {
                    session.cancel(&id);
                }
            }
            other => tracing::debug!(method = %escaped(other), "ignoring notification"),
        }
    }
    async fn request(&self, session: &Arc<Session>, request: Request) -> Response {
        self.answer(session, request).await.into_response()
    }

    /// A request's answer, where a backend tool's result may stay the
    /// backend's text ([`Answer::Tool`]).
    async fn answer(&self, session: &Arc<Session>, request: Request) -> Answer {
        let Request { id, method, params } = request;
        let modern = params
            .as_ref()
            .and_then(|params| params.get("_meta"))
            .is_some_and(|meta| meta.get(proto::mcp::meta_key::PROTOCOL_VERSION).is_some());
        match self.route(session, &id, &method, params).await {
            Ok(Routed::Value(value)) => Answer::Response(Response::success(id, value)),
            Ok(Routed::Tool(result)) => Answer::Tool { id, result },
            Err(error) if modern => Answer::Response(Response::error(Some(id), for_modern(error))),
            Err(error) => Answer::Response(Response::error(Some(id), error)),
        }
    }

    /// Reads `_meta` once, checks the era, parses the params into the
    /// method's typed params, and serialises the typed answer for its era.
    async fn route(
        &self,
        session: &Arc<Session>,
        id: &RequestId,
        name: &str,
        mut params: Option<Value>,
    ) -> Result<Routed, ErrorObject> {
        let meta = RequestMeta::take(&mut params)?;
        let era = if meta.is_modern() {
            meta.validate_modern()?;
            Era::Modern
        } else {
            Era::Legacy
        };
        if let Some(only) = method::exclusive_era(name)
            && only != era
        {
            return Err(ErrorObject::method_not_found(&echo(name)).with_data(json!({
                "reason": match era {
                    Era::Modern => "removed in protocol 2026-07-28",
                    Era::Legacy => "exists only in protocol 2026-07-28: send _meta with the protocol version",
                }
            })));
        }
        let progress_token = meta.progress_token;
        if let Some(level) = meta.log_level {
            session.state().log_level = Some(level);
        }
        // A delegate's request on behalf of a client runs as that client.
        let delegated;
        let session = match meta.other.get(delegation::ON_BEHALF_OF) {
            None => session,
            Some(on_behalf_of) => {
                match self.delegated(session, name, params.as_ref(), on_behalf_of) {
                    Ok(derived) => {
                        delegated = derived;
                        &delegated
                    }
                    Err(refusal) => {
                        let reply = self.refused(session, name, &refusal)?;
                        return reply
                            .into_value(shape_of(era, session), &self.info)
                            .map(Routed::Value);
                    }
                }
            }
        };
        // The one rights check (`rights`): before any concern sees the call.
        if let Err(refusal) = self.authorize(session, name, params.as_ref()) {
            let reply = self.refused(session, name, &refusal)?;
            return reply
                .into_value(shape_of(era, session), &self.info)
                .map(Routed::Value);
        }
        let reply = match name {
            method::INITIALIZE => self.initialize(session, parse_params(name, params)?),
            method::PING => Reply::Empty(EmptyResult::default()),
            method::SERVER_DISCOVER => self.discover(),
            method::TOOLS_LIST => {
                self.list_tools(session, parse_params(name, params)?)
                    .await?
            }
            method::TOOLS_CALL => {
                let version = session
                    .state()
                    .legacy_version
                    .unwrap_or(ProtocolVersion::LATEST_LEGACY);
                let shape = tool_result::Shape::new(era, version, &self.info);
                let params = parse_params(name, params)?;
                match self
                    .call_tool(session, params, progress_token, shape)
                    .await?
                {
                    ToolReply::Raw(result) => return Ok(Routed::Tool(result)),
                    ToolReply::Reply(reply) => *reply,
                }
            }
            method::RESOURCES_LIST => {
                self.list_resources(session, parse_params(name, params)?)
                    .await?
            }
            method::RESOURCES_TEMPLATES_LIST => self.resource_templates(),
            method::RESOURCES_READ => {
                self.read_resource(session, parse_params(name, params)?, era)
                    .await?
            }
            method::RESOURCES_SUBSCRIBE => {
                self.subscribe(session, parse_params(name, params)?).await?
            }
            method::RESOURCES_UNSUBSCRIBE => self.unsubscribe(session, parse_params(name, params)?),
            method::PROMPTS_LIST => self.list_prompts(session),
            method::PROMPTS_GET => {
                self.get_prompt(session, parse_params(name, params)?)
                    .await?
            }
            method::LOGGING_SET_LEVEL => self.set_level(session, parse_params(name, params)?),
            method::COMPLETION_COMPLETE => {
                self.complete(session, parse_params(name, params)?).await?
            }
            _ => {
                self.classic(session, id, name, params, progress_token)
                    .await?
            }
        };
        reply
            .into_value(shape_of(era, session), &self.info)
            .map(Routed::Value)
    }
}

/// 2026-07-28 reserves -32020..=-32099 for the specification's own codes:
/// a service's code in that range (mail's, agent's bases) reaches a modern
/// client as -32603 with the service's code in `data.service_code`.
fn for_modern(mut error: ErrorObject) -> ErrorObject {
    use proto::mcp::code as mcp_code;
    let spec = [
        mcp_code::HEADER_MISMATCH,
        mcp_code::MISSING_REQUIRED_CLIENT_CAPABILITY,
        mcp_code::UNSUPPORTED_PROTOCOL_VERSION,
    ];
    if mcp_code::SPEC_RESERVED.contains(&error.code) && !spec.contains(&error.code) {
        let original = error.code;
        error.code = proto::error::code::INTERNAL_ERROR;
        match &mut error.data {
            Some(Value::Object(data)) => {
                data.insert("service_code".to_owned(), json!(original));
            }
            other => *other = Some(json!({ "service_code": original })),
        }
    }
    error
}

/// How a reply is shaped for the request's era and the session's revision.
fn shape_of(era: Era, session: &Session) -> Shape {
    match era {
        Era::Modern => Shape::Modern,
        Era::Legacy => Shape::Legacy(
            session
                .state()
                .legacy_version
                .unwrap_or(ProtocolVersion::LATEST_LEGACY),
        ),
    }
}

/// What a route gives: a tree, or a backend tool's result kept as the
/// backend's text.
enum Routed {
    Value(Value),
    Tool(RawToolResult),
}

/// What `tools/call` gives: a typed reply, or a backend tool's result that
/// needs only wrapping, kept as the backend's text.
enum ToolReply {
    /// Boxed: the slow way's typed reply is large, the fast path's small.
    Reply(Box<Reply>),
    Raw(RawToolResult),
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ErrorObject> {
    serde_json::to_value(value)
        .map_err(|error| ErrorObject::internal(format!("cannot encode the result: {error}")))
}

fn human(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}
