"""The fs server through the gateway, as a host uses it: the official MCP
SDK lists, reads, writes and edits files, reads one as a resource, and gets
tool errors with clear messages for what it may not do."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from conftest import Stack
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

PNG_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def fs_stack(tmp_path: Path):
    root = tmp_path / "files"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "todo.md").write_text("# Todo\n- buy milk\n- call Ada\n")
    (root / "pixel.png").write_bytes(PNG_PIXEL)
    (tmp_path / "outside.txt").write_text("secret outside the root\n")
    stack = Stack(tmp_path).start_fs(root)
    yield stack
    stack.stop()


def target(stack: Stack):
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_a_host_lists_reads_writes_and_edits_files(fs_stack: Stack, mode: str):
    root = fs_stack.fs_root

    async def scenario():
        async with Client(target(fs_stack), mode=mode) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert {"fs_list", "fs_read", "fs_write", "fs_edit", "fs_glob", "fs_grep"} <= set(tools)
            assert "names" in tools["fs_glob"].description.lower()
            assert tools["fs_read"].annotations.read_only_hint is True

            listing = await client.call_tool("fs_list", {"path": "/notes"})
            assert listing.is_error is False
            names = [entry["name"] for entry in listing.structured_content["entries"]]
            assert names == ["todo.md"]

            read = await client.call_tool("fs_read", {"path": "/notes/todo.md"})
            assert "buy milk" in read.structured_content["content"]

            written = await client.call_tool("fs_write", {"path": "/notes/new.md", "content": "hello\n"})
            assert written.is_error is False
            assert (root / "notes" / "new.md").read_text() == "hello\n"

            preview = await client.call_tool(
                "fs_edit",
                {"path": "/notes/todo.md", "edits": [{"old_text": "buy milk", "new_text": "buy bread"}], "dry_run": True},
            )
            diff = preview.structured_content["diff"]
            assert "-- buy milk" in diff and "+- buy bread" in diff, diff
            assert preview.structured_content["applied"] is False
            assert "buy milk" in (root / "notes" / "todo.md").read_text()
            await client.call_tool(
                "fs_edit", {"path": "/notes/todo.md", "edits": [{"old_text": "buy milk", "new_text": "buy bread"}]}
            )
            assert "buy bread" in (root / "notes" / "todo.md").read_text()

            resource = await client.read_resource("file:///notes/todo.md")
            assert "buy bread" in resource.contents[0].text

            image = await client.call_tool("fs_read", {"path": "/pixel.png"})
            assert image.content[0].type == "image" and image.content[0].mime_type == "image/png"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("fs_read", {"path": "/notes/missing.md"}, "/notes/missing.md"),
        ("fs_read", {"path": "/../outside.txt"}, ".."),
        ("fs_write", {"path": "/notes/todo.md", "content": "x", "mode": "create"}, "/notes/todo.md"),
        ("fs_delete", {"path": "/notes"}, "recursive"),
        ("fs_read", {"path": "notes/todo.md"}, "/"),
    ],
)
def test_errors_come_back_as_tool_errors_with_clear_messages(fs_stack: Stack, tool: str, arguments: dict, says: str):
    async def scenario():
        async with Client(target(fs_stack), mode="auto") as client:
            result = await client.call_tool(tool, arguments)
            assert result.is_error is True
            message = result.content[0].text
            assert says in message, message
            assert str(fs_stack.root) not in message, "a host path leaked"
            assert "secret outside" not in message

    asyncio.run(scenario())
    assert (fs_stack.fs_root / "notes" / "todo.md").read_text().startswith("# Todo")
    assert (fs_stack.root / "outside.txt").read_text() == "secret outside the root\n"


def unix_call(stack: Stack, method: str, params: dict, request_id: int = 1) -> dict:
    """One JSON-RPC request on the gateway's UNIX socket."""
    import json
    import socket

    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(15)
        connection.connect(str(stack.gateway_socket))
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        connection.sendall(json.dumps(message).encode() + b"\0")
        received = b""
        while not received.endswith(b"\0"):
            piece = connection.recv(1 << 16)
            assert piece, "the gateway closed the connection before answering"
            received += piece
    return json.loads(received[:-1])


def test_a_missing_resource_has_one_code_whatever_the_service(fs_stack: Stack):
    # A URI no service owns (the gateway answers) and a file the fs server
    # does not find: one code, MCP's, with the URI in data; each message
    # says what is missing.
    unowned = unix_call(fs_stack, "resources/read", {"uri": "nowhere:///x"})["error"]
    missing = unix_call(fs_stack, "resources/read", {"uri": "file:///notes/nope.md"}, 2)["error"]
    assert unowned["code"] == missing["code"] == -32002, (unowned, missing)
    assert missing["data"] == {"uri": "file:///notes/nope.md"}, missing
    assert "nope.md" in missing["message"], missing
    # The classic vocabulary keeps the service's own code.
    classic = unix_call(fs_stack, "mcp.fs.read", {"path": "/notes/nope.md"}, 3)["error"]
    assert classic["code"] == -32013, classic


@pytest.mark.parametrize(
    ("supervisor", "says"),
    [(None, "systemctl start llmbasedos-fs.socket"), ("up", "llmbasedos up restarts it")],
)
def test_a_service_that_is_not_running_is_explained_for_what_starts_it(tmp_path: Path, supervisor, says):
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_gateway(overrides={"supervisor": supervisor} if supervisor else None)
    try:
        error = unix_call(stack, "mcp.fs.list", {"path": "/"})["error"]
        assert "the fs service is not running" in error["message"], error
        assert says in error["message"], error
        other = "systemctl" if supervisor == "up" else "llmbasedos up"
        assert other not in error["message"], error
    finally:
        stack.stop()
