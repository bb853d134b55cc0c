//! Admission: a client's session and its request slots (a delegate's
//! second set), a request's id checked against the running ones, the wait
//! for a slot, and the future a transport polls.

use std::sync::Arc;

use futures::future::{AbortHandle, Abortable};
use proto::{ErrorObject, Message, Request, RequestId, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{Answer, Gateway, RequestFuture, Session, code, human};

impl Gateway {
    /// A new session of the client `identity`; its notifications (progress,
    /// list changes) go to `outgoing`.
    pub fn session(&self, identity: String, outgoing: mpsc::Sender<Message>) -> Arc<Session> {
        let client = self
            .licensing
            .as_ref()
            .map(|licensing| licensing.client(&identity));
        // The tier may allow fewer requests at once than the gateway does.
        let slots = client
            .as_ref()
            .and_then(|client| client.tier().concurrent)
            .map_or(self.config.max_concurrent_requests, |tier| {
                tier.min(self.config.max_concurrent_requests)
            });
        let permits = self
            .permits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(identity.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(slots)))
            .clone();
        // A delegate's requests on behalf of a client take a second set of
        // slots of the same size (see `SessionShared::delegated_permits`).
        let delegated_permits = identity
            .strip_prefix("uid:")
            .and_then(|uid| uid.parse::<u32>().ok())
            .filter(|uid| self.config.delegates.contains(uid))
            .map(|_| {
                self.permits
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(format!("{identity} on behalf"))
                    .or_insert_with(|| Arc::new(Semaphore::new(slots)))
                    .clone()
            });
        Session::new(identity, outgoing, permits, delegated_permits, client)
    }

    /// Admits a request and returns the future that answers it, for the
    /// transport to poll (stream transports poll it on the connection's own
    /// task: no task spawn and no hand-off per request). The future yields
    /// `None` when the request was cancelled: MCP sends no answer then.
    /// A request whose id is in use gets its error response at once.
    ///
    /// `permit` is one of the client's request slots, when the transport
    /// waited for it itself (stream transports do, so that a connection
    /// reads its next request only once this one has a slot); without it,
    /// the future waits for a slot in turn, at most the backend timeout,
    /// then answers [`code::TOO_MANY_REQUESTS`].
    ///
    /// With `raw_results`, a seed call of a backend method may be answered
    /// with the backend's result text as it came ([`Answer::Raw`]), never
    /// parsed nor re-serialized: a transport that writes JSON text asks
    /// for that.
    pub fn start_request(
        self: &Arc<Self>,
        session: &Arc<Session>,
        request: Request,
        raw_results: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<RequestFuture, Response> {
        let (abort, registration) = AbortHandle::new_pair();
        {
            let mut running = session.running();
            if running.contains_key(&request.id) {
                let error = ErrorObject::invalid_request(format!(
                    "request id {} is already in use by a running request",
                    proto::text::echo(&request.id.to_string())
                ));
                return Err(Response::error(Some(request.id), error));
            }
            running.insert(request.id.clone(), abort);
        }
        let gateway = self.clone();
        let session = session.clone();
        Ok(Box::pin(async move {
            let id = request.id.clone();
            let answer = async {
                // Without a slot yet, the request waits its turn (and can
                // be cancelled meanwhile).
                let _permit = match permit {
                    Some(permit) => permit,
                    None => match session
                        .permit_for(&request, gateway.config.backend_timeout)
                        .await
                    {
                        Some(permit) => permit,
                        None => return Answer::Response(gateway.too_many(request.id)),
                    },
                };
                if raw_results {
                    gateway.request_raw(&session, request).await
                } else {
                    Answer::Response(gateway.request(&session, request).await)
                }
            };
            let outcome = Abortable::new(answer, registration).await;
            session.running().remove(&id);
            outcome.ok()
        }))
    }

    /// The answer to a request that waited longer than the backend timeout
    /// for one of its client's request slots.
    pub fn too_many(&self, id: RequestId) -> Response {
        let error = ErrorObject::new(
            code::TOO_MANY_REQUESTS,
            format!(
                "this client had {} requests running for {} and this one found no slot: wait for answers before sending more",
                self.config.max_concurrent_requests,
                human(self.config.backend_timeout)
            ),
        );
        Response::error(Some(id), error)
    }

    /// Runs a request as its own task (for transports with no connection
    /// task to poll it on); `respond` gets the answer (never called for a
    /// cancelled request, as MCP specifies).
    pub fn spawn_request<F>(self: &Arc<Self>, session: &Arc<Session>, request: Request, respond: F)
    where
        F: FnOnce(Answer) + Send + 'static,
    {
        match self.start_request(session, request, true, None) {
            Ok(answer) => {
                tokio::spawn(async move {
                    if let Some(answer) = answer.await {
                        respond(answer);
                    }
                });
            }
            Err(refusal) => respond(Answer::Response(refusal)),
        }
    }
}
