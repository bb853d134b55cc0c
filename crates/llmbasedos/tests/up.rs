//! `llmbasedos up` and `llmbasedos call` as a person uses them: real
//! processes, a real runtime directory.

use std::collections::HashMap;
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
    for binary in [
        "llmbasedos-gateway",
        "llmbasedos-test-server",
        "llmbasedos-fs",
    ] {
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
        Stack::up_with_env(runtime_dir, extra, &[])
    }

    fn up_with_env(runtime_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Stack {
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
            // The agent's state and workflows: the test's own, so that
            // stacks of tests running at once do not share one store.
            .env("XDG_STATE_HOME", runtime_dir.join("state"))
            .env("XDG_CONFIG_HOME", runtime_dir.join("config"))
            .envs(env.iter().copied())
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

    /// Waits for a `started NAME (pid N)` line for each of `names`.
    fn started_pids(&self, names: &[&str]) -> HashMap<String, i32> {
        let mut pids = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while pids.len() < names.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no `started` line for all of {names:?} from llmbasedos up (saw {pids:?})")
            });
            let Some(rest) = line.strip_prefix("started ") else {
                continue;
            };
            let Some((name, pid)) = rest.split_once(" (pid ") else {
                continue;
            };
            if names.contains(&name) {
                let pid = pid.trim_end_matches(')').parse().expect("pid");
                pids.insert(name.to_owned(), pid);
            }
        }
        pids
    }

    /// Every line until the process exits (it must, within 20 s).
    fn lines_until_exit(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = wait_exit(self);
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        (status, lines)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
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
    // A client is told that up restarts a stopped server, not to use
    // systemctl (the gateway's side is tested end to end).
    let gateway_yaml =
        std::fs::read_to_string(runtime_dir.join("gateway.yaml")).expect("gateway.yaml");
    assert!(
        gateway_yaml.contains("\nsupervisor: up\n"),
        "{gateway_yaml}"
    );
    let token = std::fs::read_to_string(runtime_dir.join("gateway.token")).expect("token");
    assert!(token.trim().len() >= 32);
    // A host without the token is told where it is.
    let unauthorized = http_get(&listen, "/mcp");
    assert!(unauthorized.starts_with("HTTP/1.1 401"), "{unauthorized}");
    let token_file = runtime_dir.join("gateway.token").display().to_string();
    assert!(unauthorized.contains(&token_file), "{unauthorized}");

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

/// The whole answer to one HTTP/1.1 GET without a token.
fn http_get(listen: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(listen).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
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

/// Whether a process is gone (or a zombie nobody has reaped yet).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Processes a test started indirectly, killed by pid should the test fail
/// before they are gone.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !is_gone(pid) {
                // SAFETY: signals a process this test's stack started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn fs_root_arg(dir: &Path) -> String {
    dir.join("files").display().to_string()
}

#[test]
fn up_killed_with_sigkill_takes_its_children_along_and_the_next_up_starts_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    let listen = format!("127.0.0.1:{}", free_port());
    let root = fs_root_arg(dir.path());
    let arguments = ["--listen", listen.as_str(), "--root", root.as_str()];
    let mut stack = Stack::up(&runtime_dir, &arguments);
    let pids = stack.started_pids(&["fs", "test", "gateway"]);
    let _cleanup = KillOnDrop(pids.values().copied().collect());
    stack.line_starting("Claude Desktop");

    stack.signal(libc::SIGKILL);
    let _ = wait_exit(&mut stack);
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, &pid) in &pids {
        while !is_gone(pid) {
            assert!(
                Instant::now() < deadline,
                "{name} (pid {pid}) outlived `llmbasedos up`, killed with SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let second = Stack::up(&runtime_dir, &arguments);
    let second_pids = second.started_pids(&["gateway"]);
    let _second_cleanup = KillOnDrop(second_pids.values().copied().collect());
    second.line_starting("Claude Desktop");
    let output = call(&runtime_dir, &["mcp.test.echo", "text=again"]);
    assert!(output.status.success(), "{output:?}");
}

/// A file's bytes and modification time.
fn snapshot(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let modified = std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .expect("mtime");
    (bytes, modified)
}

#[test]
fn a_second_up_on_a_live_runtime_directory_is_refused_and_leaves_the_stack_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    let listen = format!("127.0.0.1:{}", free_port());
    let root = fs_root_arg(dir.path());
    let first = Stack::up(&runtime_dir, &["--listen", &listen, "--root", &root]);
    first.line_starting("Claude Desktop");
    let files = [
        "gateway.yaml",
        "gateway.token",
        "mcp/test.cap.json",
        "mcp/fs.cap.json",
    ]
    .map(|file| runtime_dir.join(file));
    let before: Vec<_> = files.iter().map(|file| snapshot(file)).collect();

    let other_listen = format!("127.0.0.1:{}", free_port());
    for listen in [other_listen.as_str(), listen.as_str()] {
        let mut second = Stack::up(&runtime_dir, &["--listen", listen, "--root", &root]);
        let (status, lines) = second.lines_until_exit();
        assert!(
            !status.success(),
            "the second up (--listen {listen}) succeeded"
        );
        let refusal = format!("already running (pid {})", first.pid());
        assert!(
            lines.iter().any(|line| line.contains(&refusal)),
            "no {refusal:?} from the second up (--listen {listen}): {lines:#?}"
        );
        assert!(
            !lines.iter().any(|line| line.contains("llmbasedos is up")),
            "the second up (--listen {listen}) printed the ready banner: {lines:#?}"
        );
        let after: Vec<_> = files.iter().map(|file| snapshot(file)).collect();
        for ((file, before), after) in files.iter().zip(&before).zip(&after) {
            assert!(
                before == after,
                "the second up (--listen {listen}) changed {}",
                file.display()
            );
        }
    }
    let tools = call(&runtime_dir, &["tools/list"]);
    assert!(
        String::from_utf8_lossy(&tools.stdout).contains("\"test_echo\""),
        "the first stack lost its tools: {tools:?}"
    );
}

/// Another user's uid for the attacks (nobody on Debian and Arch).
const OTHER_UID: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap_or_else(|error| {
        panic!(
            "chown {}: {error} (these tests run as root)",
            path.display()
        )
    });
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod");
}

