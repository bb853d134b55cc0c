//! Third-party MCP servers as upstreams: a child process speaking MCP over
//! stdio (newline-delimited JSON-RPC), or a Streamable HTTP endpoint. The
//! gateway is their client: it initialises them (2025-11-25), lists their
//! tools, publishes them in the registry under the configured prefix, keeps
//! the list current (`notifications/tools/list_changed` on stdio, a periodic
//! look on HTTP), and starts over with a growing delay when one dies or
//! forgets its session. A child's stderr goes to the gateway's log.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use client::{ConnectOptions, Connection, HttpConnection};
use proto::mcp::{ListToolsResult, Tool, method};
use proto::{DelimitedCodec, Notification};
use serde_json::{Value, json};
use server_kit::{Backoff, Next, Supervisor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Upstream, UpstreamTransport};
use crate::registry::{Registry, UpstreamClient, UpstreamLink};

/// How long an upstream gets to answer `initialize` and `tools/list`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the tools of an HTTP upstream are listed again.
const HTTP_REFRESH: Duration = Duration::from_secs(60);

/// When an upstream that stopped is started again: 2, 4, 8… s after quick
/// failures, up to a minute; 1 s after one that ran for 30 s.
const RESTART: Backoff = Backoff::new(
    Duration::from_secs(1),
    Duration::from_secs(60),
    Duration::from_secs(30),
);

/// Keeps one upstream connected until `shutdown`.
pub async fn supervise(
    upstream: Upstream,
    registry: Arc<Registry>,
    max_message: usize,
    shutdown: CancellationToken,
) {
    let supervisor = Supervisor::new(format!("upstream {}", upstream.name), RESTART, shutdown);
    supervisor
        .run(|| {
            let upstream = upstream.clone();
            let registry = registry.clone();
            async move {
                // Its own task: a bug that panics restarts the upstream
                // instead of ending its supervision.
                let attempt = {
                    let upstream = upstream.clone();
                    let registry = registry.clone();
                    tokio::spawn(async move { connect_and_follow(&upstream, &registry, max_message).await })
                };
                match attempt.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(upstream = %upstream.name, "upstream server failed: {error:#}")
                    }
                    Err(panic) => {
                        tracing::error!(upstream = %upstream.name, "upstream connection crashed: {panic}")
                    }
                }
                registry.remove_upstream(&upstream.name);
                Next::Restart
            }
        })
        .await;
}

/// One connection to the upstream, for as long as it lasts.
async fn connect_and_follow(
    upstream: &Upstream,
    registry: &Arc<Registry>,
    max_message: usize,
) -> anyhow::Result<()> {
    match &upstream.transport {
        UpstreamTransport::Stdio { program, args, env } => {
            run_stdio(upstream, program, args, env, registry, max_message).await
        }
        UpstreamTransport::Http {
            url,
            bearer_token_credential,
        } => {
            run_http(
                upstream,
                url,
                bearer_token_credential.as_deref(),
                registry,
                max_message,
            )
            .await
        }
    }
}

async fn run_stdio(
    upstream: &Upstream,
    program: &str,
    args: &[String],
    env: &[(String, String)],
    registry: &Arc<Registry>,
    max_message: usize,
) -> anyhow::Result<()> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(
            ["PATH", "HOME", "LANG"]
                .into_iter()
                .filter_map(|name| Some((name, std::env::var_os(name)?))),
        )
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| anyhow::anyhow!("cannot start {program:?}: {error}"))?;
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
    let link = connect(upstream, UpstreamClient::Stdio(connection), registry).await?;
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
                    let tools = list_tools(&link.client).await?;
                    tracing::info!(upstream = %upstream.name, tools = tools.len(), "upstream tools changed");
                    registry.set_upstream(link.clone(), &upstream.prefix, tools);
                }
            }
        }
    }
}

async fn run_http(
    upstream: &Upstream,
    url: &str,
    bearer_token_credential: Option<&str>,
    registry: &Arc<Registry>,
    max_message: usize,
) -> anyhow::Result<()> {
    let bearer = match bearer_token_credential {
        Some(name) => Some(read_credential(name)?),
        None => None,
    };
    let connection = HttpConnection::new(url, bearer, max_message)?;
    let link = connect(upstream, UpstreamClient::Http(connection), registry).await?;
    let mut known = list_tools(&link.client).await?;
    loop {
        tokio::time::sleep(HTTP_REFRESH).await;
        let tools = list_tools(&link.client).await?;
        if tools != known {
            tracing::info!(upstream = %upstream.name, tools = tools.len(), "upstream tools changed");
            registry.set_upstream(link.clone(), &upstream.prefix, tools.clone());
            known = tools;
        }
    }
}

/// A bearer token from the service's systemd credentials.
fn read_credential(name: &str) -> anyhow::Result<String> {
    let Some(directory) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        anyhow::bail!(
            "bearer_token_credential {name:?} needs systemd credentials: add LoadCredential={name}:/path/to/token to the gateway's unit"
        );
    };
    let path = std::path::Path::new(&directory).join(name);
    let token = std::fs::read_to_string(&path)
        .map_err(|error| anyhow::anyhow!("cannot read credential {name:?}: {error}"))?;
    Ok(token.trim().to_owned())
}

/// Initialises the server and publishes its tools.
async fn connect(
    upstream: &Upstream,
    client: UpstreamClient,
    registry: &Arc<Registry>,
) -> anyhow::Result<Arc<UpstreamLink>> {
    let initialize = json!({
        "protocolVersion": proto::mcp::PROTOCOL_2025_11_25,
        "capabilities": {},
        "clientInfo": { "name": "llmbasedos-gateway", "version": env!("CARGO_PKG_VERSION") },
    });
    let handshake = async {
        let answer = client
            .call(method::INITIALIZE, Some(initialize), None)
            .await?;
        client
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
        client,
    });
    let tools = list_tools(&link.client).await?;
    tracing::info!(upstream = %upstream.name, server = %proto::text::escaped(&server), tools = tools.len(), prefix = %upstream.prefix, "upstream connected");
    registry.set_upstream(link.clone(), &upstream.prefix, tools);
    Ok(link)
}

/// Every page of `tools/list`.
async fn list_tools(client: &UpstreamClient) -> anyhow::Result<Vec<Tool>> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let params = cursor.as_ref().map(|cursor| json!({ "cursor": cursor }));
        let page = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            client.call(method::TOOLS_LIST, params, None),
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
