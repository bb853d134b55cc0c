//! The llmbasedos gateway: one MCP endpoint for every host.
//!
//! [`run`]`(config, listeners, shutdown)` serves listeners it is given
//! until `shutdown`; the binary (`main.rs`) only parses its arguments and
//! configuration and runs it in `server_kit::Lifecycle`.
//!
//! - [`config`]: the two-stage configuration (`/etc/llmbasedos/gateway.yaml`).
//! - [`registry`]: services from `<caps dir>/*.cap.json`, watched live;
//!   methods, MCP tools and a reconnecting connection pool per service.
//! - [`dispatch`]: the one dispatcher every transport feeds: the classic
//!   vocabulary (the original Python llmbasedos's method names) and standard MCP of both eras (2025-11-25, 2026-07-28).
//! - [`tool_result`]: the fast path of a backend tool's result: its text
//!   wrapped as the MCP tool result, never parsed nor re-serialized.
//! - [`front`]: the descriptor budget the connection caps come from,
//!   the backoff of failing accepts, rate-limited refusal logs.
//! - [`transport`]: Streamable HTTP and WebSocket (with the Host/Origin and
//!   bearer-token guard), the UNIX socket (SO_PEERCRED), the stdio bridge.
//! - [`upstream`]: third-party MCP servers run as stdio children, their
//!   tools published under a prefix.
//! - [`llm`]: the LLM proxy behind `mcp.llm.chat` (an OpenAI-compatible
//!   chat completions API, streamed or whole).
//!
//! The gateway knows no capability's internals: a service is its caps file
//! and its socket.

pub mod config;
pub mod dispatch;
pub mod front;
pub mod licensing;
pub mod llm;
pub mod registry;
mod run;
pub mod tool_result;
pub mod transport;
pub mod upstream;

pub use run::{Listeners, run};
