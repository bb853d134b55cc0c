//! Third-party MCP servers as upstreams: each runs as a child process
//! speaking MCP over stdio (newline-delimited JSON-RPC). The gateway is its
//! client: it initialises it (2025-11-25), lists its tools, publishes them
//! in the registry under the configured prefix, follows its
//! `notifications/tools/list_changed`, and restarts it with a growing delay
//! when it dies. Its stderr goes to the gateway's log.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{ConnectOptions, Connection};
use proto::mcp::{ListToolsResult, Tool, method};
use proto::{DelimitedCodec, Notification};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::config::Upstream;
use crate::registry::{Registry, UpstreamLink};

/// How long an upstream gets to answer `initialize` and `tools/list`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// An upstream that ran this long before dying is restarted at once.
const STABLE_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Keeps one upstream running for the life of the gateway.
pub async fn supervise(upstream: Upstream, registry: Arc<Registry>, max_message: usize) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match run_once(&upstream, &registry, max_message).await {
            Ok(()) => tracing::warn!(upstream = %upstream.name, "upstream server exited"),
            Err(error) => {
                tracing::warn!(upstream = %upstream.name, "upstream server failed: {error:#}")
            }
        }
        registry.remove_upstream(&upstream.name);
        backoff = if started.elapsed() >= STABLE_AFTER {
            Duration::from_secs(1)
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
        tracing::info!(upstream = %upstream.name, "restarting in {} s", backoff.as_secs());
        tokio::time::sleep(backoff).await;
    }
}

async fn run_once(
    upstream: &Upstream,
    registry: &Arc<Registry>,
    max_message: usize,
) -> anyhow::Result<()> {
    let mut command = Command::new(&upstream.program);
    command
        .args(&upstream.args)
        .env_clear()
        .envs(
            ["PATH", "HOME", "LANG"]
                .into_iter()
                .filter_map(|name| Some((name, std::env::var_os(name)?))),
        )
        .envs(upstream.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| anyhow::anyhow!("cannot start {:?}: {error}", upstream.program))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        anyhow::bail!("the child's pipes are missing");
    };
    let name = upstream.name.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(upstream = %name, "{line}");
        }
    });
    let (notifications_tx, mut notifications) = mpsc::unbounded_channel::<Notification>();
    let options = ConnectOptions {
        max_message: Some(max_message),
        notifications: Some(notifications_tx),
    };
    let connection =
        Connection::from_io(stdout, stdin, DelimitedCodec::newline(max_message), options);
    let initialize = json!({
        "protocolVersion": proto::mcp::PROTOCOL_2025_11_25,
        "capabilities": {},
        "clientInfo": { "name": "llmbasedos-gateway", "version": env!("CARGO_PKG_VERSION") },
    });
    let handshake = async {
        let answer = connection
            .call(method::INITIALIZE, Some(initialize), None)
            .await?;
        connection
            .notify(method::NOTIFICATIONS_INITIALIZED, None)
            .await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer to initialize within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )
        })??;
    let server = answer
        .pointer("/serverInfo/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let link = Arc::new(UpstreamLink {
        name: upstream.name.clone(),
        connection: connection.clone(),
    });
    let tools = list_tools(&connection).await?;
    tracing::info!(upstream = %upstream.name, server = %server, tools = tools.len(), prefix = %upstream.prefix, "upstream connected");
    registry.set_upstream(link.clone(), &upstream.prefix, tools);
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                anyhow::bail!("it exited ({status})");
            }
            notification = notifications.recv() => {
                let Some(notification) = notification else {
                    anyhow::bail!("it closed its output");
                };
                if notification.method == method::NOTIFICATIONS_TOOLS_LIST_CHANGED {
                    let tools = list_tools(&connection).await?;
                    tracing::info!(upstream = %upstream.name, tools = tools.len(), "upstream tools changed");
                    registry.set_upstream(link.clone(), &upstream.prefix, tools);
                }
            }
        }
    }
}

/// Every page of `tools/list`.
async fn list_tools(connection: &Connection) -> anyhow::Result<Vec<Tool>> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let params = cursor.as_ref().map(|cursor| json!({ "cursor": cursor }));
        let page = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            connection.call(method::TOOLS_LIST, params, None),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer to tools/list within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )
        })??;
        let page: ListToolsResult = serde_json::from_value(page)
            .map_err(|error| anyhow::anyhow!("malformed tools/list result: {error}"))?;
        tools.extend(page.tools);
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(tools),
        }
    }
    anyhow::bail!("tools/list did not end after 1000 pages")
}
