//! The bridge's side of one gateway connection: writing frames to it,
//! relaying its answers to stdout, and failing what was in flight when it
//! goes away.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Incoming, Message, RequestId, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::Shared;

/// What one host line asked the gateway for.
pub(super) enum Sent {
    /// A request (answered by its id).
    Request(RequestId),
    /// A batch, with the ids of its requests (answered by an array).
    Batch(Vec<RequestId>),
    /// Notifications and responses, or what did not parse (the gateway
    /// answers that itself).
    Nothing,
}

impl Sent {
    pub(super) fn expects_answer(&self) -> bool {
        match self {
            Sent::Request(_) => true,
            Sent::Batch(ids) => !ids.is_empty(),
            Sent::Nothing => false,
        }
    }
}

/// The answer of a batch whose requests all failed with `error`.
pub(super) fn failed_batch(ids: &[RequestId], error: &ErrorObject) -> Vec<u8> {
    let answers: Vec<Response> = ids
        .iter()
        .map(|id| Response::error(Some(id.clone()), error.clone()))
        .collect();
    serde_json::to_vec(&answers).expect("responses always serialize")
}

pub(super) async fn write_frame(
    writer: &mut OwnedWriteHalf,
    bytes: &[u8],
    max_message: usize,
) -> anyhow::Result<()> {
    let mut framed = BytesMut::with_capacity(bytes.len() + 1);
    tokio_util::codec::Encoder::encode(&mut DelimitedCodec::nul(max_message), bytes, &mut framed)?;
    writer.write_all(&framed).await?;
    Ok(())
}

/// Relays one connection's messages to stdout until it ends, then fails
/// what was in flight on it.
pub(super) async fn read_gateway(
    read: tokio::net::unix::OwnedReadHalf,
    max_message: usize,
    generation: u64,
    shared: Arc<Mutex<Shared>>,
    stdout: mpsc::Sender<Vec<u8>>,
) {
    let mut frames = FramedRead::new(read, DelimitedCodec::nul(max_message));
    while let Some(frame) = frames.next().await {
        let Ok(frame) = frame else {
            break;
        };
        let Frame::Message(bytes) = frame else {
            continue;
        };
        if let Ok(Message::Response(response)) = Message::from_slice(&bytes)
            && let Some(id) = &response.id
        {
            let mut shared = shared.lock().expect("bridge state");
            if let Some(waiter) = shared.replays.remove(id) {
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response);
                }
                continue;
            }
            shared.in_flight.remove(id);
        } else if let Ok(Incoming::Batch(answers)) = Incoming::from_slice(&bytes) {
            let answered: HashSet<RequestId> = answers
                .iter()
                .filter_map(|answer| match answer {
                    Ok(Message::Response(response)) => response.id.clone(),
                    _ => None,
                })
                .collect();
            let mut shared = shared.lock().expect("bridge state");
            let position = shared
                .batches
                .iter()
                .position(|ids| ids.iter().any(|id| answered.contains(id)));
            if let Some(position) = position.or((!shared.batches.is_empty()).then_some(0)) {
                shared.batches.remove(position);
            }
        }
        if stdout.send(bytes.to_vec()).await.is_err() {
            return;
        }
    }
    tracing::warn!("the gateway closed the connection; reconnecting on the host's next message");
    lose(&shared, generation, &stdout).await;
}

/// Marks a connection as gone (once) and answers what was in flight on it.
pub(super) async fn lose(shared: &Mutex<Shared>, generation: u64, stdout: &mpsc::Sender<Vec<u8>>) {
    let (lost, lost_batches): (Vec<RequestId>, Vec<Vec<RequestId>>) = {
        let mut shared = shared.lock().expect("bridge state");
        if shared.generation != generation || !shared.alive {
            return;
        }
        shared.alive = false;
        shared.replays.clear();
        (
            shared.in_flight.drain().collect(),
            std::mem::take(&mut shared.batches),
        )
    };
    let error = ErrorObject::internal(
        "the llmbasedos gateway restarted during the call; it may or may not have taken effect: check before retrying it",
    );
    for id in lost {
        let _ = stdout
            .send(Message::Response(Response::error(Some(id), error.clone())).to_vec())
            .await;
    }
    for ids in lost_batches {
        let _ = stdout.send(failed_batch(&ids, &error)).await;
    }
}

pub(super) async fn write_stdout(mut lines: mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.recv().await {
        stdout.write_all(&line).await?;
        stdout.write_all(b"\n").await?;
        stdout.flush().await?;
    }
    Ok(())
}
