"""End-to-end fixtures: real llmbasedos processes in a temp dir, reached
with real clients (the official MCP Python SDK, a WebSocket client, raw HTTP).

Binaries come from $LLMBASEDOS_BIN_DIR (default: target/debug, which
`cargo test --workspace` builds). A missing binary or tool fails the test with
the command that provides it; nothing is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("LLMBASEDOS_BIN_DIR", ROOT / "target" / "debug"))
PATIENCE = 15.0


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with `cargo build --workspace` (or set LLMBASEDOS_BIN_DIR)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = PATIENCE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def connectable_unix(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


def connectable_tcp(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.connect(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Process:
    """A child process, stopped by its pid when the test ends."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.argv = argv
        self.log_path = log
        self._log = open(log, "ab")
        full_env = dict(os.environ)
        for name in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET", "LLMBASEDOS_LOG_FORMAT"):
            full_env.pop(name, None)
        full_env.update(env or {})
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=full_env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class Stack:
    """Backends and a gateway in one temp dir, as `llmbasedos up` lays them out."""

    def __init__(self, root: Path):
        self.root = root
        self.caps_dir = root / "mcp"
        self.caps_dir.mkdir()
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.gateway_socket = root / "gateway.sock"
        self.backends: dict[str, Process] = {}
        self.gateway: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def publish_caps(self, service: str = "test", binary_name: str = "llmbasedos-test-server") -> Path:
        caps = subprocess.run([binary(binary_name), "--print-caps"], check=True, capture_output=True).stdout
        path = self.caps_dir / f"{service}.cap.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(caps)
        temporary.rename(path)
        return path

    def start_backend(
        self, service: str = "test", binary_name: str = "llmbasedos-test-server", env: dict[str, str] | None = None
    ) -> Process:
        socket_path = self.caps_dir / f"{service}.sock"
        process = Process(
            [str(binary(binary_name)), "--socket", str(socket_path), "--idle-timeout", "0"],
            self.root / f"{service}.log",
            env=env,
        )
        wait_for(lambda: connectable_unix(socket_path), f"the {service} server's socket")
        self.backends[service] = process
        return process

    def write_config(self, overrides: dict | None = None) -> Path:
        """The gateway's configuration, as JSON (which is YAML too)."""
        config = {
            "listen": f"127.0.0.1:{self.port}",
            "unix_socket": str(self.gateway_socket),
            "caps_dir": str(self.caps_dir),
            "auth": {"tokens": [{"name": "tests", "sha256": hashlib.sha256(self.token.encode()).hexdigest()}]},
            "limits": {"backend_timeout_secs": 5},
        }
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        path = self.root / "gateway.yaml"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start_gateway(self, *args: str, overrides: dict | None = None) -> Process:
        config = self.write_config(overrides)
        self.gateway = Process(
            [str(binary("llmbasedos-gateway")), "--config", str(config), *args],
            self.root / "gateway.log",
            env={"LLMBASEDOS_LOG": "debug"},
        )
        wait_for(lambda: connectable_tcp(self.port) and connectable_unix(self.gateway_socket), "the gateway")
        return self.gateway

    def start_fs(self, root: Path, overrides: dict | None = None) -> "Stack":
        """The fs server serving `root` (kept as `fs_root`), and the gateway
        in front of it."""
        self.publish_caps("fs", "llmbasedos-fs")
        self.start_backend("fs", "llmbasedos-fs", env={"LLMBASEDOS_FS_ROOT": str(root)})
        self.start_gateway(overrides=overrides)
        self.fs_root = root
        return self

    def stdio_bridge_argv(self) -> list[str]:
        return [str(binary("llmbasedos-gateway")), "stdio", "--unix-socket", str(self.gateway_socket)]

    def stop(self):
        if self.gateway is not None:
            self.gateway.stop()
        for process in self.backends.values():
            process.stop()


@pytest.fixture
def stack(tmp_path: Path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    stack.start_gateway()
    yield stack
    stack.stop()


def require_tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: {install}")
    return path


def jsonrpc(method: str, params=None, id=1) -> str:
    message = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def start_gateway_with_descriptors(stack: Stack, nofile: int, overrides: dict | None = None) -> Process:
    """The stack's gateway under a descriptor limit of `nofile` (soft and
    hard, set by prlimit, which execs the gateway: the pid is the gateway's)."""
    prlimit = require_tool("prlimit", "apt-get install util-linux")
    config = stack.write_config(overrides)
    stack.gateway = Process(
        [prlimit, f"--nofile={nofile}:{nofile}", str(binary("llmbasedos-gateway")), "--config", str(config)],
        stack.root / "gateway.log",
        env={"LLMBASEDOS_LOG": "debug"},
    )
    wait_for(lambda: connectable_tcp(stack.port) and connectable_unix(stack.gateway_socket), "the gateway")
    return stack.gateway


def unix_call(path: Path, message: str, timeout: float = 10.0) -> dict:
    """One request on a new connection to a NUL-delimited UNIX socket."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(message.encode() + b"\0")
        data = b""
        while b"\0" not in data:
            chunk = client.recv(65536)
            assert chunk, f"the socket closed after {data!r}"
            data += chunk
        return json.loads(data.split(b"\0")[0])


def node_tool(package_bin: str) -> list[str]:
    """argv running an npm package's command with the pinned Node 22, both
    from target/test-node (scripts/install-test-deps installs them)."""
    bin_dir = ROOT / "target" / "test-node" / "node_modules" / ".bin"
    node, tool = bin_dir / "node", bin_dir / package_bin
    for path in (node, tool):
        if not path.exists():
            pytest.fail(f"{path} is missing: run scripts/install-test-deps (it installs tests/node-packages.txt)")
    return [str(node), str(tool)]
