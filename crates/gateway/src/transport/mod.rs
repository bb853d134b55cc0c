//! Transports: each turns its wire into JSON-RPC messages for the one
//! dispatcher ([`crate::dispatch::Gateway`]) and writes back what comes out.

mod batch;
pub mod http;
pub mod stdio;
pub mod unix;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use proto::{ErrorObject, Incoming, InvalidMessage, Message, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::dispatch::{Answer, Gateway, RequestFuture, Session};

/// Outgoing messages (responses and notifications) a client may have queued
/// before the transport blocks the requests that produce them.
const OUTGOING_QUEUE: usize = 1024;

/// Encoded output a stream transport holds for a peer that does not read
/// before it stops reading that peer's requests: the requests running
/// finish (their answers join the buffer) and give their slots back, so a
/// peer that never reads holds none of its identity's budget.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// A request waiting for one of its identity's slots.
type Waiting = (
    Request,
    Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>,
);

/// A running batch's answers ([`batch::run`]).
type BatchFuture = Pin<Box<dyn Future<Output = Vec<Answer>> + Send>>;

/// What a stream transport writes back: one answer, or a batch's array.
#[derive(Debug)]
pub enum Reply {
    One(Answer),
    Batch(Vec<Answer>),
}

impl Reply {
    /// The request it answers (none for a batch).
    pub fn id(&self) -> Option<&proto::RequestId> {
        match self {
            Reply::One(answer) => answer.id(),
            Reply::Batch(_) => None,
        }
    }
}

impl serde::Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::One(answer) => answer.serialize(serializer),
            Reply::Batch(answers) => answers.serialize(serializer),
        }
    }
}

/// A client on a message-stream transport (UNIX socket, WebSocket): its
/// session, the queue of notifications its transport writes from, and its
/// running requests, which the transport polls on the connection's task
/// ([`StreamClient::next_answer`]).
///
/// Admission is fair across connections: the identity's slots are a FIFO
/// semaphore, and a connection whose request finds no free slot reads no
/// further request until that one has its slot
/// ([`StreamClient::reads_frames`]). Each connection has at most one waiter
/// in the queue, so slots go round-robin among the connections that want
/// them, and a connection that floods the gateway only slows itself.
///
/// A connection runs one JSON-RPC batch at a time (MCP 2025-03-26 sessions
/// only: [`batch`]); a second batch that arrives meanwhile waits, and the
/// connection reads on once it has started.
pub struct StreamClient {
    pub session: Arc<Session>,
    outgoing: mpsc::Sender<Message>,
    in_flight: InFlight,
    waiting: Option<Waiting>,
    batch: Option<BatchFuture>,
    held_batch: Option<Vec<Result<Message, InvalidMessage>>>,
}

