//! Fixtures shared by every area: the test server as a real process in its
//! own temp dir, and a small blocking client that speaks the NUL-delimited
//! wire. Every wait is bounded, so a broken server fails a test instead of
//! hanging it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use proto::{ErrorObject, Message, Notification, Request, RequestId, Response};
use serde_json::Value;
use tempfile::TempDir;

pub(crate) const SERVER_BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-test-server");

pub(crate) const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// The longest any single wait may take before the test fails. Generous:
/// it bounds liveness, it does not measure speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Variables of the test's own environment that would change how the server
/// starts (a test run under systemd, or a developer's shell settings).
const SCRUBBED_ENVIRONMENT: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "LLMBASEDOS_SOCKET",
    "LLMBASEDOS_IDLE_TIMEOUT",
    "LLMBASEDOS_DRAIN_TIMEOUT",
    "LLMBASEDOS_WORKER_THREADS",
    "LLMBASEDOS_LOG",
    "LLMBASEDOS_LOG_FORMAT",
];

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
        for name in SCRUBBED_ENVIRONMENT {
            command.env_remove(name);
        }
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        // A file, not a pipe: a chatty server can never block on a full pipe.
        let stderr_path = dir.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create the stderr log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the test server");
        let mut server = ServerProcess {
            child,
            status: None,
            socket,
            stderr_path,
            dir,
        };
        if self.wait_until_serving {
            server.wait_until_serving();
        }
        server
    }
}

/// A running test server. Dropping it kills the process (by its pid) if it
/// is still running.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    status: Option<ExitStatus>,
    socket: PathBuf,
    stderr_path: PathBuf,
    dir: TempDir,
}

