//! The bridge's side of one gateway connection: writing frames to it,
//! relaying its answers to stdout, and failing what was in flight when it
//! goes away.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Message, RequestId, Response};
use tokio::io::AsyncWriteExt;
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

/// The answer (a stdout line) of a batch whose requests all failed with
/// `error`.
pub(super) fn failed_batch(ids: &[RequestId], error: &ErrorObject) -> Vec<u8> {
    let answers: Vec<Response> = ids
        .iter()
        .map(|id| Response::error(Some(id.clone()), error.clone()))
        .collect();
    line(&serde_json::to_vec(&answers).expect("responses always serialize"))
}

pub(super) async fn write_frame(
    writer: &mut unix_io::WriteHalf,
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
    read: unix_io::ReadHalf,
    max_message: usize,
    generation: u64,
    shared: Arc<Mutex<Shared>>,
    stdout: mpsc::Sender<Vec<u8>>,
) {
    // The gateway's answers may be larger than what the host may send: a
    // tool result carries a backend's result twice.
    let bound = proto::mcp::CallToolResult::size_bound(max_message);
    let mut frames = FramedRead::new(read, DelimitedCodec::nul(bound));
    while let Some(frame) = frames.next().await {
        let Ok(frame) = frame else {
            break;
        };
        let bytes = match frame {
            Frame::Message(bytes) => bytes,
            Frame::TooLarge { limit } => {
                // Never sent by a gateway of the same configuration; the
                // host is told rather than left waiting (with no id: the
                // frame is not read).
                tracing::warn!("the gateway sent a message over {limit} bytes; dropped it");
                let error = ErrorObject::internal(format!(
                    "the gateway's answer exceeds the bridge's limit of {limit} bytes and was dropped; start the bridge with the gateway's configuration (--config), whose limits.max_message_bytes both use"
                ));
                let answer = Message::Response(Response::error(None, error)).to_vec();
                if stdout.send(line(&answer)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if let Some(id) = response_id(&bytes) {
            let mut shared = shared.lock().expect("bridge state");
            if let Some(waiter) = shared.replays.remove(&id) {
                if let Some(waiter) = waiter
                    && let Ok(Message::Response(response)) = Message::from_slice(&bytes)
                {
                    let _ = waiter.send(response);
                }
                continue;
            }
            shared.in_flight.remove(&id);
        } else if let Some(answered) = batch_answer_ids(&bytes) {
            let mut shared = shared.lock().expect("bridge state");
            let position = shared
                .batches
                .iter()
                .position(|ids| ids.iter().any(|id| answered.contains(id)));
            if let Some(position) = position.or((!shared.batches.is_empty()).then_some(0)) {
                shared.batches.remove(position);
            }
        }
        if stdout.send(line(&bytes)).await.is_err() {
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
            .send(line(
                &Message::Response(Response::error(Some(id), error.clone())).to_vec(),
            ))
            .await;
    }
    for ids in lost_batches {
        let _ = stdout.send(failed_batch(&ids, &error)).await;
    }
}

/// The id of a response from the gateway; `None` for anything else. Only
/// the envelope is read: the result, which may be megabytes, is skipped
/// rather than built, and the line goes to the host as the gateway wrote it.
pub(super) fn response_id(bytes: &[u8]) -> Option<RequestId> {
    if let Some(id) = leading_response_id(bytes) {
        return Some(id);
    }
    serde_json::from_slice::<Envelope>(bytes)
        .ok()?
        .response_id()
}

/// The id of a response as the gateway writes one — `{"jsonrpc":"2.0",
/// "id":ID,"result":…` or `…,"error":…`, with ID an integer or a string
/// without escapes — read from its first bytes alone. The envelope's
/// parse has to skip the whole result to know there is no `method` after
/// it: about 23,000 instructions of the bridge's 52,000 for a 4 KiB
/// `fs_read`. Anything else (a notification, an id with escapes, another
/// order) is `None`, for the parse.
fn leading_response_id(bytes: &[u8]) -> Option<RequestId> {
    let rest = bytes.strip_prefix(br#"{"jsonrpc":"2.0","id":"#)?;
    let (id, rest) = match rest.strip_prefix(b"\"") {
        Some(text) => {
            let end = memchr::memchr2(b'"', b'\\', text)?;
            if text[end] != b'"' {
                return None;
            }
            let id = std::str::from_utf8(&text[..end]).ok()?;
            if id.bytes().any(|byte| byte < 0x20) {
                return None;
            }
            (RequestId::String(id.to_owned()), &text[end + 1..])
        }
        None => {
            let length = rest
                .iter()
                .position(|byte| !(byte.is_ascii_digit() || *byte == b'-'))?;
            let id = std::str::from_utf8(&rest[..length]).ok()?;
            if id.starts_with("-0") || (id.starts_with('0') && id.len() > 1) {
                return None;
            }
            (RequestId::Number(id.parse().ok()?), &rest[length..])
        }
    };
    (rest.starts_with(br#","result":"#) || rest.starts_with(br#","error":"#)).then_some(id)
}

/// The ids a batch's answer (an array of responses) answers; `None` for
/// anything that is no array. Read like [`response_id`]: envelopes only.
fn batch_answer_ids(bytes: &[u8]) -> Option<HashSet<RequestId>> {
    let answers: Vec<Envelope> = serde_json::from_slice(bytes).ok()?;
    Some(
        answers
            .into_iter()
            .filter_map(Envelope::response_id)
            .collect(),
    )
}

/// What the bridge reads of a message from the gateway.
#[derive(serde::Deserialize)]
struct Envelope {
    id: Option<RequestId>,
    method: Option<serde::de::IgnoredAny>,
}

impl Envelope {
    fn response_id(self) -> Option<RequestId> {
        match self.method {
            Some(_) => None,
            None => self.id,
        }
    }
}

/// A message as a stdout line, its newline included: one write per line.
pub(super) fn line(message: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 1);
    line.extend_from_slice(message);
    line.push(b'\n');
    line
}

/// Writes the queued lines (each ends with its newline) to stdout.
pub(super) async fn write_stdout(mut lines: mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
    let mut stdout = host_output();
    while let Some(line) = lines.recv().await {
        stdout.write_all(&line).await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// The host's stdin. Hosts start servers with a pipe (Python's
/// subprocess) or a socket pair (libuv: Node, Electron) on stdio; those
/// are read on the event loop like the gateway's socket. tokio's own
/// `stdin()` does every read on a blocking-pool thread: a thread hand-off
/// each way per message, which was a large part of a bridged call's time.
/// Anything else (a terminal, a file) goes through `stdin()`.
pub(super) fn host_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return Box::new(tokio::io::stdin());
    };
    match host_end_kind(&fd) {
        Some(HostEnd::Pipe) => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdin()),
        },
        Some(HostEnd::Socket) => match socket_end(fd) {
            Ok(socket) => Box::new(socket),
            Err(_) => Box::new(tokio::io::stdin()),
        },
        None => Box::new(tokio::io::stdin()),
    }
}

/// The host's stdout: a pipe or a socket written straight away
/// ([`unix_io::Writer`]: never woken by the host reading an answer);
/// anything else (a terminal, a file) through `stdout()`.
pub(super) fn host_output() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return Box::new(tokio::io::stdout());
    };
    match host_end_kind(&fd) {
        Some(HostEnd::Pipe | HostEnd::Socket) => match unix_io::Writer::new(fd) {
            Ok(writer) => Box::new(writer),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        None => Box::new(tokio::io::stdout()),
    }
}

pub(super) enum HostEnd {
    Pipe,
    Socket,
}

pub(super) fn host_end_kind(fd: &std::os::fd::OwnedFd) -> Option<HostEnd> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(fd.try_clone().ok()?);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        Some(HostEnd::Pipe)
    } else if kind.is_socket() {
        Some(HostEnd::Socket)
    } else {
        None
    }
}

pub(super) fn socket_end(fd: std::os::fd::OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
    let socket = std::os::unix::net::UnixStream::from(fd);
    socket.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leading read gives what the envelope's parse gives, or leaves
    /// the message to it.
    #[test]
    fn a_leading_id_is_the_envelopes() {
        let cases: [(&str, bool); 14] = [
            (r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#, true),
            (
                r#"{"jsonrpc":"2.0","id":-3,"error":{"code":1,"message":"m"}}"#,
                true,
            ),
            (r#"{"jsonrpc":"2.0","id":"a b é","result":{}}"#, true),
            (r#"{"jsonrpc":"2.0","id":"","result":{}}"#, true),
            (
                r#"{"jsonrpc":"2.0","id":9223372036854775807,"result":1}"#,
                true,
            ),
            (r#"{"jsonrpc":"2.0","id":"a\"b","result":{}}"#, false),
            (r#"{"jsonrpc":"2.0","id":"a\\b","result":{}}"#, false),
            (r#"{"jsonrpc":"2.0","id":1.5,"result":{}}"#, false),
            (r#"{"jsonrpc":"2.0","id":-0,"result":{}}"#, false),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{}}"#,
                false,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
                false,
            ),
            (r#"{"id":1,"jsonrpc":"2.0","result":{}}"#, false),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#,
                false,
            ),
            (r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#, false),
        ];
        for (message, leading) in cases {
            let parsed = serde_json::from_slice::<Envelope>(message.as_bytes())
                .ok()
                .and_then(Envelope::response_id);
            let read = leading_response_id(message.as_bytes());
            assert_eq!(read.is_some(), leading, "{message}");
            if read.is_some() {
                assert_eq!(read, parsed, "{message}");
            }
            assert_eq!(response_id(message.as_bytes()), parsed, "{message}");
        }
    }
}
