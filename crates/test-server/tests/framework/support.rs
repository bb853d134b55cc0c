//! Fixtures shared by every area: the test server as a real process in its
//! own temp dir, and a small blocking client that speaks the NUL-delimited
//! wire. Every wait is bounded, so a broken server fails a test instead of
//! hanging it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) use bench_support::{
    Client, PATIENCE, Received, ServerProcess, frame, request, wait_until,
};

pub(crate) const SERVER_BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-test-server");

pub(crate) const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

#[derive(Debug)]
enum SocketSource {
    /// `--socket <temp dir>/s.sock`.
    TempDir,
    /// `--socket <path>`, a path the test chose.
    At(PathBuf),
    /// No `--socket` at all.
    NotGiven,
    /// `systemd-socket-activate <options> -l <temp dir>/s.sock`, no `--socket`.
    Activated(Vec<OsString>),
}

/// How to start a test server. By default it binds `s.sock` in its own temp
/// dir and [`Launch::spawn`] returns once the socket accepts connections.
#[derive(Debug)]
pub(crate) struct Launch {
    args: Vec<OsString>,
    environment: Vec<(OsString, OsString)>,
    socket: SocketSource,
    wait_until_serving: bool,
}

impl Launch {
    pub(crate) fn new() -> Launch {
        Launch {
            args: Vec::new(),
            environment: Vec::new(),
            socket: SocketSource::TempDir,
            wait_until_serving: true,
        }
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub(crate) fn env(mut self, name: &str, value: impl Into<OsString>) -> Launch {
        self.environment.push((name.into(), value.into()));
        self
    }

    pub(crate) fn socket_at(mut self, path: &Path) -> Launch {
        self.socket = SocketSource::At(path.to_owned());
        self
    }

    pub(crate) fn without_socket(mut self) -> Launch {
        self.socket = SocketSource::NotGiven;
        self.wait_until_serving = false;
        self
    }

    pub(crate) fn socket_activated(mut self) -> Launch {
        self.socket = SocketSource::Activated(Vec::new());
        self
    }

    /// Socket activation with further `systemd-socket-activate` options
    /// (e.g. `--datagram`); does not wait, since the socket may not be a stream.
    pub(crate) fn socket_activated_with(mut self, options: &[&str]) -> Launch {
        self.socket = SocketSource::Activated(options.iter().map(Into::into).collect());
        self.wait_until_serving = false;
        self
    }

    /// Returns right after the spawn: for servers expected to fail at start-up.
    pub(crate) fn without_waiting(mut self) -> Launch {
        self.wait_until_serving = false;
        self
    }

    pub(crate) fn spawn(self) -> ServerProcess {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let socket = match &self.socket {
            SocketSource::At(path) => path.clone(),
            _ => dir.path().join("s.sock"),
        };
        let mut command = match &self.socket {
            SocketSource::Activated(options) => {
                assert!(
                    Path::new(SOCKET_ACTIVATE).exists(),
                    "{SOCKET_ACTIVATE} is missing: the socket-activation test needs it \
                     (`apt-get install systemd` on Debian/Ubuntu, `pacman -S systemd` on Arch)"
                );
                let mut command = Command::new(SOCKET_ACTIVATE);
                command.args(options).arg("-l").arg(&socket);
                // systemd-socket-activate hands the server only the variables named here.
                for (name, value) in &self.environment {
                    let mut assignment = OsString::from("--setenv=");
                    assignment.push(name);
                    assignment.push("=");
                    assignment.push(value);
                    command.arg(assignment);
                }
                command.arg(SERVER_BINARY);
                command
            }
            SocketSource::TempDir | SocketSource::At(_) => {
                let mut command = Command::new(SERVER_BINARY);
                command.arg("--socket").arg(&socket);
                command
            }
            SocketSource::NotGiven => Command::new(SERVER_BINARY),
        };
        command.args(&self.args);
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        let stderr_path = dir.path().join("stderr.log");
        let mut server = ServerProcess::spawn(&mut command, socket, stderr_path).owning(dir);
        if self.wait_until_serving {
            server.wait_until_serving();
        }
        server
    }
}

/// A server with the default settings plus `args`, already serving.
pub(crate) fn start_server(args: &[&str]) -> ServerProcess {
    Launch::new().args(args).spawn()
}
