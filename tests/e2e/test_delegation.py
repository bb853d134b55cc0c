"""Workflows act with the rights of the client that started them (issue 16
item 7, issue 17 item 4): a licensed gateway with two token holders, one
whose tier forbids writing files; the agent, a UNIX peer named in
auth.delegates, sends each run's calls on behalf of its caller. Without the
delegate entry the same calls are refused (a non-delegate's on_behalf_of)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import secrets
from pathlib import Path

import pytest
from conftest import Stack, unix_call
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TIERS = """
tiers:
  READER:
    allow: ["*"]
    deny: ["mcp.fs.write", "fs_write"]
  WRITER:
    allow: ["*"]
"""

WORKFLOW = """
id: note
input_schema:
  type: object
  properties: {name: {type: string}}
steps:
  - id: write
    mcp:
      method: mcp.fs.write
      params: {path: "/{{ inputs.name }}.txt", content: "written", mode: overwrite}
"""



def delegation_stack(tmp_path: Path, delegates: list, slots: int | None = None) -> Stack:
    root = tmp_path / "files"
    root.mkdir()
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "note.yaml").write_text(WORKFLOW)
    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({"docker": {"socket": str(tmp_path / "no-docker.sock")}}))
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_backend("fs", "llmbasedos-fs", env={"LLMBASEDOS_FS_ROOT": str(root)})
    stack.publish_caps("agent", "llmbasedos-agent")
    stack.start_backend("agent", "llmbasedos-agent", env={
        "LLMBASEDOS_AGENT_CONFIG": str(config),
        "LLMBASEDOS_AGENT_WORKFLOWS": str(workflows),
        "LLMBASEDOS_AGENT_STATE_DIR": str(tmp_path / "agent-state"),
        "LLMBASEDOS_AGENT_GATEWAY_SOCKET": str(stack.gateway_socket),
    })
    (tmp_path / "tiers.yaml").write_text(TIERS)
    (tmp_path / "lic.key").write_text("tier: WRITER\nuser_id: e2e\n")
    stack.reader = secrets.token_urlsafe(24)
    digest = lambda token: hashlib.sha256(token.encode()).hexdigest()  # noqa: E731
    limits = {"backend_timeout_secs": 30}
    if slots is not None:
        limits["max_concurrent_requests"] = slots
    stack.start_gateway(overrides={
        "auth": {
            "tokens": [
                {"name": "writer", "sha256": digest(stack.token)},
                {"name": "reader", "sha256": digest(stack.reader), "tier": "READER"},
            ],
            "delegates": delegates,
        },
        "licence": {
            "key": str(tmp_path / "lic.key"),
            "keys_dir": str(tmp_path / "keys"),
            "tiers": str(tmp_path / "tiers.yaml"),
            "allow_unsigned": True,
            "state_dir": str(tmp_path / "state"),
        },
        "limits": limits,
    })
    stack.fs_root = root
    return stack


def client_as(stack: Stack, token: str):
    headers = {"Authorization": f"Bearer {token}"}
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=headers))


async def run_note(stack: Stack, token: str, name: str):
    async with Client(client_as(stack, token)) as client:
        return await client.call_tool("agent_runWorkflow", {"id": "note", "inputs": {"name": name}, "wait": True})


def me() -> str:
    return str(os.getuid())


@pytest.fixture
def delegated(tmp_path: Path):
    # By user name, as a packaged gateway.yaml names llmuser.
    import pwd

    stack = delegation_stack(tmp_path, [pwd.getpwuid(os.getuid()).pw_name])
    yield stack
    stack.stop()


@pytest.fixture
def undelegated(tmp_path: Path):
    stack = delegation_stack(tmp_path, [])
    yield stack
    stack.stop()


def test_a_workflow_runs_with_its_callers_rights(delegated: Stack):
    refused = asyncio.run(run_note(delegated, delegated.reader, "reader"))
    text = refused.content[0].text
    assert refused.is_error is True, text
    # The gateway's permission refusal, as the failed step's error.
    assert "mcp.fs.write is not allowed for this client's tier (READER)" in text, text
    assert not (delegated.fs_root / "reader.txt").exists()

    allowed = asyncio.run(run_note(delegated, delegated.token, "writer"))
    assert allowed.is_error is False, allowed.content[0].text
    assert (delegated.fs_root / "writer.txt").read_text() == "written"


def test_a_non_delegates_on_behalf_of_is_refused(undelegated: Stack):
    # The agent is not in auth.delegates: its calls for the writer are
    # refused, never run as the agent's own (WRITER) tier.
    refused = asyncio.run(run_note(undelegated, undelegated.token, "writer"))
    text = refused.content[0].text
    assert refused.is_error is True, text
    assert "delegation_refused" in json.dumps(refused.structured_content) or "auth.delegates" in text, text
    # The refusal names the fix exactly: the agent's user as a delegate
    # (packaged: `auth.delegates: [llmuser]`).
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    assert f"add `auth.delegates: [{user}]` to gateway.yaml" in text, text
    assert not (undelegated.fs_root / "writer.txt").exists()


def test_a_run_started_as_the_agents_own_user_needs_no_delegate(undelegated: Stack):
    # As luca-shell starts a workflow as llmuser, the agent's own user: the
    # agent passes uid:<me> on, which is no delegation, so it runs (with
    # that uid's own rights) though the agent is not a delegate.
    message = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "mcp.agent.runWorkflow",
                          "params": {"id": "note", "inputs": {"name": "mine"}, "wait": True}})
    answer = unix_call(undelegated.gateway_socket, message, timeout=60)
    assert "result" in answer, answer
    assert answer["result"].get("status") == "succeeded", answer
    assert (undelegated.fs_root / "mine.txt").read_text() == "written"


def test_waiting_runs_holding_every_slot_do_not_starve_their_steps(tmp_path: Path):
    # Two slots per identity. Two waiting runWorkflow calls over the UNIX
    # socket hold both of uid:<me>'s slots; the agent, a delegate with the
    # same uid (as under `llmbasedos up`), makes the runs' inner calls on
    # behalf of uid:<me>. They take the delegate's own slots, so both runs
    # finish instead of their steps waiting behind the calls that wait for
    # them.
    stack = delegation_stack(tmp_path, [int(me())], slots=2)
    try:
        def run(name: str) -> dict:
            message = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "mcp.agent.runWorkflow",
                                  "params": {"id": "note", "inputs": {"name": name}, "wait": True}})
            return unix_call(stack.gateway_socket, message, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(run, ["one", "two"]))
        assert all("result" in answer for answer in answers), answers
        assert (stack.fs_root / "one.txt").read_text() == "written"
        assert (stack.fs_root / "two.txt").read_text() == "written"
    finally:
        stack.stop()
