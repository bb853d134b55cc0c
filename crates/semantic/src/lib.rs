//! Semantic search over a tree of files: chunking by text structure, local
//! embeddings (all-MiniLM-L6-v2 on ONNX Runtime) and a crash-safe
//! persistent vector index. Typed inputs and results, one typed error; it
//! knows nothing of MCP or JSON-RPC (the fs server's handlers do).
//!
//! The pieces:
//! - [`vpath`]: the one virtual-path type ([`VirtualPath`]): `/`-rooted,
//!   normalised, malformed ones refused; the fs server re-exports it as
//!   `fs::vpath`, so the server and the indexer agree on every path.
//! - [`source`]: the [`Source`] trait the indexer reads files through (the
//!   fs server implements it over its confined root) and the walk with
//!   ignore files and excludes.
//! - [`chunk`]: texts into chunks of at most 254 word pieces, cut at
//!   headings, paragraphs and lines, with line ranges.
//! - [`embed`]: the [`Embedder`] (tokenizer, ONNX session, mean pooling,
//!   normalisation) in one of two [`Precision`]s, fp32 or int8.
//! - [`index`]: the [`Index`]: metadata in redb, vectors in usearch, the
//!   incremental update and the search.

pub mod chunk;
pub mod embed;
pub mod error;
pub mod index;
pub mod locate;
pub mod source;
pub mod vpath;

pub use embed::{Embedder, Precision};
pub use error::{ErrorKind, SemanticError};
pub use index::{Counters, Hit, Index, Progress, Settings, SkippedFile, Status, Target};
pub use source::{DirSource, Source};
pub use vpath::VirtualPath;
