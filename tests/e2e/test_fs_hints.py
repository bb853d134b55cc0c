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
    stack = Stack(tmp_path).start_fs(root)
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



# Semantic errors (issue 20 item 3): each kind an MCP host can meet carries
# its kind as data, the text says what to do (the fs layer names the
# packages and settings; the semantic library names none), and a hint, when
# there is one, is followed like the file errors' hints above.
# (kind, how the fs server is set up, the failing call, the tool the hint
# names or None, a text the message must hold)
SEMANTIC_CASES = [
    ("model_missing", "no_model", "fs_search", {"query": "bread"}, None, "llmbasedos-model-minilm"),
    ("model_invalid", "bad_model", "fs_embed", {}, None, "llmbasedos-model-minilm"),
    ("runtime_missing", "no_runtime", "fs_embed", {}, None, "install the onnxruntime package"),
    ("not_found", "complete", "fs_embed", {"path": "/nope"}, "fs_list", "/nope does not exist"),
    ("invalid", "complete", "fs_search", {"query": "   "}, None, "say in words"),
    ("index_unusable", "index_is_a_file", "fs_index_status", {}, None, "index_dir"),
    ("busy", "index_in_use", "fs_index_status", {}, None, "in use by another fs server"),
]


def semantic_fs_stack(tmp_path: Path, setup: str) -> Stack:
    from test_semantic import model_dir, runtime

    root = tmp_path / "files"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "bread.md").write_text("# Sourdough\n\nFeed the starter.\n")
    env = {
        "LLMBASEDOS_FS_ROOT": str(root),
        "LLMBASEDOS_FS_MODEL_DIR": model_dir(),
        "ORT_DYLIB_PATH": runtime(),
        "LLMBASEDOS_FS_INDEX_DIR": str(tmp_path / "index"),
    }
    if setup == "no_model":
        env["LLMBASEDOS_FS_MODEL_DIR"] = str(tmp_path / "no-model")
    elif setup == "bad_model":
        bad = tmp_path / "bad-model"
        bad.mkdir()
        (bad / "model.onnx").write_bytes(b"not a model")
        (bad / "tokenizer.json").write_text("{}")
        env["LLMBASEDOS_FS_MODEL_DIR"] = str(bad)
    elif setup == "no_runtime":
        env["ORT_DYLIB_PATH"] = str(tmp_path / "libonnxruntime.so.missing")
    elif setup == "index_is_a_file":
        (tmp_path / "index").write_text("a file where the index directory belongs\n")
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    if setup == "index_in_use":
        # Another fs server of the same root and index_dir claims the index
        # first; it has no caps file, so the gateway does not route to it.
        stack.start_backend("holder", "llmbasedos-fs", env=env)
        claimed = unix_call(stack.caps_dir / "holder.sock", jsonrpc("mcp.fs.index_status"))
        assert "result" in claimed, claimed
    stack.start_backend("fs", "llmbasedos-fs", env=env)
    stack.start_gateway(overrides={"limits": {"backend_timeout_secs": 120}})
    return stack


@pytest.mark.parametrize(
    "kind,setup,tool,arguments,hinted,text", SEMANTIC_CASES, ids=[case[0] for case in SEMANTIC_CASES]
)
def test_every_semantic_error_kind_is_data_and_its_hint_can_be_followed(
    tmp_path: Path, kind: str, setup: str, tool: str, arguments: dict, hinted: str | None, text: str
):
    stack = semantic_fs_stack(tmp_path, setup)
    try:

        async def scenario():
            async with Client(target(stack), mode="auto") as client:
                tools = {tool.name: tool for tool in (await client.list_tools()).tools}
                failed = await client.call_tool(tool, arguments)
                assert failed.is_error is True, failed
                message = failed.content[0].text
                assert "mcp." not in message, f"the message names a wire method: {message}"
                assert text in message, message
                match = HINT.search(message)
                if hinted is None:
                    assert match is None, f"a hint where none was expected: {message}"
                    return
                assert match, f"no hint a host can follow in {message!r}"
                assert match["tool"] == hinted and hinted in tools, message
                hint_arguments = parse_arguments(match["arguments"])
                properties = tools[hinted].input_schema.get("properties", {})
                for name in hint_arguments:
                    assert name in properties, f"{hinted} has no parameter {name}: {message}"
                followed = await client.call_tool(hinted, hint_arguments)
                assert followed.is_error is False, followed.content[0].text

        asyncio.run(scenario())
        method = "mcp.fs." + tool.removeprefix("fs_")
        answer = unix_call(stack.gateway_socket, jsonrpc(method, arguments), timeout=120)
        assert answer["error"]["data"]["kind"] == kind, answer
    finally:
        stack.stop()
