//! `llm`: the default OpenAI-compatible API, its key, aliases and more
//! providers by model pattern.

use std::time::Duration;

use super::super::{ConfigError, Llm, LlmKey, Provider, RawLlm};
use super::Error;

pub(super) fn llm(llm: RawLlm, error: Error<'_>) -> Result<Llm, ConfigError> {
    if !(llm.url.starts_with("http://") || llm.url.starts_with("https://")) {
        return Err(error(
            "llm.url",
            format!(
                "{:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/v1",
                llm.url
            ),
        ));
    }
    if llm.model.trim().is_empty() {
        return Err(error("llm.model", "must name a model".to_owned()));
    }
    let key = match (llm.api_key_credential, llm.api_key_file) {
        (None, None) => LlmKey::None,
        (Some(name), None) => LlmKey::Credential(name),
        (None, Some(file)) => LlmKey::File(file),
        (Some(_), Some(_)) => {
            return Err(error(
                "llm.api_key_file",
                "give api_key_credential or api_key_file, not both".to_owned(),
            ));
        }
    };
    let mut providers = Vec::new();
    for (index, provider) in llm.providers.into_iter().enumerate() {
        let at = |field: &str| format!("llm.providers[{index}].{field}");
        if !(provider.url.starts_with("http://") || provider.url.starts_with("https://")) {
            return Err(error(
                &at("url"),
                "must be an http:// or https:// URL, e.g. https://api.openai.com/v1".to_owned(),
            ));
        }
        if provider.models.is_empty() {
            return Err(error(
                &at("models"),
                "name the models it serves, e.g. [\"gpt-*\"]".to_owned(),
            ));
        }
        for (number, pattern) in provider.models.iter().enumerate() {
            if globset::Glob::new(pattern).is_err() {
                return Err(error(
                    &at(&format!("models[{number}]")),
                    format!("{pattern:?} is not a glob pattern (use * and ?)"),
                ));
            }
        }
        let key = match (provider.api_key_credential, provider.api_key_file) {
            (None, None) => LlmKey::None,
            (Some(name), None) => LlmKey::Credential(name),
            (None, Some(file)) => LlmKey::File(file),
            (Some(_), Some(_)) => {
                return Err(error(
                    &at("api_key_file"),
                    "give api_key_credential or api_key_file, not both".to_owned(),
                ));
            }
        };
        providers.push(Provider {
            name: provider.name,
            url: provider.url,
            models: provider.models,
            key,
            tokenize_url: provider.tokenize_url,
        });
    }
    Ok(Llm {
        aliases: llm.aliases.into_iter().collect(),
        providers,
        tokenize_url: llm.tokenize_url,
        url: llm.url,
        model: llm.model,
        key,
        timeout: Duration::from_secs(llm.timeout_secs.unwrap_or(300).max(1)),
    })
}
