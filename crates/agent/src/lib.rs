//! The agent engine: workflows over MCP tools, the LLM, HTTP and Docker; this branch holds its Docker step runner and its schedules.
pub mod docker;
pub mod schedule;
