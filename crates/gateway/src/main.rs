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
//!
//! This file only parses the arguments and the configuration and decides
//! where the listeners come from; [`gateway::run`] serves them inside
//! `server_kit::Lifecycle` (signals, sd-notify, socket removal, the drain
//! deadline). A configuration error exits with
//! [`server_kit::EXIT_CONFIG`], in one line on stderr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use server_kit::listener::ActivatedSocket;
use server_kit::{Failure, Lifecycle, Threads, notify};

use gateway::Listeners;
use gateway::config::{self, Config, RawConfig};
use gateway::front::Budget;
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
    /// on one thread: a little less per call when CPUs are scarce, but
    /// slower when the clients and servers run on other CPUs (the gateway
    /// benchmark measures both).
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

/// How long open connections get to finish once the stop began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(&cli) {
        Ok(code) => code,
        Err(failure) => {
            // One write, so that the line stays whole when other processes
            // (`llmbasedos up`'s children) share this stderr.
            let line = format!("llmbasedos-gateway: {failure}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            notify::status(&format!("failed: {failure}"));
            failure.exit_code()
        }
    }
}

fn start(cli: &Cli) -> Result<ExitCode, Failure> {
    if let Some(path) = &cli.check_config {
        RawConfig::load(path)
            .and_then(|raw| raw.resolve(&path.display().to_string()))
            .map_err(Failure::config)?;
        println!("{}: valid", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    match &cli.command {
        Some(Command::HashToken { token }) => {
            let token = match token {
                Some(token) => token.clone(),
                None => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|error| Failure::other(format!("cannot read stdin: {error}")))?;
                    text.trim().to_owned()
                }
            };
            println!("{}", hex::encode(config::hash_token(&token)));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Stdio) => {
            // Logs go to stderr; stdout carries only JSON-RPC.
            server_kit::logging::init("llmbasedos-gateway-stdio");
            let config = load_config(cli).map_err(|error| Failure::config(format!("{error:#}")))?;
            let socket = config.unix_socket.clone().ok_or_else(|| {
                Failure::config("no UNIX socket configured for the bridge to reach")
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Failure::other)?;
            runtime
                .block_on(transport::stdio::bridge(&socket, config.max_message))
                .map_err(|error| Failure::other(format!("{error:#}")))?;
            Ok(ExitCode::SUCCESS)
        }
        None => serve(cli),
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

/// Everything that can be wrong with the configuration is found before
/// the first socket is bound; then the lifecycle runs [`gateway::run`].
fn serve(cli: &Cli) -> Result<ExitCode, Failure> {
    server_kit::logging::init("llmbasedos-gateway");
    let config = load_config(cli).map_err(|error| Failure::config(format!("{error:#}")))?;
    let llm = match &config.llm {
        Some(llm) => Some(
            gateway::llm::LlmProxy::new(llm)
                .map_err(|error| Failure::config(format!("{error:#}")))?,
        ),
        None => None,
    };
    let licensing = match &config.licence {
        Some(licence) => Some(Arc::new(
            gateway::licensing::Licensing::load(licence).map_err(Failure::config)?,
        )),
        None => None,
    };
    if config.no_auth {
        tracing::warn!(
            "--no-auth: HTTP and WebSocket clients are accepted without a token (loopback only)"
        );
    }
    let descriptors = gateway::front::raise_descriptor_limit().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the descriptor limit; assuming 1024");
        1024
    });
    let budget = Budget::plan(&config, descriptors).map_err(Failure::config)?;
    tracing::debug!(?budget, "descriptor budget");
    let threads = match cli.worker_threads {
        Some(1) => Threads::Current,
        workers => Threads::Workers(workers),
    };
    let mut lifecycle =
        Lifecycle::start("llmbasedos-gateway", threads)?.with_drain_timeout(DRAIN_TIMEOUT);
    let (mut tcp, mut unix) = (None, None);
    for socket in server_kit::listener::activated_sockets()? {
        match socket {
            ActivatedSocket::Tcp(listener) => tcp = Some(listener),
            ActivatedSocket::Unix(listener) => unix = Some(listener),
        }
    }
    if tcp.is_none() && unix.is_none() {
        if let Some(address) = config.listen {
            let listener = std::net::TcpListener::bind(address)
                .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                .map_err(|error| Failure::config(format!("cannot listen on {address}: {error}")))?;
            tcp = Some(listener);
        }
        if let Some(path) = &config.unix_socket {
            unix = Some(lifecycle.bind(path)?);
        }
    }
    let listeners = {
        let _entered = lifecycle.runtime().enter();
        let register = |error: std::io::Error| {
            Failure::other(format!("cannot register the listener: {error}"))
        };
        Listeners {
            http: tcp
                .map(tokio::net::TcpListener::from_std)
                .transpose()
                .map_err(register)?,
            unix: unix
                .map(tokio::net::UnixListener::from_std)
                .transpose()
                .map_err(register)?,
            budget,
        }
    };
    let ready = format!("serving {}", listeners.endpoints().join(", "));
    let shutdown = lifecycle.shutdown();
    let service = async move {
        gateway::run(Arc::new(config), llm, licensing, listeners, shutdown).await;
        Ok::<(), Failure>(())
    };
    Ok(lifecycle.run("llmbasedos-gateway", &ready, service))
}
