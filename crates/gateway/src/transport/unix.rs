//! The UNIX socket for local clients (luca-shell, the stdio bridge):
//! NUL-delimited JSON-RPC; peers identified by SO_PEERCRED and admitted by
//! uid or group.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::dispatch::Gateway;
use crate::transport::StreamClient;

/// Serves the socket until `shutdown` fires.
pub async fn serve(gateway: Arc<Gateway>, listener: UnixListener, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let gateway = gateway.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { serve_connection(gateway, stream, shutdown).await });
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed on the UNIX socket");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
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
            tracing::warn!("refusing a UNIX-socket client: {reason}");
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
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    let mut reading = true;
    // A client that half-closed still reads its answers: what runs may
    // finish, within the backend timeout.
    let mut deadline = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            frame = frames.next(), if reading => match frame {
                Some(Ok(Frame::Message(bytes))) => client.on_frame(&gateway, &bytes),
                Some(Ok(Frame::TooLarge { limit })) => client.on_too_large(limit),
                Some(Err(_)) | None => {
                    reading = false;
                    deadline = Some(tokio::time::Instant::now() + gateway.config.backend_timeout);
                }
            },
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                let _ = codec.encode_json(&message, &mut buffer);
            }
            answer = client.next_answer() => {
                // The request's progress notifications first.
                while let Ok(message) = outgoing.try_recv() {
                    let _ = codec.encode_json(&message, &mut buffer);
                }
                if let Err(error) = codec.encode_json(&answer, &mut buffer) {
                    // Too large to send: the client learns why, by id.
                    let refusal = Response::error(
                        answer.id().cloned(),
                        ErrorObject::internal(format!("the answer cannot be sent: {error}")),
                    );
                    let _ = codec.encode_json(&refusal, &mut buffer);
                }
            }
            () = sleep_until(deadline) => break,
        }
        // Whatever else is ready goes out in the same write.
        while buffer.len() < 64 * 1024 {
            let Ok(message) = outgoing.try_recv() else {
                break;
            };
            let _ = codec.encode_json(&message, &mut buffer);
        }
        if !buffer.is_empty() {
            if write_half.write_all(&buffer).await.is_err() {
                break;
            }
            buffer.clear();
        }
        if !reading && client.running() == 0 {
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
