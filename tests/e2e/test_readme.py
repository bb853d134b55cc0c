"""The README's examples work as written: the Python SDK example is run
against a real gateway, with only its token path and URL pointed at the
test's stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, Stack


def python_example() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, f"the README should hold one Python example, found {len(blocks)}"
    return blocks[0]


def test_the_python_sdk_example_runs_as_written(stack: Stack, tmp_path: Path):
    example = python_example()
    assert "mcp.shared._" not in example, "the example must use the SDK's public API only"
    token_file = tmp_path / "gateway.token"
    token_file.write_text(stack.token + "\n")
    script = example.replace("/run/user/1000/llmbasedos/gateway.token", str(token_file)).replace(
        "http://127.0.0.1:8000/mcp", stack.url
    )
    assert script != example, "the example's token path or URL changed: update this test"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "test_echo" in run.stdout, run.stdout
