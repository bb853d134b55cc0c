//! The private `rclone rcd`: started when the server starts, restarted
//! with a growing delay when it dies ([`server_kit::Supervisor`]), killed
//! with the server (`PR_SET_PDEATHSIG` from the engine's long-lived thread,
//! and on drop).
//!
//! Each start gets fresh random credentials, passed in the child's
//! environment (`RCLONE_RC_USER`/`RCLONE_RC_PASS`: the environment of a
//! process is readable only by its user, its command line by everyone),
//! never logged and never shown. The environment is cleared first, so an
//! inherited `RCLONE_RC_NO_AUTH`, `RCLONE_*` option or proxy cannot reach
//! rclone; only `HOME`, `PATH`, the config path and a configured proxy do.
//! Where the installed rclone can serve the rc API on a UNIX socket (1.63
//! and later) it does, in a directory only this user can enter; 1.60
//! (Debian 12) cannot, so it gets a random loopback port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use server_kit::{Backoff, Next, Supervisor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rc::{Address, RcCall, RcClient};

/// What to install when rclone is missing; part of the errors' text.
pub const INSTALL_HINT: &str = "install rclone (the rclone package: `pacman -S rclone`, or `apt-get install rclone` on Debian)";

/// How long a fresh rcd gets to answer its first call.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The first rclone whose rcd listens on `unix://` addresses.
const UNIX_SOCKET_SINCE: (u32, u32) = (1, 63);

/// The first rclone with `operations/check` on its rc API: 1.62 has none
/// (rclone's issue 7015, asked on 1.62.2 in May 2023), 1.63 (June 2023)
/// added it; 1.60 (Debian 12) runs `rclone check` instead.
const RC_CHECK_SINCE: (u32, u32) = (1, 63);

/// Where the rcd is.
#[derive(Clone, Debug)]
pub enum RcdState {
    Starting,
    Ready {
        client: RcClient,
        /// Counts starts: a job started on one generation is interrupted
        /// when another has taken its place.
        generation: u64,
        version: (u32, u32),
    },
    /// rclone cannot be run; the text says why and what to install.
    Unavailable(String),
}

/// How rclone is run.
#[derive(Clone, Debug)]
pub struct RcloneSettings {
    pub binary: PathBuf,
    pub config: Option<PathBuf>,
    pub log_level: String,
    pub proxy: Option<String>,
    /// A private directory for the UNIX socket of newer rclone.
    pub runtime_dir: PathBuf,
}

impl RcloneSettings {
    /// A command for `rclone <arguments>` with the scrubbed environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.env_clear();
        for name in ["HOME", "PATH", "USER", "LANG", "TZ"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        if let Some(config) = &self.config {
            command.env("RCLONE_CONFIG", config);
        }
        if let Some(proxy) = &self.proxy {
            for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
                command.env(name, proxy);
            }
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// `rclone version`'s major and minor number.
    pub async fn version(&self) -> Result<(u32, u32), String> {
        let output = self
            .command()
            .arg("version")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .await
            .map_err(|error| self.missing(&error))?;
        let text = String::from_utf8_lossy(&output.stdout);
        parse_version(&text).ok_or_else(|| {
            format!(
                "{} did not say its version; {INSTALL_HINT}",
                self.binary.display()
            )
        })
    }

    pub fn missing(&self, error: &std::io::Error) -> String {
        if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                "rclone is not installed (no {} found); {INSTALL_HINT}",
                self.binary.display()
            )
        } else {
            format!("cannot run {}: {error}", self.binary.display())
        }
    }
}

