//! JSON-RPC batches. MCP 2025-03-26 requires a server to accept them (its
//! hosts may send an array of requests and notifications, `initialize`
//! excepted); 2025-06-18 dropped them. So a batch is run for a session that
//! negotiated 2025-03-26 and refused, with the reason, for every other one
//! (and for classic callers, which negotiate nothing).
//!
//! A batch's requests run concurrently, each admitted like a request of
//! its own (one of the identity's slots, in turn); the answer is one array
//! in the order of the batch, without entries for notifications and
//! cancelled requests, and nothing at all when no entry wants an answer.

use std::sync::Arc;

use futures::future::join_all;
use proto::mcp::ProtocolVersion;
use proto::{ErrorObject, InvalidMessage, Message, RequestId, Response};

use crate::dispatch::{Answer, Gateway, Session};

/// Entries one batch may hold: a batch is one frame, answered at once, and
/// this keeps one frame from queueing more work than a client's slots
/// can take in a backend timeout or two.
pub(super) const MAX_BATCH: usize = 64;

/// Why `session` may not send a batch of `entries` entries, if it may not.
pub(super) fn refusal(session: &Session, entries: usize) -> Option<ErrorObject> {
    let version = session.protocol_version();
    if !version.is_some_and(ProtocolVersion::has_batches) {
        let negotiated = match version {
            Some(version) => format!("this session negotiated {}", version.as_str()),
            None => "this session did not initialize with it".to_owned(),
        };
        return Some(ErrorObject::invalid_request(format!(
            "JSON-RPC batches belong to MCP 2025-03-26 and {negotiated}: send one message per request"
        )));
    }
    (entries > MAX_BATCH).then(|| {
        ErrorObject::invalid_request(format!(
            "a batch of {entries} messages: at most {MAX_BATCH} per batch; send the rest in another"
        ))
    })
}

/// Runs a batch that [`refusal`] let through; the answers in batch order
/// (raw result text where a backend's result needs no change: every
/// transport writes JSON text). Dropped before the end (the client left),
/// it cancels what runs.
pub(super) async fn run(
    gateway: &Arc<Gateway>,
    session: &Arc<Session>,
    entries: Vec<Result<Message, InvalidMessage>>,
) -> Vec<Answer> {
    let mut running = CancelOnDrop {
        session: session.clone(),
        ids: Vec::new(),
    };
    let mut answers = Vec::with_capacity(entries.len());
    for entry in entries {
        let request = match entry {
            Err(invalid) => {
                answers.push(Entry::Ready(Response::error(invalid.id, invalid.error)));
                continue;
            }
            Ok(Message::Notification(notification)) => {
                gateway.notification(session, &notification);
                continue;
            }
            Ok(Message::Response(_)) => continue,
            Ok(Message::Request(request)) => request,
        };
        if request.method == proto::mcp::method::INITIALIZE {
            let error = ErrorObject::invalid_request(
                "initialize must not be part of a batch: send it alone, before anything else",
            );
            answers.push(Entry::Ready(Response::error(Some(request.id), error)));
            continue;
        }
        let id = request.id.clone();
        match gateway.start_request(session, request, true, None) {
            Ok(future) => {
                running.ids.push(id);
                answers.push(Entry::Running(future));
            }
            Err(refusal) => answers.push(Entry::Ready(refusal)),
        }
    }
    let answers = join_all(answers.into_iter().map(|entry| async move {
        match entry {
            Entry::Ready(response) => Some(Answer::Response(response)),
            Entry::Running(future) => future.await,
        }
    }))
    .await;
    running.ids.clear();
    answers.into_iter().flatten().collect()
}

enum Entry {
    Ready(Response),
    Running(crate::dispatch::RequestFuture),
}

/// Cancels the batch's requests that still run when the batch is dropped.
struct CancelOnDrop {
    session: Arc<Session>,
    ids: Vec<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        for id in &self.ids {
            self.session.cancel(id);
        }
    }
}
