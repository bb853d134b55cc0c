//! The one dispatcher every transport feeds: the seed's vocabulary
//! (`mcp.hello`, `mcp.listCapabilities`, `mcp.<service>.<method>`) and
//! standard MCP of both eras (2025-03-26 to 2025-11-25 sessions,
//! 2026-07-28 stateless requests), on the same connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::CallError;
use futures::future::{AbortHandle, Abortable};
use proto::mcp::{
    self, CallToolResult, DiscoverResult, Era, Implementation, InitializeParams, InitializeResult,
    ListToolsResult, LoggingLevel, ProtocolVersion, RequestMeta, ServerCapabilities,
    ToolsCapability, method,
};
use proto::text::{echo, escaped};
use proto::{ErrorObject, Message, Notification, Request, RequestId, Response};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::Config;
use crate::llm::{ChatParams, LlmError, LlmProxy};
use crate::registry::{Registry, Service, ToolTarget, UpstreamLink};
use crate::tool_result::{self, RawToolResult};

/// Error codes of the gateway itself, for the seed's direct method calls
/// (MCP tool calls report backend failures as tool results instead).
pub mod code {
    /// The service's server is not running or not reachable.
    pub const SERVICE_UNAVAILABLE: i32 = -32001;
    /// This client had as many requests running as it may for longer than
    /// the backend timeout, and this one found no slot.
    pub const TOO_MANY_REQUESTS: i32 = -32005;
    /// The service did not answer within the backend timeout.
    pub const SERVICE_TIMEOUT: i32 = -32003;
}

/// Results that 2026-07-28 clients may cache, which must carry cache hints.
const CACHEABLE: &[&str] = &[
    method::SERVER_DISCOVER,
    method::TOOLS_LIST,
    method::RESOURCES_LIST,
    method::RESOURCES_TEMPLATES_LIST,
    method::PROMPTS_LIST,
];

/// The answer to one admitted request; `None` if it was cancelled.
pub type RequestFuture = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// What a request gets back.
#[derive(Debug)]
pub enum Answer {
    Response(Response),
    /// A backend's successful result, as the backend wrote it.
    Raw {
        id: RequestId,
        result: Box<RawValue>,
    },
    /// A backend tool's successful result as the backend wrote it, in the
    /// MCP tool result it is sent in ([`crate::tool_result`]).
    Tool {
        id: RequestId,
        result: RawToolResult,
    },
}

impl Answer {
    /// The request it answers.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Answer::Response(response) => response.id.as_ref(),
            Answer::Raw { id, .. } | Answer::Tool { id, .. } => Some(id),
        }
    }

    /// The answer as a [`Response`] (a raw result is parsed).
    pub fn into_response(self) -> Response {
        match self {
            Answer::Response(response) => response,
            Answer::Raw { id, result } => match serde_json::from_str(result.get()) {
                Ok(value) => Response::success(id, value),
                Err(error) => Response::error(
                    Some(id),
                    ErrorObject::internal(format!("a service's answer cannot be read: {error}")),
                ),
            },
            Answer::Tool { id, result } => match result.into_value() {
                Ok(value) => Response::success(id, value),
                Err(error) => Response::error(
                    Some(id),
                    ErrorObject::internal(format!("a service's answer cannot be read: {error}")),
                ),
            },
        }
    }
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Answer::Response(response) => response.serialize(serializer),
            Answer::Raw { id, result } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("jsonrpc", proto::jsonrpc::JSONRPC_VERSION)?;
                map.serialize_entry("id", id)?;
                map.serialize_entry("result", result)?;
                map.end()
            }
            Answer::Tool { id, result } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("jsonrpc", proto::jsonrpc::JSONRPC_VERSION)?;
                map.serialize_entry("id", id)?;
                map.serialize_entry("result", result)?;
                map.end()
            }
        }
    }
}

/// Tools per `tools/list` page.
const TOOLS_PAGE: usize = 100;

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
}

/// One client's state: its protocol era, log level, running requests.
/// Cheap to [`Session::fork`]: an HTTP request gets its own notification
/// stream while sharing the session's state.
#[derive(Debug)]
pub struct Session {
    shared: Arc<SessionShared>,
    outgoing: mpsc::Sender<Message>,
}

#[derive(Debug)]
struct SessionShared {
    /// Who the client is (a token holder, a uid), for logs and limits.
    identity: String,
    state: Mutex<SessionState>,
    /// foldhash: a client's own ids, at most `max_concurrent_requests` of them.
    running: Mutex<foldhash::HashMap<RequestId, AbortHandle>>,
    permits: Arc<Semaphore>,
    /// The session's own notification channel (for Streamable HTTP the GET
    /// stream, for UNIX and WebSocket the connection): where
    /// `notifications/resources/updated` goes, whichever request subscribed.
    home: mpsc::Sender<Message>,
    /// The live `resources/subscribe` watches, by URI.
    subscriptions: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

#[derive(Debug, Default)]
struct SessionState {
    legacy_version: Option<ProtocolVersion>,
    log_level: Option<LoggingLevel>,
}

impl Session {
    fn new(
        identity: String,
        outgoing: mpsc::Sender<Message>,
        permits: Arc<Semaphore>,
    ) -> Arc<Session> {
        Arc::new(Session {
            shared: Arc::new(SessionShared {
                identity,
                state: Mutex::new(SessionState::default()),
                running: Mutex::new(foldhash::HashMap::default()),
                permits,
                home: outgoing.clone(),
                subscriptions: Mutex::new(HashMap::new()),
            }),
            outgoing,
        })
    }

