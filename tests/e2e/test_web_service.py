"""The web console as a service: started by socket activation on the TCP
socket systemd would pass (systemd-socket-activate), it serves, and exits
by itself once idle; an open event stream keeps it up."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from conftest import Process, Stack, binary, free_port, wait_for
from web.console import Http, hostile_upstream


def activated_console(tmp_path, stack: Stack, idle: int) -> tuple[Process, int]:
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate is missing: run ./scripts/install-test-deps (Debian package systemd)"
    port = free_port()
    (tmp_path / "web.yaml").write_text(f"idle_exit_secs: {idle}\nbootstrap_dir: {tmp_path / 'boot'}\n")
    process = Process(
        [
            activate,
            "-l",
            f"127.0.0.1:{port}",
            "-E",
            "LLMBASEDOS_LOG=debug",
            "-E",
            f"LLMBASEDOS_WEB_GATEWAY_SOCKET={stack.gateway_socket}",
            "-E",
            f"LLMBASEDOS_WEB_SERVICES=up:{tmp_path / 'no-up.sock'}",
            str(binary("llmbasedos-web")),
            "--config",
            str(tmp_path / "web.yaml"),
        ],
        tmp_path / "web.log",
    )

    def listening():
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", port))
                return True
            except OSError:
                return False

    wait_for(listening, "the activation socket")
    return process, port


def test_socket_activated_and_exits_when_idle(tmp_path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    stack.start_gateway()
    process, port = activated_console(tmp_path, stack, idle=1)
    try:
        page = Http(port).get("/", headers={"Host": f"127.0.0.1:{port}"})
        assert page.status_code == 200 and "llmbasedos web" in page.text
        # Idle: nobody signed in, no stream: it exits by itself, cleanly.
        wait_for(lambda: process.popen.poll() is not None, "the idle exit", timeout=30)
        assert process.popen.returncode == 0, process.log()
        assert "the socket passed by systemd" in process.log() or "serving" in process.log()
        assert "idle" in process.log()
    finally:
        process.stop()
        stack.stop()


def test_an_open_event_stream_keeps_it_running(tmp_path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    stack.start_gateway(overrides={"upstreams": [hostile_upstream()]})
    wait_for(lambda: "upstream connected upstream=hostile" in stack.gateway.log(), "the hostile upstream")
    process, port = activated_console(tmp_path, stack, idle=1)
    try:
        minted = subprocess.run(
            [str(binary("llmbasedos")), "web", "--bootstrap-dir", str(tmp_path / "boot"), "--url", f"http://127.0.0.1:{port}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        token = minted.rsplit("#t=", 1)[1]
        base = f"http://127.0.0.1:{port}"
        client = Http(port)
        assert client.post("/session", json={"token": token}, headers={"Origin": base}).status_code == 204
        import re

        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/").text).group(1)
        call = client.post(
            "/api/tools/call",
            json={"name": "hostile_slow", "arguments": {"steps": 12}},
            headers={"Origin": base, "X-CSRF-Token": csrf},
        )
        assert call.status_code == 200, call.text
        stream = socket.create_connection(("127.0.0.1", port))
        stream.sendall(
            (
                f"GET /api/calls/{call.json()['id']}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Cookie: llmbasedos_session={client.cookies['llmbasedos_session']}\r\n\r\n"
            ).encode()
        )
        received = b""
        stream.settimeout(20)
        # The call takes about 3.6 s, more than three idle periods; the
        # console stays up until it ends, and sends it all.
        while b"event: result" not in received:
            chunk = stream.recv(65536)
            assert chunk, received
            received += chunk
            assert process.popen.poll() is None, "the console exited under an open stream"
        assert b"counted to 12" in received
        assert received.count(b"event: progress") >= 2
        stream.close()
        wait_for(lambda: process.popen.poll() is not None, "the idle exit after the stream", timeout=30)
    finally:
        process.stop()
        stack.stop()
