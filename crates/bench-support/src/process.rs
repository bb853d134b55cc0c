//! Child processes of a test or a benchmark, and the one bounded poll.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::PATIENCE;

/// Variables of the run's own environment that would change how a child
/// starts (a run under systemd, a developer's shell settings); besides
/// these, every `LLMBASEDOS_*` variable is removed.
const SCRUBBED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "ORT_DYLIB_PATH",
    "STATE_DIRECTORY",
];

/// Removes from `command` what the run inherited and a child must not see,
/// keeping what the caller set on `command` itself (that is what the test
/// means).
pub fn scrub_environment(command: &mut Command) {
    let chosen: Vec<OsString> = command
        .get_envs()
        .filter(|(_, value)| value.is_some())
        .map(|(name, _)| name.to_owned())
        .collect();
    let inherited = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_string_lossy().starts_with("LLMBASEDOS_"));
    let scrubbed: Vec<OsString> = SCRUBBED
        .iter()
        .map(OsString::from)
        .chain(inherited)
        .collect();
    for name in scrubbed {
        if !chosen.contains(&name) {
            command.env_remove(name);
        }
    }
}

/// Makes the child die with this process, whatever kills it.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory shared with
    // the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A child process started by a benchmark.
#[derive(Debug)]
pub struct ChildProcess {
    name: &'static str,
    process: Child,
    log: PathBuf,
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    /// VmRSS and VmHWM of `pid` from /proc.
    pub fn of(pid: u32) -> Memory {
        Memory::read(Path::new(&format!("/proc/{pid}/status")))
    }

    /// This process's own.
    pub fn of_self() -> Memory {
        Memory::read(Path::new("/proc/self/status"))
    }

    fn read(status: &Path) -> Memory {
        let text = std::fs::read_to_string(status)
            .unwrap_or_else(|error| panic!("read {}: {error}", status.display()));
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {}", status.display()))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

impl ChildProcess {
    /// Starts `command` with its stderr in `log` (the caller sets stdin and
    /// stdout), without the inherited variables [`scrub_environment`]
    /// removes, and set to die with the benchmark whatever kills it.
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> ChildProcess {
        scrub_environment(command);
        let errors = File::create(&log).expect("create a log file");
        command.stderr(errors);
        die_with_parent(command);
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
        Memory::of(self.process.id())
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

/// Polls `condition` every 10 ms until it holds; fails after `within`.
pub fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_keeps_what_the_caller_chose() {
        let mut command = Command::new("true");
        command.env("LLMBASEDOS_FS_ROOT", "/chosen");
        command.env("NOTIFY_SOCKET", "/chosen.sock");
        scrub_environment(&mut command);
        let envs: Vec<_> = command.get_envs().collect();
        let value = |name: &str| {
            envs.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| *value)
        };
        assert_eq!(
            value("LLMBASEDOS_FS_ROOT"),
            Some(Some(std::ffi::OsStr::new("/chosen")))
        );
        assert_eq!(
            value("NOTIFY_SOCKET"),
            Some(Some(std::ffi::OsStr::new("/chosen.sock")))
        );
        // Not chosen: removed, whether the run has it or not.
        assert_eq!(value("LISTEN_FDS"), Some(None));
        assert_eq!(value("ORT_DYLIB_PATH"), Some(None));
    }
}
