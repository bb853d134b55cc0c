//! The accept loop: hyper's HTTP/1 connections with a header timeout,
//! capped; at the cap the oldest connection that sent no request is closed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Peer, router};
use crate::dispatch::Gateway;
use crate::front::AcceptBackoff;

/// A TCP connection as the accept loop sees it.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Set when the connection's first request reached the router: from
    /// then on it is a client's, not a candidate to make room.
    pub(super) served: AtomicBool,
    /// Closes the connection at once.
    pub(super) evict: CancellationToken,
}

/// A connection's stream with its slot: the slot is freed when the stream
/// closes, also after a WebSocket upgrade took it over from hyper.
pub(super) struct Counted {
    pub(super) stream: TcpStream,
    pub(super) _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` fires, with at
/// most `max_connections` connections open (see the module's docs).
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let header_timeout = gateway.config.http_header_timeout;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let service = TowerToHyperService::new(router(gateway));
    let slots = Arc::new(Semaphore::new(max_connections));
    // Connections that had not sent a request when they were accepted, the
    // oldest first; entries of served or closed ones are skipped (and
    // pruned now and then).
    let mut unserved: VecDeque<Arc<Slot>> = VecDeque::new();
    let mut backoff = AcceptBackoff::new("http");
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(error) => {
                    backoff.failed(&error).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                while let Some(slot) = unserved.pop_front() {
                    if !slot.served.load(Ordering::Relaxed) && !slot.evict.is_cancelled() {
                        tracing::debug!(
                            "at the connection limit: closing the oldest connection that sent no request"
                        );
                        slot.evict.cancel();
                        break;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        if unserved.len() >= 2 * max_connections {
            unserved
                .retain(|slot| !slot.served.load(Ordering::Relaxed) && !slot.evict.is_cancelled());
        }
        let slot = Arc::new(Slot::default());
        unserved.push_back(slot.clone());
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let task = async move {
            // A hyper connection allocates its buffers when it is made: one
            // that has sent nothing is only waited on (within the header
            // timeout), so an idle flood costs less memory (debug build:
            // 8.2 against 10.7 KiB per idle connection).
            let first_bytes = tokio::time::timeout(header_timeout, stream.readable());
            tokio::select! {
                ready = first_bytes => if !matches!(ready, Ok(Ok(()))) {
                    return;
                },
                () = slot.evict.cancelled() => return,
                () = shutdown.cancelled() => return,
            }
            let io = TokioIo::new(Counted {
                stream,
                _permit: permit,
            });
            let marker = slot.clone();
            let per_request = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    marker.served.store(true, Ordering::Relaxed);
                    request.extensions_mut().insert(Peer(peer));
                    hyper::service::Service::call(&service, request)
                },
            );
            let connection = builder.serve_connection(io, per_request).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "HTTP connection ended");
                    }
                }
                () = slot.evict.cancelled() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        };
        connections.spawn(task);
    }
    connections.close();
    connections.wait().await;
}
