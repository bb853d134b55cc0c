//! The life of a service process around its `run(listeners, shutdown)`:
//! the one copy every server and the gateway use.
//!
//! In order: the runtime; SIGTERM/SIGINT handlers, installed before any
//! socket exists (a signal that arrives while starting is a clean stop,
//! not a death that leaves a socket file behind); the listeners, each
//! socket bound here recorded so that it is removed on every way out,
//! start-up failures included; then [`Lifecycle::run`]: READY=1 with a
//! status line, WATCHDOG=1 from a task on the same runtime, and, on the
//! first signal, STOPPING=1 and the shutdown token cancelled. The service
//! then has the drain deadline to return; what still runs after it is
//! abandoned. The exit status: 0 after a stop (or when the service ended
//! by itself, an idle exit), [`EXIT_CONFIG`] when the configuration is
//! wrong, 1 for anything else.

use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::listener::{self, Listener, ListenerError, ListenerOrigin};
use crate::notify;

/// Exit status for configuration errors (sysexits' EX_CONFIG). Units set
/// `RestartPreventExitStatus=78`, and `llmbasedos up` stops the stack on
/// it, so that a broken configuration does not become a restart loop.
pub const EXIT_CONFIG: u8 = 78;

/// How long the runtime waits for tasks that ignore the stop (blocking
/// work abandoned at the drain deadline) before the process exits anyway.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(500);

/// Why a service cannot start or stopped with a failure. The kind decides
/// the exit status; the text is for people (it goes to the log and to
/// `systemctl status`).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A file, a flag or a unit's sockets are wrong: starting again cannot
    /// help ([`EXIT_CONFIG`]).
    #[error("{0}")]
    Config(String),
    /// Anything else (exit 1): the service manager may try again.
    #[error("{0}")]
    Other(String),
}

impl Failure {
    pub fn config(error: impl Display) -> Failure {
        Failure::Config(error.to_string())
    }

    pub fn other(error: impl Display) -> Failure {
        Failure::Other(error.to_string())
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Config(_) => ExitCode::from(EXIT_CONFIG),
            Failure::Other(_) => ExitCode::FAILURE,
        }
    }

    /// Logs the failure, shows it in `systemctl status`, and gives the exit
    /// status. `identifier` names the program in the log line.
    pub fn report(&self, identifier: &str) -> ExitCode {
        tracing::error!("cannot start {identifier}: {self}");
        notify::status(&format!("failed: {self}"));
        self.exit_code()
    }
}

/// Every listener problem is one of configuration (a path, a unit's
/// `ListenStream=`): systemd must not restart-loop on it.
impl From<ListenerError> for Failure {
    fn from(error: ListenerError) -> Failure {
        Failure::config(error)
    }
}

/// The scheduler a service runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// tokio's multi-threaded scheduler with this many workers (`None`:
    /// one per CPU).
    Workers(Option<usize>),
    /// Everything on the main thread (tokio's current-thread scheduler).
    Current,
}

/// A service process from its start to its exit status (see the module's
/// docs). Sockets bound through it are removed when it is dropped, so a
/// start-up step that fails after the bind leaves nothing behind.
#[derive(Debug)]
pub struct Lifecycle {
    runtime: tokio::runtime::Runtime,
    signals: ShutdownSignals,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    sockets: BoundSockets,
}

impl Lifecycle {
    /// Builds the runtime and installs the signal handlers. Logging is set
    /// up before this (`crate::logging::init`), so that a failure here is
    /// reported where the service's other messages go.
    pub fn start(identifier: &str, threads: Threads) -> Result<Lifecycle, Failure> {
        let runtime = match threads {
            Threads::Workers(workers) => runtime(identifier, workers),
            Threads::Current => {
                // What `runtime` does for the multi-threaded one.
                crate::memory::return_large_blocks_when_freed();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
        }
        .map_err(|error| Failure::other(format!("cannot start the async runtime: {error}")))?;
        let signals = {
            let _entered = runtime.enter();
            ShutdownSignals::install().map_err(|error| {
                Failure::other(format!(
                    "cannot install the SIGTERM/SIGINT handlers: {error}"
                ))
            })?
        };
        Ok(Lifecycle {
            runtime,
            signals,
            shutdown: CancellationToken::new(),
            drain_timeout: crate::connection::DEFAULT_DRAIN,
            sockets: BoundSockets::default(),
        })
    }

    /// How long the service gets to return once the stop began.
    pub fn with_drain_timeout(mut self, drain_timeout: Duration) -> Lifecycle {
        self.drain_timeout = drain_timeout;
        self
    }

    /// The runtime, to enter while turning std listeners into tokio ones
    /// (which needs its reactor) before [`Lifecycle::run`].
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Cancelled on the first SIGTERM or SIGINT: the service's `shutdown`.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Binds a UNIX socket at `path` ([`listener::bind`]) and removes it
    /// when the process is done with it.
    pub fn bind(&mut self, path: &Path) -> Result<std::os::unix::net::UnixListener, Failure> {
        let listener = listener::bind(path)?;
        self.sockets.0.push(path.to_owned());
        Ok(listener)
    }

    /// The socket passed by systemd, else `path` bound here
    /// ([`listener::obtain`]); a bound one is removed at the end.
    pub fn obtain(&mut self, path: Option<&Path>) -> Result<Listener, Failure> {
        let obtained = listener::obtain(path)?;
        if let ListenerOrigin::Bound(path) = &obtained.origin {
            self.sockets.0.push(path.clone());
        }
        Ok(obtained)
    }

    /// Runs `service` (built with [`Lifecycle::shutdown`]) to the end and
    /// gives the exit status. `ready` is the status line sent with
    /// READY=1 (`systemctl status` shows it).
    pub fn run<E: Display>(
        self,
        identifier: &str,
        ready: &str,
        service: impl Future<Output = Result<(), E>>,
    ) -> ExitCode {
        let Lifecycle {
            runtime,
            signals,
            shutdown,
            drain_timeout,
            sockets,
        } = self;
        let outcome = runtime.block_on(async {
            notify::ready(ready);
            if let Some(interval) = notify::watchdog_interval() {
                tokio::spawn(notify::watchdog(interval));
            }
            tokio::spawn(stop_on_signal(signals, shutdown.clone(), drain_timeout));
            tokio::pin!(service);
            tokio::select! {
                outcome = &mut service => {
                    // Ended by itself (an idle exit) or failed: its own
                    // STATUS= says why, this only marks the stop.
                    notify::stopping(None);
                    outcome
                }
                () = shutdown.cancelled() => {
                    match tokio::time::timeout(drain_timeout, &mut service).await {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            tracing::warn!(?drain_timeout, "still running at the drain deadline; abandoned");
                            Ok(())
                        }
                    }
                }
            }
        });
        drop(sockets);
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{identifier} failed: {error}");
                notify::status(&format!("failed: {error}"));
                ExitCode::FAILURE
            }
        }
    }
}

