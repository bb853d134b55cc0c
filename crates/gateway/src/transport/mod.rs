//! Transports: each turns its wire into JSON-RPC messages for the one
//! dispatcher ([`crate::dispatch::Gateway`]) and writes back what comes out.

pub mod http;
pub mod stdio;
pub mod unix;

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use proto::{ErrorObject, Message, Response};
use tokio::sync::mpsc;

use crate::dispatch::{Answer, Gateway, RequestFuture, Session};

/// Outgoing messages (responses and notifications) a client may have queued
/// before the transport blocks the requests that produce them.
const OUTGOING_QUEUE: usize = 1024;

/// A client on a message-stream transport (UNIX socket, WebSocket): its
/// session, the queue of notifications its transport writes from, and its
/// running requests, which the transport polls on the connection's task
/// ([`StreamClient::next_answer`]).
pub struct StreamClient {
    pub session: Arc<Session>,
    outgoing: mpsc::Sender<Message>,
    in_flight: FuturesUnordered<RequestFuture>,
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
            in_flight: FuturesUnordered::new(),
        };
        (client, receiver)
    }

    /// Handles one incoming frame. A request joins the running ones, which
    /// run concurrently: a slow one never holds up the others or a
    /// cancellation.
    pub fn on_frame(&mut self, gateway: &Arc<Gateway>, bytes: &[u8]) {
        match Message::from_slice(bytes) {
            Ok(Message::Request(request)) => {
                match gateway.start_request(&self.session, request, true) {
                    Ok(answer) => self.in_flight.push(answer),
                    Err(refusal) => self.reply(refusal),
                }
            }
            Ok(Message::Notification(notification)) => {
                gateway.notification(&self.session, &notification);
            }
            Ok(Message::Response(_)) => {
                tracing::debug!("ignoring a response: the gateway sends no requests");
            }
            Err(invalid) => self.reply(Response::error(invalid.id, invalid.error)),
        }
    }

    /// Runs the client's requests until one is answered (what it gets may
    /// be raw result text: written as it is). Pending forever
    /// while none runs, so that it can sit in a `select!`; cancel-safe.
    /// Before writing the answer, the transport writes what
    /// [`StreamClient::start`]'s receiver holds: a request's progress
    /// notifications are queued there before its answer is ready.
    pub async fn next_answer(&mut self) -> Answer {
        loop {
            match self.in_flight.next().await {
                Some(Some(answer)) => return answer,
                // Cancelled: no answer.
                Some(None) => {}
                None => std::future::pending().await,
            }
        }
    }

    /// How many requests are running.
    pub fn running(&self) -> usize {
        self.in_flight.len()
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

impl Drop for StreamClient {
    /// A client that went away does not leave work running for nobody.
    fn drop(&mut self) {
        self.session.cancel_all();
    }
}
