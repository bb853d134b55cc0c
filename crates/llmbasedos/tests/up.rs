//! `llmbasedos up` and `llmbasedos call` as a person uses them: real
//! processes, a real runtime directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LLMBASEDOS: &str = env!("CARGO_BIN_EXE_llmbasedos");

fn bin_dir() -> PathBuf {
    let dir = Path::new(LLMBASEDOS)
        .parent()
        .expect("binary dir")
        .to_owned();
    assert!(
        dir.join("llmbasedos-test-server").is_file(),
        "llmbasedos-test-server is not built next to {LLMBASEDOS}; run the tests with `cargo test --workspace`"
    );
    dir
}

/// The running stack; stopped (SIGKILL, by pid) if a test fails midway.
struct Stack {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Stack {
    fn up(runtime_dir: &Path) -> Stack {
        let mut child = Command::new(LLMBASEDOS)
            .arg("--runtime-dir")
            .arg(runtime_dir)
            .arg("up")
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--drain-timeout")
            .arg("2")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start llmbasedos up");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Stack { child, lines }
    }

    /// Waits for a `started test (pid N)` line and returns N.
    fn started_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("no `started test` line from llmbasedos up");
            if let Some(rest) = line.strip_prefix("started test (pid ") {
                return rest
                    .split(')')
                    .next()
                    .and_then(|pid| pid.parse().ok())
                    .expect("pid");
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signals the child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(runtime_dir: &Path, arguments: &[&str]) -> Output {
    Command::new(LLMBASEDOS)
        .arg("--runtime-dir")
        .arg(runtime_dir)
        .arg("call")
        .args(arguments)
        .output()
        .expect("run call")
}

fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never accepted a connection",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn up_serves_restarts_crashed_servers_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    let mut stack = Stack::up(&runtime_dir);
    let first = stack.started_pid();
    let socket = runtime_dir.join("test.sock");
    wait_for_socket(&socket);
    let caps = std::fs::read_to_string(runtime_dir.join("test.cap.json")).expect("caps published");
    proto::CompiledCaps::from_json(&caps, "test.cap.json").expect("published caps are valid");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&runtime_dir).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);

    let output = call(&runtime_dir, &["mcp.test.echo", "text=hello", "repeat=2"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("hellohello"),
        "{output:?}"
    );

    // A crashed server comes back.
    // SAFETY: the test server is a child of the stack this test started.
    assert_eq!(unsafe { libc::kill(first, libc::SIGKILL) }, 0);
    let second = stack.started_pid();
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = call(&runtime_dir, &["mcp.test.echo", "text=again"]);
        if output.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server never answered: {output:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    stack.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = stack.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "llmbasedos up did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket is removed");
    assert!(
        !runtime_dir.join("test.cap.json").exists(),
        "the caps file is removed"
    );
    assert!(
        !Path::new(&format!("/proc/{second}")).exists(),
        "the server process is gone"
    );
}

#[test]
fn errors_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (
            &["up", "--bin-dir", "/nonexistent"],
            "cargo build --release --workspace",
        ),
        (
            &["call", "mcp.test.echo", "text=hi"],
            "is `llmbasedos up` running?",
        ),
        (
            &["call", "echo"],
            "not a method name of the form mcp.<service>.<method>",
        ),
        (&["call", "mcp.test.echo", "novalue"], "is not key=value"),
    ];
    for (arguments, expected) in cases {
        let output = Command::new(LLMBASEDOS)
            .arg("--runtime-dir")
            .arg(dir.path())
            .args(*arguments)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{arguments:?} should fail");
        assert!(
            stderr.contains(expected),
            "{arguments:?}: expected {expected:?} in {stderr:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