/// `rclone v1.60.1-DEV` → (1, 60).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().next()?;
    let version = line.split_whitespace().find(|word| word.starts_with('v'))?;
    let mut parts = version[1..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The supervised rcd, as the jobs see it.
#[derive(Debug)]
pub struct Rcd {
    state: watch::Receiver<RcdState>,
}

impl Rcd {
    /// Starts the supervisor on the current runtime; it runs until `stop`.
    pub fn start(settings: RcloneSettings, stop: CancellationToken) -> Arc<Rcd> {
        let (sender, receiver) = watch::channel(RcdState::Starting);
        let sender = Arc::new(sender);
        let settings = Arc::new(settings);
        tokio::spawn(async move {
            let backoff = Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(30),
                Duration::from_secs(10),
            );
            let mut generation = 0;
            Supervisor::new("rclone rcd", backoff, stop.clone())
                .run(|| {
                    generation += 1;
                    run_once(settings.clone(), sender.clone(), generation, stop.clone())
                })
                .await;
        });
        Arc::new(Rcd { state: receiver })
    }

    pub fn state(&self) -> RcdState {
        self.state.borrow().clone()
    }

    /// The rcd's client once it is ready (waiting up to `wait` while it
    /// starts), or why there is none.
    pub async fn ready(&self, wait: Duration) -> Result<(RcClient, u64, (u32, u32)), String> {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(wait, async {
            loop {
                match &*state.borrow_and_update() {
                    RcdState::Ready {
                        client,
                        generation,
                        version,
                    } => return Ok((client.clone(), *generation, *version)),
                    RcdState::Unavailable(why) => return Err(why.clone()),
                    RcdState::Starting => {}
                }
                if state.changed().await.is_err() {
                    return Err("the rclone supervisor stopped".to_owned());
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err("rclone's rc server is not ready yet; try again".to_owned()))
    }

    /// The generation serving now, if any.
    pub fn generation(&self) -> Option<u64> {
        match &*self.state.borrow() {
            RcdState::Ready { generation, .. } => Some(*generation),
            _ => None,
        }
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the kernel's random source");
    hex::encode(bytes)
}

fn free_loopback_port() -> std::io::Result<std::net::SocketAddr> {
    // The port is free now; another process could take it before rclone
    // binds it, in which case this start fails and the next one picks again.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

async fn run_once(
    settings: Arc<RcloneSettings>,
    state: Arc<watch::Sender<RcdState>>,
    generation: u64,
    stop: CancellationToken,
) -> Next {
    state.send_replace(RcdState::Starting);
    let version = match settings.version().await {
        Ok(version) => version,
        Err(why) => {
            tracing::error!("{why}");
            state.send_replace(RcdState::Unavailable(why));
            return Next::Restart;
        }
    };
    let address = match transport(version) {
        Transport::Unix => match unix_socket_path(&settings.runtime_dir) {
            Ok(path) => Address::Unix(path),
            Err(error) => {
                tracing::warn!(%error, "no private directory for rclone's socket; using loopback");
                match free_loopback_port() {
                    Ok(address) => Address::Tcp(address),
                    Err(error) => return failed(&state, format!("no loopback port: {error}")),
                }
            }
        },
        Transport::Loopback => match free_loopback_port() {
            Ok(address) => Address::Tcp(address),
            Err(error) => return failed(&state, format!("no loopback port: {error}")),
        },
    };
    let user = random_secret();
    let password = random_secret();
    let mut command = settings.command();
    command
        .args(rcd_arguments(&address, &settings.log_level))
        .env("RCLONE_RC_USER", &user)
        .env("RCLONE_RC_PASS", &password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let why = settings.missing(&error);
            tracing::error!("{why}");
            state.send_replace(RcdState::Unavailable(why));
            return Next::Restart;
        }
    };
    let pid = child.id();
    if let Some(stderr) = child.stderr.take() {
        // rclone's own log, into ours; escaped, as everything from outside.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "rclone", "{}", proto::text::escaped(&line));
            }
        });
    }
    let client = RcClient::new(address, &user, &password);
    drop((user, password));
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        loop {
            if client.call(RcCall::CoreVersion, &json!({})).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::select! {
        result = ready => {
            if result.is_err() {
                let _ = child.kill().await;
                return failed(&state, "rclone's rc server did not answer after its start".to_owned());
            }
        }
        status = child.wait() => {
            return failed(&state, format!("rclone rcd exited at its start ({})", describe(status)));
        }
        () = stop.cancelled() => {
            let _ = child.kill().await;
            return Next::Stop;
        }
    }
    tracing::info!(
        pid,
        generation,
        version = %format!("{}.{}", version.0, version.1),
        address = ?client.address(),
        "rclone rcd ready"
    );
    state.send_replace(RcdState::Ready {
        client,
        generation,
        version,
    });
    tokio::select! {
        status = child.wait() => {
            tracing::warn!(pid, generation, "rclone rcd exited ({})", describe(status));
            state.send_replace(RcdState::Starting);
            Next::Restart
        }
        () = stop.cancelled() => {
            let _ = child.kill().await;
            Next::Stop
        }
    }
}

/// How the rc API of a given rclone is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `--rc-addr unix://…` in a private directory (1.63 and later).
    Unix,
    /// A random 127.0.0.1 port (1.60 to 1.62 cannot listen on a socket).
    Loopback,
}

/// The version decision: a UNIX socket wherever rclone can serve one.
pub fn transport(version: (u32, u32)) -> Transport {
    if version >= UNIX_SOCKET_SINCE {
        Transport::Unix
    } else {
        Transport::Loopback
    }
}

/// How a `check` job runs on a given rclone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckRunner {
    /// `operations/check` on the rcd: an async job in the job's own stats
    /// group, followed and stopped like a sync.
    Rc,
    /// A supervised `rclone check --combined -` child (rclone before 1.63
    /// has no rc call for it).
    Child,
}

