//! The gateway's configuration, `/etc/llmbasedos/gateway.yaml`, in two
//! stages: [`RawConfig`] is the file as written (unknown keys refused), and
//! [`Config`] is what the gateway runs with (addresses parsed, groups
//! resolved, limits checked). Every problem names the file, the key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `address:port` for Streamable HTTP (`/mcp`) and WebSocket (`/ws`);
    /// `null` disables the TCP listener.
    pub listen: Option<String>,
    /// The UNIX socket for local clients (NUL-delimited JSON-RPC).
    pub unix_socket: Option<PathBuf>,
    /// Where servers publish `<service>.cap.json` and `<service>.sock`.
    pub caps_dir: Option<PathBuf>,
    pub auth: RawAuth,
    pub limits: RawLimits,
    /// Third-party MCP servers whose tools the gateway offers too.
    pub upstreams: Vec<RawUpstream>,
    /// The language model behind `mcp.llm.chat` (none: the method says so).
    pub llm: Option<RawLlm>,
    /// What starts the services: what a client is told to do when one is
    /// not running.
    pub supervisor: Supervisor,
}

/// What starts (and restarts) the services behind the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    /// Socket-activated systemd units (the packages).
    #[default]
    Systemd,
    /// `llmbasedos up`, which restarts a server that stopped.
    Up,
}

impl Supervisor {
    /// What to do when `service` is not running.
    pub fn start_hint(self, service: &str) -> String {
        match self {
            Supervisor::Systemd => {
                format!("start it (systemctl start llmbasedos-{service}.socket) and retry")
            }
            Supervisor::Up => format!(
                "llmbasedos up restarts it after a delay (its terminal says why the {service} server stopped); retry in a moment"
            ),
        }
    }
}

/// An OpenAI-compatible chat completions API: OpenAI, llama.cpp's
/// `llama-server`, vLLM, Ollama.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// The API's base URL, e.g. `http://127.0.0.1:8080/v1` (requests go to
    /// `<url>/chat/completions`).
    pub url: String,
    /// The model asked for when a request names none.
    pub model: String,
    /// The name of a systemd credential (`LoadCredential=`) holding the API key.
    pub api_key_credential: Option<String>,
    /// A file holding the API key (readable only by the gateway's user).
    pub api_key_file: Option<PathBuf>,
    /// Seconds a completion may take [default: 300].
    pub timeout_secs: Option<u64>,
}

/// A third-party MCP server: a child process speaking stdio (`command`) or
/// a Streamable HTTP endpoint (`url`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Names it in logs and errors.
    pub name: String,
    /// Its tools appear as `<prefix>_<tool>` [default: the name].
    pub prefix: Option<String>,
    /// The program and its arguments.
    pub command: Option<Vec<String>>,
    /// Environment variables for the program (besides PATH, HOME and LANG,
    /// nothing is inherited).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// A Streamable HTTP endpoint (`https://…/mcp`).
    pub url: Option<String>,
    /// The name of a systemd credential (`LoadCredential=`) holding the
    /// bearer token for `url`; read from `$CREDENTIALS_DIRECTORY`.
    pub bearer_token_credential: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Bearer tokens accepted on HTTP and WebSocket, stored as SHA-256.
    pub tokens: Vec<RawToken>,
    /// UNIX-socket peers allowed by uid (root is always allowed).
    pub unix_allowed_uids: Vec<u32>,
    /// UNIX-socket peers allowed by group name or gid.
    pub unix_allowed_groups: Vec<String>,
    /// Origins allowed besides the loopback ones (`http://localhost:*` …).
    pub allowed_origins: Vec<String>,
    /// Host header values allowed besides the loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Where the token's holders find the token (`llmbasedos up` writes
    /// `<runtime dir>/gateway.token`): named in the 401 answer, never read.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds the token (shown in logs, used for per-client limits).
    pub name: String,
    /// `sha256` of the token, hex (`llmbasedos-gateway hash-token` prints it).
    pub sha256: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_message_bytes: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
    pub backend_timeout_secs: Option<u64>,
    pub backend_connections: Option<usize>,
    pub backend_idle_close_secs: Option<u64>,
    /// TCP connections (HTTP and WebSocket) open at once [default: derived
    /// from the descriptor limit, see `crate::front`].
    pub max_http_connections: Option<usize>,
    /// UNIX-socket connections open at once [default: derived likewise].
    pub max_unix_connections: Option<usize>,
    /// Seconds an HTTP client has to send a request's headers, and that an
    /// idle keep-alive connection stays open [default: 10].
    pub http_header_timeout_secs: Option<u64>,
}

