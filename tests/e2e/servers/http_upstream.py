"""A third-party MCP server on Streamable HTTP, made with the official
Python SDK, for the gateway's HTTP-upstream test.

Usage: http_upstream.py PORT
"""

import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("weather-station")


@server.tool()
def temperature(city: str) -> str:
    """The temperature in a city (always mild here)."""
    return f"It is 21 °C in {city}."


@server.tool()
async def countdown(steps: int, ctx: Context) -> str:
    """Counts down, reporting progress."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
    return "lift-off"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