    /// The same session, with notifications going to `outgoing`.
    pub fn fork(&self, outgoing: mpsc::Sender<Message>) -> Arc<Session> {
        Arc::new(Session {
            shared: self.shared.clone(),
            outgoing,
        })
    }

    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<RequestId, AbortHandle>> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the client went through `initialize` (2025-11-25) and so
    /// wants `notifications/tools/list_changed`.
    pub fn wants_list_changed(&self) -> bool {
        self.state().legacy_version.is_some()
    }

    /// Sends a notification to the client; dropped if it is not reading.
    pub fn notify(&self, method: &str, params: Option<Value>) {
        let _ = self.outgoing.try_send(Message::Notification(Notification {
            method: method.to_owned(),
            params,
        }));
    }

    /// Sends a log record (`notifications/message`) if the client asked for
    /// records of this level (`logging/setLevel`, or a 2026-07-28 request's
    /// `io.modelcontextprotocol/logLevel`).
    pub fn log(&self, level: LoggingLevel, data: Value) {
        let wanted = self
            .state()
            .log_level
            .is_some_and(|minimum| level >= minimum);
        if wanted {
            let params = mcp::LoggingMessageNotificationParams {
                level,
                logger: Some("llmbasedos-gateway".to_owned()),
                data,
                meta: None,
            };
            if let Ok(params) = serde_json::to_value(params) {
                self.notify(method::NOTIFICATIONS_MESSAGE, Some(params));
            }
        }
    }

    /// Stops a running request (`notifications/cancelled`).
    pub fn cancel(&self, id: &RequestId) {
        if let Some(handle) = self.running().remove(id) {
            handle.abort();
        }
    }

    /// One of the client's request slots, if one is free now.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.shared.permits.clone().try_acquire_owned().ok()
    }

    /// Waits for one of the client's request slots, in turn (the semaphore
    /// is FIFO), at most `wait`; `None` when none came.
    pub fn permit(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let permits = self.shared.permits.clone();
        async move {
            tokio::time::timeout(wait, permits.acquire_owned())
                .await
                .ok()?
                .ok()
        }
    }

    /// How many requests are running.
    pub fn running_count(&self) -> usize {
        self.running().len()
    }

    /// Stops every running request (the client went away).
    pub fn cancel_all(&self) {
        for (_, handle) in self.running().drain() {
            handle.abort();
        }
        self.shared.end_subscriptions();
    }
}

