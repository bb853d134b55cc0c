//! The classic vocabulary: the original Python llmbasedos's method names
//! (`mcp.hello`, `mcp.listCapabilities`, `mcp.<service>.<method>`).

use std::sync::Arc;

use proto::mcp::{self};
use proto::text::escaped;
use proto::{Request, Response};
use serde_json::{Value, json};

use super::{Answer, Gateway, Session};

impl Gateway {
    /// A request that may be answered with raw result text: the seed's
    /// direct call of a backend method (no `_meta`, so the 2025-11-25 era and
    /// no progress) is forwarded and its answer passed back untouched;
    /// everything else goes the general way.
    pub(super) async fn request_raw(&self, session: &Arc<Session>, request: Request) -> Answer {
        let plain = match &request.params {
            None | Some(Value::Array(_)) => true,
            Some(Value::Object(object)) => !object.contains_key("_meta"),
            Some(_) => false,
        };
        let service = plain
            .then(|| {
                self.registry
                    .snapshot()
                    .methods
                    .get(&request.method)
                    .cloned()
            })
            .flatten();
        let Some(service) = service else {
            return Answer::Response(self.request(session, request).await);
        };
        let Request { id, method, params } = request;
        match self
            .call_backend_raw(session, &service, &method, params, None)
            .await
        {
            Ok(result) => Answer::Raw { id, result },
            Err(error) => {
                tracing::debug!(request = %escaped(&id.to_string()), method, error = %escaped(&error.message), "backend call failed");
                Answer::Response(Response::error(Some(id), error))
            }
        }
    }

    pub(super) fn hello(&self) -> Value {
        let snapshot = self.registry.snapshot();
        json!({
            "name": self.info.name,
            "version": self.info.version,
            "protocolVersions": mcp::SUPPORTED_PROTOCOL_VERSIONS,
            "services": snapshot.services.keys().collect::<Vec<_>>(),
        })
    }

    pub(super) fn list_capabilities(&self) -> Value {
        let snapshot = self.registry.snapshot();
        let services: Vec<Value> = snapshot
            .services
            .values()
            .map(|service| {
                json!({
                    "service": service.name,
                    "version": service.version,
                    "description": service.description,
                    "methods": service.methods,
                })
            })
            .collect();
        json!({ "services": services })
    }
}
