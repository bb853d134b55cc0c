//! The gateway process's life in `server_kit::Lifecycle`: READY and
//! STOPPING on the notify socket, SIGTERM ends it with 0 and its socket
//! gone, and a configuration the gateway refuses exits 78 leaving nothing
//! behind.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const GATEWAY: &str = env!("CARGO_BIN_EXE_llmbasedos-gateway");
const PATIENCE: Duration = Duration::from_secs(20);
/// sysexits' EX_CONFIG, which the units' `RestartPreventExitStatus=` names.
const EXIT_CONFIG: i32 = 78;

struct Gateway {
    child: Child,
    socket: PathBuf,
}

impl Gateway {
    /// Starts the gateway on a UNIX socket in `dir` (no TCP listener), with
    /// `config` added to its configuration and `env` set.
    fn spawn(dir: &Path, config: &str, env: &[(&str, &Path)]) -> Gateway {
        let caps = dir.join("caps");
        std::fs::create_dir_all(&caps).expect("create the caps directory");
        let socket = dir.join("gateway.sock");
        let file = dir.join("gateway.yaml");
        std::fs::write(
            &file,
            format!(
                "listen: off\nunix_socket: {}\ncaps_dir: {}\n{config}",
                socket.display(),
                caps.display()
            ),
        )
        .expect("write the configuration");
        let mut command = Command::new(GATEWAY);
        command
            .arg("--config")
            .arg(&file)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap_or_else(|error| {
            panic!("cannot start {GATEWAY}: {error}; build it with `cargo build -p gateway`")
        });
        Gateway { child, socket }
    }

    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the gateway") {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return (status, stderr);
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not exit within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill only sends a signal, to the child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next notify datagram with `state`, skipping watchdog pings.
fn expect_state(notify: &UnixDatagram, state: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut buffer = vec![0_u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "no {state} datagram within {PATIENCE:?}"
        );
        notify
            .set_read_timeout(Some(remaining))
            .expect("set the read timeout");
        let Ok(length) = notify.recv(&mut buffer) else {
            continue;
        };
        let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
        if datagram.lines().any(|line| line == state) {
            return datagram;
        }
    }
}

#[test]
fn the_gateway_reports_ready_and_stopping_and_a_sigterm_ends_it_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let mut gateway = Gateway::spawn(dir.path(), "", &[("NOTIFY_SOCKET", &notify_path)]);
    let ready = expect_state(&notify, "READY=1");
    let status = format!("STATUS=serving unix:{}", gateway.socket.display());
    assert!(
        ready.lines().any(|line| line == status),
        "READY=1 comes with the endpoints: {ready:?}"
    );
    assert!(gateway.socket.exists());
    gateway.signal(libc::SIGTERM);
    let stopping = expect_state(&notify, "STOPPING=1");
    assert!(
        stopping
            .lines()
            .any(|line| line.starts_with("STATUS=stopping: SIGTERM received")),
        "STOPPING=1 says why: {stopping:?}"
    );
    let (status, stderr) = gateway.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!gateway.socket.exists(), "the socket file is removed");
}

/// Regression: the gateway bound its UNIX socket, then found that the
/// descriptor limit could not hold the configured connections and exited
/// 78, leaving the socket file behind.
#[test]
fn a_connection_cap_the_descriptor_limit_cannot_hold_exits_78_and_leaves_no_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = Gateway::spawn(
        dir.path(),
        "limits:\n  max_unix_connections: 100000000\n",
        &[],
    );
    let (status, stderr) = gateway.wait_exit();
    assert_eq!(status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("llmbasedos-gateway: ")
                && line.contains("raise LimitNOFILE=")),
        "one line that says what to change: {stderr}"
    );
    assert!(
        !gateway.socket.exists(),
        "a refused start leaves no socket file behind"
    );
}
