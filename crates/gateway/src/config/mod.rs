//! The gateway's configuration, `/etc/llmbasedos/gateway.yaml`, in two
//! stages: [`RawConfig`] is the file as written (unknown keys refused;
//! [`file`]), and [`Config`] is what the gateway runs with (addresses
//! parsed, groups resolved, limits checked; [`resolve`]). Every problem
//! names the file, the key and the fix.

mod file;
mod resolve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use file::{
    RawAuth, RawClientTier, RawConfig, RawLicence, RawLimits, RawLlm, RawProvider, RawToken,
    RawUpstream, UserRef,
};

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
    /// Licensing (none: every client may do everything).
    pub licence: Option<LicenceConfig>,
    /// UNIX peers that may act on behalf of other clients.
    pub delegates: Vec<u32>,
}

/// The licence section, resolved (the files are read by
/// [`crate::licensing::Licensing::load`]).
#[derive(Clone, Debug)]
pub struct LicenceConfig {
    pub key: PathBuf,
    pub keys_dir: PathBuf,
    pub tiers: PathBuf,
    pub allow_unsigned: bool,
    pub time_zone: licence::ledger::Tz,
    pub state_dir: PathBuf,
    /// Client identity (`token:<name>`, `uid:<n>`) → its tier.
    pub assigned: Vec<(String, String)>,
}

/// The language model API, resolved.
#[derive(Clone, Debug)]
pub struct Llm {
    pub url: String,
    /// llama.cpp's `/tokenize` endpoint, to count prompts exactly.
    pub tokenize_url: Option<String>,
    /// Model aliases: name → model.
    pub aliases: Vec<(String, String)>,
    /// More APIs, by model name.
    pub providers: Vec<Provider>,
    pub model: String,
    pub key: LlmKey,
    pub timeout: Duration,
}

/// One more LLM API, resolved.
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub url: String,
    pub models: Vec<String>,
    pub key: LlmKey,
    pub tokenize_url: Option<String>,
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
    pub tier: Option<String>,
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