impl Gateway {
    pub fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        llm: Option<LlmProxy>,
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
        })
    }

    /// A new session of the client `identity`; its notifications (progress,
    /// list changes) go to `outgoing`.
    pub fn session(&self, identity: String, outgoing: mpsc::Sender<Message>) -> Arc<Session> {
        let permits = self
            .permits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(identity.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_concurrent_requests)))
            .clone();
        Session::new(identity, outgoing, permits)
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

    /// Admits a request and returns the future that answers it, for the
    /// transport to poll (stream transports poll it on the connection's own
    /// task: no task spawn and no hand-off per request). The future yields
    /// `None` when the request was cancelled: MCP sends no answer then.
    /// A request whose id is in use gets its error response at once.
    ///
    /// `permit` is one of the client's request slots, when the transport
    /// waited for it itself (stream transports do, so that a connection
    /// reads its next request only once this one has a slot); without it,
    /// the future waits for a slot in turn, at most the backend timeout,
    /// then answers [`code::TOO_MANY_REQUESTS`].
    ///
    /// With `raw_results`, a seed call of a backend method may be answered
    /// with the backend's result text as it came ([`Answer::Raw`]), never
    /// parsed nor re-serialized: a transport that writes JSON text asks
    /// for that.
    pub fn start_request(
        self: &Arc<Self>,
        session: &Arc<Session>,
        request: Request,
        raw_results: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<RequestFuture, Response> {
        let (abort, registration) = AbortHandle::new_pair();
        {
            let mut running = session.running();
            if running.contains_key(&request.id) {
                let error = ErrorObject::invalid_request(format!(
                    "request id {} is already in use by a running request",
                    proto::text::echo(&request.id.to_string())
                ));
                return Err(Response::error(Some(request.id), error));
            }
            running.insert(request.id.clone(), abort);
        }
        let gateway = self.clone();
        let session = session.clone();
        Ok(Box::pin(async move {
            let id = request.id.clone();
            let answer = async {
                // Without a slot yet, the request waits its turn (and can
                // be cancelled meanwhile).
                let _permit = match permit {
                    Some(permit) => permit,
                    None => match session.permit(gateway.config.backend_timeout).await {
                        Some(permit) => permit,
                        None => return Answer::Response(gateway.too_many(request.id)),
                    },
                };
                if raw_results {
                    gateway.request_raw(&session, request).await
                } else {
                    Answer::Response(gateway.request(&session, request).await)
                }
            };
            let outcome = Abortable::new(answer, registration).await;
            session.running().remove(&id);
            outcome.ok()
        }))
    }

    /// The answer to a request that waited longer than the backend timeout
    /// for one of its client's request slots.
    pub fn too_many(&self, id: RequestId) -> Response {
        let error = ErrorObject::new(
            code::TOO_MANY_REQUESTS,
            format!(
                "this client had {} requests running for {} and this one found no slot: wait for answers before sending more",
                self.config.max_concurrent_requests,
                human(self.config.backend_timeout)
            ),
        );
        Response::error(Some(id), error)
    }

    /// Runs a request as its own task (for transports with no connection
    /// task to poll it on); `respond` gets the answer (never called for a
    /// cancelled request, as MCP specifies), which may be raw result text
    /// as for stream transports: the transport writes it as it is.
    pub fn spawn_request<F>(self: &Arc<Self>, session: &Arc<Session>, request: Request, respond: F)
    where
        F: FnOnce(Answer) + Send + 'static,
    {
        match self.start_request(session, request, true, None) {
            Ok(answer) => {
                tokio::spawn(async move {
                    if let Some(answer) = answer.await {
                        respond(answer);
                    }
                });
            }
            Err(refusal) => respond(Answer::Response(refusal)),
        }
    }

    /// Handles a notification from the client (cancellation, mostly).
    pub fn notification(&self, session: &Session, notification: &Notification) {
        match notification.method.as_str() {
            method::NOTIFICATIONS_INITIALIZED => {}
            method::NOTIFICATIONS_CANCELLED => {
                let id = notification
                    .params
                    .as_ref()
                    .and_then(|params| params.get("requestId"))
                    .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
                if let Some(id) = id {
                    session.cancel(&id);
                }
            }
            other => tracing::debug!(method = %escaped(other), "ignoring notification"),
        }
    }

    /// A request that may be answered with raw result text: the seed's
    /// direct call of a backend method (no `_meta`, so the 2025-11-25 era and
    /// no progress) is forwarded and its answer passed back untouched;
    /// everything else goes the general way.
    async fn request_raw(&self, session: &Arc<Session>, request: Request) -> Answer {
        let plain = match &request.params {
            None | Some(Value::Array(_)) => true,
            Some(Value::Object(object)) => !object.contains_key("_meta"),
            Some(_) => false,
        };
        let service = plain
            .then(|| {
                self.registry
                    .snapshot()
                    .methods
                    .get(&request.method)
                    .cloned()
            })
            .flatten();
        let Some(service) = service else {
            return self.answer(session, request).await;
        };
        let Request { id, method, params } = request;
        match self
            .call_backend_raw(session, &service, &method, params, None)
            .await
        {
            Ok(result) => Answer::Raw { id, result },
            Err(error) => {
                tracing::debug!(request = %escaped(&id.to_string()), method, error = %escaped(&error.message), "backend call failed");
                Answer::Response(Response::error(Some(id), error))
            }
        }
    }

    async fn request(&self, session: &Arc<Session>, request: Request) -> Response {
        self.answer(session, request).await.into_response()
    }

    /// A request's answer, where a backend tool's result may stay the
    /// backend's text ([`Answer::Tool`]).
    async fn answer(&self, session: &Arc<Session>, request: Request) -> Answer {
        let Request { id, method, params } = request;
        match self.route(session, &id, &method, params).await {
            Ok(Routed::Value(value)) => Answer::Response(Response::success(id, value)),
            Ok(Routed::Tool(result)) => Answer::Tool { id, result },
            Err(error) => Answer::Response(Response::error(Some(id), error)),
        }
    }

    async fn route(
        &self,
        session: &Arc<Session>,
        id: &RequestId,
        name: &str,
        mut params: Option<Value>,
    ) -> Result<Routed, ErrorObject> {
        let meta = RequestMeta::from_params(params.as_ref()).map_err(ErrorObject::from)?;
        let era = if meta.is_modern() {
            meta.validate_modern().map_err(ErrorObject::from)?;
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
        if let Some(Value::Object(object)) = &mut params {
            object.remove("_meta");
        }
        let progress_token = meta.progress_token.clone();
        if let Some(level) = meta.log_level {
            session.state().log_level = Some(level);
        }
        let result = match name {
            method::INITIALIZE => self.initialize(session, params),
            method::PING => Ok(json!({})),
            method::SERVER_DISCOVER => self.discover(),
            method::TOOLS_LIST => self.list_tools(params.as_ref()),
            method::TOOLS_CALL => {
                let version = session
                    .state()
                    .legacy_version
                    .unwrap_or(ProtocolVersion::LATEST_LEGACY);
                let shape = tool_result::Shape::new(era, version, &self.info);
                match self
                    .call_tool(session, params, progress_token, shape)
                    .await?
                {
                    ToolAnswer::Raw(result) => return Ok(Routed::Tool(result)),
                    ToolAnswer::Value(value) => Ok(value),
                }
            }
            method::RESOURCES_LIST => self.list_resources(session, params.as_ref()).await,
            method::RESOURCES_TEMPLATES_LIST => Ok(self.resource_templates()),
            method::RESOURCES_READ => self.read_resource(session, params, era).await,
            method::RESOURCES_SUBSCRIBE => self.subscribe(session, params).await,
            method::RESOURCES_UNSUBSCRIBE => self.unsubscribe(session, params),
            method::PROMPTS_LIST => Ok(self.list_prompts()),
            method::PROMPTS_GET => self.get_prompt(session, params).await,
            method::LOGGING_SET_LEVEL => self.set_level(session, params.as_ref()),
            method::COMPLETION_COMPLETE => self.complete(session, params).await,
            "mcp.hello" => Ok(self.hello()),
            "mcp.listCapabilities" => Ok(self.list_capabilities()),
            "mcp.llm.chat" => self.chat(session, id, params, progress_token).await,
            _ => {
                let snapshot = self.registry.snapshot();
                match snapshot.methods.get(name) {
                    Some(service) => {
                        let outcome = self
                            .call_backend(session, service, name, params, progress_token)
                            .await;
                        if let Err(failure) = &outcome {
                            tracing::debug!(request = %escaped(&id.to_string()), method = name, error = %escaped(&failure.message), "backend call failed");
                        }
                        outcome
                    }
                    None => Err(ErrorObject::method_not_found(&echo(name))),
                }
            }
        };
        result.map(|value| {
            Routed::Value(match era {
                Era::Modern => self.modern_result(name, value),
                Era::Legacy => {
                    let version = session
                        .state()
                        .legacy_version
                        .unwrap_or(ProtocolVersion::LATEST_LEGACY);
                    legacy_result(version, name, value)
                }
            })
        })
    }

    /// Every 2026-07-28 result says what kind it is and names the server.
    fn modern_result(&self, name: &str, mut value: Value) -> Value {
        if let Value::Object(object) = &mut value {
            object
                .entry("resultType")
                .or_insert_with(|| json!("complete"));
            // Cacheable results carry cache hints. What llmbasedos lists
            // changes live (services come and go), so: do not cache.
            if CACHEABLE.contains(&name) {
                object.entry("ttlMs").or_insert_with(|| json!(0));
                object
                    .entry("cacheScope")
                    .or_insert_with(|| json!("private"));
            }
            let meta = object.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(meta) = meta {
                meta.extend(mcp::server_info_meta(&self.info));
            }
        }
        value
    }

    fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            resources: Some(mcp::ResourcesCapability::default()),
            prompts: Some(mcp::PromptsCapability::default()),
            tools: Some(ToolsCapability {
                list_changed: Some(true),
            }),
            logging: Some(Map::new()),
            completions: Some(Map::new()),
            ..ServerCapabilities::default()
        }
    }

    fn initialize(&self, session: &Session, params: Option<Value>) -> Result<Value, ErrorObject> {
        let params: InitializeParams = serde_json::from_value(params.unwrap_or_else(|| json!({})))
            .map_err(|error| {
                ErrorObject::invalid_params(format!(
                    "invalid initialize params: {}",
                    echo(&error.to_string())
                ))
            })?;
        let version = ProtocolVersion::negotiate_legacy(&params.protocol_version);
        session.state().legacy_version = Some(version);
        tracing::info!(
            client = %escaped(&params.client_info.name),
            client_version = %escaped(&params.client_info.version),
            requested = %escaped(&params.protocol_version),
            version = version.as_str(), identity = %session.identity(), "client initialized"
        );
        let mut capabilities = self.capabilities();
        if let Some(resources) = &mut capabilities.resources {
            resources.subscribe = self.serves_subscriptions().then_some(true);
        }
        let mut result = InitializeResult::new(version, capabilities, self.info.clone());
        result.instructions = Some(INSTRUCTIONS.to_owned());
        to_value(&result)
    }

    fn discover(&self) -> Result<Value, ErrorObject> {
        let mut result = DiscoverResult::new(self.capabilities(), &self.info);
        result.instructions = Some(INSTRUCTIONS.to_owned());
        to_value(&result)
    }

    fn list_tools(&self, params: Option<&Value>) -> Result<Value, ErrorObject> {
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

    /// `tools/call`. A backend tool's result that needs only wrapping is
    /// answered as the backend's text in `shape` ([`crate::tool_result`]);
    /// every other result as a tree, for the era's shaping.
    async fn call_tool(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
        shape: tool_result::Shape,
    ) -> Result<ToolAnswer, ErrorObject> {
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
                    .await
                    .map(ToolAnswer::Value);
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
                let raw = match self
                    .call_backend_raw(session, service, method, Some(arguments), progress_token)
                    .await
                {
                    Ok(raw) => raw,
                    // The model reads the message and can correct its call.
                    Err(error) => {
                        return to_value(&CallToolResult::error(tool_error_message(&error)))
                            .map(ToolAnswer::Value);
                    }
                };
                let raw = match tool_result::RawToolResult::wrap(raw, shape) {
                    Ok(result) => return Ok(ToolAnswer::Raw(result)),
                    Err(raw) => raw,
                };
                match parse_backend(service, &raw) {
                    Ok(Value::Object(object)) => tool_result(object),
                    Ok(other) => CallToolResult::text(other.to_string()),
                    Err(error) => CallToolResult::error(tool_error_message(&error)),
                }
            }
        };
        to_value(&result).map(ToolAnswer::Value)
    }

    /// A tool of a third-party server: its result passes through as it is.
    async fn call_upstream(
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

    async fn call_backend(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Value, ErrorObject> {
        let raw = self
            .call_backend_raw(session, service, method, params, progress_token)
            .await?;
        parse_backend(service, &raw)
    }

    /// A backend call whose result goes back as the backend wrote it.
    async fn call_backend_raw(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let (progress, forwarder) = forward_progress(session, progress_token);
        let timeout = self.config.backend_timeout;
        let outcome =
            tokio::time::timeout(timeout, service.pool.call_raw(method, params, progress)).await;
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(Duration::from_secs(1), forwarder).await;
        }
        let result = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(CallError::Server(error))) => return Err(error),
            Ok(Err(CallError::Connect(error))) => {
                tracing::warn!(service = %service.name, %error, "cannot reach the service");
                Err(ErrorObject::new(
                    code::SERVICE_UNAVAILABLE,
                    format!(
                        "the {} service is not running; {}",
                        service.name,
                        self.config.supervisor.start_hint(&service.name)
                    ),
                ))
            }
            Ok(Err(CallError::Closed | CallError::Send(_))) => Err(ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                format!(
                    "the {} service stopped while handling the request; retry",
                    service.name
                ),
            )),
            Ok(Err(CallError::TooLarge(message))) => Err(ErrorObject::invalid_request(message)),
            Err(_) => Err(ErrorObject::new(
                code::SERVICE_TIMEOUT,
                format!(
                    "the {} service did not answer within {}",
                    service.name,
                    human(timeout)
                ),
            )),
        };
        // The service itself failed: worth a log record for the client.
        if let Err(error) = &result {
            session.log(
                LoggingLevel::Warning,
                json!({ "service": service.name, "error": error.message }),
            );
        }
        result
    }

    /// `resources/list` across the services that serve resources, one
    /// service after the other; the cursor names the service and its own
    /// cursor.
    async fn list_resources(
        &self,
        session: &Arc<Session>,
        params: Option<&Value>,
    ) -> Result<Value, ErrorObject> {
        let snapshot = self.registry.snapshot();
        let serving: Vec<&Arc<Service>> = snapshot
            .services
            .values()
            .filter(|service| service.resources.is_some())
            .collect();
        let (mut index, mut inner) = match params
            .and_then(|params| params.get("cursor"))
            .and_then(Value::as_str)
        {
            None => (0, None),
            Some(cursor) => {
                let (name, inner) = cursor.split_once(' ').unwrap_or((cursor, ""));
                let index = serving
                    .iter()
                    .position(|service| service.name == name)
                    .ok_or_else(|| {
                        ErrorObject::invalid_params(
                            "invalid cursor: pass back a nextCursor from resources/list",
                        )
                    })?;
                (
                    index,
                    Some(inner.to_owned()).filter(|inner| !inner.is_empty()),
                )
            }
        };
        let mut resources = Vec::new();
        while let Some(service) = serving.get(index) {
            let Some(spec) = &service.resources else {
                break;
            };
            let params = inner
                .take()
                .map(|cursor| json!({ "cursor": cursor }))
                .or_else(|| Some(json!({})));
            match self
                .call_backend(session, service, &spec.list, params, None)
                .await
            {
                Ok(page) => {
                    if let Some(list) = page.get("resources").and_then(Value::as_array) {
                        resources.extend(list.iter().cloned());
                    }
                    if let Some(next) = page.get("nextCursor").and_then(Value::as_str) {
                        return Ok(
                            json!({ "resources": resources, "nextCursor": format!("{} {next}", service.name) }),
                        );
                    }
                }
                // One service down does not hide the others' resources.
                Err(error) => {
                    tracing::warn!(service = %service.name, error = %error.message, "cannot list its resources")
                }
            }
            index += 1;
        }
        Ok(json!({ "resources": resources }))
    }

    fn resource_templates(&self) -> Value {
        let snapshot = self.registry.snapshot();
        let templates: Vec<&mcp::ResourceTemplate> = snapshot
            .services
            .values()
            .filter_map(|service| service.resources.as_ref())
            .flat_map(|spec| spec.templates.iter())
            .collect();
        json!({ "resourceTemplates": templates })
    }

    /// `resources/read`, routed by the URI prefix a service declared.
    async fn read_resource(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
        era: Era,
    ) -> Result<Value, ErrorObject> {
        let uri = params
            .as_ref()
            .and_then(|params| params.get("uri"))
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorObject::invalid_params("resources/read needs a string \"uri\""))?
            .to_owned();
        let snapshot = self.registry.snapshot();
        let owner = snapshot.resource_owner(&uri);
        let Some((service, spec)) = owner else {
            return Err(mcp::resource_not_found_error(era, &echo(&uri)));
        };
        let read = self
            .call_backend(
                session,
                service,
                &spec.read,
                Some(json!({ "uri": uri })),
                None,
            )
            .await;
        // A missing resource has MCP's one code whatever the service: the
        // service's own "not found" (its base - 3) is recognised by code
        // and re-coded, its message (which says what is missing) kept.
        read.map_err(|mut error| {
            let not_found = service
                .error_base
                .map(|base| proto::ServiceCodes::new(base).not_found());
            if not_found == Some(error.code) {
                error.code = mcp::code::resource_not_found(era);
                error.data = Some(json!({ "uri": echo(&uri) }));
            }
            error
        })
    }

    /// Every service's prompts, named `<service>_<prompt>`.
    fn list_prompts(&self) -> Value {
        let snapshot = self.registry.snapshot();
        let prompts: Vec<mcp::Prompt> = snapshot
            .services
            .values()
            .filter_map(|service| Some((service, service.prompts.as_ref()?)))
            .flat_map(|(service, spec)| {
                spec.prompts.iter().map(move |prompt| mcp::Prompt {
                    name: format!(
                        "{}{}{}",
                        service.name,
                        proto::caps::TOOL_NAME_SEPARATOR,
                        prompt.name
                    ),
                    ..prompt.clone()
                })
            })
            .collect();
        json!({ "prompts": prompts })
    }

    async fn get_prompt(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_else(|| json!({}));
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorObject::invalid_params("prompts/get needs a string \"name\""))?;
        let snapshot = self.registry.snapshot();
        let Some((service, spec, prompt)) = snapshot.prompt(name) else {
            return Err(ErrorObject::invalid_params(format!(
                "no such prompt: {}; prompts/list names the available ones",
                echo(name)
            )));
        };
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let call = json!({ "name": prompt, "arguments": arguments });
        self.call_backend(session, service, &spec.get, Some(call), None)
            .await
    }

    /// `completion/complete`. A resource template's argument goes to the
    /// `complete` method the owning service's caps name in `resources`
    /// (the gateway knows no service's internals); the answer is cut to
    /// MCP's 100 values. A prompt's argument goes to the method its
    /// service's caps name in `prompts.complete`. Without such a method
    /// there are no values.
    async fn complete(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_else(|| json!({}));
        let request: mcp::CompleteParams = serde_json::from_value(params).map_err(|error| {
            ErrorObject::invalid_params(format!(
                "invalid completion/complete params: {}",
                echo(&error.to_string())
            ))
        })?;
        let none = || mcp::CompleteResult {
            completion: mcp::Completion {
                values: Vec::new(),
                total: None,
                has_more: Some(false),
            },
            result_type: None,
            meta: None,
        };
        let snapshot = self.registry.snapshot();
        let uri = match &request.reference {
            mcp::CompletionReference::ResourceTemplate { uri } => uri,
            mcp::CompletionReference::Prompt { name, .. } => {
                let Some((service, spec, prompt)) = snapshot.prompt(name) else {
                    return Err(ErrorObject::invalid_params(format!(
                        "no such prompt: {}; prompts/list names the available ones",
                        echo(name)
                    )));
                };
                let Some(method) = &spec.complete else {
                    return to_value(&none());
                };
                let mut call = json!({ "name": prompt, "argument": request.argument });
                if let Some(context) = &request.context {
                    call["context"] = json!(context);
                }
                return self.completion_from(session, service, method, call).await;
            }
        };
        let owner = snapshot.services.values().find_map(|service| {
            let spec = service.resources.as_ref()?;
            let owns = spec
                .templates
                .iter()
                .any(|template| template.uri_template == *uri)
                || uri.starts_with(&spec.uri_prefix);
            Some((service, spec.complete.as_ref()?)).filter(|_| owns)
        });
        let Some((service, method)) = owner else {
            return to_value(&none());
        };
        let call = json!({ "uri": uri, "argument": request.argument });
        self.completion_from(session, service, method, call).await
    }

    /// Asks a service's completion method; the answer is cut to MCP's
    /// 100 values.
    async fn completion_from(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        call: Value,
    ) -> Result<Value, ErrorObject> {
        let answer = self
            .call_backend(session, service, method, Some(call), None)
            .await?;
        let mut result: mcp::CompleteResult = serde_json::from_value(answer).map_err(|error| {
            ErrorObject::internal(format!(
                "the {} service's completion cannot be read: {error}",
                service.name
            ))
        })?;
        let values = &mut result.completion.values;
        if values.len() > mcp::Completion::MAX_VALUES {
            values.truncate(mcp::Completion::MAX_VALUES);
            result.completion.has_more = Some(true);
        }
        to_value(&result)
    }

    fn set_level(&self, session: &Session, params: Option<&Value>) -> Result<Value, ErrorObject> {
        let level = params
            .and_then(|params| params.get("level"))
            .cloned()
            .and_then(|level| serde_json::from_value::<LoggingLevel>(level).ok())
            .ok_or_else(|| {
                ErrorObject::invalid_params(
                    "logging/setLevel needs \"level\": one of debug, info, notice, warning, error, critical, alert, emergency",
                )
            })?;
        session.state().log_level = Some(level);
        Ok(json!({}))
    }

    /// `mcp.llm.chat`: a completion from the configured model. With
    /// `stream`, the text goes out as it comes: as `notifications/progress`
    /// (`message` = the new text) when the request has a progress token,
    /// else as `mcp.llm.delta` notifications naming the request id; then
    /// the answer, with the whole message and the token usage.
    async fn chat(
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

    fn hello(&self) -> Value {
        let snapshot = self.registry.snapshot();
        json!({
            "name": self.info.name,
            "version": self.info.version,
            "protocolVersions": mcp::SUPPORTED_PROTOCOL_VERSIONS,
            "services": snapshot.services.keys().collect::<Vec<_>>(),
        })
    }

    fn list_capabilities(&self) -> Value {
        let snapshot = self.registry.snapshot();
        let services: Vec<Value> = snapshot
            .services
            .values()
            .map(|service| {
                json!({
                    "service": service.name,
                    "version": service.version,
                    "description": service.description,
                    "methods": service.methods,
                })
            })
            .collect();
        json!({ "services": services })
    }
}

