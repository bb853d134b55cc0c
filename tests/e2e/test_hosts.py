"""The hosts in use (issue 13): hosts of older MCP revisions (2025-03-26,
2025-06-18) negotiate their own, the MCP conformance suite passes, hosts
that follow the MCP authorization specification learn how to pass the token
instead of starting an OAuth flow, and classic callers get the same read
shape for every file."""

from __future__ import annotations

import base64
import re
import subprocess
import http.client
import json
from pathlib import Path

import pytest
from conftest import Stack, jsonrpc, node_tool, unix_call
from websockets.sync.client import connect as ws_connect

PNG_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def request(stack: Stack, method: str, path: str, headers: dict[str, str] | None = None, body: str | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {key.lower(): value for key, value in response.getheaders()}, response.read()
    finally:
        connection.close()


# ---- item 4: unknown paths are 404; the 401 says how to pass the token ----


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server", "/", "/mcp/x"]
)
def test_unknown_paths_are_not_found_without_a_token(stack: Stack, path: str):
    status, headers, _ = request(stack, "GET", path)
    assert status == 404, f"{path}: {status}"
    assert "www-authenticate" not in headers
    # With a token as well.
    assert request(stack, "GET", path, stack.auth)[0] == 404


def test_a_foreign_page_learns_nothing_about_paths(stack: Stack):
    """The Host/Origin check comes first: a DNS-rebinding page gets 403 for
    every path, known or not."""
    for path in ["/mcp", "/.well-known/oauth-protected-resource", "/nothing"]:
        assert request(stack, "GET", path, {"Host": "evil.example"})[0] == 403, path
        assert request(stack, "GET", path, {"Origin": "http://evil.example"})[0] == 403, path


def test_the_401_says_how_to_pass_the_token_and_offers_no_oauth(stack: Stack):
    message = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
    for path in ["/mcp", "/ws"]:
        status, headers, body = request(stack, "POST" if path == "/mcp" else "GET", path, {"Content-Type": "application/json"}, message)
        assert status == 401, path
        challenge = headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert "resource_metadata" not in challenge
        assert "Authorization: Bearer <token>" in challenge
        error = json.loads(body)["error"]["message"]
        assert "Authorization: Bearer <token>" in error
        # Where the token is: the configuration file names its SHA-256.
        assert str(stack.root / "gateway.yaml") in error, error
    status, headers, body = request(stack, "POST", "/mcp", {"Authorization": "Bearer wrong", "Content-Type": "application/json"}, message)
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert "resource_metadata" not in headers["www-authenticate"]