impl std::fmt::Debug for StreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamClient")
            .field("session", &self.session)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl StreamClient {
    /// Starts a client: returns it and the receiver its writer drains. The
    /// client gets `notifications/tools/list_changed` while it is connected.
    pub fn start(
        gateway: &Arc<Gateway>,
        identity: String,
    ) -> (StreamClient, mpsc::Receiver<Message>) {
        let (outgoing, receiver) = mpsc::channel(OUTGOING_QUEUE);
        let session = gateway.session(identity, outgoing.clone());
        let mut changes = gateway.registry.subscribe();
        let weak = Arc::downgrade(&session);
        tokio::spawn(async move {
            while changes.recv().await.is_ok() {
                let Some(session) = weak.upgrade() else { break };
                if session.wants_list_changed() {
                    session.notify(proto::mcp::method::NOTIFICATIONS_TOOLS_LIST_CHANGED, None);
                }
                session.log(
                    proto::mcp::LoggingLevel::Info,
                    serde_json::json!({ "event": "the services and their tools changed" }),
                );
            }
        });
        let client = StreamClient {
            session,
            outgoing,
            in_flight: InFlight::default(),
            waiting: None,
            batch: None,
            held_batch: None,
        };
        (client, receiver)
    }

    /// Handles one incoming frame. A request joins the running ones, which
    /// run concurrently: a slow one never holds up the others or a
    /// cancellation.
    pub fn on_frame(&mut self, gateway: &Arc<Gateway>, bytes: &[u8]) {
        let message = match Incoming::from_slice(bytes) {
            Ok(Incoming::One(message)) => Ok(message),
            Ok(Incoming::Batch(entries)) => return self.on_batch(gateway, entries),
            Err(invalid) => Err(invalid),
        };
        match message {
            Ok(Message::Request(request)) => match self.session.try_permit_for(&request) {
                Some(permit) => self.run(gateway, request, permit),
                None => {
                    let wait = self
                        .session
                        .permit_for(&request, gateway.config.backend_timeout);
                    self.waiting = Some((request, Box::pin(wait)));
                }
            },
            Ok(Message::Notification(notification)) => {
                gateway.notification(&self.session, &notification);
            }
            Ok(Message::Response(_)) => {
                tracing::debug!("ignoring a response: the gateway sends no requests");
            }
            Err(invalid) => self.reply(Response::error(invalid.id, invalid.error)),
        }
    }

    fn on_batch(&mut self, gateway: &Arc<Gateway>, entries: Vec<Result<Message, InvalidMessage>>) {
        if let Some(error) = batch::refusal(&self.session, entries.len()) {
            return self.reply(Response::error(None, error));
        }
        if self.batch.is_some() {
            self.held_batch = Some(entries);
        } else {
            self.start_batch(gateway, entries);
        }
    }

    fn start_batch(
        &mut self,
        gateway: &Arc<Gateway>,
        entries: Vec<Result<Message, InvalidMessage>>,
    ) {
        let gateway = gateway.clone();
        let session = self.session.clone();
        self.batch = Some(Box::pin(async move {
            batch::run(&gateway, &session, entries).await
        }));
    }

    fn run(&mut self, gateway: &Arc<Gateway>, request: Request, permit: OwnedSemaphorePermit) {
        match gateway.start_request(&self.session, request, true, Some(permit)) {
            Ok(answer) => self.in_flight.push(answer),
            Err(refusal) => self.reply(refusal),
        }
    }

    /// Whether the transport may read the next frame: not while a request
    /// waits for a slot, nor while a batch waits for the one before it.
    pub fn reads_frames(&self) -> bool {
        self.waiting.is_none() && self.held_batch.is_none()
    }

    /// Runs the client's requests until one is answered (what it gets may
    /// be raw result text: written as it is), or until the waiting request
    /// got its slot (`None`: the transport may read again). Pending forever
    /// while nothing runs or waits, so that it can sit in a `select!`;
    /// cancel-safe. Before writing the answer, the transport writes what
    /// [`StreamClient::start`]'s receiver holds: a request's progress
    /// notifications are queued there before its answer is ready.
    pub async fn next_answer(&mut self, gateway: &Arc<Gateway>) -> Option<Reply> {
        if self.waiting.is_none() && self.batch.is_none() {
            return Some(Reply::One(next_of(&mut self.in_flight).await));
        }
        let event = {
            let StreamClient {
                in_flight,
                waiting,
                batch,
                ..
            } = self;
            let admitted = async {
                match waiting {
                    Some((_, wait)) => wait.await,
                    None => std::future::pending().await,
                }
            };
            let batch_done = async {
                match batch {
                    Some(batch) => batch.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                answer = next_of(in_flight) => return Some(Reply::One(answer)),
                permit = admitted => Ok(permit),
                answers = batch_done => Err(answers),
            }
        };
        match event {
            Ok(admitted) => {
                let (request, _) = self.waiting.take().expect("it was waiting");
                match admitted {
                    Some(permit) => self.run(gateway, request, permit),
                    None => self.reply(gateway.too_many(request.id)),
                }
                None
            }
            Err(answers) => {
                self.batch = None;
                if let Some(entries) = self.held_batch.take() {
                    self.start_batch(gateway, entries);
                }
                // A batch of notifications and cancelled requests gets
                // no answer at all.
                (!answers.is_empty()).then_some(Reply::Batch(answers))
            }
        }
    }

    /// How many requests are running (a batch counts as one).
    pub fn running(&self) -> usize {
        self.in_flight.len() + usize::from(self.batch.is_some())
    }

    /// Answers a frame that was over the size limit.
    pub fn on_too_large(&self, limit: usize) {
        self.reply(Response::error(
            None,
            ErrorObject::invalid_request(format!(
                "message exceeds the limit of {limit} bytes and was discarded"
            )),
        ));
    }

    /// Queues an answer made without running anything (a refusal).
    fn reply(&self, response: Response) {
        let _ = self.outgoing.try_send(Message::Response(response));
    }
}

/// A connection's running requests.
///
/// The first runs in a slot of its own, polled directly, and only the
/// others go into a [`FuturesUnordered`]: that set wakes its task each
/// time it has polled all its futures (`polled == len`, futures-rs #2333,
/// so that a future polled twice cannot starve the executor), and with
/// one request running that was every poll — a yield, which tokio answers
/// by waking a parked worker to look for work. MCP `tools/call` of a 4 KiB
/// `fs_read` through the stdio bridge: 3.0 → 2.0 context switches of the
/// gateway per call (two `futex` calls fewer). The slot's request is
/// polled whenever the connection's task runs, woken or not: cheap
/// (its future waits on a channel and a timer), and only while others run
/// beside it.
#[derive(Default)]
struct InFlight {
    first: Option<RequestFuture>,
    others: FuturesUnordered<RequestFuture>,
}

impl InFlight {
    fn push(&mut self, request: RequestFuture) {
        if self.first.is_none() {
            self.first = Some(request);
        } else {
            self.others.push(request);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.others.len()
    }

    /// The next request to end (`None` inside: cancelled); pending while
    /// none runs.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Answer>> {
        if let Some(first) = &mut self.first
            && let Poll::Ready(outcome) = first.as_mut().poll(cx)
        {
            self.first = None;
            return Poll::Ready(outcome);
        }
        if self.others.is_empty() {
            return Poll::Pending;
        }
        match self.others.poll_next_unpin(cx) {
            Poll::Ready(Some(outcome)) => Poll::Ready(outcome),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// The next answer of the running requests; pending forever while none runs.
async fn next_of(in_flight: &mut InFlight) -> Answer {
    loop {
        // `None`: cancelled, no answer.
        if let Some(answer) = std::future::poll_fn(|cx| in_flight.poll_next(cx)).await {
            return answer;
        }
    }
}

impl Drop for StreamClient {
    /// A client that went away does not leave work running for nobody.
    fn drop(&mut self) {
        self.session.cancel_all();
    }
}
