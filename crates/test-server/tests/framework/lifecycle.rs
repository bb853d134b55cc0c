//! A server's life: socket activation, the notify protocol, idle exit,
//! signals and drain, start-up errors, the socket file, logging.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use proto::{RequestId, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Client, Launch, PATIENCE, ServerProcess, start_server, wait_until};

/// Exit status for configuration errors (server_kit::EXIT_CONFIG).
const EXIT_CONFIG: i32 = 78;

/// A stand-in for systemd's notify socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next datagram and when it arrived, if one arrives in time.
    fn receive_within(&self, within: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        let mut buffer = vec![0_u8; 4096];
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(remaining))
                .expect("set the read timeout");
            match self.socket.recv(&mut buffer) {
                Ok(length) => {
                    let text = String::from_utf8(buffer[..length].to_vec())
                        .expect("notify datagrams are text");
                    return Some((Instant::now(), text));
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => panic!("read the notify socket: {error}"),
            }
        }
    }

    /// Skips watchdog pings until a datagram with `state` arrives.
    fn expect_state(&self, state: &str) -> String {
        self.expect_line(state, |line| line == state)
    }

    /// Skips watchdog pings until a datagram with a line that `wanted`
    /// accepts arrives (`what` names it in the failure).
    fn expect_line(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let Some((_, datagram)) = self.receive_within(PATIENCE) else {
                panic!("no {what} datagram within {PATIENCE:?}");
            };
            if datagram.lines().any(&wanted) {
                return datagram;
            }
            assert_eq!(
                datagram.trim_end(),
                "WATCHDOG=1",
                "unexpected datagram while waiting for {what}"
            );
        }
    }
}

fn echo(client: &mut Client, id: i64, text: &str) {
    assert_eq!(
        client.call(id, "mcp.test.echo", json!({ "text": text })),
        Ok(json!({ "text": text }))
    );
}

fn exit_code(server: &mut ServerProcess, within: Duration) -> Option<i32> {
    server.wait_exit(within).code()
}

#[test]
fn a_socket_activated_server_serves_the_socket_systemd_passes() {
    let mut server = Launch::new().socket_activated().spawn();
    let mut client = server.connect();
    echo(&mut client, 1, "activated");
    drop(client);
    server.request_shutdown(libc::SIGTERM);
    assert_eq!(exit_code(&mut server, PATIENCE), Some(0));
    let stderr = server.stderr();
    assert!(
        stderr.contains("the socket passed by systemd"),
        "the server should report serving the activated socket: {stderr}"
    );
}

/// A `.socket` unit with `ListenDatagram=` instead of `ListenStream=` is a
/// configuration error: exit 78 (no restart loop) and say what to fix.
#[test]
fn a_datagram_socket_from_systemd_is_a_configuration_error() {
    let mut server = Launch::new().socket_activated_with(&["--datagram"]).spawn();
    wait_until(PATIENCE, "systemd-socket-activate binds the socket", || {
        server.socket().exists()
    });
    // systemd-socket-activate starts the server on the first datagram.
    UnixDatagram::unbound()
        .expect("a datagram socket")
        .send_to(b"wake up", server.socket())
        .expect("send a datagram");
    let status = server.wait_exit(PATIENCE);
    let stderr = server.stderr();
    assert!(
        stderr.contains("ListenStream"),
        "the error should say how to fix the unit: {stderr}"
    );
    assert_eq!(status.code(), Some(EXIT_CONFIG), "{stderr}");
}

#[test]
fn the_notify_protocol_reports_ready_pets_the_watchdog_and_reports_stopping() {
    let notify = NotifySocket::bind();
    let mut server = Launch::new()
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .spawn();

    let (ready_at, ready) = notify
        .receive_within(PATIENCE)
        .expect("a datagram at start-up");
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "first datagram: {ready:?}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("STATUS=") && line.contains("serving")),
        "READY=1 comes with a status line: {ready:?}"
    );

    // WATCHDOG_USEC=200000: a ping about every 100 ms (half the timeout).
    let mut pings = Vec::new();
    while let Some((at, datagram)) =
        notify.receive_within(Duration::from_secs(1).saturating_sub(ready_at.elapsed()))
    {
        assert_eq!(datagram.trim_end(), "WATCHDOG=1");
        pings.push(at);
    }
    assert!(
        pings.len() >= 5,
        "{} watchdog pings in the first second",
        pings.len()
    );
    let mut intervals: Vec<Duration> = pings
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .collect();
    intervals.sort();
    let median = intervals[intervals.len() / 2];
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(200)).contains(&median),
        "median watchdog interval {median:?}, expected about 100 ms"
    );

    server.request_shutdown(libc::SIGTERM);
    let stopping = notify.expect_state("STOPPING=1");
    assert!(
        stopping.lines().any(|line| line.starts_with("STATUS=")),
        "STOPPING=1 comes with a status line: {stopping:?}"
    );
    assert_eq!(exit_code(&mut server, PATIENCE), Some(0));
}

