//! Sessions and admission: one client's era, log level, running requests
//! (cancellable by id), request slots and resource subscriptions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::AbortHandle;
use proto::mcp::{self, LoggingLevel, ProtocolVersion, method};
use proto::{Message, Notification, Request, RequestId};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::licensing::Client;

/// One client's state: its protocol era, log level, running requests.
/// Cheap to [`Session::fork`]: an HTTP request gets its own notification
/// stream while sharing the session's state.
#[derive(Debug)]
pub struct Session {
    pub(super) shared: Arc<SessionShared>,
    outgoing: mpsc::Sender<Message>,
}

#[derive(Debug)]
pub(super) struct SessionShared {
    /// Who the client is (a token holder, a uid), for logs and limits.
    pub(super) identity: String,
    pub(super) state: Mutex<SessionState>,
    /// foldhash: a client's own ids, at most `max_concurrent_requests` of them.
    pub(super) running: Mutex<foldhash::HashMap<RequestId, AbortHandle>>,
    pub(super) permits: Arc<Semaphore>,
    /// A delegate's second set of slots, for its requests that act on
    /// behalf of a client (`_meta["llmbasedos/on_behalf_of"]`): a
    /// workflow's inner calls never wait behind the waiting calls that
    /// started the workflows (the same uid under `llmbasedos up`), so those
    /// cannot starve them. `None` for a client that is not a delegate.
    pub(super) delegated_permits: Option<Arc<Semaphore>>,
    /// The client as the licence sees it (none: no licensing).
    pub(super) client: Option<Arc<Client>>,
    /// The session's own notification channel (for Streamable HTTP the GET
    /// stream, for UNIX and WebSocket the connection): where
    /// `notifications/resources/updated` goes, whichever request subscribed.
    pub(super) home: mpsc::Sender<Message>,
    /// The live `resources/subscribe` watches, by URI.
    pub(super) subscriptions: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

#[derive(Debug, Default)]
pub(super) struct SessionState {
    pub(super) legacy_version: Option<ProtocolVersion>,
    pub(super) log_level: Option<LoggingLevel>,
}

impl Session {
    pub(super) fn new(
        identity: String,
        outgoing: mpsc::Sender<Message>,
        permits: Arc<Semaphore>,
        delegated_permits: Option<Arc<Semaphore>>,
        client: Option<Arc<Client>>,
    ) -> Arc<Session> {
        Arc::new(Session {
            shared: Arc::new(SessionShared {
                identity,
                state: Mutex::new(SessionState::default()),
                running: Mutex::new(foldhash::HashMap::default()),
                permits,
                delegated_permits,
                client,
                home: outgoing.clone(),
                subscriptions: Mutex::new(HashMap::new()),
            }),
            outgoing,
        })
    }

    /// A session for one request a delegate makes on behalf of the client
    /// `identity`: that client's rights and limits, the delegate's
    /// notification stream and request slots.
    pub(super) fn on_behalf_of(
        &self,
        identity: String,
        client: Option<Arc<Client>>,
    ) -> Arc<Session> {
        let legacy_version = self.state().legacy_version;
        Arc::new(Session {
            shared: Arc::new(SessionShared {
                identity,
                state: Mutex::new(SessionState {
                    legacy_version,
                    log_level: None,
                }),
                running: Mutex::new(foldhash::HashMap::default()),
                permits: self.shared.permits.clone(),
                delegated_permits: None,
                client,
                home: self.shared.home.clone(),
                subscriptions: Mutex::new(HashMap::new()),
            }),
            outgoing: self.outgoing.clone(),
        })
    }

