//! Resources: `resources/list` across services, templates, `resources/read`
//! routed by URI prefix, and `resources/subscribe` watches.

use std::sync::Arc;
use std::time::Duration;

use client::CallError;
use proto::mcp::{
    self, EmptyResult, Era, ListResourceTemplatesResult, ListResourcesParams, ListResourcesResult,
    ReadResourceParams, ReadResourceResult, SubscribeParams, UnsubscribeParams, method,
};
use proto::text::{echo, escaped};
use proto::{ErrorObject, Message, Notification};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Gateway, Reply, Session, code, human, to_value};
use crate::registry::Service;

impl Gateway {
    /// `resources/list` across the services that serve resources, one
    /// service after the other; the cursor names the service and its own
    /// cursor.
    pub(super) async fn list_resources(
        &self,
        session: &Arc<Session>,
        params: ListResourcesParams,
    ) -> Result<Reply, ErrorObject> {
        let snapshot = self.registry.snapshot();
        let serving: Vec<&Arc<Service>> = snapshot
            .services
            .values()
            .filter(|service| service.resources.is_some())
            .filter(|service| self.shows(session, &[&super::rights::resource_name(&service.name)]))
            .collect();
        let (mut index, mut inner) = match params.cursor.as_deref() {
            None => (0, None),
            Some(cursor) => {
                let (name, inner) = cursor.split_once(' ').unwrap_or((cursor, ""));
                let index = serving
                    .iter()
                    .position(|service| service.name == name)
                    .ok_or_else(|| {
                        ErrorObject::invalid_params(
                            "invalid cursor: pass back a nextCursor from resources/list",
                        )
                    })?;
                (
                    index,
                    Some(inner.to_owned()).filter(|inner| !inner.is_empty()),
                )
            }
        };
        let mut resources = Vec::new();
        while let Some(service) = serving.get(index) {
            let Some(spec) = &service.resources else {
                break;
            };
            let params = to_value(&ListResourcesParams {
                cursor: inner.take(),
                meta: None,
            })?;
            match self
                .call_backend::<ListResourcesResult>(
                    session,
                    service,
                    &spec.list,
                    Some(params),
                    None,
                )
                .await
            {
                Ok(page) => {
                    resources.extend(page.resources);
                    if let Some(next) = page.next_cursor {
                        return Ok(Reply::Resources(ListResourcesResult {
                            resources,
                            next_cursor: Some(format!("{} {next}", service.name)),
                            ..ListResourcesResult::default()
                        }));
                    }
                }
                // One service down does not hide the others' resources.
                Err(error) => {
                    tracing::warn!(service = %service.name, error = %error.message, "cannot list its resources")
                }
            }
            index += 1;
        }
        Ok(Reply::Resources(ListResourcesResult {
            resources,
            ..ListResourcesResult::default()
        }))
    }

    pub(super) fn resource_templates(&self) -> Reply {
        let snapshot = self.registry.snapshot();
        let resource_templates = snapshot
            .services
            .values()
            .filter_map(|service| service.resources.as_ref())
            .flat_map(|spec| spec.templates.iter().cloned())
            .collect();
        Reply::ResourceTemplates(ListResourceTemplatesResult {
            resource_templates,
            ..ListResourceTemplatesResult::default()
        })
    }

    /// `resources/read`, routed by the URI prefix a service declared.
    pub(super) async fn read_resource(
        &self,
        session: &Arc<Session>,
        params: ReadResourceParams,
        era: Era,
    ) -> Result<Reply, ErrorObject> {
        let uri = params.uri;
        let snapshot = self.registry.snapshot();
        let owner = snapshot.resource_owner(&uri);
        let Some((service, spec)) = owner else {
            return Err(mcp::resource_not_found_error(era, &echo(&uri)));
        };
        let call = to_value(&ReadResourceParams {
            uri: uri.clone(),
            meta: None,
        })?;
        let read = self
            .call_backend::<ReadResourceResult>(session, service, &spec.read, Some(call), None)
            .await;
        // A missing resource has MCP's one code whatever the service: the
        // service's own "not found" (its base - 3) is recognised by code
        // and re-coded, its message (which says what is missing) kept.
        read.map(Reply::Resource).map_err(|mut error| {
            let not_found = service
                .error_base
                .map(|base| proto::ServiceCodes::new(base).not_found());
            if not_found == Some(error.code) {
                error.code = mcp::code::resource_not_found(era);
                error.data = Some(json!({ "uri": echo(&uri) }));
            }
            error
        })
    }
}

/// Subscriptions one session may hold at once.
pub(super) const MAX_SUBSCRIPTIONS: usize = 64;
/// How often a watch whose service connection was lost is started again
/// before it is given up (with a log line).
pub(super) const RESUBSCRIBE_ATTEMPTS: u32 = 5;
/// The wait before the first new attempt; each next one waits longer.
pub(super) const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// `resources/subscribe` (DESIGN.md: the gateway knows services only by
/// their caps): the owning service's caps name a `resources.subscribe`
/// method, a long-running call that sends a progress once its watch is in
/// place and one per change. The gateway runs it on a task of the session,
/// without the backend timeout, turns each change into
/// `notifications/resources/updated` on the session's own channel, and
/// cancels it on `resources/unsubscribe` or when the session ends.
impl Gateway {
    /// Whether some service's resources can be subscribed to, which
    /// `initialize` advertises.
    pub(super) fn serves_subscriptions(&self) -> bool {
        self.registry.snapshot().services.values().any(|service| {
            service
                .resources
                .as_ref()
                .is_some_and(|spec| spec.subscribe.is_some())
        })
    }

