//! What the benchmarks share (a dev-dependency only): child processes that
//! log to a file, die with the benchmark and are killed by pid on drop;
//! their memory from /proc; pinning to CPU 0.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long any start-up wait or any single read may take before a
/// benchmark fails: nothing blocks forever.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A child process started by a benchmark.
#[derive(Debug)]
pub struct ChildProcess {
    name: &'static str,
    process: Child,
    log: PathBuf,
}

/// Resident memory of a child, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl ChildProcess {
    /// Starts `command` with its stderr in `log` (the caller sets stdin and
    /// stdout), without the systemd variables the bench may have inherited,
    /// and set to die with the benchmark whatever kills it.
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> ChildProcess {
        let errors = File::create(&log).expect("create a log file");
        for inherited in [
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "LLMBASEDOS_LOG_FORMAT",
        ] {
            command.env_remove(inherited);
        }
        command.stderr(errors);
        // SAFETY: prctl is async-signal-safe and touches no memory shared
        // with the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = command
            .spawn()
            .unwrap_or_else(|error| panic!("start the {name}: {error}"));
        ChildProcess { name, process, log }
    }

    /// The child itself (its pipes, its pid).
    pub fn process(&mut self) -> &mut Child {
        &mut self.process
    }

    /// Waits until `ready` holds, failing with the child's log if it exits
    /// or takes longer than [`PATIENCE`].
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !ready() {
            let exited = self.process.try_wait().expect("wait");
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "the {} did not get ready ({what}; exit: {exited:?}); its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// VmRSS and VmHWM from /proc/<pid>/status.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .expect("read /proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Pins this process (and the children it starts afterwards) to CPU 0.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!("cannot pin to CPU 0: {}", std::io::Error::last_os_error());
        }
    }
}
