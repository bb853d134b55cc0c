//! The UNIX socket for local clients (luca-shell, the stdio bridge):
//! NUL-delimited JSON-RPC; peers identified by SO_PEERCRED and admitted by
//! uid or group.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{FutureExt, StreamExt};
use proto::mcp::CallToolResult;
use proto::{DelimitedCodec, ErrorObject, Frame, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Gateway;
use crate::front::AcceptBackoff;
use crate::transport::{OUTPUT_HIGH_WATER, StreamClient};

/// A client's write buffer to start with, and what it may keep after a
/// write: a batch of small answers stays far below it, a large answer is
/// let go once written.
const WRITE_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER_KEPT: usize = 128 * 1024;

/// Serves the socket until `shutdown` fires, with at most
/// `max_connections` clients at once: past that, new ones wait in the
/// kernel's backlog, and the descriptors the budget keeps for backends
/// stay free ([`crate::front::Budget`]).
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: UnixListener,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut backoff = AcceptBackoff::new("unix");
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff.succeeded();
                let gateway = gateway.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection(gateway, stream, shutdown).await;
                    drop(permit);
                });
            }
            Err(error) => backoff.failed(&error).await,
        }
    }
}

/// Who the peer is, if it may use the gateway.
fn admit(gateway: &Gateway, stream: &UnixStream) -> Result<String, String> {
    let credentials = stream
        .peer_cred()
        .map_err(|error| format!("cannot read peer credentials: {error}"))?;
    let uid = credentials.uid();
    // SAFETY: getuid cannot fail.
    let own_uid = unsafe { libc::getuid() };
    let config = &gateway.config;
    let allowed_by_uid = uid == 0 || uid == own_uid || config.unix_allowed_uids.contains(&uid);
    let allowed_by_group = !config.unix_allowed_gids.is_empty()
        && peer_groups(stream)
            .into_iter()
            .chain([credentials.gid()])
            .any(|gid| config.unix_allowed_gids.contains(&gid));
    if allowed_by_uid || allowed_by_group {
        Ok(format!("uid:{uid}"))
    } else {
        Err(format!(
            "uid {uid} is neither an allowed user nor in an allowed group"
        ))
    }
}

/// The peer's supplementary groups (SO_PEERGROUPS, Linux 4.13+).
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for writes.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if result != 0 {
        return Vec::new();
    }
    groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
    groups
}

async fn serve_connection(gateway: Arc<Gateway>, stream: UnixStream, shutdown: CancellationToken) {
    let identity = match admit(&gateway, &stream) {
        Ok(identity) => identity,
        Err(reason) => {
            let peer = stream
                .peer_cred()
                .ok()
                .and_then(|credentials| credentials.pid())
                .map_or_else(|| "unknown".to_owned(), |pid| format!("pid {pid}"));
            gateway.refusals.refused("unix", &peer, &reason);
            let mut stream = stream;
            let codec = DelimitedCodec::nul(gateway.config.max_message);
            let mut frame = BytesMut::new();
            let error = proto::ErrorObject::new(
                crate::dispatch::code::SERVICE_UNAVAILABLE,
                "permission denied: ask the administrator to add you to the llmbasedos group",
            );
            let _ = codec.encode_json(&proto::Response::error(None, error), &mut frame);
            let _ = stream.write_all(&frame).await;
            // Half-close and read what the client already sent, so that it
            // gets the answer instead of a reset.
            let _ = stream.shutdown().await;
            let mut sink = tokio::io::sink();
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::io::copy(&mut stream, &mut sink),
            )
            .await;
            return;
        }
    };
    let codec = DelimitedCodec::nul(gateway.config.max_message);
    // Answers may be larger than what a client may send: a tool result
    // carries a backend's result (at most the message limit) twice.
    let answers = DelimitedCodec::nul(CallToolResult::size_bound(gateway.config.max_message));
    // Readable events only: the client reading an answer does not wake us.
    let (read_half, mut write_half) = match unix_io::split_tokio(stream) {
        Ok(halves) => halves,
        Err(error) => {
            tracing::warn!(%error, "cannot register a UNIX-socket client; closing it");
            return;
        }
    };
    let (mut client, mut outgoing) = StreamClient::start(&gateway, identity);
    let mut frames = tokio_util::codec::FramedRead::new(read_half, codec.clone());
    let mut buffer = BytesMut::with_capacity(WRITE_BUFFER);
    // Whether the buffer grew past what it may keep: its capacity shrinks
    // as written bytes are advanced past, so it is read while full.
    let mut grown = false;
    let mut reading = true;
    // A client that half-closed still reads its answers: what runs may
    // finish, within the backend timeout.
    let mut deadline = None;
    loop {
        // A peer that does not read its answers gets no more requests
        // read ([`OUTPUT_HIGH_WATER`]): what runs finishes into the buffer
        // and gives its slots back.
        let read_more = reading && client.reads_frames() && buffer.len() < OUTPUT_HIGH_WATER;
        tokio::select! {
            () = shutdown.cancelled() => break,
            frame = frames.next(), if read_more => match frame {
                Some(Ok(Frame::Message(bytes))) => client.on_frame(&gateway, &bytes),
                Some(Ok(Frame::TooLarge { limit })) => client.on_too_large(limit),
                Some(Err(_)) | None => {
                    reading = false;
                    deadline = Some(tokio::time::Instant::now() + gateway.config.backend_timeout);
                }
            },
            message = outgoing.recv(), if buffer.len() < OUTPUT_HIGH_WATER => {
                let Some(message) = message else { break };
                let _ = codec.encode_json(&message, &mut buffer);
            }
            answer = client.next_answer(&gateway) => if let Some(answer) = answer {
                // The request's progress notifications first.
                while let Ok(message) = outgoing.try_recv() {
                    let _ = codec.encode_json(&message, &mut buffer);
                }
                if let Err(error) = answers.encode_json(&answer, &mut buffer) {
                    // Too large to send: the client learns why, by id.
                    let refusal = Response::error(
                        answer.id().cloned(),
                        ErrorObject::internal(format!("the answer cannot be sent: {error}")),
                    );
                    let _ = codec.encode_json(&refusal, &mut buffer);
                }
            },
            // The peer's buffer was full: wait for room.
            written = write_half.write(&buffer), if !buffer.is_empty() => match written {
                Ok(0) | Err(_) => break,
                Ok(sent) => buffer.advance(sent),
            },
            () = sleep_until(deadline) => break,
        }
        // Whatever else is ready goes out in the same write.
        while buffer.len() < 64 * 1024 {
            let Ok(message) = outgoing.try_recv() else {
                break;
            };
            let _ = codec.encode_json(&message, &mut buffer);
        }
        grown |= buffer.capacity() > WRITE_BUFFER_KEPT;
        if !buffer.is_empty() {
            // As much as fits now; the rest waits in the select above.
            match write_half.write(&buffer).now_or_never() {
                Some(Ok(0) | Err(_)) => break,
                Some(Ok(sent)) => buffer.advance(sent),
                None => {}
            }
        }
        if buffer.is_empty() {
            if std::mem::take(&mut grown) {
                // After a large answer, the client's connection does not
                // keep its allocation (32 clients that stayed after 8 MB
                // reads held 250 MiB); batches of small answers never grow
                // the buffer this far.
                buffer = BytesMut::with_capacity(WRITE_BUFFER);
            } else {
                buffer.clear();
            }
        }
        if !reading && client.running() == 0 && buffer.is_empty() {
            break;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
