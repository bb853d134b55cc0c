//! The second stage: a [`RawConfig`] checked and resolved into the
//! [`Config`] the gateway runs with.
//!
//! One module per section that needs more than a default: `auth`,
//! `upstreams`, `llm`, `licensing`; the limits and paths are checked here.

mod auth;
mod licensing;
mod llm;
mod upstreams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    Config, ConfigError, DEFAULT_CAPS_DIR, DEFAULT_LISTEN, DEFAULT_UNIX_SOCKET, RawConfig,
};

/// Makes the error of one key of the file being resolved.
type Error<'a> = &'a dyn Fn(&str, String) -> ConfigError;

impl RawConfig {
    /// Checks and resolves the file; `file` names it in errors.
    pub fn resolve(self, file: &str) -> Result<Config, ConfigError> {
        let error = |key: &str, problem: String| ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let listen = match self.listen.as_deref().unwrap_or(DEFAULT_LISTEN) {
            "" | "none" | "off" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                error(
                    "listen",
                    format!("{text:?} is not an address:port such as 127.0.0.1:8000"),
                )
            })?),
        };
        let tokens = auth::tokens(self.auth.tokens, &error)?;
        let unix_allowed_gids = auth::groups(&self.auth.unix_allowed_groups, &error)?;
        let delegates = auth::delegates(&self.auth.delegates, &error)?;
        let limits = self.limits;
        let max_message = limits
            .max_message_bytes
            .unwrap_or(proto::DEFAULT_MAX_MESSAGE);
        if !(1024..=256 * 1024 * 1024).contains(&max_message) {
            return Err(error(
                "limits.max_message_bytes",
                "must be between 1024 and 268435456".to_owned(),
            ));
        }
        let max_concurrent_requests = limits.max_concurrent_requests.unwrap_or(32);
        if max_concurrent_requests == 0 {
            return Err(error(
                "limits.max_concurrent_requests",
                "must be at least 1".to_owned(),
            ));
        }
        let backend_connections = limits.backend_connections.unwrap_or(4);
        if !(1..=64).contains(&backend_connections) {
            return Err(error(
                "limits.backend_connections",
                "must be between 1 and 64".to_owned(),
            ));
        }
        let backend_timeout = limits.backend_timeout_secs.unwrap_or(120);
        if backend_timeout == 0 {
            return Err(error(
                "limits.backend_timeout_secs",
                "must be at least 1".to_owned(),
            ));
        }
        if limits.max_http_connections == Some(0) {
            return Err(error(
                "limits.max_http_connections",
                "must be at least 1".to_owned(),
            ));
        }
        if limits.max_unix_connections == Some(0) {
            return Err(error(
                "limits.max_unix_connections",
                "must be at least 1".to_owned(),
            ));
        }
        let http_header_timeout = limits.http_header_timeout_secs.unwrap_or(10);
        if http_header_timeout == 0 {
            return Err(error(
                "limits.http_header_timeout_secs",
                "must be at least 1".to_owned(),
            ));
        }
        let upstreams = upstreams::upstreams(self.upstreams, &error)?;
        let llm = self.llm.map(|raw| llm::llm(raw, &error)).transpose()?;
        let licence = self
            .licence
            .map(|raw| licensing::licence(raw, &tokens, &error))
            .transpose()?;
        Ok(Config {
            licence,
            delegates,
            upstreams,
            llm,
            listen,
            unix_socket: Some(
                self.unix_socket
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_UNIX_SOCKET)),
            ),
            caps_dir: self
                .caps_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CAPS_DIR)),
            tokens,
            unix_allowed_uids: self.auth.unix_allowed_uids,
            unix_allowed_gids,
            allowed_origins: self.auth.allowed_origins,
            allowed_hosts: self.auth.allowed_hosts,
            max_message,
            max_concurrent_requests,
            backend_timeout: Duration::from_secs(backend_timeout),
            backend_connections,
            backend_idle_close: Duration::from_secs(limits.backend_idle_close_secs.unwrap_or(60)),
            max_http_connections: limits.max_http_connections,
            max_unix_connections: limits.max_unix_connections,
            http_header_timeout: Duration::from_secs(http_header_timeout),
            no_auth: false,
            token_hint: match &self.auth.token_file {
                Some(path) => format!("the token is in {}", path.display()),
                None => format!("use a token whose SHA-256 is in auth.tokens of {file}"),
            },
            supervisor: self.supervisor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../../config/gateway.yaml");
        let mut raw = RawConfig::parse(text, "config/gateway.yaml").expect("shipped config parses");
        // The packages' sysusers.d creates llmgroup; a build or test machine
        // has none, so the group is resolved as a gid here.
        assert_eq!(raw.auth.unix_allowed_groups, ["llmgroup"]);
        raw.auth.unix_allowed_groups = vec!["0".to_owned()];
        let config = raw
            .resolve("config/gateway.yaml")
            .expect("shipped config is valid");
        assert_eq!(config.listen, Some("127.0.0.1:8000".parse().expect("addr")));
        assert_eq!(config.caps_dir, PathBuf::from("/run/mcp"));
        let licence = config.licence.expect("the shipped config is licensed");
        assert_eq!(
            licence.tiers,
            PathBuf::from("/etc/llmbasedos/licence_tiers.yaml")
        );
        assert!(!licence.allow_unsigned);
    }

    #[test]
    fn errors_name_file_key_and_fix() {
        let cases = [
            (
                "listen: nowhere",
                "g.yaml: listen: \"nowhere\" is not an address:port",
            ),
            (
                "auth: {tokens: [{name: a, sha256: xyz}]}",
                "g.yaml: auth.tokens[0].sha256: must be 64 hex digits",
            ),
            (
                "auth: {unix_allowed_groups: [no-such-group-here]}",
                "auth.unix_allowed_groups[0]: no group",
            ),
            (
                "limits: {max_message_bytes: 10}",
                "limits.max_message_bytes: must be between",
            ),
            (
                "limits: {backend_connections: 0}",
                "limits.backend_connections",
            ),
            (
                "lisen: 127.0.0.1:1",
                "g.yaml: (file): unknown field `lisen`",
            ),
            ("listen: [", "g.yaml: (file):"),
            (
                "upstreams: [{name: a, command: []}]",
                "upstreams[0].command: must name the program",
            ),
            (
                "upstreams: [{name: 'a b', command: [x]}]",
                "upstreams[0].name: must be 1 to 32",
            ),
            (
                "upstreams: [{name: a, prefix: 'x_y', command: [x]}]",
                "upstreams[0].prefix",
            ),
            (
                "upstreams: [{name: a, command: [x]}, {name: a, command: [y]}]",
                "upstreams[1].name: \"a\" is used twice",
            ),
            (
                "upstreams: [{name: a, url: x}]",
                "upstreams[0].url: \"x\" must be an http:// or https:// URL",
            ),
            (
                "upstreams: [{name: a}]",
                "upstreams[0]: needs exactly one of command",
            ),
            (
                "upstreams: [{name: a, command: [x], url: 'http://h/mcp'}]",
                "needs exactly one of command",
            ),
            (
                "upstreams: [{name: a, command: [x], bearer_token_credential: t}]",
                "goes with url",
            ),
            (
                "llm: {url: 'ftp://h/v1', model: m}",
                "g.yaml: llm.url: \"ftp://h/v1\" must be an http:// or https:// URL",
            ),
            (
                "llm: {url: 'http://h/v1', model: ' '}",
                "g.yaml: llm.model: must name a model",
            ),
            (
                "llm: {url: 'http://h/v1', model: m, api_key_credential: c, api_key_file: /k}",
                "g.yaml: llm.api_key_file: give api_key_credential or api_key_file, not both",
            ),
            ("llm: {url: 'http://h/v1'}", "missing field `model`"),
            (
                "llm: {url: 'http://h/v1', model: m, key: k}",
                "unknown field `key`",
            ),
        ];
        for (text, expected) in cases {
            let error = RawConfig::parse(text, "g.yaml")
                .and_then(|raw| raw.resolve("g.yaml"))
                .expect_err(text);
            assert!(
                error.to_string().contains(expected),
                "{text}: expected {expected:?} in {error}"
            );
        }
    }
}
