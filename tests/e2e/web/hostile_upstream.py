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


if __name__ == "__main__":
    server.run("stdio")
