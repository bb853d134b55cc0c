//! The shell's link to the gateway: one pipelined connection to its UNIX
//! socket (or its WebSocket endpoint, with a bearer token), opened on first
//! use and opened again after the gateway restarted, and what the gateway offers (methods with their params
//! schemas, tools), fetched once per connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use client::{CallError, ConnectOptions, Connection, ProgressSender};
use proto::ErrorObject;
use proto::caps::MethodSpec;
use proto::mcp::{ListToolsResult, Tool};
use serde_json::{Value, json};

/// Why a call to the gateway gave no result.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The gateway is not there: the message says what to start.
    Unavailable(String),
    /// The gateway is there but refused us (no token, a wrong one), or the
    /// socket is not the gateway's: the message says what to check.
    Refused(String),
    /// The gateway (or a service behind it) answered with an error.
    Server(ErrorObject),
    /// The connection broke after the request was sent.
    Lost(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unavailable(message) | Failure::Refused(message) | Failure::Lost(message) => {
                f.write_str(message)
            }
            Failure::Server(error) => f.write_str(&error.message),
        }
    }
}

/// What the gateway offers, as the shell completes and resolves names.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) methods: Vec<MethodSpec>,
    pub(crate) tools: Vec<Tool>,
}

impl Catalog {
    pub(crate) fn method(&self, name: &str) -> Option<&MethodSpec> {
        self.methods.iter().find(|method| method.name == name)
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|tool| tool.name == name)
    }

    /// The method behind a tool, when the tool is a backend method's.
    pub(crate) fn method_of_tool(&self, tool: &str) -> Option<&MethodSpec> {
        self.methods
            .iter()
            .find(|method| proto::caps::tool_name(&method.name).as_deref() == Some(tool))
    }

    /// The names of the params a method or tool takes.
    pub(crate) fn param_names(&self, name: &str) -> Vec<String> {
        let schema = match self.method(name) {
            Some(method) => method.params_schema.get("properties"),
            None => self
                .tool(name)
                .and_then(|tool| tool.input_schema.get("properties")),
        };
        schema
            .and_then(Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct State {
    connection: Option<Connection>,
    catalog: Option<Arc<Catalog>>,
}

/// Where the gateway is.
#[derive(Clone)]
pub(crate) enum Endpoint {
    /// Its UNIX socket (NUL-delimited JSON-RPC; the peer is known by uid),
    /// and the one to use instead while that one is absent.
    Unix {
        socket: PathBuf,
        fallback: Option<PathBuf>,
    },
    /// Its WebSocket endpoint, `ws://host:port/ws`, with a bearer token.
    WebSocket { url: String, token: Option<String> },
}

impl std::fmt::Debug for Endpoint {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix { socket, fallback } => f
                .debug_struct("Unix")
                .field("socket", socket)
                .field("fallback", fallback)
                .finish(),
            Endpoint::WebSocket { url, token } => f
                .debug_struct("WebSocket")
                .field("url", url)
                .field("token", &token.as_ref().map(|_| "<hidden>"))
                .finish(),
        }
    }
}

/// The gateway at one endpoint.
#[derive(Debug)]
pub(crate) struct Gateway {
    endpoint: Endpoint,
    state: Mutex<State>,
}

