//! The first stage: the file as written, with unknown keys refused.
//! Nothing here checks a value; [`RawConfig::resolve`] does.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Supervisor};

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
    /// The licence, tiers, per-client rights, rates and token quotas
    /// (none: every client may do everything, unlimited).
    pub licence: Option<RawLicence>,
}

/// Where the licence and its tiers are, and who gets which tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLicence {
    /// The licence [default: /etc/llmbasedos/lic.key].
    pub key: Option<PathBuf>,
    /// The public keys that may sign licences, `*.pub` [default:
    /// /etc/llmbasedos/licence-keys].
    pub keys_dir: Option<PathBuf>,
    /// [default: /etc/llmbasedos/licence_tiers.yaml]
    pub tiers: Option<PathBuf>,
    /// Accept the original llmbasedos's unsigned YAML key.
    pub allow_unsigned: bool,
    /// Where days and months of token quotas end (IANA name) [default: UTC].
    pub time_zone: Option<String>,
    /// Where the token ledger is kept [default: /var/lib/llmbasedos].
    pub state_dir: Option<PathBuf>,
    /// UNIX-socket clients given a tier below the licence's.
    pub clients: Vec<RawClientTier>,
}

/// A UNIX peer's tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientTier {
    pub uid: u32,
    pub tier: String,
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
    /// llama.cpp's `/tokenize` (e.g. `http://127.0.0.1:8080/tokenize`):
    /// prompts are counted by the model's tokenizer for token quotas
    /// (else estimated high).
    pub tokenize_url: Option<String>,
    /// Names clients may use for models: `fast: local-7b`.
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, String>,
    /// More APIs, chosen by model name (the first whose `models` match);
    /// the others go to `url`.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
}

/// One more OpenAI-compatible API behind `mcp.llm.chat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Names it in logs and errors.
    pub name: String,
    pub url: String,
    /// Glob patterns over the model names it serves (`gpt-*`).
    pub models: Vec<String>,
    pub api_key_credential: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub tokenize_url: Option<String>,
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
    /// UNIX peers (uids or user names) that may act on behalf of another
    /// client (`_meta["llmbasedos/on_behalf_of"]`): the agent server.
    pub delegates: Vec<UserRef>,
}

/// A UNIX user as written: a uid, or a user name resolved at load.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum UserRef {
    Uid(u32),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds the token (shown in logs, used for per-client limits).
    pub name: String,
    /// `sha256` of the token, hex (`llmbasedos-gateway hash-token` prints it).
    pub sha256: String,
    /// A tier below the licence's for this client (a guest host).
    #[serde(default)]
    pub tier: Option<String>,
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
}
