//! The accept loop: `serve(listener, shutdown)`, with idle exit and a
//! bounded drain of in-flight requests.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{ConnectionLimits, DEFAULT_DRAIN, serve_connection};
use crate::notify;
use crate::server::Server;

/// How a server serves.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    pub limits: ConnectionLimits,
    /// Connections served at once; further clients wait in the listen queue.
    pub max_connections: usize,
    /// Exit after this long without any connection; `None` never exits.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: ConnectionLimits::default(),
            max_connections: 256,
            idle_timeout: None,
            drain_timeout: DEFAULT_DRAIN,
        }
    }
}

/// Why [`Server::serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown future completed (SIGTERM, SIGINT, or a test).
    Shutdown,
    /// No connection for the idle timeout.
    Idle,
}

struct ActiveConnections {
    count: AtomicUsize,
    changed: Notify,
}

struct ConnectionGuard(Arc<ActiveConnections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

impl Server {
    /// Serves `listener` until `shutdown` completes or the server has been
    /// idle for the idle timeout. Then it stops accepting, lets the requests
    /// already read finish (up to the drain timeout) and returns.
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
        options: ServeOptions,
    ) -> Stopped {
        let connections_shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let active = Arc::new(ActiveConnections {
            count: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
        tokio::pin!(shutdown);
        let stopped = loop {
            // Shutdown first in both selects (`biased`): once it is seen,
            // nothing more is accepted; a connection that arrives after it
            // stays in the listener's queue (for the next activation, under
            // systemd).
            // At the connection limit, wait for a slot first; the server is
            // not idle then, so only shutdown needs watching.
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break Stopped::Shutdown,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let idle = active.count.load(Ordering::Acquire) == 0;
            let idle_timer = async {
                match options.idle_timeout {
                    Some(timeout) if idle => tokio::time::sleep(timeout).await,
                    _ => std::future::pending().await,
                }
            };
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break Stopped::Shutdown,
                () = idle_timer => break Stopped::Idle,
                // A connection closed: look again whether the server is idle.
                () = active.changed.notified() => continue,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    active.count.fetch_add(1, Ordering::AcqRel);
                    let guard = ConnectionGuard(active.clone());
                    let server = self.clone();
                    let token = connections_shutdown.clone();
                    tracker.spawn(async move {
                        serve_connection(server, stream, token, options.limits).await;
                        drop((guard, permit));
                    });
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        drop(listener);
        connections_shutdown.cancel();
        let in_flight = active.count.load(Ordering::Acquire);
        match stopped {
            Stopped::Shutdown => {
                // STOPPING=1 is the lifecycle's (it saw the signal); this
                // says what the stop waits for.
                notify::status(&format!(
                    "stopping: finishing requests on {in_flight} connection(s)"
                ));
                tracing::info!(connections = in_flight, "shutting down");
            }
            Stopped::Idle => {
                notify::status("idle: no connections, exiting");
                tracing::info!(idle_timeout = ?options.idle_timeout, "idle timeout reached, exiting");
            }
        }
        tracker.close();
        if tokio::time::timeout(options.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                drain_timeout = ?options.drain_timeout,
                connections = active.count.load(Ordering::Acquire),
                "requests still running at the drain deadline are abandoned"
            );
        }
        stopped
    }
}