const INSTRUCTIONS: &str = "llmbasedos connects you to this machine's local capabilities. \
Each tool is named <service>_<method> (fs_read, mail_listMessages); its description says what it does.";

/// A result shaped for the revision a session negotiated: fields a revision
/// does not define are left out (a 2025-03-26 host gets no
/// `structuredContent`, `outputSchema` nor `title`; hosts before 2025-11-25
/// no `icons` nor `execution`). Only the MCP methods that carry such fields
/// are looked at; the classic vocabulary passes untouched.
fn legacy_result(version: ProtocolVersion, name: &str, mut value: Value) -> Value {
    if version >= ProtocolVersion::LATEST_LEGACY {
        return value;
    }
    let mut drop: Vec<&str> = Vec::with_capacity(4);
    if !version.has_structured_content() {
        drop.push("title");
    }
    if !version.has_icons() {
        drop.push("icons");
    }
    let Value::Object(object) = &mut value else {
        return value;
    };
    let list = match name {
        method::TOOLS_LIST => {
            if !version.has_structured_content() {
                drop.push("outputSchema");
            }
            if !version.has_icons() {
                drop.push("execution");
            }
            "tools"
        }
        method::RESOURCES_LIST => "resources",
        method::RESOURCES_TEMPLATES_LIST => "resourceTemplates",
        method::PROMPTS_LIST => "prompts",
        method::TOOLS_CALL => {
            if !version.has_structured_content() {
                object.remove("structuredContent");
            }
            return value;
        }
        method::INITIALIZE => {
            if let Some(Value::Object(info)) = object.get_mut("serverInfo") {
                for key in &drop {
                    info.remove(*key);
                }
                if !version.has_icons() {
                    info.remove("websiteUrl");
                    info.remove("description");
                }
            }
            return value;
        }
        _ => return value,
    };
    if let Some(Value::Array(items)) = object.get_mut(list) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for key in &drop {
                item.remove(*key);
            }
        }
    }
    value
}

