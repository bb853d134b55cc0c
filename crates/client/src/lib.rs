//! Clients for llmbasedos sockets: a pipelined JSON-RPC connection over a
//! NUL-framed UNIX socket ([`Connection`]; also over the gateway's
//! WebSocket, [`connect_websocket`]) and a reconnecting pool of them
//! ([`Pool`]), and an MCP client over Streamable HTTP ([`HttpConnection`],
//! for third-party servers). The gateway reaches its backends through pools; the shell
//! reaches the gateway through a connection. No capability knowledge here.

pub mod cli;
mod connection;
mod http;
mod pool;
mod websocket;

pub use connection::{CallError, ConnectOptions, Connection, DEFAULT_ANSWER_BOUND, ProgressSender};
pub use http::{HttpConnection, take_event, web_client};
pub use pool::Pool;
pub use websocket::{WebSocketError, connect_websocket};
