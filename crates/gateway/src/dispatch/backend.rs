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
        let activity = Arc::new(Notify::new());
        let (progress, forwarder) = forward_progress(session, progress_token, &activity);
        let timeout = self.config.backend_timeout;
        let outcome = quiet_for(
            timeout,
            &activity,
            service.pool.call_raw(method, params, progress),
        )
        .await;
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(Duration::from_secs(1), forwarder).await;
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
/// The task is awaited before the response is returned, so that every
/// progress notification reaches the client before the answer, as MCP
/// requires.
pub(super) fn forward_progress(
    session: &Arc<Session>,
    token: Option<mcp::ProgressToken>,
    activity: &Arc<Notify>,
) -> (
    Option<mpsc::UnboundedSender<Value>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let Some(token) = token else {
        return (None, None);
    };
    let (sender, mut updates) = mpsc::unbounded_channel::<Value>();
    let session = session.clone();
    let activity = activity.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(mut update) = updates.recv().await {
            activity.notify_one();
            if let Value::Object(object) = &mut update {
                object.insert(mcp::meta_key::PROGRESS_TOKEN.to_owned(), json!(token));
            }
            session.notify(method::NOTIFICATIONS_PROGRESS, Some(update));
        }
    });
    (Some(sender), Some(forwarder))
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
/// progress token has the plain timeout. `MAX_WITH_PROGRESS` bounds it all.
pub(super) async fn quiet_for<F: Future>(
    limit: Duration,
    activity: &Notify,
    call: F,
) -> Result<F::Output, Quiet> {
    let give_up = tokio::time::sleep(MAX_WITH_PROGRESS.max(limit));
    tokio::pin!(call, give_up);
    loop {
        let silence = tokio::time::sleep(limit);
        tokio::select! {
            output = &mut call => return Ok(output),
            () = activity.notified() => {}
            () = silence => return Err(Quiet::Silent),
            () = &mut give_up => return Err(Quiet::TooLong),
        }
    }
}
