//! `/ws`: JSON-RPC in WebSocket text frames, the classic vocabulary's transport, served
//! by the same [`StreamClient`] as the UNIX socket.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response as HttpResponse;
use futures::{FutureExt, StreamExt};

use super::{HttpState, Identity};
use crate::dispatch::Gateway;
use crate::transport::{OUTPUT_HIGH_WATER, StreamClient};

/// `/ws`: JSON-RPC in WebSocket text frames, the classic vocabulary's transport.
pub(super) async fn websocket(
    State(state): State<HttpState>,
    axum::Extension(Identity(identity)): axum::Extension<Identity>,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let max_message = state.gateway.config.max_message;
    upgrade
        .max_message_size(max_message)
        // The library zeroes up to this much of its buffer before every
        // read attempt (several per message): small, since requests are.
        .read_buffer_size(2 * 1024)
        .on_upgrade(move |socket| serve_websocket(state.gateway, socket, identity))
}

pub(super) async fn serve_websocket(gateway: Arc<Gateway>, socket: WebSocket, identity: String) {
    let (mut client, mut outgoing) = StreamClient::start(&gateway, identity);
    let (mut sink, mut stream) = socket.split();
    // Frames not yet taken by the socket, and their size: a peer that does
    // not read gets no more requests read past [`OUTPUT_HIGH_WATER`].
    let mut pending: VecDeque<WsMessage> = VecDeque::new();
    let mut pending_bytes = 0usize;
    loop {
        let read_more = client.reads_frames() && pending_bytes < OUTPUT_HIGH_WATER;
        tokio::select! {
            incoming = stream.next(), if read_more => match incoming {
                Some(Ok(WsMessage::Text(text))) => client.on_frame(&gateway, text.as_bytes()),
                Some(Ok(WsMessage::Binary(bytes))) => client.on_frame(&gateway, &bytes),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break,
            },
            message = outgoing.recv(), if pending_bytes < OUTPUT_HIGH_WATER => {
                let Some(message) = message else { break };
                queue_ws(&mut pending, &mut pending_bytes, &message);
            }
            answer = client.next_answer(&gateway) => if let Some(answer) = answer {
                // The request's progress notifications first.
                while let Ok(message) = outgoing.try_recv() {
                    queue_ws(&mut pending, &mut pending_bytes, &message);
                }
                queue_ws(&mut pending, &mut pending_bytes, &answer);
            },
            // The peer's buffer was full: wait for room.
            sent = send_pending(&mut sink, &mut pending, &mut pending_bytes), if !pending.is_empty() => {
                if sent.is_err() {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let sent = send_pending(&mut sink, &mut pending, &mut pending_bytes).now_or_never();
            if let Some(Err(_)) = sent {
                break;
            }
        }
    }
}

pub(super) fn queue_ws(
    pending: &mut VecDeque<WsMessage>,
    bytes: &mut usize,
    message: &impl serde::Serialize,
) {
    if let Ok(text) = serde_json::to_string(message) {
        *bytes += text.len();
        pending.push_back(WsMessage::Text(text.into()));
    }
}

/// Hands the queued frames to the socket and flushes them; cancel-safe (a
/// frame leaves the queue only once the socket took it).
pub(super) async fn send_pending(
    sink: &mut futures::stream::SplitSink<WebSocket, WsMessage>,
    pending: &mut VecDeque<WsMessage>,
    bytes: &mut usize,
) -> Result<(), axum::Error> {
    use futures::Sink;
    std::future::poll_fn(|cx| {
        while !pending.is_empty() {
            std::task::ready!(Pin::new(&mut *sink).poll_ready(cx))?;
            let message = pending.pop_front().expect("not empty");
            if let WsMessage::Text(text) = &message {
                *bytes -= text.len();
            }
            Pin::new(&mut *sink).start_send(message)?;
        }
        Pin::new(&mut *sink).poll_flush(cx)
    })
    .await
}
