"""A third-party MCP server on stdio (official Python SDK) whose tool
descriptions carry HTML and script, for the console's escaping tests, and a
slow tool that reports progress, for its progress and cancel tests.

Usage: hostile_upstream.py
"""

import asyncio

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("hostile")

HOSTILE = '<script>alert("tool description")</script><img src=x onerror=alert("img")>'


@server.tool(description="Says hello. " + HOSTILE)
def greet(name: str) -> str:
    return f"hello {name} <script>alert('result')</script>"


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Counts to `steps`, a step every 0.3 s, reporting progress."""
    for step in range(1, steps + 1):
        await asyncio.sleep(0.3)
        await ctx.report_progress(step, steps, f"step {step}")
    return f"counted to {steps}"


# For the page benchmark: HOSTILE_EXTRA_TOOLS=N adds N plain tools.
def _extra(index: int):
    def tool(text: str, count: int = 1) -> str:
        return text * count

    tool.__name__ = f"extra_{index:03}"
    tool.__doc__ = f"Extra tool number {index}, for the console's page benchmark."
    return tool


for _index in range(int(__import__("os").environ.get("HOSTILE_EXTRA_TOOLS", "0"))):
    server.tool()(_extra(_index))


if __name__ == "__main__":
    server.run("stdio")
