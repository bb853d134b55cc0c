//! A backend server under test: a real process serving a real UNIX
//! socket, its stderr in a file (a chatty server can never block on a full
//! pipe), killed by its pid when dropped. How a binary is launched (its
//! flags, config, root, socket activation) stays with that binary's tests;
//! what a running server offers a test is here, once.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::scrub_environment;
use crate::{Client, Memory, PATIENCE, wait_until};

/// A running server. Dropping it kills the process (by its pid) if it is
/// still running, then removes the temp dir it owns, if any.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    status: Option<ExitStatus>,
    socket: PathBuf,
    stderr_path: PathBuf,
    /// Dropped after the process is gone (fields drop in order).
    dir: Option<TempDir>,
}

impl ServerProcess {
    /// Starts `command` (stdin and stdout null, stderr in `stderr_path`)
    /// without the variables of the test's own environment that would
    /// change how it starts (those set on `command` are kept). Does not
    /// wait: see [`ServerProcess::wait_until_serving`].
    pub fn spawn(command: &mut Command, socket: PathBuf, stderr_path: PathBuf) -> ServerProcess {
        scrub_environment(command);
        let stderr = File::create(&stderr_path).expect("create the stderr log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {:?}: {error}", command.get_program()));
        ServerProcess {
            child,
            status: None,
            socket,
            stderr_path,
            dir: None,
        }
    }

    /// Keeps `dir` until the server is gone.
    pub fn owning(mut self, dir: TempDir) -> ServerProcess {
        self.dir = Some(dir);
        self
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in pid_t")
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir given to [`ServerProcess::owning`].
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("this server owns no temp dir")
            .path()
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// The server's resident memory now and at its peak.
    pub fn memory(&self) -> Memory {
        Memory::of(self.child.id())
    }

    /// The server's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.memory().peak_kib
    }

    pub fn signal(&self, signal: libc::c_int) {
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
    pub fn request_shutdown(&self, signal: libc::c_int) {
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

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    /// The exit status, if the process exits within `within`.
    pub fn try_wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
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

    /// The exit status; fails the test if the process is still running
    /// after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match self.try_wait_exit(within) {
            Some(status) => status,
            None => panic!(
                "the server is still running after {within:?}; its stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait_exit(Duration::ZERO).is_none()
    }

    /// Returns once the socket accepts connections; fails the test, with
    /// the server's stderr, if the server exits first or [`PATIENCE`] runs
    /// out.
    pub fn wait_until_serving(&mut self) {
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
