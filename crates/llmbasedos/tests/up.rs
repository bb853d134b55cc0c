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
    for binary in ["llmbasedos-gateway", "llmbasedos-test-server"] {
        assert!(
            dir.join(binary).is_file(),
            "{binary} is not built next to {LLMBASEDOS}; run `cargo build --workspace` before the tests (scripts/test does)"
        );
    }
    dir
}

/// The running stack; stopped (SIGKILL, by pid) if a test fails midway.
struct Stack {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Sends every line of `from` (echoed, so a failing test shows them).
fn forward_lines(from: impl std::io::Read, to: &mpsc::Sender<String>) {
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        eprintln!("{line}");
        if to.send(line).is_err() {
            break;
        }
    }
}

impl Stack {
    fn up(runtime_dir: &Path, extra: &[&str]) -> Stack {
        let mut child = Command::new(LLMBASEDOS)
            .arg("--runtime-dir")
            .arg(runtime_dir)
            .arg("up")
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--drain-timeout")
            .arg("2")
            .arg("--with-test-server")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start llmbasedos up");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        let stderr_sender = sender.clone();
        std::thread::spawn(move || forward_lines(stdout, &sender));
        std::thread::spawn(move || forward_lines(stderr, &stderr_sender));
        Stack { child, lines }
    }

    /// Waits for a line starting with `prefix` and returns it.
    fn line_starting(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting with {prefix:?} from llmbasedos up"));
            if line.starts_with(prefix) {
                return line;
            }
        }
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).expect("stat").permissions())
        & 0o777
}

#[test]
fn up_serves_restarts_crashed_servers_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    let listen = format!("127.0.0.1:{}", free_port());
    let root = dir.path().join("files");
    let root_arg = root.display().to_string();
    let mut stack = Stack::up(&runtime_dir, &["--listen", &listen, "--root", &root_arg]);
    let first = stack.started_pid();
    let http = stack.line_starting("  Streamable HTTP");
    assert!(http.ends_with(&format!("http://{listen}/mcp")), "{http}");
    stack.line_starting("Claude Desktop");
    let gateway_socket = runtime_dir.join("gateway.sock");
    wait_for_socket(&gateway_socket);
    assert!(root.is_dir(), "the fs root is created");
    let caps =
        std::fs::read_to_string(runtime_dir.join("mcp/test.cap.json")).expect("caps published");
    proto::CompiledCaps::from_json(&caps, "test.cap.json").expect("published caps are valid");
    assert_eq!(mode_of(&runtime_dir), 0o700);
    assert_eq!(mode_of(&runtime_dir.join("gateway.token")), 0o600);
    assert_eq!(mode_of(&runtime_dir.join("gateway.yaml")), 0o600);
    let token = std::fs::read_to_string(runtime_dir.join("gateway.token")).expect("token");
    assert!(token.trim().len() >= 32);

    let output = call(&runtime_dir, &["mcp.test.echo", "text=hello", "repeat=2"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("hellohello"),
        "{output:?}"
    );
    let tools = call(&runtime_dir, &["tools/list"]);
    assert!(
        String::from_utf8_lossy(&tools.stdout).contains("\"test_echo\""),
        "{tools:?}"
    );

    // A crashed server comes back, and the gateway reaches it again.
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
    let status = wait_exit(&mut stack);
    assert!(status.success(), "{status:?}");
    assert!(!gateway_socket.exists(), "the gateway socket is removed");
    assert!(
        !runtime_dir.join("mcp/test.sock").exists(),
        "the server socket is removed"
    );
    assert!(
        !runtime_dir.join("mcp/test.cap.json").exists(),
        "the caps file is removed"
    );
    assert!(
        !Path::new(&format!("/proc/{second}")).exists(),
        "the server process is gone"
    );
    // The token survives, so that configured hosts keep working next time.
    assert_eq!(
        std::fs::read_to_string(runtime_dir.join("gateway.token")).expect("token"),
        token
    );
}

fn wait_exit(stack: &mut Stack) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = stack.child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "llmbasedos up did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_configuration_the_gateway_refuses_stops_the_stack_instead_of_looping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("0.0.0.0:{}", free_port());
    let root = dir.path().join("files").display().to_string();
    let mut stack = Stack::up(
        &dir.path().join("run"),
        &["--listen", &listen, "--no-auth", "--root", &root],
    );
    stack.line_starting("llmbasedos-gateway: --no-auth is refused");
    stack.line_starting("llmbasedos: gateway cannot start with this configuration");
    let status = wait_exit(&mut stack);
    assert!(!status.success(), "{status:?}");
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
            &["call", "mcp.test.echo", "a=1", "loose"],
            "comes after key=value params",
        ),
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
