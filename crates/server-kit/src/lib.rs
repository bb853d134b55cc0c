//! The llmbasedos server framework: what every backend (fs, mail, sync,
//! agent) is built with.
//!
//! A server is its caps.json plus one handler per method:
//!
//! ```no_run
//! # use server_kit::{Server, HandlerError, Context};
//! # #[derive(serde::Deserialize)] struct Params { text: String }
//! # fn caps() -> proto::CompiledCaps { proto::CompiledCaps::from_json("", "x").expect("caps") }
//! let server = Server::builder(caps(), "echo.cap.json")
//!     .method("mcp.echo.say", |_context: Context, params: Params| async move {
//!         Ok::<_, HandlerError>(serde_json::json!({ "text": params.text }))
//!     })
//!     .build()?;
//! # Ok::<(), server_kit::BuildError>(())
//! ```
//!
//! A server with state gives it to the builder once; a handler that takes
//! [`State`] gets a handle to it:
//!
//! ```no_run
//! # use server_kit::{Server, HandlerError, Context, State};
//! # #[derive(serde::Deserialize)] struct Params { text: String }
//! # fn caps() -> proto::CompiledCaps { proto::CompiledCaps::from_json("", "x").expect("caps") }
//! struct Greeter { greeting: String }
//!
//! async fn say(_context: Context, greeter: State<Greeter>, params: Params)
//!     -> Result<serde_json::Value, HandlerError> {
//!     Ok(serde_json::json!({ "text": format!("{} {}", greeter.greeting, params.text) }))
//! }
//!
//! let server = Server::builder(caps(), "echo.cap.json")
//!     .with_state(Greeter { greeting: "hello".to_owned() })
//!     .method("mcp.echo.say", say)
//!     .build()?;
//! # Ok::<(), server_kit::BuildError>(())
//! ```
//!
//! The pieces:
//! - [`server`]: assembly, checked one to one against the caps; params
//!   validated with schemas compiled once, positional params mapped, the
//!   schemas' defaults filled in.
//! - [`handler`]: handlers as async functions, with or without the
//!   server's [`State`] (`Server::builder(caps).with_state(state)`).
//! - [`connection`]: one task per connection, pipelined requests answered
//!   by id, bounded in-flight, cancellation, progress.
//! - [`serve`]: `Server::serve(listener, shutdown, options)`: accept loop,
//!   idle exit, drain on shutdown.
//! - [`lifecycle`]: the one life of a service process (the servers' and
//!   the gateway's): runtime, signals to a shutdown token, READY/STATUS/
//!   STOPPING and the watchdog, removal of the sockets it bound, the drain
//!   deadline, exit status 78 for configuration errors.
//! - [`supervise`]: restarting what stopped with a growing delay (`llmbasedos
//!   up`'s children, the gateway's upstream servers).
//! - [`listener`], [`notify`], [`logging`], [`service`]: socket activation or a
//!   bound path, the sd-notify protocol, journald or stderr logging, and the
//!   `main` of every server, which runs [`Server::serve`] in the lifecycle.
//! - [`memory`]: the allocator setting that gives large message buffers
//!   back to the system after a burst.

pub mod connection;
pub mod context;
pub mod error;
pub mod handler;
pub mod lifecycle;
pub mod listener;
pub mod logging;
pub mod memory;
pub mod notify;
pub mod serve;
pub mod server;
pub mod service;
pub mod supervise;

pub use connection::ConnectionLimits;
pub use context::{Context, PeerCredentials, Progress};
pub use error::{BuildError, HandlerError};
pub use handler::State;
pub use lifecycle::{EXIT_CONFIG, Failure, Lifecycle, ShutdownSignals, Threads, runtime};
pub use serve::{ServeOptions, Stopped};
pub use server::{Defaults, Server, ServerBuilder};
pub use service::{ServeArgs, run};
pub use supervise::{Backoff, Next, Supervisor};