impl ServerProcess {
    /// A server with the default settings plus `args`, already serving.
    pub(crate) fn start(args: &[&str]) -> ServerProcess {
        Launch::new().args(args).spawn()
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in pid_t")
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Everything the server wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    pub(crate) fn signal(&self, signal: libc::c_int) {
        assert!(
            self.status.is_none(),
            "the server already exited; not signalling a pid that may be reused"
        );
        // SAFETY: kill(2) on the pid of our own unreaped child.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            result,
            0,
            "kill({}, {signal}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM or SIGINT once the server handles it. The framework
    /// installs its signal handlers only when it starts serving, after the
    /// socket is bound and READY=1 is sent; a signal sent in between kills
    /// the process uncleanly, which is not what these tests are about.
    pub(crate) fn request_shutdown(&self, signal: libc::c_int) {
        wait_until(PATIENCE, "the server handles the signal", || {
            self.catches(signal)
        });
        self.signal(signal);
    }

    /// Whether the process has a handler for `signal` (SigCgt in /proc).
    fn catches(&self, signal: libc::c_int) -> bool {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }

    /// The exit status, if the process exits within `within`.
    pub(crate) fn try_wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.status {
                return Some(status);
            }
            self.status = self.child.try_wait().expect("wait for the server");
            if self.status.is_none() {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The exit status; fails the test if the process is still running after `within`.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match self.try_wait_exit(within) {
            Some(status) => status,
            None => panic!(
                "the server is still running after {within:?}; its stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.try_wait_exit(Duration::ZERO).is_none()
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.try_wait_exit(Duration::ZERO) {
                panic!(
                    "the server exited at start-up ({status}); its stderr:\n{}",
                    self.stderr()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not accept connections after {PATIENCE:?}; the server's stderr:\n{}",
                self.socket.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // SIGKILL to this child's pid only, then reap it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What [`Client::receive_within`] found.
#[derive(Debug)]
pub(crate) enum Received {
    Message(Message),
    /// The server closed the connection.
    Closed,
    /// Nothing complete arrived in time.
    Timeout,
}

/// A blocking client of the NUL-delimited wire. Every frame the server sends
/// must be a valid JSON-RPC message, or the test fails.
#[derive(Debug)]
pub(crate) struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
    /// How much of `pending` holds no NUL: a large answer arriving in
    /// pieces is scanned once, not from its start for every piece.
    scanned: usize,
}

impl Client {
    pub(crate) fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|error| panic!("connect to {}: {error}", path.display()));
        Client::from_stream(stream)
    }

    pub(crate) fn from_stream(stream: UnixStream) -> Client {
        Client {
            stream,
            pending: Vec::new(),
            scanned: 0,
        }
    }

    /// A second handle on the same connection, e.g. for a writer thread.
    pub(crate) fn writer(&self) -> UnixStream {
        self.stream.try_clone().expect("clone the stream")
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    pub(crate) fn send(&mut self, message: impl Into<Message>) {
        self.write(&frame(&message.into()));
    }

    /// Sends a request; `Value::Null` params are left out.
    pub(crate) fn request(&mut self, id: impl Into<RequestId>, method: &str, params: Value) {
        self.send(request(id, method, params));
    }

    pub(crate) fn notify(&mut self, method: &str, params: Value) {
        self.send(Notification {
            method: method.to_owned(),
            params: Some(params),
        });
    }

    /// Sends a request and returns the outcome of its response, which must
    /// be the next frame.
    pub(crate) fn call(
        &mut self,
        id: impl Into<RequestId>,
        method: &str,
        params: Value,
    ) -> Result<Value, ErrorObject> {
        let id = id.into();
        self.request(id.clone(), method, params);
        let response = self.response();
        assert_eq!(
            response.id,
            Some(id),
            "expected the answer to {method}, got {response:?}"
        );
        response.outcome
    }

    pub(crate) fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shut down the writing half");
    }

    pub(crate) fn receive_within(&mut self, within: Duration) -> Received {
        let deadline = Instant::now() + within;
        let mut chunk = vec![0_u8; 64 * 1024];
        loop {
            if let Some(offset) = self.pending[self.scanned..]
                .iter()
                .position(|byte| *byte == 0)
            {
                let end = self.scanned + offset;
                self.scanned = 0;
                let mut frame: Vec<u8> = self.pending.drain(..=end).collect();
                frame.pop();
                let message = Message::from_slice(&frame).unwrap_or_else(|invalid| {
                    panic!(
                        "the server sent an invalid JSON-RPC frame ({invalid}): {}",
                        String::from_utf8_lossy(&frame)
                    )
                });
                return Received::Message(message);
            }
            self.scanned = self.pending.len();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Received::Timeout;
            }
            self.stream
                .set_read_timeout(Some(remaining))
                .expect("set the read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(
                        self.pending.is_empty(),
                        "the server closed the connection in the middle of a frame: {}",
                        String::from_utf8_lossy(&self.pending)
                    );
                    return Received::Closed;
                }
                Ok(read) => self.pending.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return Received::Closed;
                }
                Err(error) => panic!("read from the server: {error}"),
            }
        }
    }

    /// The next frame; fails the test if none arrives in [`PATIENCE`].
    pub(crate) fn receive(&mut self) -> Message {
        match self.receive_within(PATIENCE) {
            Received::Message(message) => message,
            Received::Closed => panic!("the server closed the connection instead of answering"),
            Received::Timeout => panic!("no frame from the server within {PATIENCE:?}"),
        }
    }

    /// The next frame, which must be a response.
    pub(crate) fn response(&mut self) -> Response {
        match self.receive() {
            Message::Response(response) => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Fails the test if any frame arrives within `duration`.
    pub(crate) fn expect_silence(&mut self, duration: Duration) {
        match self.receive_within(duration) {
            Received::Timeout | Received::Closed => {}
            Received::Message(message) => panic!("expected no frame, got {message:?}"),
        }
    }

    /// Fails the test unless the server closes the connection (without
    /// sending anything more) within [`PATIENCE`].
    pub(crate) fn expect_closed(&mut self) {
        match self.receive_within(PATIENCE) {
            Received::Closed => {}
            Received::Message(message) => {
                panic!("expected the connection to close, got {message:?}")
            }
            Received::Timeout => panic!("the connection is still open after {PATIENCE:?}"),
        }
    }
}

pub(crate) fn request(id: impl Into<RequestId>, method: &str, params: Value) -> Request {
    Request {
        id: id.into(),
        method: method.to_owned(),
        params: (!params.is_null()).then_some(params),
    }
}

/// A message as it goes on the wire: compact JSON and its NUL.
pub(crate) fn frame(message: &Message) -> Vec<u8> {
    let mut bytes = message.to_vec();
    bytes.push(0);
    bytes
}

/// Polls `condition` until it holds; fails the test after `within`.
pub(crate) fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
