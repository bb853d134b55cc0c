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

use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Incoming, Message, Request, RequestId, Response};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

mod relay;

use relay::{Sent, failed_batch, host_input, line, lose, read_gateway, write_frame, write_stdout};

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
///
/// The connection's halves wait for readable events only ([`unix_io`]):
/// the gateway reading a request does not wake the bridge.
async fn connect(socket: &Path) -> anyhow::Result<Halves> {
    let stream = client::cli::connect_gateway(socket)
        .await
        .map_err(|error| match error {
            client::cli::GatewayError::Connect { error, .. } => anyhow::anyhow!(
                "cannot reach the llmbasedos gateway at {}: {error}; start it (systemctl start llmbasedos-gateway.socket, or `llmbasedos up`) and check that you may use its socket",
                socket.display()
            ),
            untrusted => anyhow::Error::new(untrusted),
        })?;
    unix_io::split_tokio(stream)
        .map_err(|error| anyhow::anyhow!("cannot register the gateway connection: {error}"))
}

/// A gateway connection's halves.
type Halves = (unix_io::ReadHalf, unix_io::WriteHalf);

/// State the gateway reader and the stdin relay share.
#[derive(Default)]
struct Shared {
    /// Which connection is current; a reader of an older one changes nothing.
    generation: u64,
    /// Whether the current connection is still up.
    alive: bool,
    /// The host's requests sent on the current connection, not yet answered.
    in_flight: HashSet<RequestId>,
    /// The host's batches (MCP 2025-03-26) sent on the current connection,
    /// not yet answered, by the ids of their requests, oldest first (the
    /// gateway answers a connection's batches in turn).
    batches: Vec<Vec<RequestId>>,
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
    writer: unix_io::WriteHalf,
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
        let sent = match Incoming::from_slice(&bytes) {
            Ok(Incoming::One(message)) => {
                self.remember(Some(&message), &bytes);
                match message {
                    Message::Request(request) => Sent::Request(request.id),
                    _ => Sent::Nothing,
                }
            }
            Ok(Incoming::Batch(entries)) => {
                let mut ids = Vec::new();
                for message in entries.iter().flatten() {
                    self.remember(Some(message), &message.to_vec());
                    if let Message::Request(request) = message {
                        ids.push(request.id.clone());
                    }
                }
                Sent::Batch(ids)
            }
            Err(_) => Sent::Nothing,
        };
        // A connection can die right after it is made: a few tries, not more.
        for _ in 0..3 {
            if !self.is_alive()
                && let Err(error) = self.reconnect().await
            {
                tracing::warn!("the gateway is still unreachable: {error:#}");
                let error = ErrorObject::internal(format!(
                    "the llmbasedos gateway is unreachable ({error}); the call was not sent; retry once the gateway runs again"
                ));
                self.fail(sent, &error).await;
                return;
            }
            let Some(link) = self.link.as_mut() else {
                continue;
            };
            let generation = link.generation;
            if sent.expects_answer() {
                let mut shared = self.shared.lock().expect("bridge state");
                if !shared.alive || shared.generation != generation {
                    continue;
                }
                match &sent {
                    Sent::Request(id) => {
                        shared.in_flight.insert(id.clone());
                    }
                    Sent::Batch(ids) => shared.batches.push(ids.clone()),
                    Sent::Nothing => {}
                }
            }
            match write_frame(&mut link.writer, &bytes, self.max_message).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!("lost the gateway while sending: {error}");
                    lose(&self.shared, generation, &self.stdout).await;
                    // The error above already told the host about a
                    // request that was registered; resending it could run
                    // it twice.
                    if sent.expects_answer() {
                        return;
                    }
                }
            }
        }
        let error = ErrorObject::internal(
            "the llmbasedos gateway keeps closing the connection; the call was not sent; check its log",
        );
        self.fail(sent, &error).await;
    }

    /// Answers what was not sent with `error`: a request by its id, a batch
    /// as a batch.
    async fn fail(&self, sent: Sent, error: &ErrorObject) {
        match sent {
            Sent::Request(id) => self.answer(Response::error(Some(id), error.clone())).await,
            Sent::Batch(ids) if !ids.is_empty() => {
                let _ = self.stdout.send(failed_batch(&ids, error)).await;
            }
            Sent::Batch(_) | Sent::Nothing => {}
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
    fn attach(&mut self, (read, writer): Halves) {
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
