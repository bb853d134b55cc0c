"""Semantic search through the gateway, as a host uses it: the official MCP
SDK indexes a tree with fs_embed (receiving progress notifications), finds
files by meaning with fs_search, and gets a clear tool error naming what to
install when the model is missing, while the other fs tools keep working.

The model and ONNX Runtime come from LLMBASEDOS_FS_MODEL_DIR and
ORT_DYLIB_PATH (scripts/test exports them), else from the caches of
scripts/fetch-model and scripts/fetch-onnxruntime; missing, the test fails
and says how to get them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import Stack, jsonrpc, unix_call
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

DOCUMENTS = {
    "recipes/bread.md": "# Sourdough\n\nFeed the starter, knead the dough, let it rise and bake it in a hot oven.",
    "house/tap.md": "# Leaking tap\n\nTurn off the water and replace the worn washer so the faucet stops dripping.",
    "health/sleep.md": "# Sleep\n\nKeep a regular bedtime and a dark, cool bedroom; avoid coffee in the evening.",
    "money/taxes.md": "# Taxes\n\nCollect payslips and receipts and file the income tax return before the deadline.",
    "travel/japan.md": "# Japan\n\nTake the bullet train from Tokyo to Kyoto and visit the temples early.",
    "garden/roses.md": "# Roses\n\nPrune roses in late winter just above an outward-facing bud.",
}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmbasedos"


def model_dir() -> str:
    configured = os.environ.get("LLMBASEDOS_FS_MODEL_DIR")
    if configured:
        return configured
    cached = cache_dir() / "models" / "all-MiniLM-L6-v2"
    if not (cached / "model.onnx").is_file():
        pytest.fail("the all-MiniLM-L6-v2 model is missing: run ./scripts/install-test-deps (or ./scripts/fetch-model)")
    return str(cached)


def runtime() -> str:
    configured = os.environ.get("ORT_DYLIB_PATH")
    if configured:
        return configured
    found = sorted((cache_dir() / "onnxruntime").glob("libonnxruntime.so.*"))
    if not found:
        pytest.fail("ONNX Runtime is missing: run ./scripts/install-test-deps (or ./scripts/fetch-onnxruntime)")
    return str(found[-1])


def start(tmp_path: Path, model: str) -> Stack:
    root = tmp_path / "files"
    for name, text in DOCUMENTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_backend(
        "fs",
        "llmbasedos-fs",
        env={
            "LLMBASEDOS_FS_ROOT": str(root),
            "LLMBASEDOS_FS_MODEL_DIR": model,
            "ORT_DYLIB_PATH": runtime(),
            "LLMBASEDOS_FS_INDEX_DIR": str(tmp_path / "index"),
        },
    )
    # Loading the model and embedding take longer than a file read.
    stack.start_gateway(overrides={"limits": {"backend_timeout_secs": 120}})
    return stack


@pytest.fixture
def semantic_stack(tmp_path: Path):
    stack = start(tmp_path, model_dir())
    yield stack
    stack.stop()


@pytest.fixture
def modelless_stack(tmp_path: Path):
    stack = start(tmp_path, str(tmp_path / "no-model"))
    yield stack
    stack.stop()


def target(stack: Stack):
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_a_host_indexes_with_progress_then_finds_by_meaning(semantic_stack: Stack, mode: str):
    async def scenario():
        async with Client(target(semantic_stack), mode=mode) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert {"fs_embed", "fs_search", "fs_index_status"} <= set(tools)
            assert tools["fs_search"].annotations.read_only_hint is True

            progress = []

            async def on_progress(value, total, message):
                progress.append((value, total, message))

            embedded = await client.call_tool("fs_embed", {"path": "/"}, progress_callback=on_progress)
            assert embedded.is_error is False, embedded.content
            result = embedded.structured_content
            assert result["files_embedded"] == len(DOCUMENTS), result
            assert result["index"]["files"] == len(DOCUMENTS)
            assert progress, "no progress notification reached the host"
            assert progress[-1][0] == progress[-1][1] == len(DOCUMENTS), progress

            for query, expected in [
                ("my faucet keeps dripping", "/house/tap.md"),
                ("how to make bread at home", "/recipes/bread.md"),
                ("train trip between Tokyo and Kyoto", "/travel/japan.md"),
            ]:
                found = await client.call_tool("fs_search", {"query": query, "top_k": 3})
                assert found.is_error is False, found.content
                hits = found.structured_content["results"]
                assert hits[0]["path"] == expected, (query, hits)
                assert hits[0]["start_line"] == 1 and hits[0]["snippet"].startswith("#")

            scoped = await client.call_tool("fs_search", {"query": "bread", "scope": "/garden"})
            assert {hit["path"] for hit in scoped.structured_content["results"]} == {"/garden/roses.md"}

            status = await client.call_tool("fs_index_status", {})
            assert status.structured_content["model"] == "all-MiniLM-L6-v2"
            assert status.structured_content["chunks"] >= len(DOCUMENTS)

            refused = await client.call_tool("fs_search", {"query": "x", "scope": "/a/../../etc"})
            assert refused.is_error is True
            assert '".." is not allowed' in refused.content[0].text

    asyncio.run(scenario())


def test_without_the_model_embed_and_search_say_what_to_install(modelless_stack: Stack):
    async def scenario():
        async with Client(target(modelless_stack)) as client:
            for tool, arguments in [("fs_embed", {}), ("fs_search", {"query": "bread"})]:
                result = await client.call_tool(tool, arguments)
                assert result.is_error is True, (tool, result)
                text = result.content[0].text
                assert "model not found in" in text and "llmbasedos-model-minilm" in text, text
            read = await client.call_tool("fs_read", {"path": "/recipes/bread.md"})
            assert read.is_error is False
            assert "Sourdough" in read.structured_content["content"]
            status = await client.call_tool("fs_index_status", {})
            assert status.is_error is False and status.structured_content["files"] == 0

    asyncio.run(scenario())


def test_a_missing_path_to_index_is_not_found_as_data(semantic_stack: Stack):
    # semantic's SourceMissing is typed; fs maps it without reading its text.
    answer = unix_call(semantic_stack.gateway_socket, jsonrpc("mcp.fs.embed", {"path": "/nope"}))
    error = answer["error"]
    assert "data" in error, error
    assert error["data"]["kind"] == "not_found", error
    assert error["data"]["hint"]["method"] == "mcp.fs.list", error
