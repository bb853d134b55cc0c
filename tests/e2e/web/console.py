"""The web console (llmbasedos-web) in front of a test Stack (gateway + fs +
a hostile stdio upstream), and the one-time sign-in links `llmbasedos web`
mints for it."""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import Process, Stack, binary, connectable_tcp, free_port, wait_for

HERE = Path(__file__).resolve().parent


class Console:
    def __init__(self, stack: Stack, root: Path, services: str | None = None):
        self.stack = stack
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.bootstrap_dir = root / "web-bootstrap"
        self.log_path = root / "web.log"
        env = {
            "LLMBASEDOS_WEB_LISTEN": f"127.0.0.1:{self.port}",
            "LLMBASEDOS_WEB_GATEWAY_SOCKET": str(stack.gateway_socket),
            "LLMBASEDOS_WEB_BOOTSTRAP_DIR": str(self.bootstrap_dir),
            "LLMBASEDOS_WEB_IDLE_EXIT_SECS": "0",
            "LLMBASEDOS_WEB_CONFIG": str(root / "no-web.yaml"),
            # The most verbose logging: the token must not appear even so.
            "LLMBASEDOS_LOG": "trace",
            "LLMBASEDOS_WEB_SERVICES": services or f"up:{root / 'no-up.sock'}",
        }
        (root / "no-web.yaml").write_text("# defaults\n")
        self.process = Process([str(binary("llmbasedos-web"))], self.log_path, env=env)
        wait_for(lambda: connectable_tcp(self.port), "the web console")
        self.minted: list[str] = []

    def mint(self) -> str:
        """A one-time URL from `llmbasedos web`."""
        out = subprocess.run(
            [str(binary("llmbasedos")), "web", "--bootstrap-dir", str(self.bootstrap_dir), "--url", self.base],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "LLMBASEDOS_WEB_CONFIG": str(self.bootstrap_dir.parent / "no-web.yaml")},
        ).stdout.strip()
        match = re.fullmatch(re.escape(self.base) + r"/#t=([0-9a-f]{64})", out)
        assert match, out
        self.minted.append(match.group(1))
        return out

    def token(self) -> str:
        return self.mint().rsplit("#t=", 1)[1]

    def client(self) -> "Http":
        return Http(self.port)

    def signed_in(self) -> tuple["Http", str]:
        """A client with a session cookie, and the session's CSRF token."""
        client = self.client()
        response = client.post("/session", json={"token": self.token()}, headers={"Origin": self.base})
        assert response.status_code == 204, response.text
        page = client.get("/")
        match = re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', page.text)
        assert match, page.text[:500]
        return client, match.group(1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        self.process.stop()


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status_code = status
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.raw_headers = headers
        self.text = body.decode(errors="replace")

    def json(self):
        return jsonlib.loads(self.text)


class Http:
    """A plain HTTP/1.1 client (http.client) that keeps the session cookie
    and sends exactly the headers it is given (Host included)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, json=None, content: bytes | None = None, headers=None) -> Response:
        headers = dict(headers or {})
        body = content
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            answer = connection.getresponse()
            response = Response(answer.status, answer.headers, answer.read())
        finally:
            connection.close()
        for cookie in response.raw_headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    def get(self, path: str, headers=None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, json=None, content: bytes | None = None, headers=None) -> Response:
        return self.request("POST", path, json=json, content=content, headers=headers)


def hostile_upstream() -> dict:
    return {"name": "hostile", "prefix": "hostile", "command": [sys.executable, str(HERE / "hostile_upstream.py")]}


def start(tmp_path: Path) -> tuple[Stack, Console]:
    """fs over `tmp_path/files` (with a hostile file name), the hostile
    upstream, the gateway, and the console."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello from the console test\n")
    (files / "<img src=x onerror=alert(1)><script>alert(2)<").write_text("x")
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_backend("fs", "llmbasedos-fs", env={"LLMBASEDOS_FS_ROOT": str(files)})
    stack.start_gateway(overrides={"upstreams": [hostile_upstream()]})
    stack.fs_root = files
    wait_for(lambda: "upstream connected upstream=hostile" in stack.gateway.log(), "the hostile upstream")
    console = Console(stack, tmp_path)
    return stack, console