#[test]
fn an_idle_server_exits_after_the_idle_timeout() {
    let mut server = start_server(&["--idle-timeout", "1"]);
    let status = server.try_wait_exit(Duration::from_secs(4));
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "an idle server with --idle-timeout 1 should exit 0 by itself"
    );
    assert!(!server.socket().exists(), "the socket file is removed");
}

#[test]
fn an_open_connection_keeps_an_idle_server_alive() {
    let mut server = start_server(&["--idle-timeout", "1"]);
    let mut client = server.connect();
    echo(&mut client, 1, "here");
    sleep(Duration::from_millis(2500));
    assert!(
        server.is_running(),
        "the server exited while a connection was open"
    );
    echo(&mut client, 2, "still here");
    drop(client);
    assert_eq!(
        server
            .try_wait_exit(Duration::from_secs(4))
            .and_then(|status| status.code()),
        Some(0),
        "the server should exit once the last connection closed"
    );
}

#[test]
fn without_an_idle_timeout_a_bound_server_never_exits_by_itself() {
    let mut servers: Vec<ServerProcess> = [&["--idle-timeout", "0"][..], &[][..]]
        .into_iter()
        .map(start_server)
        .collect();
    sleep(Duration::from_secs(2));
    for server in &mut servers {
        assert!(server.is_running(), "stderr: {}", server.stderr());
        echo(&mut server.connect(), 1, "alive");
    }
}

/// Waits until the server has started the request (so a signal cannot race
/// ahead of it), using the test server's counters on a second connection.
fn wait_until_started(server: &ServerProcess, count: u64) {
    wait_until(PATIENCE, "the request starts", || {
        let stats = server
            .connect()
            .call(1, "mcp.test.stats", json!({}))
            .expect("stats");
        stats["started"] == json!(count)
    });
}

#[test]
fn a_signal_stops_accepting_and_drains_requests_in_flight() {
    for (name, signal) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
        let notify = NotifySocket::bind();
        let mut server = Launch::new().env("NOTIFY_SOCKET", &notify.path).spawn();
        notify.expect_state("READY=1");
        let mut client = server.connect();
        client.request(1, "mcp.test.sleep", json!({"ms": 800}));
        wait_until_started(&server, 1);
        server.request_shutdown(signal);
        notify.expect_state("STOPPING=1");
        // The accept loop says so once it has stopped accepting.
        notify.expect_line("STATUS=stopping: finishing requests …", |line| {
            line.starts_with("STATUS=stopping: finishing requests")
        });

        match UnixStream::connect(server.socket()) {
            Err(_) => {}
            Ok(stream) => {
                // Connected while the listener was being closed: the
                // server closes it unanswered, before or after the request
                // is written (a refused write is that close seen early).
                let mut late = Client::from_stream(stream);
                if late.try_request(1, "mcp.test.noop", Value::Null).is_ok() {
                    late.expect_closed();
                }
            }
        }
        assert_eq!(
            client.response(),
            Response::success(RequestId::Number(1), json!({"slept_ms": 800})),
            "{name}"
        );
        client.expect_closed();
        assert_eq!(exit_code(&mut server, PATIENCE), Some(0), "{name}");
        assert!(
            !server.socket().exists(),
            "{name}: the socket file is removed"
        );
    }
}

#[test]
fn the_drain_timeout_bounds_how_long_a_signal_waits() {
    let mut server = start_server(&["--drain-timeout", "1"]);
    let mut client = server.connect();
    client.request(1, "mcp.test.sleep", json!({"ms": 30000}));
    wait_until_started(&server, 1);
    server.request_shutdown(libc::SIGTERM);
    // Well below both the sleep (30 s) and the default drain timeout (10 s).
    let status = server.try_wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "--drain-timeout 1 should end the process soon after SIGTERM; stderr:\n{}",
        server.stderr()
    );
    client.expect_closed();
}

