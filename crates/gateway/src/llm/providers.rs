//! Where a model's requests go: the default API, model aliases and more
//! APIs by model pattern, each with its key (a systemd credential or a
//! private file, never logged).

use super::LlmProxy;
use crate::config::{Llm, LlmKey};

/// One more API (`llm.providers`).
pub(super) struct Api {
    pub(super) name: String,
    pub(super) endpoint: String,
    pub(super) api_key: Option<String>,
    pub(super) tokenize: Option<String>,
    pub(super) models: globset::GlobSet,
}

/// Where a model's requests go.
pub(super) struct Route<'a> {
    pub(super) endpoint: &'a str,
    pub(super) api_key: Option<&'a str>,
    pub(super) tokenize: Option<&'a str>,
}

impl LlmProxy {
    /// The proxy of the configuration; reads the API key.
    pub fn new(config: &Llm) -> anyhow::Result<LlmProxy> {
        let api_key = load_key(&config.key, "llm")?;
        let mut providers = Vec::new();
        for (index, provider) in config.providers.iter().enumerate() {
            let mut models = globset::GlobSetBuilder::new();
            for pattern in &provider.models {
                models.add(globset::Glob::new(pattern)?);
            }
            providers.push(Api {
                name: provider.name.clone(),
                endpoint: format!("{}/chat/completions", provider.url.trim_end_matches('/')),
                api_key: load_key(&provider.key, &format!("llm.providers[{index}]"))?,
                tokenize: provider.tokenize_url.clone(),
                models: models.build()?,
            });
        }
        Ok(LlmProxy {
            aliases: config.aliases.iter().cloned().collect(),
            providers,
            http: client::web_client()?,
            endpoint: format!("{}/chat/completions", config.url.trim_end_matches('/')),
            tokenize: config.tokenize_url.clone(),
            model: config.model.clone(),
            api_key,
            timeout: config.timeout,
        })
    }

    /// The model asked for when a request names none.
    pub fn default_model(&self) -> &str {
        &self.model
    }

    /// The model a request's name stands for (an alias, or itself; none:
    /// the configured default).
    pub fn resolve(&self, asked: Option<&str>) -> String {
        let name = asked.unwrap_or(&self.model);
        self.aliases
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// The API that serves `model`: the first provider whose patterns
    /// match, else the default one.
    pub(super) fn route(&self, model: &str) -> Route<'_> {
        match self.providers.iter().find(|api| api.models.is_match(model)) {
            Some(api) => Route {
                endpoint: &api.endpoint,
                api_key: api.api_key.as_deref(),
                tokenize: api.tokenize.as_deref(),
            },
            None => Route {
                endpoint: &self.endpoint,
                api_key: self.api_key.as_deref(),
                tokenize: self.tokenize.as_deref(),
            },
        }
    }
}

/// An API key from its credential or file (`what` names the section).
fn load_key(key: &LlmKey, what: &str) -> anyhow::Result<Option<String>> {
    Ok(match key {
        LlmKey::None => None,
        LlmKey::File(path) => Some(read_key(path, &format!("{what}.api_key_file"))?),
        LlmKey::Credential(name) => {
            let Some(directory) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                anyhow::bail!(
                    "{what}.api_key_credential {name:?} needs systemd credentials: add LoadCredential={name}:/path/to/key to the gateway's unit"
                );
            };
            Some(read_key(
                &std::path::Path::new(&directory).join(name),
                &format!("{what}.api_key_credential"),
            )?)
        }
    })
}

fn read_key(path: &std::path::Path, key: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("{key}: cannot read {}: {error}", path.display()))?;
    let api_key = text.trim();
    anyhow::ensure!(!api_key.is_empty(), "{key}: {} is empty", path.display());
    Ok(api_key.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Provider;

    #[test]
    fn aliases_and_providers_route_by_model() {
        let config = Llm {
            url: "http://127.0.0.1:9/v1".to_owned(),
            tokenize_url: Some("http://127.0.0.1:9/tokenize".to_owned()),
            aliases: vec![
                ("fast".to_owned(), "local-7b".to_owned()),
                ("smart".to_owned(), "gpt-4o".to_owned()),
            ],
            providers: vec![Provider {
                name: "openai".to_owned(),
                url: "https://api.example.invalid/v1/".to_owned(),
                models: vec!["gpt-*".to_owned()],
                key: LlmKey::None,
                tokenize_url: None,
            }],
            model: "local-7b".to_owned(),
            key: LlmKey::None,
            timeout: Duration::from_secs(5),
        };
        let proxy = LlmProxy::new(&config).expect("proxy");
        assert_eq!(proxy.resolve(None), "local-7b");
        assert_eq!(proxy.resolve(Some("smart")), "gpt-4o");
        assert_eq!(proxy.resolve(Some("other")), "other");
        let remote = proxy.route("gpt-4o");
        assert_eq!(
            remote.endpoint,
            "https://api.example.invalid/v1/chat/completions"
        );
        assert!(remote.tokenize.is_none());
        let local = proxy.route(&proxy.resolve(Some("fast")));
        assert_eq!(local.endpoint, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(local.tokenize, Some("http://127.0.0.1:9/tokenize"));
    }
}