/// What a route gives: a tree, or a backend tool's result kept as the
/// backend's text.
enum Routed {
    Value(Value),
    Tool(RawToolResult),
}

/// What `tools/call` gives: see [`Routed`].
enum ToolAnswer {
    Value(Value),
    Raw(RawToolResult),
}

/// A backend's result text as a tree.
fn parse_backend(service: &Service, raw: &RawValue) -> Result<Value, ErrorObject> {
    serde_json::from_str(raw.get()).map_err(|error| {
        ErrorObject::internal(format!(
            "the {} service's answer cannot be read: {error}",
            service.name
        ))
    })
}

/// A backend's result as an MCP tool result. An object may carry
/// `_content`, MCP content blocks (an image, audio) meant for the host; the
/// rest is the structured result, also given as JSON text when there are
/// no such blocks.
fn tool_result(mut object: Map<String, Value>) -> CallToolResult {
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

/// Relays a call's progress to the client under the client's own token.
/// The task is awaited before the response is returned, so that every
/// progress notification reaches the client before the answer, as MCP
/// requires.
fn forward_progress(
    session: &Arc<Session>,
    token: Option<mcp::ProgressToken>,
) -> (
    Option<mpsc::UnboundedSender<Value>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let Some(token) = token else {
        return (None, None);
    };
    let (sender, mut updates) = mpsc::unbounded_channel::<Value>();
    let session = session.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(mut update) = updates.recv().await {
            if let Value::Object(object) = &mut update {
                object.insert(mcp::meta_key::PROGRESS_TOKEN.to_owned(), json!(token));
            }
            session.notify(method::NOTIFICATIONS_PROGRESS, Some(update));
        }
    });
    (Some(sender), Some(forwarder))
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ErrorObject> {
    serde_json::to_value(value)
        .map_err(|error| ErrorObject::internal(format!("cannot encode the result: {error}")))
}

