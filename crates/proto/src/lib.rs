//! The wire vocabulary of llmbasedos: JSON-RPC 2.0 messages and error codes,
//! the MCP message types of both protocol eras, the framing codecs (NUL for
//! backends, newline for stdio) and the caps.json model.
//!
//! This crate knows nothing about sockets, systemd or any capability; it is
//! shared by the server framework, the gateway and the clients.
//!
//! - [`jsonrpc`]: requests, notifications, responses, strict envelope parsing.
//! - [`error`]: error objects and codes (standard and per-service).
//! - [`codec`]: delimiter framing with a size bound.
//! - [`caps`]: the capability contract, validated and compiled at load.
//! - [`mcp`]: MCP types for protocol 2025-11-25 and 2026-07-28.
//! - [`text`]: a peer's text bounded for error messages, escaped for logs.
//! - [`json`]: JSON strings escaped a machine word at a time (large text in results).

pub mod caps;
pub mod codec;
pub mod error;
pub mod json;
pub mod jsonrpc;
pub mod mcp;
pub mod text;
pub mod time;

pub use caps::{Caps, CapsError, CompiledCaps, CompiledMethod, MethodSpec};
pub use codec::{DEFAULT_MAX_MESSAGE, DelimitedCodec, Frame};
pub use error::{ErrorData, ErrorHint, ErrorObject, ServiceCodes, code};
pub use jsonrpc::{Incoming, InvalidMessage, Message, Notification, Request, RequestId, Response};