def test_the_401_names_the_token_file_when_configured(tmp_path: Path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    token_file = tmp_path / "run" / "gateway.token"
    stack.start_gateway(overrides={"auth": {"token_file": str(token_file)}})
    try:
        status, headers, body = request(stack, "GET", "/ws")
        assert status == 401
        assert str(token_file) in json.loads(body)["error"]["message"]
        assert str(token_file) in headers["www-authenticate"]
    finally:
        stack.stop()


# ---- item 6: classic reads have one shape ----


@pytest.fixture
def fs_stack(tmp_path: Path):
    root = tmp_path / "files"
    root.mkdir()
    (root / "pixel.png").write_bytes(PNG_PIXEL)
    stack = Stack(tmp_path).start_fs(root)
    yield stack
    stack.stop()


def check_classic_image_read(read: dict, many: dict):
    result = read["result"]
    assert "_content" not in result, result
    assert base64.b64decode(result["content"]) == PNG_PIXEL
    assert result["mime_type"] == "image/png"
    assert result["encoding"] == "base64"
    [entry] = many["result"]["results"]
    assert entry["ok"] and entry["result"] == result


def test_classic_read_of_an_image_has_content_over_the_unix_socket(fs_stack: Stack):
    read = unix_call(fs_stack.gateway_socket, jsonrpc("mcp.fs.read", {"path": "/pixel.png"}))
    many = unix_call(fs_stack.gateway_socket, jsonrpc("mcp.fs.read_many", {"paths": ["/pixel.png"]}, id=2))
    check_classic_image_read(read, many)
    # The general path (a request with _meta) gives the same shape.
    meta = unix_call(fs_stack.gateway_socket, jsonrpc("mcp.fs.read", {"path": "/pixel.png", "_meta": {}}, id=3))
    check_classic_image_read(meta, many)


def test_classic_read_of_an_image_has_content_over_websocket(fs_stack: Stack):
    with ws_connect(fs_stack.ws_url, additional_headers=fs_stack.auth, open_timeout=10) as ws:
        ws.send(jsonrpc("mcp.fs.read", {"path": "/pixel.png"}))
        read = json.loads(ws.recv(timeout=10))
        ws.send(jsonrpc("mcp.fs.read_many", {"paths": ["/pixel.png"]}, id=2))
        many = json.loads(ws.recv(timeout=10))
    check_classic_image_read(read, many)


def test_an_mcp_host_still_gets_the_image_as_image_content(fs_stack: Stack):
    """tools/call keeps mapping an image to MCP image content."""
    initialize = jsonrpc(
        "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    )
    headers = {**fs_stack.auth, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    status, reply_headers, _ = request(fs_stack, "POST", "/mcp", headers, initialize)
    assert status == 200
    headers["Mcp-Session-Id"] = reply_headers["mcp-session-id"]
    headers["MCP-Protocol-Version"] = "2025-11-25"
    call = jsonrpc("tools/call", {"name": "fs_read", "arguments": {"path": "/pixel.png"}}, id=2)
    status, _, body = request(fs_stack, "POST", "/mcp", headers, call)
    assert status == 200
    [block] = json.loads(body)["result"]["content"]
    assert block["type"] == "image" and block["mimeType"] == "image/png"
    assert base64.b64decode(block["data"]) == PNG_PIXEL


# ---- item 1: hosts of every revision in use ----

INITIALIZE_PARAMS = {"capabilities": {}, "clientInfo": {"name": "old-host", "version": "1"}}


def mcp_post(stack: Stack, message: str, headers: dict[str, str] | None = None):
    base = {**stack.auth, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    return request(stack, "POST", "/mcp", {**base, **(headers or {})}, message)


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25"])
def test_a_host_of_each_revision_gets_its_own(stack: Stack, version: str):
    status, headers, body = mcp_post(stack, jsonrpc("initialize", {**INITIALIZE_PARAMS, "protocolVersion": version}))
    assert status == 200, body
    assert json.loads(body)["result"]["protocolVersion"] == version
    session = {"Mcp-Session-Id": headers["mcp-session-id"]}
    # 2025-03-26 defines no header (the server assumes that revision without
    # one); later hosts send theirs.
    header = {} if version == "2025-03-26" else {"MCP-Protocol-Version": version}
    assert mcp_post(stack, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), {**session, **header})[0] == 202
    status, _, body = mcp_post(stack, jsonrpc("tools/list", id=2), {**session, **header})
    assert status == 200, body
    tools = {tool["name"]: tool for tool in json.loads(body)["result"]["tools"]}
    assert "test_echo" in tools
    status, _, body = mcp_post(stack, jsonrpc("tools/call", {"name": "test_echo", "arguments": {"text": "hi"}}, id=3), {**session, **header})
    assert status == 200, body
    result = json.loads(body)["result"]
    assert json.loads(result["content"][0]["text"]) == {"text": "hi"}
    if version == "2025-03-26":
        # structuredContent and outputSchema came with 2025-06-18.
        assert "structuredContent" not in result
        assert not any("outputSchema" in tool for tool in tools.values())
    else:
        assert result["structuredContent"] == {"text": "hi"}
    # Every supported revision is accepted in the header on the same session,
    # an unknown one is refused.
    for other in ["2025-03-26", "2025-06-18", "2025-11-25"]:
        assert mcp_post(stack, jsonrpc("ping", id=4), {**session, "MCP-Protocol-Version": other})[0] == 200, other
    assert mcp_post(stack, jsonrpc("ping", id=5), {**session, "MCP-Protocol-Version": "2024-01-01"})[0] == 400


# Scenarios that need the suite's own fixture server (its tool, resource
# and prompt names: test_simple_text, test://static-text, test_simple_prompt
# …), which the gateway does not and should not serve.
FIXTURE_SCENARIOS = {
    "tools-call-simple-text", "tools-call-image", "tools-call-audio", "tools-call-embedded-resource",
    "tools-call-mixed-content", "tools-call-with-logging", "tools-call-error", "tools-call-with-progress",
    "tools-call-sampling", "tools-call-elicitation", "elicitation-sep1034-defaults", "elicitation-sep1330-enums",
    "json-schema-2020-12", "resources-read-text", "resources-read-binary", "resources-templates-read",
    "resources-subscribe", "resources-unsubscribe", "prompts-get-simple", "prompts-get-with-args", "server-sse-polling",
    "prompts-get-embedded-resource", "prompts-get-with-image",
    # Completes an argument of the fixture's prompt test_prompt_with_arguments:
    # the gateway answers an unknown prompt with -32602, as the specification
    # says; completion itself is tested in test_bridge_and_subscriptions.py.
    "completion-complete",
}  # fmt: skip


def conformance_scenarios(conformance: list[str]) -> list[str]:
    listing = subprocess.run([*conformance, "list"], check=True, capture_output=True, text=True, timeout=60).stdout
    server_part = listing.split("Client scenarios")[0]
    return re.findall(r"^\s*- (\S+)", server_part, re.MULTILINE)


def test_the_mcp_conformance_suite_passes(tmp_path: Path):
    conformance = node_tool("conformance")
    scenarios = conformance_scenarios(conformance)
    assert "server-sse-multiple-streams" in scenarios and "server-initialize" in scenarios, scenarios
    applicable = [scenario for scenario in scenarios if scenario not in FIXTURE_SCENARIOS]
    # The suite sends no token: a loopback gateway without auth.
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    stack.start_gateway("--no-auth")
    failed = {}
    try:
        for scenario in applicable:
            run = subprocess.run(
                [*conformance, "server", "--url", stack.url, "--scenario", scenario],
                capture_output=True, text=True, timeout=120, cwd=tmp_path,
            )  # fmt: skip
            summary = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", run.stdout)
            if run.returncode != 0 or summary is None or summary.group(3) != "0" or summary.group(1) == "0":
                failed[scenario] = run.stdout[-1500:] + run.stderr[-500:]
    finally:
        stack.stop()
    assert not failed, "\n\n".join(f"== {name}\n{output}" for name, output in failed.items())


def test_an_unsupported_protocol_header_is_refused_on_every_method(stack: Stack):
    status, headers, _ = mcp_post(stack, jsonrpc("initialize", {**INITIALIZE_PARAMS, "protocolVersion": "2025-06-18"}))
    assert status == 200
    session = {**stack.auth, "Mcp-Session-Id": headers["mcp-session-id"]}
    for method in ["GET", "DELETE"]:
        status, _, body = request(stack, method, "/mcp", {**session, "MCP-Protocol-Version": "1999-01-01"})
        assert status == 400, (method, status)
        assert "2025-03-26" in json.loads(body)["error"]["message"]
    assert request(stack, "DELETE", "/mcp", {**session, "MCP-Protocol-Version": "2025-06-18"})[0] == 204
