//! `gateway::run(config, listeners, shutdown)`: the gateway serving
//! listeners it is given until `shutdown` is cancelled. Where the
//! listeners come from (systemd or bound here), signals, sd-notify and the
//! drain deadline are the binary's lifecycle (`server_kit::Lifecycle`);
//! this is the seam between the two, and what a test drives in process.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dispatch::Gateway;
use crate::front::Budget;
use crate::llm::LlmProxy;
use crate::registry::Registry;
use crate::transport;

/// What the gateway serves on, already listening.
#[derive(Debug)]
pub struct Listeners {
    /// Streamable HTTP (`/mcp`) and WebSocket (`/ws`).
    pub http: Option<TcpListener>,
    /// NUL-delimited JSON-RPC for local clients.
    pub unix: Option<UnixListener>,
    /// How many connections each may hold ([`Budget::plan`]).
    pub budget: Budget,
}

impl Listeners {
    /// Where clients reach the gateway, for the log and `systemctl status`.
    pub fn endpoints(&self) -> Vec<String> {
        let mut endpoints = Vec::new();
        if let Some(address) = self.http.as_ref().and_then(|http| http.local_addr().ok()) {
            endpoints.push(format!("http://{address}/mcp and ws://{address}/ws"));
        }
        if let Some(unix) = &self.unix {
            endpoints.push(
                match unix
                    .local_addr()
                    .ok()
                    .as_ref()
                    .and_then(|address| address.as_pathname())
                {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "the UNIX socket passed by systemd".to_owned(),
                },
            );
        }
        endpoints
    }
}

/// Serves `listeners` until `shutdown` is cancelled, then stops accepting,
/// lets open HTTP connections finish their requests, and returns (the
/// caller bounds how long that may take). Watches the caps directory,
/// closes idle backend connections and keeps the upstreams connected
/// meanwhile.
pub async fn run(
    config: Arc<Config>,
    llm: Option<LlmProxy>,
    licensing: Option<Arc<crate::licensing::Licensing>>,
    listeners: Listeners,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry::new(
        &config.caps_dir,
        config.backend_connections,
        config.max_message,
    ));
    // The licence is read again on SIGHUP and when lic.key changes.
    if let Some(licensing) = &licensing {
        tokio::spawn(licensing.clone().watch());
    }
    let gateway = Gateway::licensed(config.clone(), registry.clone(), llm, licensing);
    tokio::spawn(registry.clone().watch());
    tokio::spawn(close_idle_backends(
        registry.clone(),
        config.backend_idle_close,
    ));
    for upstream in &config.upstreams {
        tokio::spawn(crate::upstream::supervise(
            upstream.clone(),
            registry.clone(),
            config.max_message,
            shutdown.clone(),
        ));
    }
    let endpoints = listeners.endpoints();
    let mut transports = Vec::new();
    if let Some(listener) = listeners.http {
        transports.push(tokio::spawn(transport::http::serve(
            gateway.clone(),
            listener,
            shutdown.clone(),
            listeners.budget.http_connections,
        )));
    }
    if let Some(listener) = listeners.unix {
        transports.push(tokio::spawn(transport::unix::serve(
            gateway.clone(),
            listener,
            shutdown.clone(),
            listeners.budget.unix_connections,
        )));
    }
    let snapshot = registry.snapshot();
    tracing::info!(
        endpoints = ?endpoints, caps_dir = %config.caps_dir.display(),
        services = ?snapshot.services.keys().collect::<Vec<_>>(), "gateway serving"
    );
    shutdown.cancelled().await;
    for transport in transports {
        let _ = transport.await;
    }
}

/// Closes backend connections nobody used for a while, so that
/// socket-activated servers can exit when idle.
async fn close_idle_backends(registry: Arc<Registry>, idle: Duration) {
    let mut ticker = tokio::time::interval((idle / 4).max(Duration::from_secs(1)));
    loop {
        ticker.tick().await;
        for pool in registry.pools() {
            pool.close_idle(idle).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The seam in process: the gateway answers on a listener it is given
    /// and `run` returns once `shutdown` is cancelled.
    #[tokio::test(flavor = "current_thread")]
    async fn run_serves_the_listeners_it_is_given_until_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("gateway.sock");
        let raw = crate::config::RawConfig {
            listen: Some("off".to_owned()),
            unix_socket: Some(socket.clone()),
            caps_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        let config = Arc::new(raw.resolve("test").expect("valid configuration"));
        let listeners = Listeners {
            http: None,
            unix: Some(UnixListener::bind(&socket).expect("bind")),
            budget: Budget {
                limit: 1024,
                reserve: 0,
                http_connections: 1,
                unix_connections: 4,
            },
        };
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(run(config, None, None, listeners, shutdown.clone()));

        let mut stream = tokio::net::UnixStream::connect(&socket)
            .await
            .expect("connect");
        stream
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mcp.hello\"}\0")
            .await
            .expect("send");
        let mut answer = Vec::new();
        let mut byte = [0_u8; 1];
        while tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut byte))
            .await
            .expect("an answer within 10 s")
            .is_ok()
            && byte[0] != 0
        {
            answer.push(byte[0]);
        }
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(answer["id"], 1, "{answer}");
        assert!(answer.get("result").is_some(), "{answer}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("run returns once shutdown is cancelled")
            .expect("run does not panic");
    }
}