#[test]
fn up_refuses_a_runtime_directory_someone_else_can_write_to() {
    type Setup = fn(&Path) -> PathBuf;
    let cases: &[(&str, Setup, &str)] = &[
        (
            "owned by another user",
            |base| {
                let dir = base.join("run");
                std::fs::create_dir(&dir).expect("mkdir");
                chmod(&dir, 0o700);
                chown(&dir, OTHER_UID);
                dir
            },
            "belongs to uid 65534",
        ),
        (
            "writable by others",
            |base| {
                let dir = base.join("run");
                std::fs::create_dir(&dir).expect("mkdir");
                chmod(&dir, 0o777);
                dir
            },
            "is writable by other users (mode 777)",
        ),
        (
            "writable by its group",
            |base| {
                let dir = base.join("run");
                std::fs::create_dir(&dir).expect("mkdir");
                chmod(&dir, 0o770);
                dir
            },
            "is writable by other users (mode 770)",
        ),
        (
            "inside a directory others can write to",
            |base| {
                let open = base.join("open");
                std::fs::create_dir(&open).expect("mkdir");
                chmod(&open, 0o777);
                open.join("run")
            },
            "open is writable by other users (mode 777)",
        ),
        (
            "a symbolic link",
            |base| {
                let target = base.join("elsewhere");
                std::fs::create_dir(&target).expect("mkdir");
                chmod(&target, 0o700);
                let dir = base.join("run");
                std::os::unix::fs::symlink(&target, &dir).expect("symlink");
                dir
            },
            "is a symbolic link",
        ),
    ];
    for (what, setup, expected) in cases {
        let base = tempfile::tempdir().expect("tempdir");
        let runtime_dir = setup(base.path());
        let root = fs_root_arg(base.path());
        let mut stack = Stack::up(
            &runtime_dir,
            &[
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--root",
                &root,
            ],
        );
        let (status, lines) = stack.lines_until_exit();
        assert!(
            !status.success(),
            "{what}: up accepted the runtime directory"
        );
        let text = lines.join("\n");
        assert!(
            text.contains("refusing the runtime directory") && text.contains(expected),
            "{what}: expected {expected:?} in {text}"
        );
        let resolved = std::fs::canonicalize(&runtime_dir).unwrap_or(runtime_dir.clone());
        assert!(
            !resolved.join("gateway.yaml").exists() && !resolved.join("up.lock").exists(),
            "{what}: up wrote into the directory it refused"
        );
    }
}

