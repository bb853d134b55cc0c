//! Calls to the backend servers: the timeout, the errors a lost or slow
//! service becomes, progress relayed under the client's token.

use std::sync::Arc;
use std::time::Duration;

use client::CallError;
use proto::ErrorObject;
use proto::mcp::{self, LoggingLevel, method};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::{Gateway, Session, code, human};
use crate::registry::Service;

impl Gateway {
    /// A backend call whose result is read as `T`, straight from the
    /// backend's text (a `Value` when the gateway does not know its shape).
    pub(super) async fn call_backend<T: DeserializeOwned>(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<T, ErrorObject> {
        let raw = self
            .call_backend_raw(session, service, method, params, progress_token)
            .await?;
        serde_json::from_str(raw.get()).map_err(|error| {
            ErrorObject::internal(format!(
                "the {} service's answer cannot be read: {error}",
                service.name
            ))
        })
    }

    /// A backend call whose result goes back as the backend wrote it.
    pub(super) async fn call_backend_raw(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let mut params = params;
        if service.wants_caller {
            super::delegation::add_caller(session, &mut params);
        }
        let (progress, forwarder) = forward_progress(session, progress_token);
        let timeout = self.config.backend_timeout;
        let outcome = quiet_for(
            timeout,
            forwarder.as_ref().map(Forwarder::activity),
            service.pool.call_raw(method, params, progress),
        )
        .await;
        if let Some(forwarder) = forwarder {
            forwarder.finish().await;
        }
        let result = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(CallError::Server(error))) => return Err(error),
            Ok(Err(CallError::Connect(error))) => {
                tracing::warn!(service = %service.name, %error, "cannot reach the service");
                Err(ErrorObject::new(
                    code::SERVICE_UNAVAILABLE,
                    format!(
                        "the {} service is not running; {}",
                        service.name,
                        self.config.supervisor.start_hint(&service.name)
                    ),
                ))
            }
            Ok(Err(CallError::Closed | CallError::Send(_))) => Err(ErrorObject::new(
                code::SERVICE_UNAVAILABLE,
                format!(
                    "the {} service stopped while handling the request; retry",
                    service.name
                ),
            )),
            Ok(Err(CallError::TooLarge(message))) => Err(ErrorObject::invalid_request(message)),
            Err(Quiet::Silent) => Err(ErrorObject::new(
                code::SERVICE_TIMEOUT,
                format!(
                    "the {} service did not answer within {}",
                    service.name,
                    human(timeout)
                ),
            )),
            Err(Quiet::TooLong) => Err(ErrorObject::new(
                code::SERVICE_TIMEOUT,
                format!(
                    "the {} service reported progress but did not finish within {}",
                    service.name,
                    human(MAX_WITH_PROGRESS)
                ),
            )),
        };
        // The service itself failed: worth a log record for the client.
        if let Err(error) = &result {
            session.log(
                LoggingLevel::Warning,
                json!({ "service": service.name, "error": error.message }),
            );
        }
        result
    }
}

/// Relays a call's progress to the client under the client's own token.
/// The task is awaited before the response is returned
/// ([`Forwarder::finish`]), so that every progress notification reaches
/// the client before the answer, as MCP requires. A call without a token
/// has neither a channel nor a task.
pub(super) fn forward_progress(
    session: &Arc<Session>,
    token: Option<mcp::ProgressToken>,
) -> (Option<mpsc::UnboundedSender<Value>>, Option<Forwarder>) {
    let Some(token) = token else {
        return (None, None);
    };
    let (sender, mut updates) = mpsc::unbounded_channel::<Value>();
    let session = session.clone();
    let activity = Arc::new(Notify::new());
    let notified = activity.clone();
    let task = tokio::spawn(async move {
        while let Some(mut update) = updates.recv().await {
            notified.notify_one();
            if let Value::Object(object) = &mut update {
                object.insert(mcp::meta_key::PROGRESS_TOKEN.to_owned(), json!(token));
            }
            session.notify(method::NOTIFICATIONS_PROGRESS, Some(update));
        }
    });
    (Some(sender), Some(Forwarder { task, activity }))
}

/// The task relaying one call's progress, and the signal it gives on each
/// notification ([`quiet_for`]'s activity).
pub(super) struct Forwarder {
    task: tokio::task::JoinHandle<()>,
    activity: Arc<Notify>,
}

impl Forwarder {
    pub(super) fn activity(&self) -> &Notify {
        &self.activity
    }

    /// Waits (a second at most) until the call's last notification is
    /// queued for the client.
    pub(super) async fn finish(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

/// The longest a call may run while it keeps reporting progress.
pub(super) const MAX_WITH_PROGRESS: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a backend call was given up.
#[derive(Debug)]
pub(super) enum Quiet {
    /// Nothing came for the backend timeout: no answer, no progress.
    Silent,
    /// Progress kept coming, but the call outlived `MAX_WITH_PROGRESS`.
    TooLong,
}

/// `call`, given up once it has been silent for `limit`. Each progress
/// notification relayed to the client (`activity`) starts the limit again,
/// as MCP allows, so a long job that reports (a sync followed with a
/// progress token) is not cut off at the backend timeout; a call without a
/// progress token (no `activity`) has the plain timeout.
/// `MAX_WITH_PROGRESS` bounds it all.
///
/// One timer per call, moved on by activity and never past the bound: a
/// second timer for the bound, as before, was one more registration and
/// cancellation in the runtime's timer wheel on every call, for a limit
/// only a call that reports progress can reach.
pub(super) async fn quiet_for<F: Future>(
    limit: Duration,
    activity: Option<&Notify>,
    call: F,
) -> Result<F::Output, Quiet> {
    let give_up = tokio::time::Instant::now() + MAX_WITH_PROGRESS.max(limit);
    let silence = tokio::time::sleep(limit);
    tokio::pin!(call, silence);
    // Whether the timer was moved to the bound: its end is then `TooLong`.
    let mut at_bound = false;
    loop {
        let active = async {
            match activity {
                Some(activity) => activity.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            output = &mut call => return Ok(output),
            () = active => {
                let next = tokio::time::Instant::now() + limit;
                at_bound = next >= give_up;
                silence.as_mut().reset(next.min(give_up));
            }
            () = &mut silence => {
                return Err(if at_bound { Quiet::TooLong } else { Quiet::Silent });
            }
        }
    }
}