/// Waits for the first signal, says so to the service manager, and cancels
/// `shutdown`.
async fn stop_on_signal(
    signals: ShutdownSignals,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) {
    let name = signals.wait().await;
    tracing::info!("{name} received");
    notify::stopping(Some(&format!(
        "stopping: {name} received, finishing requests (up to {} s)",
        drain_timeout.as_secs_f32()
    )));
    shutdown.cancel();
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

/// SIGTERM and SIGINT handlers, installed up front (also by `llmbasedos
/// up`, which supervises rather than serves).
#[derive(Debug)]
pub struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    /// Needs the runtime's context (its signal driver).
    pub fn install() -> std::io::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes on the first SIGTERM or SIGINT, with its name.
    pub async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Socket files this process bound: removed when dropped, whichever way
/// the process is leaving (a socket passed by systemd is systemd's).
#[derive(Debug, Default)]
struct BoundSockets(Vec<PathBuf>);

impl Drop for BoundSockets {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that stops by itself (an idle exit) ends the run with 0
    /// and its socket file gone; one that fails ends it with 1, and a
    /// socket bound before a later start-up step failed is removed too.
    #[test]
    fn sockets_bound_here_are_removed_on_every_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ran = dir.path().join("ran.sock");
        let mut lifecycle = Lifecycle::start("lifecycle-test", Threads::Current).expect("start");
        let _listener = lifecycle.bind(&ran).expect("bind");
        assert!(ran.exists());
        let code = lifecycle.run("lifecycle-test", "serving", async { Ok::<(), String>(()) });
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(!ran.exists(), "the socket of a finished run is removed");

        let failed = dir.path().join("failed.sock");
        let mut lifecycle = Lifecycle::start("lifecycle-test", Threads::Current).expect("start");
        let _listener = lifecycle.bind(&failed).expect("bind");
        let code = lifecycle.run("lifecycle-test", "serving", async { Err("broken") });
        assert_eq!(code, ExitCode::FAILURE);
        assert!(!failed.exists(), "the socket of a failed run is removed");

        let abandoned = dir.path().join("abandoned.sock");
        let mut lifecycle = Lifecycle::start("lifecycle-test", Threads::Current).expect("start");
        let _listener = lifecycle.bind(&abandoned).expect("bind");
        drop(lifecycle);
        assert!(
            !abandoned.exists(),
            "the socket of a start-up that failed after the bind is removed"
        );
    }

    /// The drain deadline bounds the stop even for a service that never
    /// returns: the run ends, with 0, and its socket is removed.
    #[test]
    fn a_service_that_ignores_the_stop_is_abandoned_at_the_drain_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stuck.sock");
        let mut lifecycle = Lifecycle::start("lifecycle-test", Threads::Current)
            .expect("start")
            .with_drain_timeout(Duration::from_millis(100));
        let _listener = lifecycle.bind(&path).expect("bind");
        lifecycle.shutdown().cancel();
        let code = lifecycle.run(
            "lifecycle-test",
            "serving",
            std::future::pending::<Result<(), String>>(),
        );
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(!path.exists());
    }

    #[test]
    fn configuration_failures_exit_78_and_others_1() {
        assert_eq!(
            Failure::config("bad key").exit_code(),
            ExitCode::from(EXIT_CONFIG)
        );
        assert_eq!(Failure::other("no runtime").exit_code(), ExitCode::FAILURE);
        let listener_error = Failure::from(ListenerError::NoSocket);
        assert!(matches!(listener_error, Failure::Config(_)));
    }
}