    pub(super) async fn subscribe(
        &self,
        session: &Arc<Session>,
        params: SubscribeParams,
    ) -> Result<Reply, ErrorObject> {
        let uri = params.uri;
        let shared = &session.shared;
        {
            let mut live = shared.subscriptions();
            live.retain(|_, handle| !handle.is_finished());
            if live.contains_key(&uri) {
                return Ok(Reply::Empty(EmptyResult::default()));
            }
            if live.len() >= MAX_SUBSCRIPTIONS {
                return Err(ErrorObject::invalid_request(format!(
                    "this session already holds {MAX_SUBSCRIPTIONS} resource subscriptions, the most it may; resources/unsubscribe one first"
                )));
            }
        }
        if shared.home.is_closed() {
            return Err(ErrorObject::invalid_request(
                "resources/subscribe needs a session to send notifications/resources/updated on: send initialize first (over Streamable HTTP, send its Mcp-Session-Id with every request)",
            ));
        }
        let snapshot = self.registry.snapshot();
        let owner = snapshot.resource_owner(&uri);
        let Some((service, spec)) = owner else {
            return Err(mcp::resource_not_found_error(Era::Legacy, &echo(&uri)));
        };
        let Some(watch) = spec.subscribe.clone() else {
            return Err(ErrorObject::invalid_params(format!(
                "the {} service's resources cannot be subscribed to; read {} again to see changes",
                service.name,
                echo(&uri)
            )));
        };
        let (ready, watching) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(keep_watching(
            service.clone(),
            watch,
            uri.clone(),
            shared.home.clone(),
            ready,
            self.config.supervisor,
        ));
        let timeout = self.config.backend_timeout;
        let outcome = match tokio::time::timeout(timeout, watching).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(ErrorObject::internal("the watch ended before it started")),
            Err(_) => Err(ErrorObject::new(
                code::SERVICE_TIMEOUT,
                format!(
                    "the {} service did not start watching within {}",
                    service.name,
                    human(timeout)
                ),
            )),
        };
        if let Err(error) = outcome {
            task.abort();
            return Err(error);
        }
        let mut live = shared.subscriptions();
        // A concurrent subscribe to the same URI won: one watch is enough.
        match live.entry(uri) {
            std::collections::hash_map::Entry::Occupied(_) => task.abort(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(task.abort_handle());
            }
        }
        Ok(Reply::Empty(EmptyResult::default()))
    }

    /// `resources/unsubscribe`: stops the watch; unknown URIs are fine
    /// (the subscription may have ended already).
    pub(super) fn unsubscribe(&self, session: &Arc<Session>, params: UnsubscribeParams) -> Reply {
        if let Some(handle) = session.shared.subscriptions().remove(&params.uri) {
            handle.abort();
        }
        Reply::Empty(EmptyResult::default())
    }
}

/// Runs one subscription's backend watch: the first progress means the
/// watch is in place (reported on `ready`), each later one is a change.
/// A lost service connection starts the watch again (a bounded number of
/// times; the subscriber then gets one update, since changes may have been
/// missed meanwhile); anything else ends it with a log line.
pub(super) async fn keep_watching(
    service: Arc<Service>,
    watch: String,
    uri: String,
    home: mpsc::Sender<Message>,
    ready: tokio::sync::oneshot::Sender<Result<(), ErrorObject>>,
    supervisor: crate::config::Supervisor,
) {
    let mut ready = Some(ready);
    let mut attempts = 0;
    let updated = || {
        let params = mcp::ResourceUpdatedNotificationParams {
            uri: uri.clone(),
            meta: None,
        };
        if let Ok(params) = serde_json::to_value(params) {
            let _ = home.try_send(Message::Notification(Notification {
                method: method::NOTIFICATIONS_RESOURCES_UPDATED.to_owned(),
                params: Some(params),
            }));
        }
    };
    let params = serde_json::to_value(SubscribeParams {
        uri: uri.clone(),
        meta: None,
    })
    .ok();
    loop {
        let (progress, mut updates) = mpsc::unbounded_channel::<Value>();
        let call = service
            .pool
            .call_raw(&watch, params.clone(), Some(progress));
        tokio::pin!(call);
        let mut watching = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut call => break outcome,
                Some(_) = updates.recv() => {
                    if watching {
                        updated();
                    } else {
                        watching = true;
                        attempts = 0;
                        match ready.take() {
                            Some(ready) => {
                                let _ = ready.send(Ok(()));
                            }
                            None => updated(),
                        }
                    }
                }
            }
        };
        let lost = matches!(
            outcome,
            Err(CallError::Closed | CallError::Send(_) | CallError::Connect(_))
        );
        let error = match outcome {
            Ok(_) => ErrorObject::internal(format!(
                "the {} service ended the watch without a reason",
                service.name
            )),
            Err(CallError::Server(error)) => error,
            Err(CallError::Connect(_)) => ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                format!(
                    "the {} service is not running; {}",
                    service.name,
                    supervisor.start_hint(&service.name)
                ),
            ),
            Err(CallError::TooLarge(message)) => ErrorObject::invalid_request(message),
            Err(CallError::Closed | CallError::Send(_)) => ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                format!(
                    "the {} service stopped while starting the watch; retry",
                    service.name
                ),
            ),
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(error));
            return;
        }
        if lost && attempts < RESUBSCRIBE_ATTEMPTS && !home.is_closed() {
            attempts += 1;
            tokio::time::sleep(RESUBSCRIBE_DELAY * attempts).await;
            continue;
        }
        tracing::warn!(service = %service.name, uri = %escaped(&uri), error = %escaped(&error.message), "a resource subscription ended");
        return;
    }
}
