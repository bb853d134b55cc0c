//! A real stack for the tests: `llmbasedos up` with the test server in a
//! temp dir, and luca-shell run against it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const LUCA_SHELL: &str = env!("CARGO_BIN_EXE_luca-shell");

/// The directory of the workspace's binaries, checked to hold the ones the
/// stack needs.
pub(crate) fn bin_dir() -> PathBuf {
    let dir = Path::new(LUCA_SHELL)
        .parent()
        .expect("binary dir")
        .to_owned();
    for binary in [
        "llmbasedos",
        "llmbasedos-gateway",
        "llmbasedos-test-server",
        "llmbasedos-fs",
    ] {
        assert!(
            dir.join(binary).is_file(),
            "{binary} is not built next to {LUCA_SHELL}; run `cargo build --workspace --bins` before the tests (scripts/test does)"
        );
    }
    dir
}

/// A running stack in its own temp dir; stopped (SIGTERM, then SIGKILL)
/// when dropped.
pub(crate) struct Stack {
    pub(crate) dir: tempfile::TempDir,
    child: Child,
    /// The gateway's HTTP and WebSocket address.
    pub(crate) listen: String,
}

impl Stack {
    pub(crate) fn up() -> Stack {
        Stack::up_with(&[], &[])
    }

    /// A stack started with more `llmbasedos up` arguments and environment.
    pub(crate) fn up_with(args: &[&str], env: &[(&str, &str)]) -> Stack {
        let bin_dir = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("files")).expect("root");
        let log = std::fs::File::create(dir.path().join("up.log")).expect("log");
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin_dir.join("llmbasedos"))
            .arg("--runtime-dir")
            .arg(dir.path().join("run"))
            .arg("up")
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--drain-timeout")
            .arg("1")
            .arg("--with-test-server")
            .arg("--root")
            .arg(dir.path().join("files"))
            .arg("--listen")
            .arg(&listen)
            // Semantic search without a model: its error is a golden case,
            // and the index stays in the temp dir.
            .env("LLMBASEDOS_FS_MODEL_DIR", "/nonexistent/all-MiniLM-L6-v2")
            .env("LLMBASEDOS_FS_INDEX_DIR", dir.path().join("index"))
            // The agent's state and workflows: this stack's own.
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start llmbasedos up");
        let stack = Stack { dir, child, listen };
        stack.wait_ready();
        stack
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    pub(crate) fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Waits until the gateway and both servers answer (the gateway may
    /// know a service from its caps file before the server accepts).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.shell(&["-c", "mcp.test.noop; ls /"], None);
            if output.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not come up: {output:?}\n{}",
                std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs luca-shell against this stack, with `stdin` piped in (or a
    /// closed standard input).
    pub(crate) fn shell(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.shell_with(args, stdin, &[])
    }

    /// As [`Stack::shell`], with extra environment variables.
    pub(crate) fn shell_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut child = Command::new(LUCA_SHELL)
            .arg("--runtime-dir")
            .arg(self.runtime_dir())
            .args(args)
            .env_remove("LLMBASEDOS_GATEWAY_SOCKET")
            .env_remove("LLMBASEDOS_GATEWAY_URL")
            .env_remove("LLMBASEDOS_TOKEN")
            .env_remove("VISUAL")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run luca-shell");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(stdin) = stdin {
            input.write_all(stdin.as_bytes()).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("luca-shell output")
    }

    /// Makes the fs root hold exactly the fixture files.
    pub(crate) fn reset_files(&self, files: &[(&str, &str)]) {
        let root = self.root();
        for entry in std::fs::read_dir(&root).expect("root") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("clean");
            } else {
                std::fs::remove_file(&path).expect("clean");
            }
        }
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write fixture");
        }
    }

    /// The pids of the gateways `llmbasedos up` started, in order.
    pub(crate) fn gateway_pids(&self) -> Vec<i32> {
        self.log()
            .lines()
            .filter_map(|line| line.strip_prefix("started gateway (pid "))
            .filter_map(|rest| rest.split(')').next()?.parse().ok())
            .collect()
    }

    /// The lines `llmbasedos up` printed, for failure messages.
    pub(crate) fn log(&self) -> String {
        let file = std::fs::File::open(self.dir.path().join("up.log")).expect("log");
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signals the child this test started; SIGTERM lets it
        // stop the servers it started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
