//! The console's link to the gateway: one pipelined connection to its UNIX
//! socket, opened on first use and again after the gateway restarted (or
//! went idle). The console is an ordinary client there: the gateway knows
//! it by its uid and gives it that uid's tier, nothing more; or, when it
//! shares its uid with other clients (under `llmbasedos up`), by the
//! identity it names in every call's `_meta` (`gateway_identity`), which
//! the gateway takes only from a delegate and never beyond that uid's own
//! rights.

use std::path::PathBuf;
use std::sync::Mutex;

use client::{CallError, ConnectOptions, Connection, ProgressSender};
use proto::mcp::meta_key::ON_BEHALF_OF;
use proto::mcp::{ListToolsResult, Tool};
use serde_json::{Value, json};

/// Why a call gave no result; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
    #[error("{}", .0.message)]
    Server(proto::ErrorObject),
    #[error(
        "the gateway closed the connection during the call (did it restart?); it may or may not have taken effect"
    )]
    Lost,
}

/// The gateway at one socket.
#[derive(Debug)]
pub struct Gateway {
    socket: PathBuf,
    /// Sent as `_meta["llmbasedos/on_behalf_of"]` with every call.
    identity: Option<String>,
    connection: Mutex<Option<Connection>>,
    /// The tool names of the last successful list (the pages' navigation
    /// shows a service's page only when its tools are there).
    known_tools: Mutex<Vec<String>>,
}

impl Gateway {
    pub fn new(socket: PathBuf, identity: Option<String>) -> Gateway {
        Gateway {
            socket,
            identity,
            connection: Mutex::new(None),
            known_tools: Mutex::new(Vec::new()),
        }
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn connection(&self) -> Result<Connection, GatewayError> {
        if let Some(connection) = &*self.slot()
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        let stream = match client::cli::connect_gateway(&self.socket).await {
            Ok(stream) => stream,
            Err(client::cli::GatewayError::Connect { error, .. }) => {
                let reason = match error.kind() {
                    std::io::ErrorKind::NotFound => "no such socket".to_owned(),
                    std::io::ErrorKind::ConnectionRefused => "nothing is listening".to_owned(),
                    _ => error.to_string(),
                };
                return Err(GatewayError::Unavailable(format!(
                    "cannot reach the gateway at {} ({reason}); start it with `llmbasedos up` or `systemctl start llmbasedos-gateway.socket`",
                    self.socket.display()
                )));
            }
            Err(untrusted) => return Err(GatewayError::Refused(untrusted.to_string())),
        };
        let connection = Connection::from_stream(stream, ConnectOptions::default());
        *self.slot() = Some(connection.clone());
        Ok(connection)
    }

    /// Calls `method`; a request that could not be written is sent once
    /// more on a new connection, one that was sent is never repeated.
    /// Dropping the future cancels the call at the gateway.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Value, GatewayError> {
        let params = self.with_identity(params);
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
            CallError::Server(error) => GatewayError::Server(error),
            CallError::Connect(error) => GatewayError::Unavailable(error.to_string()),
            CallError::TooLarge(message) => {
                GatewayError::Server(proto::ErrorObject::invalid_request(message))
            }
            CallError::Closed | CallError::Send(_) => GatewayError::Lost,
        })
    }

    /// `params` naming the console's identity in `_meta`, if it has one
    /// (params that are not an object are left as they are: the
    /// console sends none such).
    fn with_identity(&self, params: Option<Value>) -> Option<Value> {
        let Some(identity) = &self.identity else {
            return params;
        };
        let mut params = params.unwrap_or_else(|| json!({}));
        if let Value::Object(object) = &mut params {
            let meta = object.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(meta) = meta {
                meta.insert(ON_BEHALF_OF.to_owned(), Value::String(identity.clone()));
            }
        }
        Some(params)
    }

    /// Every tool, following `tools/list` pages (bounded).
    pub async fn tools(&self) -> Result<Vec<Tool>, GatewayError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let params = cursor.as_ref().map(|cursor| json!({ "cursor": cursor }));
            let page = self
                .call(proto::mcp::method::TOOLS_LIST, params, None)
                .await?;
            let page: ListToolsResult = serde_json::from_value(page).map_err(|error| {
                GatewayError::Server(proto::ErrorObject::internal(format!(
                    "the gateway's tool list is unreadable: {error}"
                )))
            })?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => break,
            }
        }
        *self
            .known_tools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            tools.iter().map(|tool| tool.name.clone()).collect();
        Ok(tools)
    }

    /// Whether the last tool list had `name`.
    pub fn knows_tool(&self, name: &str) -> bool {
        self.known_tools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|known| known == name)
    }

    /// Calls one tool.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Value,
        progress: Option<ProgressSender>,
    ) -> Result<Value, GatewayError> {
        self.call(
            proto::mcp::method::TOOLS_CALL,
            Some(json!({ "name": name, "arguments": arguments })),
            progress,
        )
        .await
    }
}
