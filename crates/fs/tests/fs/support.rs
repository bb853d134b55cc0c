//! Fixtures: the fs server as a real process over a real socket, serving a
//! root inside its own temp dir, with siblings outside the root that tests
//! prove are never read or changed. Every wait is bounded.

use std::collections::BTreeMap;
use std::fs;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bench_support::ServerProcess;
use tempfile::TempDir;

pub(crate) use bench_support::wire::shorten;
pub(crate) use bench_support::{Client, PATIENCE};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-fs");

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

/// A running fs server (the shared [`ServerProcess`], whose methods it
/// has). Dropping it kills the process (by pid).
#[derive(Debug)]
pub(crate) struct Server(ServerProcess);

impl Deref for Server {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.0
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.0
    }
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
        command.env(
            "LLMBASEDOS_FS_ROOT",
            self.root.unwrap_or_else(|| fixture.root()),
        );
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        let mut server = ServerProcess::spawn(&mut command, socket, stderr);
        if self.wait {
            server.wait_until_serving();
        }
        Server(server)
    }
}

impl Server {
    /// A server on the fixture's root with default settings.
    pub(crate) fn start(fixture: &Fixture) -> Server {
        Launch::new().spawn(fixture)
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

    /// SIGKILL, then reap.
    pub(crate) fn kill(self) {
        self.0.kill();
    }
}
