"""Every fs error hint names something the caller can use (issue 13 item 3):
an MCP host that follows the hint of each error kind calls a tool that is in
tools/list, with arguments that are properties of its inputSchema, and the
call succeeds. Classic callers get the hint in method names, and every error
carries its kind and hint as data (error.data), so clients match data."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from conftest import Stack, jsonrpc, unix_call
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

READ_LIMIT = 8 * 1024 * 1024


@pytest.fixture
def fs_stack(tmp_path: Path):
    root = tmp_path / "files"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "todo.md").write_text("# Todo\n- buy milk\n")
    (root / "taken.md").write_text("already here\n")
    (root / "full").mkdir()
    (root / "full" / "inside.txt").write_text("x\n")
    with open(root / "big.txt", "wb") as big:
        big.truncate(READ_LIMIT + 1)  # sparse: costs no disk
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_backend("fs", "llmbasedos-fs", env={"LLMBASEDOS_FS_ROOT": str(root)})
    stack.start_gateway()
    stack.fs_root = root
    yield stack
    stack.stop()


# (kind, the failing call, the tool the hint must name, what the host adds
# to the hint's arguments for parameters a hint cannot know).
CASES = [
    ("not_found", "fs_read", {"path": "/nope.txt"}, "fs_list", {}),
    ("not_found", "fs_write", {"path": "/a/b/c.txt", "content": "x"}, "fs_mkdir", {}),
    ("not_found", "fs_mkdir", {"path": "/m/n"}, "fs_mkdir", {}),
    ("not_found", "fs_copy", {"from": "/notes/todo.md", "to": "/p/q/todo.md"}, "fs_mkdir", {}),
    ("not_found", "fs_move", {"from": "/notes/todo.md", "to": "/r/s.md"}, "fs_mkdir", {}),
    ("not_empty", "fs_delete", {"path": "/full"}, "fs_delete", {}),
    ("already_exists", "fs_mkdir", {"path": "/notes"}, "fs_mkdir", {}),
    ("already_exists", "fs_copy", {"from": "/notes/todo.md", "to": "/taken.md"}, "fs_copy", {}),
    ("already_exists", "fs_move", {"from": "/notes/todo.md", "to": "/taken.md"}, "fs_move", {}),
    ("invalid", "fs_copy", {"from": "/notes", "to": "/notes2"}, "fs_copy", {}),
    ("invalid", "fs_read", {"path": "/notes"}, "fs_list", {}),
    ("invalid", "fs_edit", {"path": "/notes/todo.md", "edits": [{"old_text": "absent", "new_text": "y"}]}, "fs_read", {}),
    ("invalid", "fs_grep", {"pattern": "("}, "fs_grep", {}),
    ("too_large", "fs_read", {"path": "/big.txt"}, "fs_read", {}),
    ("too_large", "fs_edit", {"path": "/big.txt", "edits": [{"old_text": "a", "new_text": "b"}]}, "fs_write", {"content": "small now\n"}),
]

HINT = re.compile(r"; (?P<action>[^;]+) with the (?P<tool>\w+) tool(?: \((?P<arguments>.*)\))?$", re.S)


def parse_arguments(text: str | None) -> dict:
    """`path: "/a", parents: true` as the gateway renders a hint's arguments."""
    arguments: dict = {}
    decoder = json.JSONDecoder()
    rest = text or ""
    while rest:
        key, _, rest = rest.partition(": ")
        value, end = decoder.raw_decode(rest)
        arguments[key] = value
        rest = rest[end:].removeprefix(", ")
    return arguments


def target(stack: Stack):
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


@pytest.mark.parametrize("kind,tool,arguments,hinted,supplied", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_host_following_each_hint_calls_a_tool_that_exists(
    fs_stack: Stack, kind: str, tool: str, arguments: dict, hinted: str, supplied: dict
):
    async def scenario():
        async with Client(target(fs_stack), mode="auto") as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            failed = await client.call_tool(tool, arguments)
            assert failed.is_error is True
            message = failed.content[0].text
            assert "mcp." not in message, f"the hint names a wire method: {message}"
            match = HINT.search(message)
            assert match, f"no hint a host can follow in {message!r}"
            assert match["tool"] == hinted, message
            assert match["tool"] in tools, f"{match['tool']} is not in tools/list: {message}"
            hint_arguments = parse_arguments(match["arguments"])
            properties = tools[match["tool"]].input_schema.get("properties", {})
            for name in hint_arguments:
                assert name in properties, f"{match['tool']} has no parameter {name}: {message}"
            followed = await client.call_tool(match["tool"], {**hint_arguments, **supplied})
            assert followed.is_error is False, followed.content[0].text

    asyncio.run(scenario())


def test_classic_callers_get_method_names_and_every_error_its_kind_as_data(fs_stack: Stack):
    answer = unix_call(fs_stack.gateway_socket, jsonrpc("mcp.fs.mkdir", {"path": "/x/y"}))
    error = answer["error"]
    assert error["data"]["kind"] == "not_found", error
    assert error["data"]["hint"] == {
        "action": "create it",
        "method": "mcp.fs.mkdir",
        "arguments": {"path": "/x", "parents": True},
    }, error
    assert error["message"].endswith('; create it with mcp.fs.mkdir (parents: true, path: "/x")') or error[
        "message"
    ].endswith('; create it with mcp.fs.mkdir (path: "/x", parents: true)'), error
    assert "create_parents" not in error["message"], error
    for kind, tool, arguments, _, _ in CASES:
        method = "mcp.fs." + tool.removeprefix("fs_")
        answer = unix_call(fs_stack.gateway_socket, jsonrpc(method, arguments))
        assert answer["error"]["data"]["kind"] == kind, answer