/// What the gateway runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Option<SocketAddr>,
    pub unix_socket: Option<PathBuf>,
    pub caps_dir: PathBuf,
    pub tokens: Vec<Token>,
    pub unix_allowed_uids: Vec<u32>,
    pub unix_allowed_gids: Vec<u32>,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub max_message: usize,
    pub max_concurrent_requests: usize,
    pub backend_timeout: Duration,
    pub backend_connections: usize,
    pub backend_idle_close: Duration,
    /// Configured connection caps; `None`: derived from the descriptor
    /// limit at start ([`crate::front::Budget`]).
    pub max_http_connections: Option<usize>,
    pub max_unix_connections: Option<usize>,
    pub http_header_timeout: Duration,
    pub upstreams: Vec<Upstream>,
    pub llm: Option<Llm>,
    /// Accept HTTP and WebSocket clients without a token (loopback only).
    pub no_auth: bool,
    /// Where a client finds the token, for the 401 answer: `auth.token_file`,
    /// or else the configuration file whose `auth.tokens` hold its SHA-256.
    pub token_hint: String,
    pub supervisor: Supervisor,
}

/// The language model API, resolved.
#[derive(Clone, Debug)]
pub struct Llm {
    pub url: String,
    pub model: String,
    pub key: LlmKey,
    pub timeout: Duration,
}

/// Where the LLM API key comes from.
#[derive(Clone, Debug)]
pub enum LlmKey {
    None,
    Credential(String),
    File(PathBuf),
}

/// A third-party MCP server, resolved.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: String,
    pub prefix: String,
    pub transport: UpstreamTransport,
}

#[derive(Clone, Debug)]
pub enum UpstreamTransport {
    Stdio {
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    Http {
        url: String,
        bearer_token_credential: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Token {
    pub name: String,
    pub sha256: [u8; 32],
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_UNIX_SOCKET: &str = "/run/llmbasedos/gateway.sock";
pub const DEFAULT_CAPS_DIR: &str = "/run/mcp";

/// A configuration problem: the file, the key, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

impl RawConfig {
    pub fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        yaml_serde::from_str(text).map_err(|error| ConfigError {
            file: file.to_owned(),
            key: "(file)".to_owned(),
            problem: error.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: file.clone(),
            key: "(file)".to_owned(),
            problem: format!("cannot read it: {error}"),
        })?;
        RawConfig::parse(&text, &file)
    }

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
                Some(Llm {
                    url: llm.url,
                    model: llm.model,
                    key,
                    timeout: Duration::from_secs(llm.timeout_secs.unwrap_or(300).max(1)),
                })
            }
        };
        Ok(Config {
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

/// The SHA-256 of a token, as stored in the configuration.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Config {
    /// `--no-auth` is for local development only: refused unless the TCP
    /// listener (if any) is on loopback.
    pub fn allow_no_auth(&mut self) -> Result<(), String> {
        if let Some(address) = self.listen
            && !address.ip().is_loopback()
        {
            return Err(format!(
                "--no-auth is refused: the gateway listens on {address}, which is not a loopback address"
            ));
        }
        self.no_auth = true;
        Ok(())
    }

    /// The token's holder, if `presented` is one of the configured tokens.
    /// Compared in constant time.
    pub fn token_holder(&self, presented: &str) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let digest = hash_token(presented);
        self.tokens
            .iter()
            .find(|token| bool::from(token.sha256.ct_eq(&digest)))
            .map(|token| token.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../config/gateway.yaml");
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
