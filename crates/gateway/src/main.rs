//! `llmbasedos-gateway`: the one MCP endpoint in front of the llmbasedos
//! servers.
//!
//! - `llmbasedos-gateway [--config FILE]` serves Streamable HTTP (`/mcp`),
//!   WebSocket (`/ws`) and a UNIX socket, with listeners from systemd socket
//!   activation or bound itself.
//! - `llmbasedos-gateway stdio` is the bridge desktop hosts launch.
//! - `llmbasedos-gateway --check-config FILE` validates a configuration.
//! - `llmbasedos-gateway hash-token` prints the SHA-256 of a token for the
//!   configuration.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use server_kit::listener::ActivatedSocket;
use server_kit::notify;
use tokio_util::sync::CancellationToken;

use gateway::config::{self, Config, RawConfig};
use gateway::dispatch::Gateway;
use gateway::registry::Registry;
use gateway::transport;

const DEFAULT_CONFIG: &str = "/etc/llmbasedos/gateway.yaml";

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-gateway",
    version,
    about = "The llmbasedos MCP gateway"
)]
struct Cli {
    /// Configuration file [default: /etc/llmbasedos/gateway.yaml, if present].
    #[arg(long, env = "LLMBASEDOS_GATEWAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Check a configuration file and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// HTTP and WebSocket address (overrides `listen`); `off` disables it.
    #[arg(long)]
    listen: Option<String>,
    /// The UNIX socket (overrides `unix_socket`).
    #[arg(long, global = true)]
    unix_socket: Option<PathBuf>,
    /// The directory of caps files and service sockets (overrides `caps_dir`).
    #[arg(long)]
    caps_dir: Option<PathBuf>,
    /// Accept HTTP and WebSocket clients without a token. Local development
    /// only: refused unless the listener is on loopback.
    #[arg(long)]
    no_auth: bool,
    /// Threads serving clients [default: one per CPU]. 1 runs everything
    /// on one thread: a little less per call when CPUs are scarce (pinned
    /// to one CPU: 26.5 against 27 µs over a direct call), but slower
    /// when the clients and servers run on other CPUs (fs reads: p50 162
    /// against 133 µs).
    #[arg(long, env = "LLMBASEDOS_GATEWAY_THREADS", value_name = "N")]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bridge stdin/stdout (newline-delimited JSON-RPC) to the gateway's UNIX socket.
    Stdio,
    /// Print the SHA-256 of a token (from the argument, or stdin) for `auth.tokens`.
    HashToken { token: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // One write, so that the line stays whole when other processes
            // (`llmbasedos up`'s children) share this stderr.
            let line = format!("llmbasedos-gateway: {error:#}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            ExitCode::from(server_kit::service::EXIT_CONFIG)
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let (raw, file) = match &cli.config {
        Some(path) => (RawConfig::load(path)?, path.display().to_string()),
        None if Path::new(DEFAULT_CONFIG).exists() => (
            RawConfig::load(Path::new(DEFAULT_CONFIG))?,
            DEFAULT_CONFIG.to_owned(),
        ),
        None => (RawConfig::default(), "(built-in defaults)".to_owned()),
    };
    let mut raw = raw;
    if let Some(listen) = &cli.listen {
        raw.listen = Some(listen.clone());
    }
    if let Some(socket) = &cli.unix_socket {
        raw.unix_socket = Some(socket.clone());
    }
    if let Some(dir) = &cli.caps_dir {
        raw.caps_dir = Some(dir.clone());
    }
    let mut config = raw.resolve(&file)?;
    if cli.no_auth {
        config.allow_no_auth().map_err(anyhow::Error::msg)?;
    }
    Ok(config)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(path) = &cli.check_config {
        RawConfig::load(path)?.resolve(&path.display().to_string())?;
        println!("{}: valid", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    match &cli.command {
        Some(Command::HashToken { token }) => {
            let token = match token {
                Some(token) => token.clone(),
                None => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text.trim().to_owned()
                }
            };
            println!("{}", hex::encode(config::hash_token(&token)));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Stdio) => {
            // Logs go to stderr; stdout carries only JSON-RPC.
            server_kit::logging::init("llmbasedos-gateway-stdio");
            let config = load_config(&cli)?;
            let socket = config
                .unix_socket
                .clone()
                .context("no UNIX socket configured for the bridge to reach")?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(transport::stdio::bridge(&socket, config.max_message))?;
            Ok(ExitCode::SUCCESS)
        }
        None => serve(&cli),
    }
}

fn serve(cli: &Cli) -> anyhow::Result<ExitCode> {
    server_kit::logging::init("llmbasedos-gateway");
    let config = load_config(cli)?;
    let llm = match &config.llm {
        Some(llm) => Some(gateway::llm::LlmProxy::new(llm)?),
        None => None,
    };
    if config.no_auth {
        tracing::warn!(
            "--no-auth: HTTP and WebSocket clients are accepted without a token (loopback only)"
        );
    }
    let runtime = if cli.worker_threads == Some(1) {
        // What server_kit::runtime does for the multi-threaded one.
        server_kit::memory::return_large_blocks_when_freed();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        server_kit::runtime("llmbasedos-gateway", cli.worker_threads)?
    };
    let _entered = runtime.enter();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

    let mut tcp = None;
    let mut unix = None;
    let mut bound_socket = None;
    for socket in server_kit::listener::activated_sockets()? {
        match socket {
            ActivatedSocket::Tcp(listener) => tcp = Some(listener),
            ActivatedSocket::Unix(listener) => unix = Some(listener),
        }
    }
    let activated = tcp.is_some() || unix.is_some();
    if !activated {
        if let Some(address) = config.listen {
            let listener = std::net::TcpListener::bind(address)
                .with_context(|| format!("cannot listen on {address}"))?;
            listener.set_nonblocking(true)?;
            tcp = Some(listener);
        }
        if let Some(path) = &config.unix_socket {
            unix = Some(server_kit::listener::bind(path)?);
            bound_socket = Some(path.clone());
        }
    }
    let descriptors = gateway::front::raise_descriptor_limit().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the descriptor limit; assuming 1024");
        1024
    });
    let budget = gateway::front::Budget::plan(&config, descriptors).map_err(anyhow::Error::msg)?;
    tracing::debug!(?budget, "descriptor budget");
    let config = Arc::new(config);
    let registry = Arc::new(Registry::new(
        &config.caps_dir,
        config.backend_connections,
        config.max_message,
    ));
    let gateway = Gateway::new(config.clone(), registry.clone(), llm);
    let shutdown = CancellationToken::new();
    let result: anyhow::Result<()> = runtime.block_on(async {
        tokio::spawn(registry.clone().watch());
        tokio::spawn(close_idle_backends(
            registry.clone(),
            config.backend_idle_close,
        ));
        for upstream in &config.upstreams {
            tokio::spawn(gateway::upstream::supervise(
                upstream.clone(),
                registry.clone(),
                config.max_message,
            ));
        }
        let mut tasks = Vec::new();
        let mut endpoints = Vec::new();
        if let Some(listener) = tcp {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            endpoints.push(format!(
                "http://{}/mcp and ws://{0}/ws",
                listener.local_addr()?
            ));
            tasks.push(tokio::spawn(transport::http::serve(
                gateway.clone(),
                listener,
                shutdown.clone(),
                budget.http_connections,
            )));
        }
        if let Some(listener) = unix {
            let listener = tokio::net::UnixListener::from_std(listener)?;
            endpoints.push(match &bound_socket {
                Some(path) => format!("unix:{}", path.display()),
                None => "the UNIX socket passed by systemd".to_owned(),
            });
            tasks.push(tokio::spawn(transport::unix::serve(
                gateway.clone(),
                listener,
                shutdown.clone(),
                budget.unix_connections,
            )));
        }
        let snapshot = registry.snapshot();
        tracing::info!(
            endpoints = ?endpoints, caps_dir = %config.caps_dir.display(),
            services = ?snapshot.services.keys().collect::<Vec<_>>(), "gateway serving"
        );
        notify::ready(&format!("serving {}", endpoints.join(", ")));
        if let Some(interval) = notify::watchdog_interval() {
            tokio::spawn(notify::watchdog(interval));
        }
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        notify::stopping("stopping");
        shutdown.cancel();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        Ok(())
    });
    if let Some(path) = bound_socket {
        let _ = std::fs::remove_file(path);
    }
    drop(_entered);
    runtime.shutdown_timeout(Duration::from_millis(500));
    result?;
    Ok(ExitCode::SUCCESS)
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