#[test]
fn start_up_errors_exit_with_the_configuration_status_and_say_why() {
    struct Case {
        what: &'static str,
        /// Prepares the directory and returns the launch.
        launch: fn(&Path) -> Launch,
        /// Texts the log must contain; `{dir}` stands for the directory.
        stderr: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "the socket's parent directory does not exist",
            launch: |dir| Launch::new().socket_at(&dir.join("missing/s.sock")),
            stderr: &["{dir}/missing/s.sock"],
        },
        Case {
            what: "no --socket and no socket activation",
            launch: |_| Launch::new().without_socket(),
            stderr: &["--socket"],
        },
        Case {
            what: "a regular file where the socket should be",
            launch: |dir| {
                std::fs::write(dir.join("s.sock"), b"keep me").expect("write a file");
                Launch::new().socket_at(&dir.join("s.sock"))
            },
            stderr: &["{dir}/s.sock", "not a socket"],
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let launch = (case.launch)(dir.path());
        let before = directory_snapshot(dir.path());
        let mut server = launch.without_waiting().spawn();
        let status = server.wait_exit(PATIENCE);
        let stderr = server.stderr();
        if status.code() != Some(EXIT_CONFIG) {
            failures.push(format!(
                "{}: exit status {status}, expected {EXIT_CONFIG}; stderr: {stderr}",
                case.what
            ));
        }
        for expected in case.stderr {
            let expected = expected.replace("{dir}", &dir.path().display().to_string());
            if !stderr.contains(&expected) {
                failures.push(format!("{}: expected {expected:?} in {stderr}", case.what));
            }
        }
        if directory_snapshot(dir.path()) != before {
            failures.push(format!("{}: the directory was changed", case.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The names and contents of a directory's entries (not recursive).
fn directory_snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let contents = std::fs::read(&path).ok();
            (path, contents)
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn a_second_server_on_a_live_socket_refuses_to_start() {
    let first = start_server(&[]);
    let mut second = Launch::new()
        .socket_at(first.socket())
        .without_waiting()
        .spawn();
    let status = second.wait_exit(PATIENCE);
    let stderr = second.stderr();
    assert_eq!(status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("already listening"), "{stderr}");
    echo(&mut first.connect(), 1, "the first server still serves");
}

#[test]
fn a_stale_socket_left_by_a_killed_server_is_replaced() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let path = dir.path().join("s.sock");
    let mut killed = Launch::new().socket_at(&path).spawn();
    killed.signal(libc::SIGKILL);
    killed.wait_exit(PATIENCE);
    assert!(path.exists(), "SIGKILL leaves the socket file behind");
    assert!(UnixStream::connect(&path).is_err(), "nobody serves it");

    let successor = Launch::new().socket_at(&path).spawn();
    echo(&mut successor.connect(), 1, "replaced");
}

#[test]
fn the_bound_socket_is_0660_and_removed_after_a_clean_exit() {
    let mut server = start_server(&[]);
    let mode = std::fs::metadata(server.socket())
        .expect("stat the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "mode {mode:o}");
    server.request_shutdown(libc::SIGTERM);
    assert_eq!(exit_code(&mut server, PATIENCE), Some(0));
    assert!(!server.socket().exists(), "the socket file is removed");
    assert!(server.dir().exists());
}

#[test]
fn logging_follows_the_format_and_filter_variables() {
    struct Case {
        what: &'static str,
        environment: &'static [(&'static str, &'static str)],
        check: fn(&str) -> Result<(), String>,
    }
    fn json_lines_with_a_level(stderr: &str) -> Result<(), String> {
        let mut levels = Vec::new();
        for line in stderr.lines() {
            let value: Value =
                serde_json::from_str(line).map_err(|error| format!("{line:?}: {error}"))?;
            let level = value
                .get("level")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("no \"level\" in {line:?}"))?;
            levels.push(level.to_owned());
        }
        if levels.is_empty() {
            return Err("no log lines".to_owned());
        }
        if levels.iter().any(|level| level == "DEBUG") {
            return Err("debug lines without LLMBASEDOS_LOG=debug".to_owned());
        }
        Ok(())
    }
    fn debug_lines(stderr: &str) -> Result<(), String> {
        stderr
            .lines()
            .any(|line| line.contains("DEBUG") && line.contains("connection opened"))
            .then_some(())
            .ok_or_else(|| "no debug line about the connection".to_owned())
    }
    fn plain_text(stderr: &str) -> Result<(), String> {
        if stderr.contains('\x1b') {
            return Err("terminal colour codes in a log that is not a terminal".to_owned());
        }
        stderr
            .lines()
            .any(|line| line.contains("INFO") && line.contains("serving"))
            .then_some(())
            .ok_or_else(|| "no info line saying the server is serving".to_owned())
    }
    let cases = [
        Case {
            what: "text, the default, to a file",
            environment: &[],
            check: plain_text,
        },
        Case {
            what: "LLMBASEDOS_LOG_FORMAT=json",
            environment: &[("LLMBASEDOS_LOG_FORMAT", "json")],
            check: json_lines_with_a_level,
        },
        Case {
            what: "LLMBASEDOS_LOG=debug",
            environment: &[("LLMBASEDOS_LOG", "debug")],
            check: debug_lines,
        },
        Case {
            what: "both",
            environment: &[
                ("LLMBASEDOS_LOG", "debug"),
                ("LLMBASEDOS_LOG_FORMAT", "json"),
            ],
            check: |stderr| {
                let debug = stderr
                    .lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .any(|value| value["level"] == "DEBUG");
                debug
                    .then_some(())
                    .ok_or_else(|| "no JSON debug line".to_owned())
            },
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let mut launch = Launch::new();
        for (name, value) in case.environment {
            launch = launch.env(name, value);
        }
        let mut server = launch.spawn();
        echo(&mut server.connect(), 1, "log this");
        server.request_shutdown(libc::SIGTERM);
        assert_eq!(exit_code(&mut server, PATIENCE), Some(0), "{}", case.what);
        let stderr = server.stderr();
        if let Err(problem) = (case.check)(&stderr) {
            failures.push(format!("{}: {problem}; stderr:\n{stderr}", case.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs a private systemd-journald in a mount namespace (tmpfs over
/// /run/systemd and /run/log, so the host's journal is untouched) and checks
/// that `LLMBASEDOS_LOG_FORMAT=journald` logs there with structured fields,
/// and that without a journal the server falls back to stderr and says so.
#[test]
fn journald_gets_structured_fields_and_its_absence_falls_back_to_stderr() {
    let journald = [
        "/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-journald",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
    .expect("systemd-journald is missing: apt-get install systemd (Arch: pacman -S systemd)");
    for tool in ["unshare", "journalctl", "mount"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("sh")
            .status
            .success();
        assert!(
            found,
            "{tool} is missing: apt-get install util-linux systemd"
        );
    }
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts in a private namespace: run it as root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
set -eu
server=$1 dir=$2 journald=$3
mkdir -p /run/systemd /run/log
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/log
LLMBASEDOS_LOG_FORMAT=journald "$server" --socket "$dir/a.sock" --idle-timeout 1 2> "$dir/fallback.log"
"$journald" &
pid=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
LLMBASEDOS_LOG_FORMAT=journald "$server" --socket "$dir/b.sock" --idle-timeout 1 2> "$dir/journald-stderr.log"
journalctl --sync || true
journalctl --directory /run/log/journal -o json --no-pager SYSLOG_IDENTIFIER=llmbasedos-test-server > "$dir/journal.json"
kill "$pid"
wait "$pid" || true
"#;
    let output = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            "journald-test",
        ])
        .arg(crate::support::SERVER_BINARY)
        .arg(dir.path())
        .arg(journald)
        .env_remove("JOURNAL_STREAM")
        .env_remove("LLMBASEDOS_LOG")
        .output()
        .expect("run unshare");
    assert!(output.status.success(), "{output:?}");

    let fallback = std::fs::read_to_string(dir.path().join("fallback.log")).expect("fallback log");
    assert!(fallback.contains("journald is not available"), "{fallback}");
    assert!(fallback.contains("serving"), "{fallback}");

    let stderr = std::fs::read_to_string(dir.path().join("journald-stderr.log")).expect("stderr");
    assert!(
        !stderr.contains("serving"),
        "logs went to stderr instead of the journal: {stderr}"
    );
    let journal = std::fs::read_to_string(dir.path().join("journal.json")).expect("journal");
    let entries: Vec<Value> = journal
        .lines()
        .map(|line| serde_json::from_str(line).expect("journal JSON"))
        .collect();
    let field =
        |entry: &Value, name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
    let socket = dir.path().join("b.sock").display().to_string();
    let serving = entries
        .iter()
        .find(|entry| field(entry, "MESSAGE").as_deref() == Some("serving"))
        .unwrap_or_else(|| panic!("no `serving` entry in the journal: {journal}"));
    assert_eq!(
        field(serving, "SERVICE").as_deref(),
        Some("test"),
        "{serving}"
    );
    assert_eq!(field(serving, "SOCKET"), Some(socket), "{serving}");
    assert!(field(serving, "PRIORITY").is_some(), "{serving}");
    assert!(
        entries
            .iter()
            .any(|entry| field(entry, "MESSAGE")
                .is_some_and(|message| message.contains("idle timeout"))),
        "no idle-exit entry: {journal}"
    );
}
