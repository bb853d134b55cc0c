//! Fixtures: the fs server as a real process over a real socket, serving a
//! root inside its own temp dir, with siblings outside the root that tests
//! prove are never read or changed. Every wait is bounded.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use proto::{ErrorObject, Message, Request, RequestId};
use serde_json::Value;
use tempfile::TempDir;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-fs");

/// Bounds liveness, not speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// What files outside the root hold: no response may ever carry it.
pub(crate) const SECRET: &str = "TOP-SECRET-outside-the-root-4f1c";

/// The fs error codes.
pub(crate) const INVALID_VALUE: i32 = -32011;
pub(crate) const DENIED: i32 = -32012;
pub(crate) const NOT_FOUND: i32 = -32013;
pub(crate) const ALREADY_EXISTS: i32 = -32014;
pub(crate) const TOO_LARGE: i32 = -32015;
pub(crate) const NOT_EMPTY: i32 = -32016;
pub(crate) const INVALID_PARAMS: i32 = -32602;

/// Variables of the test's environment that would change how the server starts.
const SCRUBBED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "LLMBASEDOS_SOCKET",
    "LLMBASEDOS_IDLE_TIMEOUT",
    "LLMBASEDOS_LOG",
    "LLMBASEDOS_LOG_FORMAT",
    "LLMBASEDOS_FS_ROOT",
    "LLMBASEDOS_FS_READ_ONLY",
    "LLMBASEDOS_FS_CONFIG",
    "LLMBASEDOS_FS_INDEX_DIR",
    "LLMBASEDOS_FS_MODEL_DIR",
    "LLMBASEDOS_FS_WATCH",
    "ORT_DYLIB_PATH",
    "STATE_DIRECTORY",
];

/// A temp dir laid out as:
/// - `data/` — the server's root;
/// - `data_evil/` — a sibling sharing the root's name as a prefix;
/// - `outside/` — files outside the root.
///
/// Both siblings hold [`SECRET`].
#[derive(Debug)]
pub(crate) struct Fixture {
    dir: TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let fixture = Fixture { dir };
        for sibling in ["data", "data_evil", "outside"] {
            fs::create_dir(fixture.base().join(sibling)).expect("create a fixture dir");
        }
        fs::write(fixture.outside().join("secret.txt"), SECRET).expect("write the secret");
        fs::write(fixture.base().join("data_evil/secret.txt"), SECRET).expect("write the secret");
        fixture
    }

    pub(crate) fn base(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.base().join("data")
    }

    pub(crate) fn outside(&self) -> PathBuf {
        self.base().join("outside")
    }

    /// A host path beneath the root.
    pub(crate) fn at(&self, virtual_path: &str) -> PathBuf {
        self.root().join(virtual_path.trim_start_matches('/'))
    }

    pub(crate) fn write(&self, virtual_path: &str, content: impl AsRef<[u8]>) {
        let path = self.at(virtual_path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parents");
        }
        fs::write(path, content).expect("write a fixture file");
    }

    pub(crate) fn read(&self, virtual_path: &str) -> Vec<u8> {
        fs::read(self.at(virtual_path)).expect("read a fixture file")
    }

    pub(crate) fn symlink(&self, target: impl AsRef<Path>, virtual_path: &str) {
        std::os::unix::fs::symlink(target, self.at(virtual_path)).expect("create a symlink");
    }

    /// Everything outside the root: path → kind, mode and content.
    pub(crate) fn outside_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut snapshot = BTreeMap::new();
        for sibling in ["data_evil", "outside"] {
            snapshot_into(&self.base().join(sibling), &mut snapshot);
        }
        snapshot
    }

    /// Everything inside the root.
    pub(crate) fn root_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut snapshot = BTreeMap::new();
        snapshot_into(&self.root(), &mut snapshot);
        snapshot
    }
}

fn snapshot_into(path: &Path, snapshot: &mut BTreeMap<PathBuf, String>) {
    let metadata = fs::symlink_metadata(path).expect("lstat in the snapshot");
    let mode = metadata.permissions().mode();
    let description = if metadata.file_type().is_symlink() {
        format!("link {:?}", fs::read_link(path).expect("readlink"))
    } else if metadata.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .expect("read a dir")
            .map(|entry| entry.expect("entry").path())
            .collect();
        names.sort();
        for name in names {
            snapshot_into(&name, snapshot);
        }
        format!("dir {mode:o}")
    } else if metadata.is_file() {
        format!(
            "file {mode:o} nlink {} {:?}",
            metadata.nlink(),
            String::from_utf8_lossy(&fs::read(path).expect("read"))
        )
    } else {
        format!("special {mode:o}")
    };
    snapshot.insert(path.to_owned(), description);
}

/// A running server. Dropping it kills the process (by pid).
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    status: Option<ExitStatus>,
    socket: PathBuf,
    stderr: PathBuf,
}

/// How to start a server: extra arguments, environment, config text.
#[derive(Debug, Default)]
pub(crate) struct Launch {
    args: Vec<String>,
    environment: Vec<(String, String)>,
    config: Option<String>,
    root: Option<PathBuf>,
    wait: bool,
    /// Names the socket, config and log files, so that several servers
    /// can run beside each other in one fixture.
    name: Option<String>,
    /// A command the server runs under (e.g. `unshare`), the binary and
    /// its arguments appended.
    wrapper: Vec<String>,
}

impl Launch {
    pub(crate) fn new() -> Launch {
        Launch {
            wait: true,
            ..Launch::default()
        }
    }

    pub(crate) fn config(mut self, text: &str) -> Launch {
        self.config = Some(text.to_owned());
        self
    }