/// A socket at `path` served by another user: bound as root (so that the
/// socket file and its directory pass for the user's), then listened on
/// after dropping to `OTHER_UID`, which is what SO_PEERCRED reports. The
/// child accepts one connection and counts the bytes it receives (until
/// the peer closes or is silent for 2 s), then writes the count to a pipe.
fn impostor(path: &Path) -> (libc::pid_t, std::fs::File) {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: zeroed sockaddr_un is valid; the path fits (checked).
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < address.sun_path.len(), "socket path too long");
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    let mut pipe = [0; 2];
    // SAFETY: a pipe into a two-element array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child only makes async-signal-safe system calls and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: raw system calls on values prepared before the fork.
        unsafe {
            let listener = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let bound = libc::bind(
                listener,
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            if listener < 0
                || bound != 0
                || libc::setgid(OTHER_UID) != 0
                || libc::setuid(OTHER_UID) != 0
                || libc::listen(listener, 4) != 0
            {
                libc::_exit(2);
            }
            let mut wait = libc::pollfd {
                fd: listener,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut received: u64 = 0;
            if libc::poll(&raw mut wait, 1, 30_000) == 1 {
                let connection = libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut());
                let mut buffer = [0u8; 4096];
                loop {
                    let mut readable = libc::pollfd {
                        fd: connection,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    if libc::poll(&raw mut readable, 1, 2_000) != 1 {
                        break;
                    }
                    let read = libc::read(connection, buffer.as_mut_ptr().cast(), buffer.len());
                    if read <= 0 {
                        break;
                    }
                    received += read as u64;
                }
            }
            let count = received.to_le_bytes();
            libc::write(pipe[1], count.as_ptr().cast(), count.len());
            libc::_exit(0);
        }
    }
    // SAFETY: the write end belongs to the child now; the read end is ours.
    unsafe { libc::close(pipe[1]) };
    // SAFETY: the read end of the pipe just made, owned from here on.
    (pid, unsafe { std::fs::File::from_raw_fd(pipe[0]) })
}

#[test]
fn clients_send_nothing_to_a_socket_served_by_another_user() {
    use std::io::Read;
    let shell = bin_dir().join("luca-shell");
    assert!(
        shell.is_file(),
        "luca-shell is not built next to {LLMBASEDOS}; run `cargo build --workspace` first"
    );
    type Client = fn(&Path, &Path) -> Output;
    let clients: &[(&str, Client)] = &[
        ("llmbasedos call", |runtime_dir, _| {
            call(
                runtime_dir,
                &[
                    "--timeout",
                    "5",
                    "mcp.fs.write",
                    "path=/secret.md",
                    "content=the user's secret",
                ],
            )
        }),
        ("luca-shell", |runtime_dir, shell| {
            Command::new(shell)
                .arg("--runtime-dir")
                .arg(runtime_dir)
                .arg("-c")
                .arg("mcp.fs.write path=/secret.md content=secret")
                .stdin(Stdio::null())
                .output()
                .expect("run luca-shell")
        }),
        ("the stdio bridge", |runtime_dir, shell| {
            let gateway = shell.with_file_name("llmbasedos-gateway");
            let mut bridge = Command::new(gateway)
                .arg("stdio")
                .arg("--unix-socket")
                .arg(runtime_dir.join("gateway.sock"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run llmbasedos-gateway stdio");
            // What a host sends first; the bridge must not pass it on.
            let mut stdin = bridge.stdin.take().expect("stdin");
            let _ = std::io::Write::write_all(
                &mut stdin,
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}\n",
            );
            drop(stdin);
            bridge.wait_with_output().expect("the bridge's output")
        }),
    ];
    for (name, client) in clients {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime_dir = dir.path().join("run");
        std::fs::create_dir(&runtime_dir).expect("mkdir");
        chmod(&runtime_dir, 0o700);
        let socket = runtime_dir.join("gateway.sock");
        let (pid, mut count) = impostor(&socket);
        let _cleanup = KillOnDrop(vec![pid]);
        wait_for_socket_file(&socket);

        let output = client(&runtime_dir, &shell);
        let mut received = [0u8; 8];
        count
            .read_exact(&mut received)
            .expect("the impostor's count");
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        let received = u64::from_le_bytes(received);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            received, 0,
            "{name}: the impostor received {received} bytes; stderr: {stderr}"
        );
        assert!(!output.status.success(), "{name}: {output:?}");
        assert!(
            stderr.contains("served by a process of uid 65534")
                && stderr.contains("nothing was sent"),
            "{name}: {stderr}"
        );
    }
}