impl Gateway {
    pub(crate) fn new(endpoint: Endpoint) -> Gateway {
        Gateway {
            endpoint,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open connection, or a new one when there is none or the gateway
    /// closed it (it restarted, or went idle under socket activation).
    async fn connection(&self) -> Result<Connection, Failure> {
        if let Some(connection) = &self.state().connection
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        let connection = match &self.endpoint {
            Endpoint::Unix { socket, fallback } => {
                // Chosen at each connection: `llmbasedos up` may be
                // started (or stopped) while the shell runs.
                let socket = match fallback {
                    Some(fallback) if absent(socket) && !absent(fallback) => fallback,
                    _ => socket,
                };
                // Nothing is sent before the socket is known to be served
                // by this user or root (`client::cli`'s checks).
                match client::cli::connect_gateway(socket).await {
                    Ok(stream) => Connection::from_stream(stream, ConnectOptions::default()),
                    Err(client::cli::GatewayError::Connect { error, .. }) => {
                        return Err(Failure::Unavailable(self.cannot_connect(&error)));
                    }
                    Err(untrusted) => return Err(Failure::Refused(untrusted.to_string())),
                }
            }
            Endpoint::WebSocket { url, token } => {
                client::connect_websocket(url, token.as_deref(), ConnectOptions::default())
                    .await
                    .map_err(|error| match error {
                        client::WebSocketError::Connect { source, .. } => {
                            Failure::Unavailable(self.cannot_connect(&source))
                        }
                        refused @ (client::WebSocketError::NoToken { .. }
                        | client::WebSocketError::BadToken { .. }) => {
                            Failure::Refused(refused.to_string())
                        }
                        other => Failure::Unavailable(other.to_string()),
                    })?
            }
        };
        let mut state = self.state();
        state.connection = Some(connection.clone());
        state.catalog = None;
        Ok(connection)
    }

    fn cannot_connect(&self, error: &std::io::Error) -> String {
        let reason = match error.kind() {
            std::io::ErrorKind::NotFound => "no such socket".to_owned(),
            std::io::ErrorKind::ConnectionRefused => "nothing is listening".to_owned(),
            _ => error.to_string(),
        };
        let at = match &self.endpoint {
            Endpoint::Unix {
                socket,
                fallback: Some(fallback),
            } if absent(socket) && absent(fallback) => {
                format!("{} nor at {}", socket.display(), fallback.display())
            }
            Endpoint::Unix { socket, fallback } => match fallback {
                Some(fallback) if absent(socket) => fallback.display().to_string(),
                _ => socket.display().to_string(),
            },
            Endpoint::WebSocket { url, .. } => url.clone(),
        };
        format!(
            "cannot connect to the gateway at {at} ({reason}); start it with `llmbasedos up` or `systemctl start llmbasedos-gateway.socket`"
        )
    }

    /// Calls `method`. A request that could not be written (the gateway
    /// restarted since the last call) is sent once more on a new
    /// connection; one that was sent is never repeated, since it may have
    /// had its effect. Dropping the future cancels the call at the gateway.
    pub(crate) async fn call(&self, method: &str, params: Option<Value>) -> Result<Value, Failure> {
        self.call_with_progress(method, params, None).await
    }

    /// [`Gateway::call`], with the call's progress notifications (their
    /// params) sent to `progress`.
    pub(crate) async fn call_with_progress(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Value, Failure> {
        let connection = self.connection().await?;
        let outcome = match connection
            .call(method, params.clone(), progress.clone())
            .await
        {
            Err(CallError::Send(_)) => {
                self.connection()
                    .await?
                    .call(method, params, progress)
                    .await
            }
            outcome => outcome,
        };
        outcome.map_err(|error| match error {
            CallError::Server(error) => Failure::Server(error),
            CallError::Connect(error) => Failure::Unavailable(self.cannot_connect(&error)),
            CallError::TooLarge(message) => Failure::Server(ErrorObject::invalid_request(message)),
            CallError::Closed | CallError::Send(_) => Failure::Lost(
                "the gateway closed the connection during the call (did it restart?); the command may or may not have taken effect"
                    .to_owned(),
            ),
        })
    }

    /// What the gateway offers, fetched once per connection.
    pub(crate) async fn catalog(&self) -> Result<Arc<Catalog>, Failure> {
        let connection = self.connection().await?;
        if let Some(catalog) = &self.state().catalog {
            return Ok(catalog.clone());
        }
        let capabilities = self.call("mcp.listCapabilities", None).await?;
        let mut catalog = Catalog::default();
        for service in capabilities
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(methods) = service.get("methods")
                && let Ok(methods) = serde_json::from_value::<Vec<MethodSpec>>(methods.clone())
            {
                catalog.methods.extend(methods);
            }
        }
        catalog.tools = self.list_tools().await?;
        let catalog = Arc::new(catalog);
        let mut state = self.state();
        // Keep it only if it describes the connection that is still open.
        if state
            .connection
            .as_ref()
            .is_some_and(|current| !current.is_closed() && !connection.is_closed())
        {
            state.catalog = Some(catalog.clone());
        }
        Ok(catalog)
    }

    /// Forgets the catalog, so that the next use fetches it again (a name
    /// it lacks may belong to a service that started since).
    pub(crate) fn forget_catalog(&self) {
        self.state().catalog = None;
    }

    /// Every tool, following `tools/list` pages.
    pub(crate) async fn list_tools(&self) -> Result<Vec<Tool>, Failure> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = cursor.as_ref().map(|cursor| json!({ "cursor": cursor }));
            let page = self.call(proto::mcp::method::TOOLS_LIST, params).await?;
            let page: ListToolsResult = serde_json::from_value(page).map_err(|error| {
                Failure::Server(ErrorObject::internal(format!(
                    "the gateway's tool list is unreadable: {error}"
                )))
            })?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(tools),
            }
        }
    }
}

/// Whether nothing is at `path`. A path that cannot be looked at (a
/// directory the user may not enter) is not absent: connecting says why.
fn absent(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_socket_is_used_while_the_first_is_absent() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let first = dir.path().join("up/gateway.sock");
        let system = dir.path().join("system.sock");
        let gateway = || {
            Gateway::new(Endpoint::Unix {
                socket: first.clone(),
                fallback: Some(system.clone()),
            })
        };
        runtime.block_on(async {
            let listener = tokio::net::UnixListener::bind(&system).expect("bind");
            gateway()
                .connection()
                .await
                .expect("connects to the fallback");
            listener.accept().await.expect("the fallback was reached");

            // Once `up`'s socket is there, a new connection goes to it.
            std::fs::create_dir_all(first.parent().expect("dir")).expect("mkdir");
            let up = tokio::net::UnixListener::bind(&first).expect("bind");
            gateway()
                .connection()
                .await
                .expect("connects to up's socket");
            up.accept().await.expect("up's socket was reached");
        });
    }
}
