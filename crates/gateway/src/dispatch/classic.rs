//! The classic vocabulary: the original Python llmbasedos's method names
//! (`mcp.hello`, `mcp.listCapabilities`, `mcp.<service>.<method>`).

use std::sync::Arc;

use proto::mcp;
use proto::text::{echo, escaped};
use proto::{ErrorObject, MethodSpec, Request, RequestId, Response};
use serde::Serialize;
use serde_json::Value;

use super::{Answer, Gateway, Reply, Session, to_value};

impl Gateway {
    /// A request that may be answered with raw result text: a classic
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
            return self.answer(session, request).await;
        };
        let Request { id, method, params } = request;
        // This path does not go through `route`: the same rights check.
        if let Err(refusal) = self.authorize(session, &method, params.as_ref()) {
            let error = super::rights::refusal_error(session.client(), &refusal);
            return Answer::Response(Response::error(Some(id), error));
        }
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

    /// A method outside MCP's: the classic vocabulary, the LLM relay, or a
    /// backend method called directly (its result goes back as it came).
    pub(super) async fn classic(
        &self,
        session: &Arc<Session>,
        id: &RequestId,
        name: &str,
        params: Option<Value>,
        progress_token: Option<mcp::ProgressToken>,
    ) -> Result<Reply, ErrorObject> {
        match name {
            "mcp.hello" => self.hello().map(Reply::Other),
            "mcp.listCapabilities" => self.list_capabilities(session).map(Reply::Other),
            "mcp.licence.check" => self.licence_check(session).await.map(Reply::Other),
            "mcp.licence.status" => self.licence_status().await.map(Reply::Other),
            "mcp.llm.chat" => {
                let params = mcp::parse_params(name, params)?;
                self.chat(session, id, params, progress_token).await
            }
            _ => {
                let snapshot = self.registry.snapshot();
                let Some(service) = snapshot.methods.get(name) else {
                    return Err(ErrorObject::method_not_found(&echo(name)));
                };
                let outcome = self
                    .call_backend(session, service, name, params, progress_token)
                    .await;
                if let Err(failure) = &outcome {
                    tracing::debug!(request = %escaped(&id.to_string()), method = name, error = %escaped(&failure.message), "backend call failed");
                }
                outcome.map(Reply::Other)
            }
        }
    }

    fn hello(&self) -> Result<Value, ErrorObject> {
        let snapshot = self.registry.snapshot();
        to_value(&Hello {
            name: &self.info.name,
            version: &self.info.version,
            protocol_versions: &mcp::SUPPORTED_PROTOCOL_VERSIONS,
            services: snapshot.services.keys().map(String::as_str).collect(),
        })
    }

    /// Every service's caps, with only the methods this client may call.
    fn list_capabilities(&self, session: &Session) -> Result<Value, ErrorObject> {
        let snapshot = self.registry.snapshot();
        let services = snapshot
            .services
            .values()
            .map(|service| ServiceCapabilities {
                service: &service.name,
                version: &service.version,
                description: &service.description,
                methods: service
                    .methods
                    .iter()
                    .filter(|spec| self.shows(session, &[spec.name.as_str()]))
                    .collect(),
            })
            .filter(|service| !service.methods.is_empty() || session.client().is_none())
            .collect();
        to_value(&Capabilities { services })
    }
}

/// `mcp.hello`: who the gateway is, which protocol revisions it speaks,
/// which services it serves.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Hello<'a> {
    name: &'a str,
    version: &'a str,
    protocol_versions: &'a [&'static str],
    services: Vec<&'a str>,
}

/// `mcp.listCapabilities`: every service's caps, as its caps file says.
#[derive(Serialize)]
struct Capabilities<'a> {
    services: Vec<ServiceCapabilities<'a>>,
}

#[derive(Serialize)]
struct ServiceCapabilities<'a> {
    service: &'a str,
    version: &'a str,
    description: &'a str,
    methods: Vec<&'a MethodSpec>,
}
