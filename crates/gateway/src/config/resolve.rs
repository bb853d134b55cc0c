//! The second stage: a [`RawConfig`] checked and resolved into the
//! [`Config`] the gateway runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    Config, ConfigError, DEFAULT_CAPS_DIR, DEFAULT_LISTEN, DEFAULT_UNIX_SOCKET, LicenceConfig, Llm,
    LlmKey, Provider, RawConfig, Token, Upstream, UpstreamTransport, UserRef,
};

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
        let mut tokens = Vec::with_capacity(self.auth.tokens.len());
        for (index, token) in self.auth.tokens.into_iter().enumerate() {
            let key = format!("auth.tokens[{index}].sha256");
            let digest = hex::decode(token.sha256.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| {
                    error(&key, "must be 64 hex digits: the SHA-256 of the token (llmbasedos-gateway hash-token prints it)".to_owned())
                })?;
            if token.name.trim().is_empty() {
                return Err(error(
                    &format!("auth.tokens[{index}].name"),
                    "must name who holds the token".to_owned(),
                ));
            }
            tokens.push(Token {
                name: token.name,
                sha256: digest,
                tier: token.tier,
            });
        }
        let mut unix_allowed_gids = Vec::new();
        for (index, group) in self.auth.unix_allowed_groups.iter().enumerate() {
            let gid = resolve_group(group).ok_or_else(|| {
                error(
                    &format!("auth.unix_allowed_groups[{index}]"),
                    format!("no group {group:?} on this system (create it, or give a gid)"),
                )
            })?;
            unix_allowed_gids.push(gid);
        }
        let mut delegates = Vec::new();
        for (index, user) in self.auth.delegates.iter().enumerate() {
            let uid = match user {
                UserRef::Uid(uid) => *uid,
                UserRef::Name(name) => resolve_user(name).ok_or_else(|| {
                    error(
                        &format!("auth.delegates[{index}]"),
                        format!(
                            "no user {:?} on this system (create it, or give a uid)",
                            proto::text::echo(name)
                        ),
                    )
                })?,
            };
            delegates.push(uid);
        }
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
        let mut upstreams: Vec<Upstream> = Vec::with_capacity(self.upstreams.len());
        for (index, upstream) in self.upstreams.into_iter().enumerate() {
            let simple = |text: &str| {
                (1..=32).contains(&text.len())
                    && text
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            };
            if !simple(&upstream.name) {
                return Err(error(
                    &format!("upstreams[{index}].name"),
                    "must be 1 to 32 letters, digits or dashes".to_owned(),
                ));
            }
            if upstreams.iter().any(|other| other.name == upstream.name) {
                return Err(error(
                    &format!("upstreams[{index}].name"),
                    format!("{:?} is used twice", upstream.name),
                ));
            }
            let prefix = upstream.prefix.unwrap_or_else(|| upstream.name.clone());
            if !simple(&prefix) {
                return Err(error(
                    &format!("upstreams[{index}].prefix"),
                    "must be 1 to 32 letters, digits or dashes (tools become <prefix>_<tool>)"
                        .to_owned(),
                ));
            }
            let key = |field: &str| format!("upstreams[{index}].{field}");
            let transport = match (upstream.command, upstream.url) {
                (Some(command), None) => {
                    let mut command = command.into_iter();
                    let Some(program) = command.next().filter(|program| !program.is_empty()) else {
                        return Err(error(
                            &key("command"),
                            "must name the program to run, e.g. [npx, -y, some-mcp-server]"
                                .to_owned(),
                        ));
                    };
                    if upstream.bearer_token_credential.is_some() {
                        return Err(error(
                            &key("bearer_token_credential"),
                            "goes with url, not command".to_owned(),
                        ));
                    }
                    UpstreamTransport::Stdio {
                        program,
                        args: command.collect(),
                        env: upstream.env.into_iter().collect(),
                    }
                }
                (None, Some(url)) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(error(
                            &key("url"),
                            format!("{url:?} must be an http:// or https:// URL"),
                        ));
                    }
                    if !upstream.env.is_empty() {
                        return Err(error(&key("env"), "goes with command, not url".to_owned()));
                    }
                    UpstreamTransport::Http {
                        url,
                        bearer_token_credential: upstream.bearer_token_credential,
                    }
                }
                _ => {
                    return Err(error(
                        &format!("upstreams[{index}]"),
                        "needs exactly one of command (a stdio server) or url (a Streamable HTTP server)".to_owned(),
                    ));
                }
            };
            upstreams.push(Upstream {
                name: upstream.name,
                prefix,
                transport,
            });
        }
        let llm = match self.llm {
            None => None,
            Some(llm) => {
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
                    if !(provider.url.starts_with("http://")
                        || provider.url.starts_with("https://"))
                    {
                        return Err(error(
                            &at("url"),
                            "must be an http:// or https:// URL, e.g. https://api.openai.com/v1"
                                .to_owned(),
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
                Some(Llm {
                    aliases: llm.aliases.into_iter().collect(),
                    providers,
                    tokenize_url: llm.tokenize_url,
                    url: llm.url,
                    model: llm.model,
                    key,
                    timeout: Duration::from_secs(llm.timeout_secs.unwrap_or(300).max(1)),
                })
            }
        };
        let licence = match self.licence {
            None => None,
            Some(raw) => {
                let time_zone = match raw.time_zone.as_deref() {
                    None => licence::ledger::Tz::UTC,
                    Some(name) => name.parse().map_err(|_| {
                        error(
                            "licence.time_zone",
                            format!(
                                "{} is not a time zone: give an IANA name such as Europe/Paris or UTC",
                                proto::text::echo(name)
                            ),
                        )
                    })?,
                };
                let mut assigned: Vec<(String, String)> = tokens
                    .iter()
                    .filter_map(|token| {
                        Some((format!("token:{}", token.name), token.tier.clone()?))
                    })
                    .collect();
                assigned.extend(
                    raw.clients
                        .into_iter()
                        .map(|client| (format!("uid:{}", client.uid), client.tier)),
                );
                Some(LicenceConfig {
                    key: raw
                        .key
                        .unwrap_or_else(|| PathBuf::from("/etc/llmbasedos/lic.key")),
                    keys_dir: raw
                        .keys_dir
                        .unwrap_or_else(|| PathBuf::from("/etc/llmbasedos/licence-keys")),
                    tiers: raw
                        .tiers
                        .unwrap_or_else(|| PathBuf::from("/etc/llmbasedos/licence_tiers.yaml")),
                    allow_unsigned: raw.allow_unsigned,
                    time_zone,
                    state_dir: raw
                        .state_dir
                        .unwrap_or_else(|| PathBuf::from("/var/lib/llmbasedos")),
                    assigned,
                })
            }
        };
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

fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let name = std::ffi::CString::new(group).ok()?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is only read
    // before any other getgr* call on this thread.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    // SAFETY: a non-null result points to a valid group entry.
    (!entry.is_null()).then(|| unsafe { (*entry).gr_gid })
}

/// A user name's uid (a number is a uid as written), by `getpwnam_r`.
fn resolve_user(user: &str) -> Option<u32> {
    if let Ok(uid) = user.parse() {
        return Some(uid);
    }
    let name = std::ffi::CString::new(user).ok()?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the strings the
        // entry points to live in `buffer`, which outlives the read below.
        let status = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if status == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        return (status == 0 && !found.is_null()).then_some(entry.pw_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hash_token;

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
    fn delegates_are_uids_or_user_names() {
        // root is uid 0 on every system this runs on.
        let raw = RawConfig::parse("auth: {delegates: [1000, root, \"4242\"]}", "g.yaml")
            .expect("parses");
        let config = raw.resolve("g.yaml").expect("resolves");
        assert_eq!(config.delegates, [1000, 0, 4242]);
        let raw = RawConfig::parse("auth: {delegates: [0, no-such-user-here]}", "g.yaml")
            .expect("parses");
        let error = raw.resolve("g.yaml").expect_err("unknown user").to_string();
        assert!(
            error.contains("auth.delegates[1]")
                && error.contains("no user \"no-such-user-here\"")
                && error.contains("give a uid"),
            "{error}"
        );
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

    #[test]
    fn tokens_are_checked_against_their_hash_and_no_auth_needs_loopback() {
        let hash = hex::encode(hash_token("s3cret"));
        let text =
            format!("listen: 0.0.0.0:8000\nauth: {{tokens: [{{name: desktop, sha256: {hash}}}]}}");
        let mut config = RawConfig::parse(&text, "g")
            .and_then(|raw| raw.resolve("g"))
            .expect("valid");
        assert_eq!(config.token_holder("s3cret"), Some("desktop"));
        assert_eq!(config.token_holder("s3cret "), None);
        assert!(config.allow_no_auth().is_err());
        let mut local = RawConfig::default().resolve("g").expect("defaults");
        assert!(local.allow_no_auth().is_ok());
    }
}