fn human(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}

/// Subscriptions one session may hold at once.
const MAX_SUBSCRIPTIONS: usize = 64;
/// How often a watch whose service connection was lost is started again
/// before it is given up (with a log line).
const RESUBSCRIBE_ATTEMPTS: u32 = 5;
/// The wait before the first new attempt; each next one waits longer.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

impl SessionShared {
    fn subscriptions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn end_subscriptions(&self) {
        for (_, handle) in self.subscriptions().drain() {
            handle.abort();
        }
    }
}

impl Drop for SessionShared {
    /// A session that is gone leaves no watch running (the watch tasks hold
    /// only the notification channel, never the session).
    fn drop(&mut self) {
        self.end_subscriptions();
    }
}

/// `resources/subscribe` (DESIGN.md: the gateway knows services only by
/// their caps): the owning service's caps name a `resources.subscribe`
/// method, a long-running call that sends a progress once its watch is in
/// place and one per change. The gateway runs it on a task of the session,
/// without the backend timeout, turns each change into
/// `notifications/resources/updated` on the session's own channel, and
/// cancels it on `resources/unsubscribe` or when the session ends.
impl Gateway {
    /// Whether some service's resources can be subscribed to, which
    /// `initialize` advertises.
    fn serves_subscriptions(&self) -> bool {
        self.registry.snapshot().services.values().any(|service| {
            service
                .resources
                .as_ref()
                .is_some_and(|spec| spec.subscribe.is_some())
        })
    }

