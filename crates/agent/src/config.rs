//! `/etc/llmbasedos/agent.yaml`: where workflows live, the gateway's
//! socket, the state directory, the Docker policy, the HTTP credentials
//! and the store's limits. Environment overrides (what `llmbasedos up`
//! and the unit set): `LLMBASEDOS_AGENT_WORKFLOWS` (directories, `:`
//! separated), `LLMBASEDOS_AGENT_GATEWAY_SOCKET`, `LLMBASEDOS_AGENT_STATE_DIR`
//! (else systemd's `$STATE_DIRECTORY`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/llmbasedos/agent.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub workflow_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub gateway_socket: Option<PathBuf>,
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Steps of one run at once.
    #[serde(default)]
    pub max_parallel_steps: Option<usize>,
    /// Runs at once; more are refused with a clear error.
    #[serde(default)]
    pub max_running: Option<usize>,
    #[serde(default)]
    pub http: Option<RawHttp>,
    #[serde(default)]
    pub docker: Option<RawDocker>,
    #[serde(default)]
    pub store: Option<RawStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Credential name → file holding the secret (readable by the agent only).
    #[serde(default)]
    pub credentials: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    /// The engine's socket [default: /var/run/docker.sock].
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Host directories steps may mount (read-only unless a step asks).
    #[serde(default)]
    pub allowed_mounts: Vec<PathBuf>,
    /// Whether a step may name a network (none by default).
    #[serde(default)]
    pub allow_network: bool,
    /// Whether a mount may be writable at all (a step still has to ask).
    #[serde(default)]
    pub allow_writable_mounts: bool,
    /// Whether a missing image may be pulled (off: nothing is fetched).
    #[serde(default)]
    pub allow_pull: bool,
    /// `uid[:gid]` containers run as [default: the image's user].
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default)]
    pub max_executions: Option<usize>,
    /// Bytes of one step's input or output kept in its log.
    #[serde(default)]
    pub log_value_bytes: Option<usize>,
}

/// The configuration, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub workflow_dirs: Vec<PathBuf>,
    pub gateway_socket: PathBuf,
    pub state_dir: PathBuf,
    pub max_parallel_steps: usize,
    pub max_running: usize,
    pub credentials: BTreeMap<String, PathBuf>,
    pub http_timeout_secs: u64,
    pub max_response_bytes: usize,
    pub docker_socket: Option<PathBuf>,
    pub docker_allowed_mounts: Vec<PathBuf>,
    pub docker_allow_network: bool,
    pub docker_allow_writable_mounts: bool,
    pub docker_allow_pull: bool,
    pub docker_user: Option<String>,
    pub max_executions: usize,
    pub log_value_bytes: usize,
}

impl Config {
    /// Reads `path` (or the default file; a missing default is the
    /// defaults), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let raw = match path {
            Some(path) => Some(read(path)?),
            None if Path::new(DEFAULT_PATH).exists() => Some(read(Path::new(DEFAULT_PATH))?),
            None => None,
        };
        let raw = raw.unwrap_or(RawConfig {
            workflow_dirs: None,
            gateway_socket: None,
            state_dir: None,
            max_parallel_steps: None,
            max_running: None,
            http: None,
            docker: None,
            store: None,
        });
        Ok(Config::resolve(raw, |name| std::env::var_os(name)))
    }

    pub fn resolve(raw: RawConfig, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Config {
        let http = raw.http.unwrap_or_default();
        let docker = raw.docker.unwrap_or_default();
        let store = raw.store.unwrap_or_default();
        let workflow_dirs = match env("LLMBASEDOS_AGENT_WORKFLOWS") {
            Some(dirs) => std::env::split_paths(&dirs).collect(),
            None => raw
                .workflow_dirs
                .unwrap_or_else(|| vec![PathBuf::from("/etc/llmbasedos/workflows")]),
        };
        let gateway_socket = env("LLMBASEDOS_AGENT_GATEWAY_SOCKET")
            .map(PathBuf::from)
            .or(raw.gateway_socket)
            .unwrap_or_else(|| PathBuf::from("/run/llmbasedos/gateway.sock"));
        let state_dir = env("LLMBASEDOS_AGENT_STATE_DIR")
            .map(PathBuf::from)
            .or(raw.state_dir)
            .or_else(|| env("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/lib/llmbasedos/agent"));
        Config {
            workflow_dirs,
            gateway_socket,
            state_dir,
            max_parallel_steps: raw.max_parallel_steps.unwrap_or(8).clamp(1, 256),
            max_running: raw.max_running.unwrap_or(256).max(1),
            credentials: http.credentials,
            http_timeout_secs: http.timeout_secs.unwrap_or(30),
            max_response_bytes: http.max_response_bytes.unwrap_or(1 << 20),
            docker_socket: docker.socket,
            docker_allowed_mounts: docker.allowed_mounts,
            docker_allow_network: docker.allow_network,
            docker_allow_writable_mounts: docker.allow_writable_mounts,
            docker_allow_pull: docker.allow_pull,
            docker_user: docker.user,
            max_executions: store.max_executions.unwrap_or(1000).max(1),
            log_value_bytes: store.log_value_bytes.unwrap_or(16 << 10).max(256),
        }
    }
}

fn read(path: &Path) -> Result<RawConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    yaml_serde::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agent.yaml");
        let raw = read(&path).unwrap();
        let config = Config::resolve(raw, |_| None);
        assert_eq!(
            config.workflow_dirs.first(),
            Some(&PathBuf::from("/etc/llmbasedos/workflows"))
        );
        assert!(!config.docker_allow_network);
        // The unit's state directory is the one used.
        let raw = read(&path).unwrap();
        let config = Config::resolve(raw, |name| {
            (name == "STATE_DIRECTORY").then(|| "/var/lib/llmbasedos/agent".into())
        });
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/llmbasedos/agent"));
    }
}
