//! The `main` of every llmbasedos server: logging, the listener (socket
//! activation or a bound path), the runtime, signals, sd-notify, then
//! [`Server::serve`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::connection::ConnectionLimits;
use crate::listener::{self, ListenerOrigin};
use crate::notify;
use crate::serve::{ServeOptions, Stopped};
use crate::server::Server;

/// Idle timeout of a socket-activated server unless configured: systemd
/// starts it again on the next connection.
pub const DEFAULT_ACTIVATED_IDLE: Duration = Duration::from_secs(300);

/// Exit status for configuration errors (sysexits' EX_CONFIG). Units set
/// `RestartPreventExitStatus=78` so that a broken configuration does not
/// become a restart loop.
pub const EXIT_CONFIG: u8 = 78;

/// Command-line and environment settings shared by every server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// UNIX socket to bind when not started by systemd socket activation.
    #[arg(long, env = "LLMBASEDOS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Exit after this many seconds without connections; 0 never exits.
    /// Default: 300 when socket-activated, 0 otherwise.
    #[arg(long, env = "LLMBASEDOS_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// On SIGTERM, seconds that in-flight requests get to finish.
    #[arg(long, env = "LLMBASEDOS_DRAIN_TIMEOUT", default_value_t = 10)]
    pub drain_timeout: u64,
    /// Requests handled at once on one connection; more are queued.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Connections served at once.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Largest message accepted or sent, in bytes.
    #[arg(long, default_value_t = proto::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,
    /// Async worker threads (default: one per core).
    #[arg(long, env = "LLMBASEDOS_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl ServeArgs {
    fn options(&self, activated: bool) -> ServeOptions {
        let idle_timeout = match self.idle_timeout {
            Some(0) => None,
            Some(seconds) => Some(Duration::from_secs(seconds)),
            None if activated => Some(DEFAULT_ACTIVATED_IDLE),
            None => None,
        };
        ServeOptions {
            limits: ConnectionLimits {
                max_in_flight: self.max_in_flight.max(1),
                max_queued: ConnectionLimits::default().max_queued,
                max_message: self.max_message,
            },
            max_connections: self.max_connections,
            idle_timeout,
            drain_timeout: Duration::from_secs(self.drain_timeout),
        }
    }
}

/// Runs a server to completion and returns the process exit status:
/// 0 after a shutdown or an idle exit, [`EXIT_CONFIG`] when the server or its
/// socket cannot be set up, 1 for other start-up failures.
pub fn run<E>(
    identifier: &str,
    args: &ServeArgs,
    build: impl FnOnce() -> Result<Server, E>,
) -> ExitCode
where
    E: std::fmt::Display,
{
    crate::logging::init(identifier);
    let server = match build() {
        Ok(server) => Arc::new(server),
        Err(error) => {
            tracing::error!("cannot start {identifier}: {error}");
            notify::status(&format!("failed: {error}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime(identifier, args.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    // Signal handlers exist before the socket does: a SIGTERM that arrives
    // while starting is a clean shutdown, not a death that leaves the
    // socket file behind.
    let shutdown = {
        let _entered = runtime.enter();
        match ShutdownSignals::install() {
            Ok(signals) => signals,
            Err(error) => {
                tracing::error!(%error, "cannot install the SIGTERM/SIGINT handlers");
                return ExitCode::FAILURE;
            }
        }
    };
    let obtained = match listener::obtain(args.socket.as_deref()) {
        Ok(obtained) => obtained,
        Err(error) => {
            // Every listener problem is one of configuration (a path, a
            // unit's ListenStream=): systemd must not restart-loop on it.
            tracing::error!("cannot start {identifier}: {error}");
            notify::status(&format!("failed: {error}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let activated = obtained.origin == ListenerOrigin::Activated;
    let options = args.options(activated);
    let where_ = match &obtained.origin {
        ListenerOrigin::Activated => "the socket passed by systemd".to_owned(),
        ListenerOrigin::Bound(path) => path.display().to_string(),
    };
    let stopped = runtime.block_on(async {
        let listener = match tokio::net::UnixListener::from_std(obtained.listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot register the listener");
                return None;
            }
        };
        tracing::info!(service = server.service(), socket = %where_, idle_timeout = ?options.idle_timeout, "serving");
        notify::ready(&format!("serving {} on {where_}", server.service()));
        if let Some(interval) = notify::watchdog_interval() {
            tokio::spawn(notify::watchdog(interval));
        }
        Some(server.serve(listener, shutdown.wait(), options).await)
    });
    if let ListenerOrigin::Bound(path) = &obtained.origin {
        let _ = std::fs::remove_file(path);
    }
    // Blocking work abandoned at the drain deadline must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match stopped {
        Some(Stopped::Shutdown | Stopped::Idle) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

/// The async runtime every server runs on (also used by the benchmark, so
/// that it measures what ships). Building it first sets the allocator up
/// to give large buffers back ([`crate::memory`]), before its threads exist.
pub fn runtime(
    identifier: &str,
    worker_threads: Option<usize>,
) -> std::io::Result<tokio::runtime::Runtime> {
    crate::memory::return_large_blocks_when_freed();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads.max(1));
    }
    builder.enable_all().thread_name(identifier).build()
}

/// SIGTERM and SIGINT handlers, installed up front.
struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes on the first SIGTERM or SIGINT.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}