/// The check decision: the rc call wherever rclone has it.
pub fn check_runner(version: (u32, u32)) -> CheckRunner {
    if version >= RC_CHECK_SINCE {
        CheckRunner::Rc
    } else {
        CheckRunner::Child
    }
}

/// The rcd's arguments for an address (the credentials go in its
/// environment, never here: a command line is readable by every user).
pub fn rcd_arguments(address: &Address, log_level: &str) -> Vec<String> {
    let rc_address = match address {
        Address::Tcp(address) => address.to_string(),
        Address::Unix(path) => format!("unix://{}", path.display()),
    };
    vec![
        "rcd".to_owned(),
        "--rc-addr".to_owned(),
        rc_address,
        "--log-level".to_owned(),
        log_level.to_owned(),
    ]
}

fn failed(state: &watch::Sender<RcdState>, why: String) -> Next {
    tracing::error!("{why}");
    state.send_replace(RcdState::Starting);
    Next::Restart
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    }
}

fn unix_socket_path(runtime_dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(runtime_dir)?;
    let path = runtime_dir.join("rc.sock");
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("rclone v1.60.1-DEV\n- os/version: debian"),
            Some((1, 60))
        );
        assert_eq!(parse_version("rclone v1.71.0\n"), Some((1, 71)));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn newer_rclone_gets_a_unix_socket_and_1_60_a_loopback_port() {
        assert_eq!(transport((1, 60)), Transport::Loopback);
        assert_eq!(transport((1, 62)), Transport::Loopback);
        assert_eq!(transport((1, 63)), Transport::Unix);
        assert_eq!(transport((1, 75)), Transport::Unix);
        assert_eq!(transport((2, 0)), Transport::Unix);
        // The whole chain from `rclone version`'s words.
        assert_eq!(
            transport(parse_version("rclone v1.75.2\n").expect("a version")),
            Transport::Unix
        );
        assert_eq!(
            transport(parse_version("rclone v1.60.1-DEV\n").expect("a version")),
            Transport::Loopback
        );
    }

    #[test]
    fn checks_use_the_rc_call_from_1_63_and_a_child_before() {
        let cases = [
            (
                "rclone v1.60.1-DEV\n- os/version: debian 12",
                CheckRunner::Child,
            ),
            ("rclone v1.62.2\n", CheckRunner::Child),
            ("rclone v1.63.0\n", CheckRunner::Rc),
            ("rclone v1.75.2\n", CheckRunner::Rc),
            ("rclone v2.0.0\n", CheckRunner::Rc),
        ];
        for (text, runner) in cases {
            let version = parse_version(text).expect("a version");
            assert_eq!(check_runner(version), runner, "{text}");
        }
    }

    #[test]
    fn the_rcd_arguments_name_the_address_and_never_a_credential() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().join("private");
        let socket = unix_socket_path(&runtime).expect("a socket path");
        assert_eq!(socket, runtime.join("rc.sock"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&runtime)
            .expect("made")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "only the service user enters");
        // A stale socket of an earlier start is removed.
        std::fs::write(&socket, "").expect("stale");
        assert_eq!(unix_socket_path(&runtime).expect("again"), socket);
        assert!(!socket.exists());

        let unix = rcd_arguments(&Address::Unix(socket.clone()), "INFO");
        assert_eq!(
            unix,
            [
                "rcd",
                "--rc-addr",
                &format!("unix://{}", socket.display()),
                "--log-level",
                "INFO"
            ]
        );
        let tcp = rcd_arguments(
            &Address::Tcp("127.0.0.1:5572".parse().expect("address")),
            "DEBUG",
        );
        assert_eq!(
            tcp,
            ["rcd", "--rc-addr", "127.0.0.1:5572", "--log-level", "DEBUG"]
        );
        for argument in unix.iter().chain(&tcp) {
            assert!(!argument.contains("--rc-user") && !argument.contains("--rc-pass"));
            assert!(!argument.contains("--rc-no-auth"));
        }
    }
}
