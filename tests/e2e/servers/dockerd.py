"""A real dockerd for the end-to-end tests, with the same steps as the Rust
tests' harness (crates/agent/tests/support/dockerd.rs):

- `dockerd --iptables=false --ip6tables=false --bridge=none` with its data
  root, exec root, pid file and UNIX socket in a temp dir (the host's network
  is not touched; nothing is fetched);
- an image made offline: `docker import` of a tar holding Debian's static
  busybox as /bin/busybox and a symlink per applet (/bin/sh, /bin/ip, ...);
- stopped by its pid (SIGTERM, then SIGKILL if it lingers); it also dies with
  the process that started it (PR_SET_PDEATHSIG).

The agent finds the daemon through `DOCKER_HOST` (see `Dockerd.env`).

In a test module: `from servers.dockerd import dockerd  # noqa: F401` gives a
session-wide `dockerd` fixture. By hand: `python dockerd.py DIR` starts one
in DIR, prints its DOCKER_HOST, and stops it on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

IMAGE = "llmbasedos-test/busybox:latest"
INSTALL = (
    "run ./scripts/install-test-deps (Debian: apt-get install docker.io busybox-static; "
    "Arch: pacman -S docker busybox)"
)
PATIENCE = 30.0
PR_SET_PDEATHSIG = 1


class DockerdMissing(RuntimeError):
    """dockerd, the docker client or a static busybox is not installed."""


def _find(program: str) -> str:
    path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise DockerdMissing(f"{program} is not installed: {INSTALL}")
    return path


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


class Dockerd:
    """One dockerd with its roots in `root` (a directory of its own)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.socket = self.root / "docker.sock"
        self.log_path = self.root / "dockerd.log"
        self.popen: subprocess.Popen | None = None
        self.image = IMAGE

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """What a process started for a test needs to find this daemon."""
        return {"DOCKER_HOST": self.host}

    def start(self) -> "Dockerd":
        dockerd = _find("dockerd")
        self.docker_cli = _find("docker")
        busybox = _find("busybox")
        # A dynamically linked busybox would find no libc in the image.
        if subprocess.run(["ldd", busybox], capture_output=True).returncode == 0:
            raise DockerdMissing(f"{busybox} is dynamically linked; the image needs busybox-static: {INSTALL}")
        if os.geteuid() != 0:
            raise DockerdMissing("the Docker tests start their own dockerd, which needs root: run them as root")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {name: value for name, value in os.environ.items() if name not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
        self.popen = subprocess.Popen(
            [
                dockerd,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "dockerd.pid"),
                "-H", self.host,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        try:
            deadline = time.monotonic() + PATIENCE
            while not (_answers(self.socket) and self.docker("version", check=False).returncode == 0):
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dockerd did not start (exit {self.popen.poll()}); its log:\n"
                        + self.log_path.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.05)
            self._import_busybox(busybox)
        except BaseException:
            self.stop()
            raise
        return self

    def _import_busybox(self, busybox: str):
        image_root = self.root / "image-root"
        bin_dir = image_root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name in ("tmp", "etc", "proc", "sys", "dev"):
            (image_root / name).mkdir(exist_ok=True)
        shutil.copy(busybox, bin_dir / "busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox" and not (bin_dir / applet).is_symlink():
                (bin_dir / applet).symlink_to("busybox")
        tar = self.root / "image.tar"
        subprocess.run(["tar", "-C", str(image_root), "-cf", str(tar), "."], check=True)
        self.docker("import", str(tar), self.image)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`docker -H unix://<socket> args...`, its output captured as text."""
        result = subprocess.run(
            [self.docker_cli, "-H", self.host, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def containers(self) -> list[str]:
        """Every container (`docker ps -a`), running or not."""
        return self.docker("ps", "-a", "-q", "--no-trunc").stdout.split()

    def running(self) -> list[str]:
        return self.docker("ps", "-q", "--no-trunc").stdout.split()

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stops the daemon by its pid and removes its roots."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        shutil.rmtree(self.root / "exec", ignore_errors=True)
        return self.popen.returncode


try:
    import pytest
except ImportError:  # used by hand, outside pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def dockerd(tmp_path_factory):
        """One dockerd for the whole test session, stopped at its end."""
        daemon = Dockerd(tmp_path_factory.mktemp("dockerd"))
        try:
            daemon.start()
        except DockerdMissing as missing:
            pytest.fail(str(missing))
        yield daemon
        daemon.stop()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    daemon = Dockerd(Path(sys.argv[1]).resolve())
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        daemon.start()
        print(f"DOCKER_HOST={daemon.host}", flush=True)
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
