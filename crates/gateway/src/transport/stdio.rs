//! `llmbasedos-gateway stdio`: the bridge desktop hosts launch as a command.
//! It relays newline-delimited JSON-RPC on stdin/stdout to the gateway's
//! UNIX socket (NUL-delimited) and back; logs go to stderr.
//!
//! One bridge process is one host session, which outlives gateway
//! connections: when the gateway goes away (an upgrade, a crash, socket
//! activation after idle) the bridge answers every request that was in
//! flight with an error saying so, reconnects (with a bounded backoff), and
//! replays what set the host's session up — `initialize`,
//! `notifications/initialized`, the last `logging/setLevel`, the live
//! `resources/subscribe`s — swallowing the answers the host already has.
//! Messages the host sends meanwhile wait for the new connection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Message, Request, RequestId, Response};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

/// How long one reconnection attempt window lasts before the messages
/// waiting for it are failed (the next host message opens a new window).
const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a replayed `initialize` may take to be answered.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines queued for stdout before the writers wait.
const STDOUT_QUEUE: usize = 64;

/// Ids of the bridge's own replayed requests; a host never sees them.
const REPLAY_ID_PREFIX: &str = "llmbasedos-bridge-replay-";

/// Relays until stdin ends (the host closed it), reconnecting to the
/// gateway when it goes away.
pub async fn bridge(socket: &Path, max_message: usize) -> anyhow::Result<()> {
    // The first connection must work: a host configured with a wrong
    // socket hears it at once rather than after a reconnection window.
    let stream = connect(socket).await?;
    let (stdout_queue, stdout_lines) = mpsc::channel::<Vec<u8>>(STDOUT_QUEUE);
    let stdout_writer = tokio::spawn(write_stdout(stdout_lines));
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut bridge = Bridge {
        socket: socket.to_owned(),
        max_message,
        shared,
        stdout: stdout_queue,
        setup: Setup::default(),
        link: None,
        replay_counter: 0,
    };
    bridge.attach(stream);
    let result = bridge.relay_stdin().await;
    // The host closed stdin: let the gateway answer what is in flight.
    if let Some(link) = bridge.link.take() {
        let mut writer = link.writer;
        let _ = writer.shutdown().await;
        let _ = link.reader.await;
    }
    drop(bridge);
    let _ = stdout_writer.await;
    result
}

/// Connects through [`client::cli::connect_gateway`], which checks who
/// serves the socket before the host's first byte goes out: a socket in a
/// directory others can write to, or served by another user, could be an
/// impostor collecting what the host sends.
async fn connect(socket: &Path) -> anyhow::Result<tokio::net::UnixStream> {
    client::cli::connect_gateway(socket)
        .await
        .map_err(|error| match error {
            client::cli::GatewayError::Connect { error, .. } => anyhow::anyhow!(
                "cannot reach the llmbasedos gateway at {}: {error}; start it (systemctl start llmbasedos-gateway.socket, or `llmbasedos up`) and check that you may use its socket",
                socket.display()
            ),
            untrusted => anyhow::Error::new(untrusted),
        })
}

/// State the gateway reader and the stdin relay share.
#[derive(Default)]
struct Shared {
    /// Which connection is current; a reader of an older one changes nothing.
    generation: u64,
    /// Whether the current connection is still up.
    alive: bool,
    /// The host's requests sent on the current connection, not yet answered.
    in_flight: HashSet<RequestId>,
    /// The bridge's replayed requests: their answers go here, not to the host.
    replays: HashMap<RequestId, Option<oneshot::Sender<Response>>>,
}

/// What set up the host's session, replayed on a new connection.
#[derive(Default)]
struct Setup {
    initialize: Option<Request>,
    initialized: Option<Vec<u8>>,
    log_level: Option<Request>,
    /// Live subscriptions by URI (an unsubscribe removes one).
    subscriptions: BTreeMap<String, Request>,
}

struct Link {
    generation: u64,
    writer: OwnedWriteHalf,
    reader: tokio::task::JoinHandle<()>,
}

struct Bridge {
    socket: std::path::PathBuf,
    max_message: usize,
    shared: Arc<Mutex<Shared>>,
    stdout: mpsc::Sender<Vec<u8>>,
    setup: Setup,
    link: Option<Link>,
    replay_counter: u64,
}

