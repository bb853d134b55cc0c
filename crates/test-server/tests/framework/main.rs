//! Integration tests of the server framework, against the real
//! `llmbasedos-test-server` binary over real UNIX sockets: one binary, one
//! module per area.
//!
//! - [`wire`]: framing, malformed input, params validation, error mapping,
//!   the message limit, notifications, half-close, peer credentials.
//! - [`concurrency`]: pipelining, the in-flight bound, cancellation,
//!   progress, many connections.
//! - [`lifecycle`]: socket activation, sd-notify, idle exit, signals and
//!   drain, start-up errors, the socket file, logging.
//! - [`memory`]: what a server keeps after a burst of large answers.

mod concurrency;
mod lifecycle;
mod memory;
mod support;
mod wire;
