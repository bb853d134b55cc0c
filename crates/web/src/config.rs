//! Configuration, in two stages like the other services: [`FileConfig`] is
//! `web.yaml` as written (unknown keys refused, errors naming the file and
//! the key), then [`Config::resolve`] applies the environment overrides and
//! checks the values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the packaged configuration lives.
pub const DEFAULT_PATH: &str = "/etc/llmbasedos/web.yaml";
/// The address the console listens on when nothing else is said (and no
/// socket is inherited from systemd).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// The gateway's UNIX socket on an installed system.
pub const DEFAULT_GATEWAY_SOCKET: &str = "/run/llmbasedos/gateway.sock";
/// Where one-time bootstrap tokens are kept on an installed system.
pub const DEFAULT_BOOTSTRAP_DIR: &str = "/run/llmbasedos/web";
/// Overrides `listen` (used by `llmbasedos up` and the tests).
pub const LISTEN_VARIABLE: &str = "LLMBASEDOS_WEB_LISTEN";
/// Overrides `gateway_socket`.
pub const GATEWAY_SOCKET_VARIABLE: &str = "LLMBASEDOS_WEB_GATEWAY_SOCKET";
/// Overrides `bootstrap_dir`.
pub const BOOTSTRAP_DIR_VARIABLE: &str = "LLMBASEDOS_WEB_BOOTSTRAP_DIR";
/// Overrides `idle_exit_secs`.
pub const IDLE_VARIABLE: &str = "LLMBASEDOS_WEB_IDLE_EXIT_SECS";
/// Overrides `services_control` (`up:<path>` or `systemd`).
pub const SERVICES_VARIABLE: &str = "LLMBASEDOS_WEB_SERVICES";

/// `web.yaml` as written. Every key is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port` to listen on when systemd passes no socket. Default
    /// 127.0.0.1:8081. Only loopback addresses are accepted unless
    /// `allow_non_loopback` is true.
    pub listen: Option<String>,
    pub allow_non_loopback: Option<bool>,
    /// Extra `Host` header values accepted besides the listening address
    /// and `localhost:<port>` (a name in /etc/hosts for this machine).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// The gateway's UNIX socket. Default /run/llmbasedos/gateway.sock.
    pub gateway_socket: Option<PathBuf>,
    /// Where `llmbasedos web` leaves one-time tokens (their SHA-256) for
    /// the console. Default /run/llmbasedos/web.
    pub bootstrap_dir: Option<PathBuf>,
    /// Seconds without a request, a session in use or a live stream after
    /// which the console exits (socket activation starts it again). 0:
    /// never. Default 600.
    pub idle_exit_secs: Option<u64>,
    /// How long a session lasts without use, in seconds. Default 3600.
    pub session_idle_secs: Option<u64>,
    /// Where service states and logs come from: `systemd`, or `up:<path
    /// of up's control socket>`. Default: detected.
    pub services: Option<String>,
    /// The gateway client the console's calls run as when the console
    /// shares its uid with other clients (under `llmbasedos up`):
    /// `token:<name>`, sent as `_meta["llmbasedos/on_behalf_of"]`, which
    /// the gateway honours only from a UNIX peer named in its
    /// `auth.delegates` and never beyond that peer's own rights. Unset:
    /// the console is known by its own uid (the packaged `llmbasedos-web`
    /// user) and gets that uid's tier.
    pub gateway_identity: Option<String>,
}

/// Why the configuration cannot be used. Messages name the file or the
/// variable, the key, and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl FileConfig {
    /// Parses `web.yaml` text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        let value: yaml_serde::Value = yaml_serde::from_str(text)
            .map_err(|error| ConfigError(format!("{origin}: not valid YAML: {error}")))?;
        if value.is_null() {
            return Ok(FileConfig::default());
        }
        yaml_serde::from_str(text).map_err(|error| ConfigError(format!("{origin}: {error}")))
    }

    /// Reads the file. A missing file at the default path means defaults;
    /// a missing file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => FileConfig::parse(&text, &origin),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(FileConfig::default())
            }
            Err(error) => Err(ConfigError(format!("{origin}: cannot read it: {error}"))),
        }
    }
}

/// The runtime configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub extra_hosts: Vec<String>,
    pub gateway_socket: PathBuf,
    pub bootstrap_dir: PathBuf,
    /// `None`: never exit for idleness.
    pub idle_exit: Option<Duration>,
    pub session_idle: Duration,
    pub services: Option<String>,
    pub gateway_identity: Option<String>,
}

