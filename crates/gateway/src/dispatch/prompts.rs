//! Prompts and completion: `prompts/list`, `prompts/get`, `completion/complete`.

use std::sync::Arc;

use proto::ErrorObject;
use proto::mcp::{self};
use proto::text::echo;
use serde_json::{Value, json};

use super::{Gateway, Session, to_value};
use crate::registry::Service;

impl Gateway {
    /// Every service's prompts, named `<service>_<prompt>`.
    pub(super) fn list_prompts(&self) -> Value {
        let snapshot = self.registry.snapshot();
        let prompts: Vec<mcp::Prompt> = snapshot
            .services
            .values()
            .filter_map(|service| Some((service, service.prompts.as_ref()?)))
            .flat_map(|(service, spec)| {
                spec.prompts.iter().map(move |prompt| mcp::Prompt {
                    name: format!(
                        "{}{}{}",
                        service.name,
                        proto::caps::TOOL_NAME_SEPARATOR,
                        prompt.name
                    ),
                    ..prompt.clone()
                })
            })
            .collect();
        json!({ "prompts": prompts })
    }

    pub(super) async fn get_prompt(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_else(|| json!({}));
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorObject::invalid_params("prompts/get needs a string \"name\""))?;
        let snapshot = self.registry.snapshot();
        let Some((service, spec, prompt)) = snapshot.prompt(name) else {
            return Err(ErrorObject::invalid_params(format!(
                "no such prompt: {}; prompts/list names the available ones",
                echo(name)
            )));
        };
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let call = json!({ "name": prompt, "arguments": arguments });
        self.call_backend(session, service, &spec.get, Some(call), None)
            .await
    }

    /// `completion/complete`. A resource template's argument goes to the
    /// `complete` method the owning service's caps name in `resources`
    /// (the gateway knows no service's internals); the answer is cut to
    /// MCP's 100 values. A prompt's argument goes to the method its
    /// service's caps name in `prompts.complete`. Without such a method
    /// there are no values.
    pub(super) async fn complete(
        &self,
        session: &Arc<Session>,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_else(|| json!({}));
        let request: mcp::CompleteParams = serde_json::from_value(params).map_err(|error| {
            ErrorObject::invalid_params(format!(
                "invalid completion/complete params: {}",
                echo(&error.to_string())
            ))
        })?;
        let none = || mcp::CompleteResult {
            completion: mcp::Completion {
                values: Vec::new(),
                total: None,
                has_more: Some(false),
            },
            result_type: None,
            meta: None,
        };
        let snapshot = self.registry.snapshot();
        let uri = match &request.reference {
            mcp::CompletionReference::ResourceTemplate { uri } => uri,
            mcp::CompletionReference::Prompt { name, .. } => {
                let Some((service, spec, prompt)) = snapshot.prompt(name) else {
                    return Err(ErrorObject::invalid_params(format!(
                        "no such prompt: {}; prompts/list names the available ones",
                        echo(name)
                    )));
                };
                let Some(method) = &spec.complete else {
                    return to_value(&none());
                };
                let mut call = json!({ "name": prompt, "argument": request.argument });
                if let Some(context) = &request.context {
                    call["context"] = json!(context);
                }
                return self.completion_from(session, service, method, call).await;
            }
        };
        let owner = snapshot.services.values().find_map(|service| {
            let spec = service.resources.as_ref()?;
            let owns = spec
                .templates
                .iter()
                .any(|template| template.uri_template == *uri)
                || uri.starts_with(&spec.uri_prefix);
            Some((service, spec.complete.as_ref()?)).filter(|_| owns)
        });
        let Some((service, method)) = owner else {
            return to_value(&none());
        };
        let call = json!({ "uri": uri, "argument": request.argument });
        self.completion_from(session, service, method, call).await
    }

    /// Asks a service's completion method; the answer is cut to MCP's
    /// 100 values.
    pub(super) async fn completion_from(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        call: Value,
    ) -> Result<Value, ErrorObject> {
        let answer = self
            .call_backend(session, service, method, Some(call), None)
            .await?;
        let mut result: mcp::CompleteResult = serde_json::from_value(answer).map_err(|error| {
            ErrorObject::internal(format!(
                "the {} service's completion cannot be read: {error}",
                service.name
            ))
        })?;
        let values = &mut result.completion.values;
        if values.len() > mcp::Completion::MAX_VALUES {
            values.truncate(mcp::Completion::MAX_VALUES);
            result.completion.has_more = Some(true);
        }
        to_value(&result)
    }
}
