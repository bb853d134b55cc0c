//! The `main` of every llmbasedos server: the settings every server
//! shares, then [`Server::serve`] on the listener (socket activation or a
//! bound path) inside the one [`Lifecycle`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::ConnectionLimits;
use crate::lifecycle::{Failure, Lifecycle, Threads};
use crate::listener::ListenerOrigin;
use crate::serve::ServeOptions;
use crate::server::Server;

/// Idle timeout of a socket-activated server unless configured: systemd
/// starts it again on the next connection.
pub const DEFAULT_ACTIVATED_IDLE: Duration = Duration::from_secs(300);

/// How much longer than the drain timeout the lifecycle waits for `serve`.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

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

/// Runs a server to completion in the [`Lifecycle`] and returns the
/// process exit status: 0 after a shutdown or an idle exit,
/// [`EXIT_CONFIG`](crate::lifecycle::EXIT_CONFIG)
/// when the server or its socket cannot be set up, 1 for other failures.
pub fn run<E>(
    identifier: &str,
    args: &ServeArgs,
    build: impl FnOnce() -> Result<Server, E>,
) -> ExitCode
where
    E: std::fmt::Display,
{
    crate::logging::init(identifier);
    match start(identifier, args, build) {
        Ok(code) => code,
        Err(failure) => failure.report(identifier),
    }
}

fn start<E: std::fmt::Display>(
    identifier: &str,
    args: &ServeArgs,
    build: impl FnOnce() -> Result<Server, E>,
) -> Result<ExitCode, Failure> {
    let server = Arc::new(build().map_err(Failure::config)?);
    let mut lifecycle = Lifecycle::start(identifier, Threads::Workers(args.worker_threads))?;
    let obtained = lifecycle.obtain(args.socket.as_deref())?;
    let options = args.options(obtained.origin == ListenerOrigin::Activated);
    let where_ = match &obtained.origin {
        ListenerOrigin::Activated => "the socket passed by systemd".to_owned(),
        ListenerOrigin::Bound(path) => path.display().to_string(),
    };
    let listener = {
        let _entered = lifecycle.runtime().enter();
        tokio::net::UnixListener::from_std(obtained.listener)
            .map_err(|error| Failure::other(format!("cannot register the listener: {error}")))?
    };
    // `serve` drains within the drain timeout itself; the lifecycle's
    // deadline, a moment later, only catches what ignores it.
    let lifecycle = lifecycle.with_drain_timeout(options.drain_timeout + DRAIN_GRACE);
    let shutdown = lifecycle.shutdown();
    tracing::info!(service = server.service(), socket = %where_, idle_timeout = ?options.idle_timeout, "serving");
    let ready = format!("serving {} on {where_}", server.service());
    let service = async move {
        server
            .serve(listener, shutdown.cancelled_owned(), options)
            .await;
        Ok::<(), Failure>(())
    };
    Ok(lifecycle.run(identifier, &ready, service))
}