    /// The same session, with notifications going to `outgoing`.
    pub fn fork(&self, outgoing: mpsc::Sender<Message>) -> Arc<Session> {
        Arc::new(Session {
            shared: self.shared.clone(),
            outgoing,
        })
    }

    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// The client's tier and bucket, when the gateway is licensed.
    pub fn client(&self) -> Option<&Arc<Client>> {
        self.shared.client.as_ref()
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn running(
        &self,
    ) -> std::sync::MutexGuard<'_, foldhash::HashMap<RequestId, AbortHandle>> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the client went through `initialize` (2025-11-25) and so
    /// wants `notifications/tools/list_changed`.
    pub fn wants_list_changed(&self) -> bool {
        self.state().legacy_version.is_some()
    }

    /// The protocol revision the client negotiated with `initialize`, if
    /// it went through it.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.state().legacy_version
    }

    /// Sends a notification to the client; dropped if it is not reading.
    pub fn notify(&self, method: &str, params: Option<Value>) {
        let _ = self.outgoing.try_send(Message::Notification(Notification {
            method: method.to_owned(),
            params,
        }));
    }

    /// Sends a log record (`notifications/message`) if the client asked for
    /// records of this level (`logging/setLevel`, or a 2026-07-28 request's
    /// `io.modelcontextprotocol/logLevel`).
    pub fn log(&self, level: LoggingLevel, data: Value) {
        let wanted = self
            .state()
            .log_level
            .is_some_and(|minimum| level >= minimum);
        if wanted {
            let params = mcp::LoggingMessageNotificationParams {
                level,
                logger: Some("llmbasedos-gateway".to_owned()),
                data,
                meta: None,
            };
            if let Ok(params) = serde_json::to_value(params) {
                self.notify(method::NOTIFICATIONS_MESSAGE, Some(params));
            }
        }
    }

    /// Stops a running request (`notifications/cancelled`).
    pub fn cancel(&self, id: &RequestId) {
        if let Some(handle) = self.running().remove(id) {
            handle.abort();
        }
    }

    /// One of the client's request slots, if one is free now.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.shared.permits.clone().try_acquire_owned().ok()
    }

    /// The slots `request` takes: a delegate's delegated ones when it acts
    /// on behalf of a client, the client's own otherwise.
    fn slots_for(&self, request: &Request) -> &Arc<Semaphore> {
        match &self.shared.delegated_permits {
            Some(delegated)
                if request
                    .params
                    .as_ref()
                    .and_then(|params| params.get("_meta"))
                    .and_then(|meta| meta.get(super::delegation::ON_BEHALF_OF))
                    .is_some() =>
            {
                delegated
            }
            _ => &self.shared.permits,
        }
    }

    /// One of the slots `request` takes, if one is free now.
    pub fn try_permit_for(&self, request: &Request) -> Option<OwnedSemaphorePermit> {
        self.slots_for(request).clone().try_acquire_owned().ok()
    }

    /// Waits for one of the slots `request` takes, in turn (the semaphore
    /// is FIFO), at most `wait`; `None` when none came.
    pub fn permit_for(
        &self,
        request: &Request,
        wait: Duration,
    ) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let permits = self.slots_for(request).clone();
        async move {
            tokio::time::timeout(wait, permits.acquire_owned())
                .await
                .ok()?
                .ok()
        }
    }

    /// Waits for one of the client's request slots, in turn (the semaphore
    /// is FIFO), at most `wait`; `None` when none came.
    pub fn permit(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let permits = self.shared.permits.clone();
        async move {
            tokio::time::timeout(wait, permits.acquire_owned())
                .await
                .ok()?
                .ok()
        }
    }

    /// How many requests are running.
    pub fn running_count(&self) -> usize {
        self.running().len()
    }

    /// Stops every running request (the client went away).
    pub fn cancel_all(&self) {
        for (_, handle) in self.running().drain() {
            handle.abort();
        }
        self.shared.end_subscriptions();
    }
}

impl SessionShared {
    pub(super) fn subscriptions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn end_subscriptions(&self) {
        for (_, handle) in self.subscriptions().drain() {
            handle.abort();
        }
    }
}

impl Drop for SessionShared {
    /// A session that is gone leaves no watch running (the watch tasks hold
    /// only the notification channel, never the session).
    fn drop(&mut self) {
        self.end_subscriptions();
    }
}
