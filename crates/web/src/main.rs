//! `llmbasedos-web`: the web console as a process. Loads web.yaml, takes
//! the TCP socket systemd passes (llmbasedos-web.socket) or binds the
//! configured address, and serves until SIGTERM or the idle exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use server_kit::{Failure, Lifecycle, Threads};

const IDENTIFIER: &str = "llmbasedos-web";

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-web",
    about = "The llmbasedos web console: services, tools, logs and licence in a browser, on 127.0.0.1"
)]
struct Args {
    /// Configuration file (default: /etc/llmbasedos/web.yaml; a missing
    /// default file means the defaults).
    #[arg(long, env = "LLMBASEDOS_WEB_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    server_kit::logging::init(IDENTIFIER);
    match start(&args) {
        Ok(code) => code,
        Err(failure) => failure.report(IDENTIFIER),
    }
}

fn start(args: &Args) -> Result<ExitCode, Failure> {
    let config = web::config::Config::load(args.config.as_deref()).map_err(Failure::config)?;
    let lifecycle = Lifecycle::start(IDENTIFIER, Threads::Current)?;
    let mut inherited = server_kit::listener::activated_sockets()?;
    let (listener, where_) = match inherited.pop() {
        Some(server_kit::listener::ActivatedSocket::Tcp(listener)) if inherited.is_empty() => {
            (listener, "the socket passed by systemd".to_owned())
        }
        Some(_) => {
            return Err(Failure::config(
                "systemd passed sockets the console cannot use: llmbasedos-web.socket needs exactly one ListenStream=127.0.0.1:8081",
            ));
        }
        None => {
            let listener = std::net::TcpListener::bind(config.listen).map_err(|error| {
                Failure::config(format!(
                    "cannot listen on {}: {error}; set `listen` in web.yaml or LLMBASEDOS_WEB_LISTEN",
                    config.listen
                ))
            })?;
            listener
                .set_nonblocking(true)
                .map_err(|error| Failure::other(error.to_string()))?;
            (listener, config.listen.to_string())
        }
    };
    let listener = {
        let _entered = lifecycle.runtime().enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|error| Failure::other(format!("cannot register the listener: {error}")))?
    };
    let address = listener
        .local_addr()
        .map_or(where_, |address| address.to_string());
    tracing::info!(listen = %address, gateway = %config.gateway_socket.display(), "web console serving");
    let shutdown = lifecycle.shutdown();
    let ready = format!("serving the console on http://{address}");
    Ok(lifecycle.run(IDENTIFIER, &ready, web::serve(config, listener, shutdown)))
}