    pub(crate) fn env(mut self, name: &str, value: &str) -> Launch {
        self.environment.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Serve this host directory instead of the fixture's root.
    pub(crate) fn root(mut self, root: &Path) -> Launch {
        self.root = Some(root.to_owned());
        self
    }

    pub(crate) fn without_waiting(mut self) -> Launch {
        self.wait = false;
        self
    }

    /// Files of this server are `<name>.sock`, `<name>.yaml`,
    /// `<name>-stderr.log` (default: `fs.sock`, `fs.yaml`, `stderr.log`).
    pub(crate) fn named(mut self, name: &str) -> Launch {
        self.name = Some(name.to_owned());
        self
    }

    /// Runs the server as the last arguments of `command`.
    pub(crate) fn wrapped(mut self, command: &[&str]) -> Launch {
        self.wrapper = command.iter().map(|word| (*word).to_owned()).collect();
        self
    }

    pub(crate) fn spawn(self, fixture: &Fixture) -> Server {
        let (socket, config, stderr) = match &self.name {
            None => (
                "fs.sock".to_owned(),
                "fs.yaml".to_owned(),
                "stderr.log".to_owned(),
            ),
            Some(name) => (
                format!("{name}.sock"),
                format!("{name}.yaml"),
                format!("{name}-stderr.log"),
            ),
        };
        let socket = fixture.base().join(socket);
        let config = fixture.base().join(config);
        fs::write(&config, self.config.as_deref().unwrap_or("")).expect("write the config");
        let stderr = fixture.base().join(stderr);
        let mut command = match self.wrapper.split_first() {
            None => Command::new(BINARY),
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(BINARY);
                command
            }
        };
        command
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .args(&self.args);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command.env(
            "LLMBASEDOS_FS_ROOT",
            self.root.unwrap_or_else(|| fixture.root()),
        );
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("create the stderr log"))
            .spawn()
            .expect("spawn llmbasedos-fs");
        let mut server = Server {
            child,
            status: None,
            socket,
            stderr,
        };
        if self.wait {
            server.wait_until_serving();
        }
        server
    }
}

impl Server {
    /// A server on the fixture's root with default settings.
    pub(crate) fn start(fixture: &Fixture) -> Server {
        Launch::new().spawn(fixture)
    }

    pub(crate) fn connect(&self) -> Client {
        let stream = UnixStream::connect(&self.socket)
            .unwrap_or_else(|error| panic!("connect to {}: {error}", self.socket.display()));
        Client {
            stream,
            pending: Vec::new(),
            next_id: 1,
        }
    }

    /// Fails if the (debug-built) server logged a result that breaks its
    /// method's result_schema: the caps and the code have drifted apart.
    pub(crate) fn assert_results_match_schemas(&self) {
        let stderr = self.stderr();
        assert!(
            !stderr.contains("does not match result_schema"),
            "a result broke its result_schema:\n{stderr}"
        );
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.status = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server still runs after {within:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far (VmHWM), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in /proc/{}/status", self.pid()))
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                panic!(
                    "the server exited at start-up ({status}); stderr:\n{}",
                    self.stderr()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server does not listen after {PATIENCE:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A blocking client of the NUL-delimited wire.
#[derive(Debug)]
pub(crate) struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
    next_id: i64,
}

impl Client {
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Sends a request without waiting; returns its id.
    pub(crate) fn send(&mut self, method: &str, params: Value) -> RequestId {
        let id = RequestId::Number(self.next_id);
        self.next_id += 1;
        let request = Request {
            id: id.clone(),
            method: method.to_owned(),
            params: Some(params),
        };
        let mut bytes = Message::from(request).to_vec();
        bytes.push(0);
        self.send_raw(&bytes);
        id
    }

    /// Sends a notification (e.g. `notifications/cancelled`).
    pub(crate) fn notify(&mut self, method: &str, params: Value) {
        let notification = proto::Notification {
            method: method.to_owned(),
            params: Some(params),
        };
        let mut bytes = Message::from(notification).to_vec();
        bytes.push(0);
        self.send_raw(&bytes);
    }

    /// One call, answered by the next frame.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Result<Value, ErrorObject> {
        let id = self.send(method, params);
        loop {
            match self.receive() {
                Message::Response(response) if response.id.as_ref() == Some(&id) => {
                    return response.outcome;
                }
                Message::Notification(_) => {}
                other => panic!("expected the answer to {method} ({id:?}), got {other:?}"),
            }
        }
    }

    /// A call that must succeed.
    pub(crate) fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()) {
            Ok(result) => result,
            Err(error) => panic!("{method} {} failed: {error}", shorten(&params)),
        }
    }

    /// A call that must fail.
    pub(crate) fn err(&mut self, method: &str, params: Value) -> ErrorObject {
        match self.call(method, params.clone()) {
            Ok(result) => panic!(
                "{method} {} succeeded with {}",
                shorten(&params),
                shorten(&result)
            ),
            Err(error) => error,
        }
    }

    pub(crate) fn receive(&mut self) -> Message {
        let deadline = Instant::now() + PATIENCE;
        let mut chunk = vec![0_u8; 256 * 1024];
        loop {
            if let Some(end) = self.pending.iter().position(|byte| *byte == 0) {
                let mut frame: Vec<u8> = self.pending.drain(..=end).collect();
                frame.pop();
                return Message::from_slice(&frame)
                    .unwrap_or_else(|error| panic!("invalid frame from the server ({error})"));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                !remaining.is_zero(),
                "no answer from the server within {PATIENCE:?}"
            );
            self.stream
                .set_read_timeout(Some(remaining))
                .expect("set the read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(read) => self.pending.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(error) => panic!("read from the server: {error}"),
            }
        }
    }
}

/// A JSON value cut to a readable length for failure messages.
pub(crate) fn shorten(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}