    async fn subscribe(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let uri = subscription_uri(method::RESOURCES_SUBSCRIBE, params)?;
        let shared = &session.shared;
        {
            let mut live = shared.subscriptions();
            live.retain(|_, handle| !handle.is_finished());
            if live.contains_key(&uri) {
                return Ok(json!({}));
            }
            if live.len() >= MAX_SUBSCRIPTIONS {
                return Err(ErrorObject::invalid_request(format!(
                    "this session already holds {MAX_SUBSCRIPTIONS} resource subscriptions, the most it may; resources/unsubscribe one first"
                )));
            }
        }
        if shared.home.is_closed() {
            return Err(ErrorObject::invalid_request(
                "resources/subscribe needs a session to send notifications/resources/updated on: send initialize first (over Streamable HTTP, send its Mcp-Session-Id with every request)",
            ));
        }
        let snapshot = self.registry.snapshot();
        let owner = snapshot.resource_owner(&uri);
        let Some((service, spec)) = owner else {
            return Err(mcp::resource_not_found_error(Era::Legacy, &echo(&uri)));
        };
        let Some(watch) = spec.subscribe.clone() else {
            return Err(ErrorObject::invalid_params(format!(
                "the {} service's resources cannot be subscribed to; read {} again to see changes",
                service.name,
                echo(&uri)
            )));
        };
        let (ready, watching) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(keep_watching(
            service.clone(),
            watch,
            uri.clone(),
            shared.home.clone(),
            ready,
            self.config.supervisor,
        ));
        let timeout = self.config.backend_timeout;
        let outcome = match tokio::time::timeout(timeout, watching).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(ErrorObject::internal("the watch ended before it started")),
            Err(_) => Err(ErrorObject::new(
                code::SERVICE_TIMEOUT,
                format!(
                    "the {} service did not start watching within {}",
                    service.name,
                    human(timeout)
                ),
            )),
        };
        if let Err(error) = outcome {
            task.abort();
            return Err(error);
        }
        let mut live = shared.subscriptions();
        // A concurrent subscribe to the same URI won: one watch is enough.
        match live.entry(uri) {
            std::collections::hash_map::Entry::Occupied(_) => task.abort(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(task.abort_handle());
            }
        }
        Ok(json!({}))
    }

    /// `resources/unsubscribe`: stops the watch; unknown URIs are fine
    /// (the subscription may have ended already).
    fn unsubscribe(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let uri = subscription_uri(method::RESOURCES_UNSUBSCRIBE, params)?;
        if let Some(handle) = session.shared.subscriptions().remove(&uri) {
            handle.abort();
        }
        Ok(json!({}))
    }
}

