//! A real `dockerd` for the tests, started once per test binary and shared
//! (include it with `#[path = "support/dockerd.rs"] mod dockerd;`).
//!
//! The steps, also in `tests/e2e/servers/dockerd.py` for the end-to-end
//! tests: `dockerd --iptables=false --ip6tables=false --bridge=none` with
//! its data root, exec root, pid file and socket in a temp dir (no host
//! network is touched, no image is fetched), then an image made offline:
//! `docker import` of a tar holding Debian's static busybox as `/bin/busybox`
//! with a symlink per applet (`/bin/sh`, `/bin/ip`, …).
//!
//! The daemon is started from a thread that lives as long as the process,
//! because its death signal (`PR_SET_PDEATHSIG`) fires when the *thread*
//! that started it ends, and a test's thread ends with the test. It is
//! stopped by pid (SIGTERM, then SIGKILL if it lingers) from an `atexit`
//! handler when the test binary exits, and its temp dir removed; if the
//! binary dies outright, the death signal kills it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bench_support::ChildProcess;

/// The busybox image every test runs.
pub const IMAGE: &str = "llmbasedos-test/busybox:latest";

const INSTALL: &str = "run ./scripts/install-test-deps (Debian: apt-get install docker.io busybox-static; Arch: pacman -S docker busybox)";

#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    docker: PathBuf,
    daemon: Mutex<Option<ChildProcess>>,
}

static SHARED: OnceLock<Dockerd> = OnceLock::new();

/// Serialises the tests that create containers, so that "no container is
/// left" can be checked on the whole daemon.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The daemon of this test binary, started at the first call.
pub fn shared() -> &'static Dockerd {
    SHARED.get_or_init(|| {
        let daemon = Dockerd::start();
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        let registered = unsafe { libc::atexit(stop_shared) };
        assert_eq!(registered, 0, "atexit");
        daemon
    })
}

/// Held by a test for as long as it creates containers.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

extern "C" fn stop_shared() {
    if let Some(daemon) = SHARED.get() {
        daemon.stop();
    }
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

impl Dockerd {
    fn start() -> Dockerd {
        let dockerd =
            find("dockerd").unwrap_or_else(|| panic!("dockerd is not installed: {INSTALL}"));
        let docker = find("docker")
            .unwrap_or_else(|| panic!("the docker client is not installed: {INSTALL}"));
        let busybox =
            find("busybox").unwrap_or_else(|| panic!("busybox is not installed: {INSTALL}"));
        // A dynamically linked busybox would find no libc in the image.
        let dynamic = Command::new("ldd")
            .arg(&busybox)
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            !dynamic,
            "{} is dynamically linked; the image needs busybox-static: {INSTALL}",
            busybox.display()
        );

        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "the Docker tests start their own dockerd, which needs root: run them as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("dockerd-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let socket = dir.join("docker.sock");
        let log = dir.join("dockerd.log");
        let mut command = Command::new(&dockerd);
        command
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // See the module doc: spawned from a thread that never ends.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("dockerd-parent".into())
            .spawn(move || {
                sender
                    .send(ChildProcess::spawn("dockerd", &mut command, log))
                    .expect("hand over dockerd");
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the dockerd parent thread");
        let mut daemon = receiver.recv().expect("dockerd started");
        let cli = docker_cli(&docker, &socket);
        daemon.wait_until("its API answers", || {
            socket.exists()
                && cli(&["version", "--format", "{{.Server.APIVersion}}"])
                    .status()
                    .is_ok_and(|status| status.success())
        });
        let daemon = Dockerd {
            dir,
            socket,
            docker,
            daemon: Mutex::new(Some(daemon)),
        };
        daemon.import_busybox(&busybox);
        daemon
    }

    /// `docker import` of busybox and its applets (what `busybox --list` names).
    fn import_busybox(&self, busybox: &Path) {
        let root = self.dir.join("image-root");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("image root");
        for dir in ["tmp", "etc", "proc", "sys", "dev"] {
            std::fs::create_dir_all(root.join(dir)).expect("image dirs");
        }
        std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        let applets = Command::new(busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&applets.stdout)
            .lines()
            .filter(|applet| *applet != "busybox")
        {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet symlink");
        }
        let tar = self.dir.join("image.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success(), "tar of the image root");
        let imported =
            docker_cli(&self.docker, &self.socket)(&["import", &tar.to_string_lossy(), IMAGE])
                .output()
                .expect("docker import");
        assert!(
            imported.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `docker -H unix://<socket> <args>`, not yet run.
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.docker);
        command
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// The ids `docker ps -a -q` lists (every container, running or not).
    pub async fn containers(&self) -> Vec<String> {
        self.ids(&["ps", "-a", "-q", "--no-trunc"]).await
    }

    /// The ids of the running containers.
    pub async fn running(&self) -> Vec<String> {
        self.ids(&["ps", "-q", "--no-trunc"]).await
    }

    async fn ids(&self, args: &[&str]) -> Vec<String> {
        let output = self.cli(args).output().await.expect("docker ps");
        assert!(
            output.status.success(),
            "docker ps: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (bounded) until `condition` holds on the daemon's container list.
    pub async fn wait_for(&self, what: &str, mut condition: impl AsyncFnMut(&Dockerd) -> bool) {
        let deadline = Instant::now() + bench_support::PATIENCE;
        while !condition(self).await {
            assert!(
                Instant::now() < deadline,
                "{what}: not true after {:?}",
                bench_support::PATIENCE
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&self) {
        let Some(mut daemon) = self
            .daemon
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        let process = daemon.process();
        let pid = process.id() as libc::pid_t;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while process.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping it kills it if it is still there.
        drop(daemon);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn docker_cli(docker: &Path, socket: &Path) -> impl Fn(&[&str]) -> Command + use<> {
    let host = format!("unix://{}", socket.display());
    let docker = docker.to_path_buf();
    move |args| {
        let mut command = Command::new(&docker);
        command
            .arg("-H")
            .arg(&host)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }
}