/// Waits for a socket file to appear (without connecting to it: the
/// impostor accepts only one connection).
fn wait_for_socket_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // listen() follows bind() and the uid change; give it a moment.
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn children_get_only_their_own_environment() {
    const KEY: &str = "sk-the-llm-api-key-0123456789";
    const SECRET: &str = "an-unrelated-secret-9876543210";
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    let listen = format!("127.0.0.1:{}", free_port());
    let root = fs_root_arg(dir.path());
    let stack = Stack::up_with_env(
        &runtime_dir,
        &[
            "--listen",
            &listen,
            "--root",
            &root,
            "--llm-url",
            "http://127.0.0.1:9/v1",
        ],
        &[
            ("LLMBASEDOS_LLM_API_KEY", KEY),
            ("UNRELATED_SECRET", SECRET),
        ],
    );
    let pids = stack.started_pids(&["fs", "test", "gateway"]);
    stack.line_starting("Claude Desktop");
    for (name, pid) in &pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        let environ = String::from_utf8_lossy(&environ);
        for (what, value) in [("the API key", KEY), ("the unrelated secret", SECRET)] {
            assert!(
                !environ.contains(value),
                "{name} (pid {pid}) has {what} in its environment"
            );
        }
        assert!(!environ.contains("UNRELATED_SECRET="), "{name}: {environ}");
        assert!(environ.contains("PATH="), "{name} lost PATH: {environ}");
    }
    let fs = std::fs::read(format!("/proc/{}/environ", pids["fs"])).expect("environ");
    assert!(
        String::from_utf8_lossy(&fs).contains("LLMBASEDOS_FS_ROOT="),
        "the fs server lost its own settings"
    );
    // The key reaches the gateway as a private file.
    let key_file = runtime_dir.join("llm.key");
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key file").trim(),
        KEY
    );
    assert_eq!(mode_of(&key_file), 0o600);
}

#[test]
fn call_refuses_a_gateway_socket_in_a_directory_others_can_write_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    std::fs::create_dir(&runtime_dir).expect("mkdir");
    chmod(&runtime_dir, 0o777);
    // Served by this very user: only the directory is wrong, and anyone
    // could have put the socket there.
    let listener =
        std::os::unix::net::UnixListener::bind(runtime_dir.join("gateway.sock")).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let output = call(
        &runtime_dir,
        &["--timeout", "2", "mcp.test.echo", "text=hi"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        listener.accept().is_err(),
        "call connected to a socket in a directory others can write to: {stderr}"
    );
    assert!(
        stderr.contains("is writable by other users (mode 777)")
            && stderr.contains("nothing was sent"),
        "{stderr}"
    );
}

