//! llmbasedos-fs: files under one root directory, confined by the kernel.
//!
//! The pieces:
//! - [`vpath`]: virtual paths (`/`-rooted strings) — parsing and refusing
//!   malformed ones; never joined to a host path. The type is semantic's
//!   (`semantic::vpath`), re-exported: the indexer walks the same paths.
//! - [`ops`]: the confined operations (read, write, edit, list, tree, glob,
//!   grep, stat, mkdir, move, copy, delete) on a [`ops::Root`], a cap-std
//!   directory handle that resolves every path with
//!   `openat2(RESOLVE_BENEATH)`. Typed results and one typed error; no
//!   JSON-RPC.
//! - [`handlers`]: the thin server layer: params → operations → results,
//!   and the one mapping from the operations' error to a handler error.
//! - [`indexing`]: semantic search (the `semantic` library) over the root,
//!   read through the same handle; model and index opened on first use.
//! - [`root_index`]: the root's own index directory beneath `index_dir`,
//!   recorded for that root and locked by one server.
//! - [`uri`]: `file:///` URIs of virtual paths, for MCP resources.
//! - [`config`]: `/etc/llmbasedos/fs.yaml` and its environment overrides.

pub mod config;
pub mod handlers;
pub mod indexing;
pub mod ops;
pub mod root_index;
pub mod uri;
pub use semantic::vpath;

use std::sync::Arc;

use server_kit::{BuildError, Server};

/// The service's contract, shipped inside the binary.
pub const CAPS: &str = include_str!("../fs.cap.json");

/// Where the caps come from, for error messages.
pub const CAPS_ORIGIN: &str = "crates/fs/fs.cap.json";

/// Builds the fs server on an opened root; at most `max_heavy_operations`
/// walks, searches and embeds run at once.
pub fn server(
    root: ops::Root,
    semantic: config::SemanticConfig,
    max_heavy_operations: usize,
) -> Result<Server, BuildError> {
    let caps = proto::CompiledCaps::embedded(CAPS, CAPS_ORIGIN)?;
    let root = Arc::new(root);
    let semantic = Arc::new(indexing::Semantic::new(semantic, root.clone()));
    let state = handlers::Fs::new(root, semantic, max_heavy_operations);
    handlers::register(Server::builder(caps, CAPS_ORIGIN).with_state(state)).build()
}

/// At run time the caps are compiled method by method at first use
/// ([`proto::CompiledCaps::embedded`]); here every schema is compiled whole.
#[cfg(test)]
#[test]
fn the_embedded_caps_compile_whole() {
    proto::CompiledCaps::from_json(CAPS, CAPS_ORIGIN).expect("every schema of the caps compiles");
}