impl Bridge {
    async fn relay_stdin(&mut self) -> anyhow::Result<()> {
        let mut lines = FramedRead::new(host_input(), DelimitedCodec::newline(self.max_message));
        while let Some(frame) = lines.next().await {
            match frame? {
                // One line is one message: a NUL inside it would frame
                // a second message on the socket (`garbage\0{…}` ran
                // the second half). The line is answered as what it is,
                // not JSON.
                Frame::Message(bytes) if bytes.contains(&0) => {
                    let error = ErrorObject::new(
                        proto::code::PARSE_ERROR,
                        "parse error: a NUL byte inside a line; send one JSON-RPC message per line",
                    );
                    self.answer(Response::error(None, error)).await;
                }
                Frame::Message(bytes) => self.forward(bytes.to_vec()).await,
                Frame::TooLarge { limit } => {
                    let error = ErrorObject::invalid_request(format!(
                        "message exceeds the limit of {limit} bytes and was discarded"
                    ));
                    self.answer(Response::error(None, error)).await;
                }
            }
        }
        Ok(())
    }

    /// Sends one host message to the gateway, reconnecting first if the
    /// connection is gone, and remembers what a new connection replays.
    async fn forward(&mut self, bytes: Vec<u8>) {
        // Anything that does not parse goes as it is: the gateway answers it.
        let message = Message::from_slice(&bytes).ok();
        let request_id = match &message {
            Some(Message::Request(request)) => Some(request.id.clone()),
            _ => None,
        };
        self.remember(message.as_ref(), &bytes);
        // A connection can die right after it is made: a few tries, not more.
        for _ in 0..3 {
            if !self.is_alive()
                && let Err(error) = self.reconnect().await
            {
                tracing::warn!("the gateway is still unreachable: {error:#}");
                if let Some(id) = request_id {
                    let error = ErrorObject::internal(format!(
                        "the llmbasedos gateway is unreachable ({error}); the call was not sent; retry once the gateway runs again"
                    ));
                    self.answer(Response::error(Some(id), error)).await;
                }
                return;
            }
            let Some(link) = self.link.as_mut() else {
                continue;
            };
            let generation = link.generation;
            if let Some(id) = &request_id {
                let mut shared = self.shared.lock().expect("bridge state");
                if !shared.alive || shared.generation != generation {
                    continue;
                }
                shared.in_flight.insert(id.clone());
            }
            match write_frame(&mut link.writer, &bytes, self.max_message).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!("lost the gateway while sending: {error}");
                    lose(&self.shared, generation, &self.stdout).await;
                    // The error above already told the host about a
                    // request that was registered; resending it could run
                    // it twice.
                    if request_id.is_some() {
                        return;
                    }
                }
            }
        }
        if let Some(id) = request_id {
            let error = ErrorObject::internal(
                "the llmbasedos gateway keeps closing the connection; the call was not sent; check its log",
            );
            self.answer(Response::error(Some(id), error)).await;
        }
    }

    fn is_alive(&self) -> bool {
        let shared = self.shared.lock().expect("bridge state");
        self.link
            .as_ref()
            .is_some_and(|link| shared.alive && shared.generation == link.generation)
    }

    fn remember(&mut self, message: Option<&Message>, bytes: &[u8]) {
        match message {
            Some(Message::Request(request)) => match request.method.as_str() {
                "initialize" => self.setup.initialize = Some(request.clone()),
                "logging/setLevel" => self.setup.log_level = Some(request.clone()),
                "resources/subscribe" | "resources/unsubscribe" => {
                    let Some(uri) = request
                        .params
                        .as_ref()
                        .and_then(|params| params.get("uri"))
                        .and_then(Value::as_str)
                    else {
                        return;
                    };
                    if request.method == "resources/subscribe" {
                        self.setup
                            .subscriptions
                            .insert(uri.to_owned(), request.clone());
                    } else {
                        self.setup.subscriptions.remove(uri);
                    }
                }
                _ => {}
            },
            Some(Message::Notification(notification)) => match notification.method.as_str() {
                "notifications/initialized" => self.setup.initialized = Some(bytes.to_vec()),
                // A cancelled request may never be answered: it is no
                // longer in flight.
                "notifications/cancelled" => {
                    let id = notification
                        .params
                        .as_ref()
                        .and_then(|params| params.get("requestId"))
                        .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
                    if let Some(id) = id {
                        self.shared
                            .lock()
                            .expect("bridge state")
                            .in_flight
                            .remove(&id);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Connects again, retrying with a growing pause for up to
    /// [`RECONNECT_WINDOW`], then replays the host's session setup.
    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.link = None;
        let deadline = tokio::time::Instant::now() + RECONNECT_WINDOW;
        let mut pause = Duration::from_millis(50);
        let stream = loop {
            match connect(&self.socket).await {
                Ok(stream) => break stream,
                Err(error) if tokio::time::Instant::now() + pause >= deadline => return Err(error),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        };
        tracing::info!("reconnected to the gateway; replaying the host's session setup");
        self.attach(stream);
        self.replay().await
    }

    /// Starts relaying a new connection's answers to stdout.
    fn attach(&mut self, stream: tokio::net::UnixStream) {
        let (read, writer) = stream.into_split();
        let generation = {
            let mut shared = self.shared.lock().expect("bridge state");
            shared.generation += 1;
            shared.alive = true;
            shared.generation
        };
        let reader = tokio::spawn(read_gateway(
            read,
            self.max_message,
            generation,
            self.shared.clone(),
            self.stdout.clone(),
        ));
        self.link = Some(Link {
            generation,
            writer,
            reader,
        });
    }

    async fn replay(&mut self) -> anyhow::Result<()> {
        if let Some(initialize) = self.setup.initialize.clone() {
            let answer = self.send_replay(initialize, true).await?;
            if let Some(answer) = answer {
                let answer = tokio::time::timeout(REPLAY_TIMEOUT, answer)
                    .await
                    .map_err(|_| anyhow::anyhow!("the gateway did not answer initialize"))?
                    .map_err(|_| anyhow::anyhow!("the gateway closed during initialize"))?;
                if let Err(error) = answer.outcome {
                    anyhow::bail!("the gateway refused the host's initialize again: {error}");
                }
            }
        }
        if let Some(initialized) = self.setup.initialized.clone() {
            self.write_raw(&initialized).await?;
        }
        let later: Vec<Request> = self
            .setup
            .log_level
            .iter()
            .chain(self.setup.subscriptions.values())
            .cloned()
            .collect();
        for request in later {
            self.send_replay(request, false).await?;
        }
        Ok(())
    }

    /// Sends one of the host's setup requests again under a bridge id.
    async fn send_replay(
        &mut self,
        mut request: Request,
        wait: bool,
    ) -> anyhow::Result<Option<oneshot::Receiver<Response>>> {
        self.replay_counter += 1;
        request.id = RequestId::String(format!("{REPLAY_ID_PREFIX}{}", self.replay_counter));
        let (sender, receiver) = oneshot::channel();
        self.shared
            .lock()
            .expect("bridge state")
            .replays
            .insert(request.id.clone(), wait.then_some(sender));
        self.write_raw(&Message::Request(request).to_vec()).await?;
        Ok(wait.then_some(receiver))
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let link = self
            .link
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no gateway connection"))?;
        write_frame(&mut link.writer, bytes, self.max_message).await
    }

    async fn answer(&self, response: Response) {
        let _ = self
            .stdout
            .send(line(&Message::Response(response).to_vec()))
            .await;
    }
}

async fn write_frame(
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
async fn read_gateway(
    read: tokio::net::unix::OwnedReadHalf,
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
        }
        if stdout.send(line(&bytes)).await.is_err() {
            return;
        }
    }
    tracing::warn!("the gateway closed the connection; reconnecting on the host's next message");
    lose(&shared, generation, &stdout).await;
}

/// The id of a response from the gateway; `None` for anything else. Only
/// the envelope is read: the result, which may be megabytes, is skipped
/// rather than built, and the line goes to the host as the gateway wrote it.
fn response_id(bytes: &[u8]) -> Option<RequestId> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        id: Option<RequestId>,
        method: Option<serde::de::IgnoredAny>,
    }
    let envelope: Envelope = serde_json::from_slice(bytes).ok()?;
    match envelope.method {
        Some(_) => None,
        None => envelope.id,
    }
}

/// Marks a connection as gone (once) and answers what was in flight on it.
async fn lose(shared: &Mutex<Shared>, generation: u64, stdout: &mpsc::Sender<Vec<u8>>) {
    let lost: Vec<RequestId> = {
        let mut shared = shared.lock().expect("bridge state");
        if shared.generation != generation || !shared.alive {
            return;
        }
        shared.alive = false;
        shared.replays.clear();
        shared.in_flight.drain().collect()
    };
    for id in lost {
        let error = ErrorObject::internal(
            "the llmbasedos gateway restarted during the call; it may or may not have taken effect: check before retrying it",
        );
        let _ = stdout
            .send(line(
                &Message::Response(Response::error(Some(id), error)).to_vec(),
            ))
            .await;
    }
}

/// A message as a stdout line, its newline included: one write per line.
fn line(message: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 1);
    line.extend_from_slice(message);
    line.push(b'\n');
    line
}

/// Writes the queued lines (each ends with its newline) to stdout.
async fn write_stdout(mut lines: mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
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
fn host_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
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

/// The host's stdout, as [`host_input`] takes its stdin.
fn host_output() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return Box::new(tokio::io::stdout());
    };
    match host_end_kind(&fd) {
        Some(HostEnd::Pipe) => match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        Some(HostEnd::Socket) => match socket_end(fd) {
            Ok(socket) => Box::new(socket),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        None => Box::new(tokio::io::stdout()),
    }
}

enum HostEnd {
    Pipe,
    Socket,
}

fn host_end_kind(fd: &std::os::fd::OwnedFd) -> Option<HostEnd> {
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

fn socket_end(fd: std::os::fd::OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
    let socket = std::os::unix::net::UnixStream::from(fd);
    socket.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(socket)
}