#[test]
fn call_says_how_long_it_waited_when_no_answer_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    std::fs::create_dir(&runtime_dir).expect("mkdir");
    chmod(&runtime_dir, 0o700);
    // A gateway of this user that takes the request and never answers.
    let listener =
        std::os::unix::net::UnixListener::bind(runtime_dir.join("gateway.sock")).expect("bind");
    let holder = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let output = call(
        &runtime_dir,
        &["--timeout", "1", "mcp.test.echo", "text=hi"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr.contains("no answer arrived within 1 s") && stderr.contains("--timeout"),
        "{stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
    drop(holder.join().expect("accept thread"));
}

/// A root holding a file with two names (hard links), whose text says
/// carbonara.
fn root_with_hard_link(dir: &Path) -> PathBuf {
    let root = dir.join("files");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("recipe.txt"), "spaghetti carbonara\n").expect("write");
    std::fs::hard_link(root.join("recipe.txt"), root.join("recipe-copy.txt")).expect("link");
    root
}

fn grep_carbonara(runtime_dir: &Path) -> serde_json::Value {
    let output = call(
        runtime_dir,
        &["mcp.fs.grep", "pattern=carbonara", r#"include=["*.txt"]"#],
    );
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("grep answers JSON")
}

#[test]
fn grep_under_up_lists_hard_linked_files_and_fs_config_allows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = dir.path().join("run");
    let root = root_with_hard_link(dir.path());
    let root_arg = root.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());

    // By default hard-linked files are refused: grep says which and why,
    // and how an `up` user allows them.
    let mut stack = Stack::up(&runtime_dir, &["--listen", &listen, "--root", &root_arg]);
    stack.line_starting("Claude Desktop");
    let result = grep_carbonara(&runtime_dir);
    assert_eq!(result["matches"], serde_json::json!([]), "{result}");
    assert_eq!(result["skipped_count"], 2, "{result}");
    let skipped = result["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 2, "{result}");
    for entry in skipped {
        let reason = entry["reason"].as_str().expect("reason");
        assert!(
            reason.contains("hard link") && reason.contains("llmbasedos up --fs-config"),
            "{result}"
        );
    }
    stack.signal(libc::SIGTERM);
    assert!(wait_exit(&mut stack).success());

    // With an fs.yaml that allows them, passed by --fs-config, they are searched.
    let config = dir.path().join("fs.yaml");
    std::fs::write(&config, "allow_hard_links: true\n").expect("write fs.yaml");
    let config_arg = config.display().to_string();
    let mut stack = Stack::up(
        &runtime_dir,
        &[
            "--listen",
            &listen,
            "--root",
            &root_arg,
            "--fs-config",
            &config_arg,
        ],
    );
    stack.line_starting("Claude Desktop");
    let result = grep_carbonara(&runtime_dir);
    assert_eq!(
        result["matches"].as_array().map(Vec::len),
        Some(2),
        "{result}"
    );
    assert_eq!(result["skipped_count"], 0, "{result}");
    stack.signal(libc::SIGTERM);
    assert!(wait_exit(&mut stack).success());
}

#[test]
fn up_refuses_an_fs_config_the_fs_server_would_refuse_before_starting_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fs_root_arg(dir.path());
    let cases = [
        ("allow_hard_link: true\n", "allow_hard_link"),
        ("exclude: [\"[z-a]\"]\n", "exclude[0]"),
    ];
    for (text, expected) in cases {
        let config = dir.path().join("fs.yaml");
        std::fs::write(&config, text).expect("write fs.yaml");
        let config_arg = config.display().to_string();
        let mut stack = Stack::up(
            &dir.path().join("run"),
            &["--root", &root, "--fs-config", &config_arg],
        );
        let line = stack.line_starting("llmbasedos: --fs-config");
        assert!(
            line.contains(&config_arg) && line.contains(expected),
            "{text:?}: {line}"
        );
        let status = wait_exit(&mut stack);
        assert!(!status.success(), "{text:?}: {status:?}");
        assert!(
            !dir.path().join("run/gateway.sock").exists(),
            "{text:?}: the gateway was started"
        );
    }
}