fn subscription_uri(name: &str, params: Option<Value>) -> Result<String, ErrorObject> {
    let params: mcp::SubscribeParams = serde_json::from_value(params.unwrap_or(Value::Null))
        .map_err(|_| ErrorObject::invalid_params(format!("{name} needs a string \"uri\"")))?;
    Ok(params.uri)
}

/// Runs one subscription's backend watch: the first progress means the
/// watch is in place (reported on `ready`), each later one is a change.
/// A lost service connection starts the watch again (a bounded number of
/// times; the subscriber then gets one update, since changes may have been
/// missed meanwhile); anything else ends it with a log line.
async fn keep_watching(
    service: Arc<Service>,
    watch: String,
    uri: String,
    home: mpsc::Sender<Message>,
    ready: tokio::sync::oneshot::Sender<Result<(), ErrorObject>>,
    supervisor: crate::config::Supervisor,
) {
    let mut ready = Some(ready);
    let mut attempts = 0;
    let updated = || {
        let params = mcp::ResourceUpdatedNotificationParams {
            uri: uri.clone(),
            meta: None,
        };
        if let Ok(params) = serde_json::to_value(params) {
            let _ = home.try_send(Message::Notification(Notification {
                method: method::NOTIFICATIONS_RESOURCES_UPDATED.to_owned(),
                params: Some(params),
            }));
        }
    };
    loop {
        let (progress, mut updates) = mpsc::unbounded_channel::<Value>();
        let call = service
            .pool
            .call_raw(&watch, Some(json!({ "uri": uri })), Some(progress));
        tokio::pin!(call);
        let mut watching = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut call => break outcome,
                Some(_) = updates.recv() => {
                    if watching {
                        updated();
                    } else {
                        watching = true;
                        attempts = 0;
                        match ready.take() {
                            Some(ready) => {
                                let _ = ready.send(Ok(()));
                            }
                            None => updated(),
                        }
                    }
                }
            }
        };
        let lost = matches!(
            outcome,
            Err(CallError::Closed | CallError::Send(_) | CallError::Connect(_))
        );
        let error = match outcome {
            Ok(_) => ErrorObject::internal(format!(
                "the {} service ended the watch without a reason",
                service.name
            )),
            Err(CallError::Server(error)) => error,
            Err(CallError::Connect(_)) => ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                format!(
                    "the {} service is not running; {}",
                    service.name,
                    supervisor.start_hint(&service.name)
                ),
            ),
            Err(CallError::TooLarge(message)) => ErrorObject::invalid_request(message),
            Err(CallError::Closed | CallError::Send(_)) => ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                format!(
                    "the {} service stopped while starting the watch; retry",
                    service.name
                ),
            ),
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(error));
            return;
        }
        if lost && attempts < RESUBSCRIBE_ATTEMPTS && !home.is_closed() {
            attempts += 1;
            tokio::time::sleep(RESUBSCRIBE_DELAY * attempts).await;
            continue;
        }
        tracing::warn!(service = %service.name, uri = %escaped(&uri), error = %escaped(&error.message), "a resource subscription ended");
        return;
    }
}

/// A backend error's message for an MCP host: a hint in the error's data
/// ([`proto::ErrorHint`]) is rendered with the tool's name instead of
/// the method's, so a host that follows it calls a tool that exists.
fn tool_error_message(error: &ErrorObject) -> String {
    let Some(hint) = proto::ErrorHint::of(error) else {
        return error.message.clone();
    };
    let Some(tool) = proto::caps::tool_name(&hint.method) else {
        return error.message.clone();
    };
    let plain = hint.plain(&error.message);
    format!("{plain}; {}", hint.render(&format!("the {tool} tool")))
}