impl Config {
    /// Applies the environment (`env` looks a variable up) to the file.
    pub fn resolve(
        file: FileConfig,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (listen_text, listen_origin) = match env(LISTEN_VARIABLE) {
            Some(value) => (value, LISTEN_VARIABLE.to_owned()),
            None => (
                file.listen
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
                format!("{origin}: listen"),
            ),
        };
        let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
            ConfigError(format!(
                "{listen_origin}: {} is not an address:port; write it like {DEFAULT_LISTEN}",
                proto::text::echo(&listen_text)
            ))
        })?;
        if !listen.ip().is_loopback() && !file.allow_non_loopback.unwrap_or(false) {
            return Err(ConfigError(format!(
                "{listen_origin}: {listen} is not a loopback address; the console listens on 127.0.0.1 unless `allow_non_loopback: true` is set (put a TLS proxy in front of it)"
            )));
        }
        let idle_secs = match env(IDLE_VARIABLE) {
            Some(value) => value.trim().parse::<u64>().map_err(|_| {
                ConfigError(format!(
                    "{IDLE_VARIABLE}: {} is not a number of seconds",
                    proto::text::echo(&value)
                ))
            })?,
            None => file.idle_exit_secs.unwrap_or(600),
        };
        let session_secs = file.session_idle_secs.unwrap_or(3600);
        if session_secs == 0 {
            return Err(ConfigError(format!(
                "{origin}: session_idle_secs must be at least 1"
            )));
        }
        for host in &file.extra_hosts {
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(ConfigError(format!(
                    "{origin}: extra_hosts: {} is not a host[:port]",
                    proto::text::echo(host)
                )));
            }
        }
        if let Some(identity) = &file.gateway_identity
            && !identity.strip_prefix("token:").is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
            })
        {
            return Err(ConfigError(format!(
                "{origin}: gateway_identity: {} is not a client the gateway knows by a token; write it like token:llmbasedos-web (a name in gateway.yaml's auth.tokens)",
                proto::text::echo(identity)
            )));
        }
        let path = |variable: &str, value: Option<PathBuf>, default: &str| {
            env(variable)
                .map(PathBuf::from)
                .or(value)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Ok(Config {
            listen,
            extra_hosts: file.extra_hosts,
            gateway_socket: path(
                GATEWAY_SOCKET_VARIABLE,
                file.gateway_socket,
                DEFAULT_GATEWAY_SOCKET,
            ),
            bootstrap_dir: path(
                BOOTSTRAP_DIR_VARIABLE,
                file.bootstrap_dir,
                DEFAULT_BOOTSTRAP_DIR,
            ),
            idle_exit: (idle_secs > 0).then(|| Duration::from_secs(idle_secs)),
            session_idle: Duration::from_secs(session_secs),
            services: env(SERVICES_VARIABLE).or(file.services),
            gateway_identity: file.gateway_identity,
        })
    }

    /// Loads the file at `path` (or the default path) and resolves it with
    /// the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(path) => (path, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let file = FileConfig::load(path, explicit)?;
        Config::resolve(file, &path.display().to_string(), |name| {
            std::env::var(name).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_parses() {
        let text = include_str!("../../../config/web.yaml");
        let file = FileConfig::parse(text, "config/web.yaml").expect("the shipped file parses");
        let config = Config::resolve(file, "config/web.yaml", |_| None).expect("resolves");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.bootstrap_dir, Path::new(DEFAULT_BOOTSTRAP_DIR));
        assert_eq!(config.idle_exit, Some(Duration::from_secs(600)));
    }

    #[test]
    fn unknown_keys_and_remote_addresses_are_refused() {
        let error = FileConfig::parse("lisen: 1", "web.yaml").expect_err("typo");
        assert!(error.to_string().contains("lisen"), "{error}");
        let file = FileConfig::parse("listen: 0.0.0.0:8081", "web.yaml").expect("parses");
        let error = Config::resolve(file, "web.yaml", |_| None).expect_err("remote");
        assert!(error.to_string().contains("allow_non_loopback"), "{error}");
        for identity in ["uid:0", "token:", "token:a b", "llmbasedos-web"] {
            let file = FileConfig::parse(&format!("gateway_identity: \"{identity}\""), "web.yaml")
                .expect("parses");
            let error = Config::resolve(file, "web.yaml", |_| None).expect_err(identity);
            assert!(error.to_string().contains("gateway_identity"), "{error}");
        }
        let file = FileConfig::parse("gateway_identity: token:llmbasedos-web", "web.yaml")
            .expect("parses");
        let config = Config::resolve(file, "web.yaml", |_| None).expect("a token identity");
        assert_eq!(
            config.gateway_identity.as_deref(),
            Some("token:llmbasedos-web")
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = FileConfig::parse("idle_exit_secs: 5", "web.yaml").expect("parses");
        let config = Config::resolve(file, "web.yaml", |name| match name {
            LISTEN_VARIABLE => Some("127.0.0.1:9999".to_owned()),
            IDLE_VARIABLE => Some("0".to_owned()),
            _ => None,
        })
        .expect("resolves");
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.idle_exit, None);
    }
}
