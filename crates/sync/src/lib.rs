//! llmbasedos-sync: rclone jobs through a private, supervised `rclone rcd`,
//! with a history that outlives restarts.
//!
//! The pieces:
//! - [`config`]: `sync.yaml` and `sync_jobs.yaml`, parsed then resolved.
//! - [`paths`]: what a job may touch (local roots, allowed remotes,
//!   destination rules) and the allow-list of the original's `rclone_args`.
//! - [`rc`]: the rc client, whose [`rc::RcCall`] is the one allow-list of
//!   rc methods the server can call.
//! - [`rcd`]: the rcd's supervision (version detection, credentials per
//!   start, scrubbed environment, restarts with backoff).
//! - [`job`], [`history`]: a job's record and the redb history.
//! - [`engine`]: jobs from request to history, on its own runtime thread.
//! - [`handlers`]: the thin server layer: params → engine → results, and
//!   the one mapping from [`engine::SyncError`] to a handler error.

pub mod config;
pub mod engine;
pub mod handlers;
pub mod history;
pub mod job;
pub mod paths;
pub mod rc;
pub mod rcd;

use server_kit::{BuildError, Server};

/// The service's contract, shipped inside the binary.
pub const CAPS: &str = include_str!("../sync.cap.json");

/// Where the caps come from, for error messages.
pub const CAPS_ORIGIN: &str = "crates/sync/sync.cap.json";

/// Builds the sync server around a started engine.
pub fn server(engine: engine::Engine) -> Result<Server, BuildError> {
    let caps = proto::CompiledCaps::embedded(CAPS, CAPS_ORIGIN)?;
    handlers::register(Server::builder(caps, CAPS_ORIGIN).with_state(engine)).build()
}

/// At run time the caps are compiled method by method at first use
/// ([`proto::CompiledCaps::embedded`]); here every schema is compiled whole.
#[cfg(test)]
#[test]
fn the_embedded_caps_compile_whole() {
    proto::CompiledCaps::from_json(CAPS, CAPS_ORIGIN).expect("every schema of the caps compiles");
}
