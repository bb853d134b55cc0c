//! Transports: each turns its wire into JSON-RPC messages for the one
//! dispatcher ([`crate::dispatch::Gateway`]) and writes back what comes out.

pub mod http;
pub mod stdio;
pub mod unix;

use std::sync::Arc;

use proto::{ErrorObject, Message, Response};
use tokio::sync::mpsc;

use crate::dispatch::{Gateway, Session};

/// Outgoing messages (responses and notifications) a client may have queued
/// before the transport blocks the requests that produce them.
const OUTGOING_QUEUE: usize = 1024;

/// A client on a message-stream transport (UNIX socket, WebSocket): its
/// session, and the queue its transport writes from.
#[derive(Debug)]
pub struct StreamClient {
    pub session: Arc<Session>,
    outgoing: mpsc::Sender<Message>,
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
        (StreamClient { session, outgoing }, receiver)
    }

    /// Handles one incoming frame: requests run as their own tasks, so a
    /// slow one never holds up the others or a cancellation.
    pub fn on_frame(&self, gateway: &Arc<Gateway>, bytes: &[u8]) {
        match Message::from_slice(bytes) {
            Ok(Message::Request(request)) => {
                let outgoing = self.outgoing.clone();
                gateway.spawn_request(&self.session, request, move |response| {
                    // Queue the answer at once; only a full queue needs a
                    // task that waits for room.
                    if let Err(mpsc::error::TrySendError::Full(message)) =
                        outgoing.try_send(Message::Response(response))
                    {
                        tokio::spawn(async move {
                            let _ = outgoing.send(message).await;
                        });
                    }
                });
            }
            Ok(message @ Message::Notification(_)) => {
                let gateway = gateway.clone();
                let session = self.session.clone();
                tokio::spawn(async move {
                    gateway.handle(&session, message).await;
                });
            }
            Ok(Message::Response(_)) => {
                tracing::debug!("ignoring a response: the gateway sends no requests");
            }
            Err(invalid) => self.reply_error(invalid.id, invalid.error),
        }
    }

    /// Answers a frame that was over the size limit.
    pub fn on_too_large(&self, limit: usize) {
        self.reply_error(
            None,
            ErrorObject::invalid_request(format!(
                "message exceeds the limit of {limit} bytes and was discarded"
            )),
        );
    }

    fn reply_error(&self, id: Option<proto::RequestId>, error: ErrorObject) {
        let _ = self
            .outgoing
            .try_send(Message::Response(Response::error(id, error)));
    }
}

impl Drop for StreamClient {
    /// A client that went away does not leave work running for nobody.
    fn drop(&mut self) {
        self.session.cancel_all();
    }
}
