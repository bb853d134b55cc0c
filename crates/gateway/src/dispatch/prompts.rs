//! Prompts and completion: `prompts/list`, `prompts/get`, `completion/complete`.

use std::sync::Arc;

use proto::ErrorObject;
use proto::mcp::{
    self, CompleteArgument, CompleteContext, CompleteParams, CompleteResult, Completion,
    CompletionReference, GetPromptParams, ListPromptsResult,
};
use proto::text::echo;
use serde::Serialize;
use serde_json::Value;

use super::{Gateway, Reply, Session, to_value};
use crate::registry::Service;

/// A prompt argument's completion, as the gateway asks the prompt's
/// service (its caps' `prompts.complete`): the service's own prompt name.
#[derive(Serialize)]
struct PromptCompletion<'a> {
    name: &'a str,
    argument: &'a CompleteArgument,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a CompleteContext>,
}

/// A resource template's completion, as the gateway asks the owning
/// service (its caps' `resources.complete`).
#[derive(Serialize)]
struct ResourceCompletion<'a> {
    uri: &'a str,
    argument: &'a CompleteArgument,
}

impl Gateway {
    /// Every service's prompts, named `<service>_<prompt>`.
    pub(super) fn list_prompts(&self, session: &Session) -> Reply {
        let snapshot = self.registry.snapshot();
        let prompts: Vec<mcp::Prompt> = snapshot
            .services
            .values()
            .filter_map(|service| Some((service, service.prompts.as_ref()?)))
            .filter(|(service, _)| {
                self.shows(session, &[&super::rights::prompt_name(&service.name)])
            })
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
        Reply::Prompts(ListPromptsResult {
            prompts,
            ..ListPromptsResult::default()
        })
    }

    /// `prompts/get`, asked of the prompt's service under its own name.
    pub(super) async fn get_prompt(
        &self,
        session: &Arc<Session>,
        params: GetPromptParams,
    ) -> Result<Reply, ErrorObject> {
        let snapshot = self.registry.snapshot();
        let Some((service, spec, prompt)) = snapshot.prompt(&params.name) else {
            return Err(no_such_prompt(&params.name));
        };
        let call = to_value(&GetPromptParams {
            name: prompt.to_owned(),
            arguments: Some(params.arguments.unwrap_or_default()),
            meta: None,
        })?;
        self.call_backend(session, service, &spec.get, Some(call), None)
            .await
            .map(Reply::Prompt)
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
        request: CompleteParams,
    ) -> Result<Reply, ErrorObject> {
        let none = || {
            Reply::Completion(CompleteResult {
                completion: Completion {
                    values: Vec::new(),
                    total: None,
                    has_more: Some(false),
                },
                result_type: None,
                meta: None,
            })
        };
        let snapshot = self.registry.snapshot();
        let uri = match &request.reference {
            CompletionReference::ResourceTemplate { uri } => uri,
            CompletionReference::Prompt { name, .. } => {
                let Some((service, spec, prompt)) = snapshot.prompt(name) else {
                    return Err(no_such_prompt(name));
                };
                let Some(method) = &spec.complete else {
                    return Ok(none());
                };
                let call = to_value(&PromptCompletion {
                    name: prompt,
                    argument: &request.argument,
                    context: request.context.as_ref(),
                })?;
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
            return Ok(none());
        };
        let call = to_value(&ResourceCompletion {
            uri,
            argument: &request.argument,
        })?;
        self.completion_from(session, service, method, call).await
    }

    /// Asks a service's completion method; the answer is cut to MCP's
    /// 100 values.
    async fn completion_from(
        &self,
        session: &Arc<Session>,
        service: &Arc<Service>,
        method: &str,
        call: Value,
    ) -> Result<Reply, ErrorObject> {
        let mut result: CompleteResult = self
            .call_backend(session, service, method, Some(call), None)
            .await?;
        let values = &mut result.completion.values;
        if values.len() > Completion::MAX_VALUES {
            values.truncate(Completion::MAX_VALUES);
            result.completion.has_more = Some(true);
        }
        Ok(Reply::Completion(result))
    }
}

fn no_such_prompt(name: &str) -> ErrorObject {
    ErrorObject::invalid_params(format!(
        "no such prompt: {}; prompts/list names the available ones",
        echo(name)
    ))
}
