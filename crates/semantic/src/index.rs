//! The persistent index: metadata and vectors in a redb database (the
//! truth), the vectors again, compact, in a usearch HNSW graph (a cache
//! that finds candidates fast), and the incremental update over a
//! [`Source`].
//!
//! # What the graph holds
//!
//! The graph keeps each vector as 384 `i8` (usearch `ScalarKind::I8`), not
//! 384 `f32`: 384 bytes a vector instead of 1,536, so a million chunks take
//! about 0.4 GB of vectors in memory instead of 1.5 GB, which alone was over
//! the fs server's 1 GiB RSS target. The vectors are unit vectors under
//! cosine, which ignores a vector's length, so each is scaled until its
//! largest component is ±127 and rounded ([`quantised`]): the whole `i8`
//! range is used (usearch's own cast scales by the length and truncates,
//! which leaves a 384-d unit vector about a dozen levels). The graph only
//! finds candidates: a search asks it for [`candidates`]`(top_k)` keys,
//! reads their `f32` vectors from the database in the read transaction that
//! reads the chunk records, ranks them by the exact cosine with the query
//! and returns the best `top_k` with that exact score. So a score is never
//! a quantised one, and `i8` costs recall only where the true top `top_k`
//! is not among the candidates (the benchmark prints recall@10 against
//! exact brute force at 10k, 100k and 1M chunks).
//!
//! # Crash safety
//!
//! Files in the index directory: `meta.redb` and `vectors.i8.usearch`.
//!
//! - Every change is one redb write transaction, which is atomic and
//!   durable: a file's record, its chunks (path, line range, text) and
//!   their vectors go in or out together, and the transaction bumps the
//!   `generation`. Chunk keys come from a counter in the same database and
//!   are never reused, so a key names one vector forever.
//! - Removing a chunk records its key as a tombstone (with the generation)
//!   in the same transaction.
//! - The in-memory usearch graph is changed only after the transaction
//!   commits, so it never holds anything the database does not.
//! - Saving writes the graph to `vectors.i8.usearch.tmp`, fsyncs it,
//!   renames it over `vectors.i8.usearch` and fsyncs the directory; only
//!   then does a transaction record `saved_generation` and drop the
//!   tombstones up to it. A rename is atomic, so `vectors.i8.usearch` is
//!   always a whole graph of some committed state at or after
//!   `saved_generation`.
//! - The graph of earlier versions, `vectors.usearch` (f32 vectors), is
//!   never read: it is removed at open, and a graph file that is not an
//!   `i8` graph of 384 dimensions is not loaded. Either way the open starts
//!   from an empty graph, which is the rebuild below, and saves the result
//!   at once, so the rebuild is paid once. The graph is a cache of the
//!   database, so no state of these files loses anything.
//!
//! Loading therefore reconciles exactly: the graph's keys are a subset of
//! (database keys ∪ tombstones). Removing every tombstoned key and adding,
//! from the database, every key the graph lacks leaves the graph's key set
//! equal to the database's; the load then checks that the sizes agree and,
//! should they not (a foreign or damaged file), rebuilds the graph from the
//! database. A SIGKILL at any moment loses at most the uncommitted work of
//! the update that was running; the next update redoes it. (The database's
//! keys, and each key's path and precision, are read from the file records,
//! one per file, which list their chunks' keys: an open parses no chunk
//! record, and reads a stored vector only for a key the graph lacks.)
//!
//! # Content-addressed chunks
//!
//! Each chunk record carries its content address, [`chunk_hash`] of the
//! model, the precision and the text as embedded, and the multimap
//! `chunk_hashes` maps every address to the live keys that have it. Both
//! change in the transaction that adds or removes the chunk, so they
//! cannot disagree. An update embeds only the chunks whose address has no
//! live vector (in the file's old chunks or anywhere in the index, or
//! earlier in the same batch of files); the others get a copy of a stored
//! vector under a new key, so keys are still never reused and the graph,
//! the tombstones and the reconciliation above are unchanged. An index
//! made before the addresses existed gets them at open, in one
//! transaction, recorded as `chunk_hashes` version 1 in `meta`.
//!
//! # Precisions never mix
//!
//! Every file record and chunk record names the [`Precision`] that
//! embedded it (absent in an index from before precisions: fp32, the only
//! one there was). An update re-embeds every file whose record names
//! another precision than the embedder's, unchanged or not, and the
//! content address includes the precision, so no vector of the other
//! model is reused. Until that update has run, a search answers only from
//! the chunks of the query's precision (the graph keeps the precision of
//! every key beside its path): the two models' vectors are never compared.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use usearch::{IndexOptions, MetricKind, ScalarKind};

use crate::chunk::{ChunkOptions, chunk};
use crate::embed::{BATCH, DIMENSIONS, Embedder, MODEL_NAME, Precision};
use crate::error::SemanticError;
use crate::source::{self, Source, WalkOptions};

const FILES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("files");
const CHUNKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("chunks");
const VECTORS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("vectors");
const TOMBSTONES: TableDefinition<'_, u64, u64> = TableDefinition::new("tombstones");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const META_TEXT: TableDefinition<'_, &str, &str> = TableDefinition::new("meta_text");
/// Content address (hex) → the live chunk keys with it.
const CHUNK_HASHES: MultimapTableDefinition<'_, &str, u64> =
    MultimapTableDefinition::new("chunk_hashes");
/// The version of the chunk addresses in `meta` (absent: an index from
/// before them, migrated at open).
const CHUNK_HASHES_VERSION_KEY: &str = "chunk_hashes";
const CHUNK_HASHES_VERSION: u64 = 1;
/// The precision every index made before precisions were recorded
/// embedded in.
const LEGACY_PRECISION: Precision = Precision::Fp32;

fn legacy_precision() -> Precision {
    LEGACY_PRECISION
}

const DATABASE_FILE: &str = "meta.redb";
/// The graph, `i8` vectors (see the module's documentation). A new name
/// for a new format: no version reads a graph of another kind.
const VECTORS_FILE: &str = "vectors.i8.usearch";
const VECTORS_TEMPORARY: &str = "vectors.i8.usearch.tmp";
/// The graph files of versions before `i8` (f32 vectors), removed at open.
const LEGACY_VECTORS_FILES: &[&str] = &["vectors.usearch", "vectors.usearch.tmp"];
/// How the graph stores a vector.
const GRAPH_SCALAR: ScalarKind = ScalarKind::I8;
/// redb's page cache. Its default, 1 GiB, would let an open that reads
/// every stored vector (a rebuild) or a long run of searches grow the
/// process past the fs server's RSS target on its own; searches read a few
/// dozen vectors each, and a bulk read gains little from a larger cache.
const DATABASE_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// A search asks the graph for `max(RESCORE_FACTOR × top_k,
/// RESCORE_MINIMUM)` candidates and ranks them by their exact cosine.
pub const RESCORE_FACTOR: usize = 4;
pub const RESCORE_MINIMUM: usize = 40;

/// How many candidates a search for `top_k` hits takes from the graph.
pub fn candidates(top_k: usize) -> usize {
    top_k.saturating_mul(RESCORE_FACTOR).max(RESCORE_MINIMUM)
}

/// What an update reads and how it cuts.
#[derive(Clone, Debug)]
pub struct Settings {
    pub walk: WalkOptions,
    /// Files larger than this are skipped.
    pub max_file_bytes: u64,
    pub chunk: ChunkOptions,
    /// Files changed per database transaction.
    pub files_per_commit: usize,
    /// How often a long update saves the vector graph, so that a crash
    /// costs at most this much reconciliation at the next open.
    pub save_interval: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            walk: WalkOptions::default(),
            max_file_bytes: 4 * 1024 * 1024,
            chunk: ChunkOptions::default(),
            files_per_commit: 32,
            save_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// Most skipped files one update lists; all of them are counted.
pub const SKIPPED_LIMIT: usize = 100;

/// A file an update did not index, and why: a file left out in silence
/// cannot be found and reads as "not there" (issue 13).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// What one update did, file by file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Files the walk found.
    pub files_seen: u64,
    /// Files (new or changed) chunked and embedded.
    pub files_embedded: u64,
    /// Files with the recorded size and time: not read.
    pub files_unchanged: u64,
    /// Files whose size or time changed but whose content did not: read
    /// and hashed, not embedded.
    pub files_rehashed: u64,
    /// Files gone from the tree, removed from the index.
    pub files_removed: u64,
    /// Files not indexed: binary, too large or unreadable.
    pub files_skipped: u64,
    /// The first [`SKIPPED_LIMIT`] of them, with why.
    pub skipped: Vec<SkippedFile>,
    /// Chunks the model embedded: texts with no live vector.
    pub chunks_embedded: u64,
    /// Chunks of changed files stored with a copy of a vector the index
    /// already had (same text, model and precision), or embedded once for
    /// several identical chunks of this update.
    pub chunks_reused: u64,
    pub chunks_removed: u64,
}

impl Counters {
    fn skip(&mut self, path: &str, reason: String) {
        self.files_skipped += 1;
        if self.skipped.len() < SKIPPED_LIMIT {
            self.skipped.push(SkippedFile {
                path: path.to_owned(),
                reason,
            });
        }
    }
}

/// What an update indexes: a file or directory (virtual path) of a source.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub source: &'a dyn Source,
    pub path: &'a str,
    /// Whether subdirectories are indexed too.
    pub recursive: bool,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("path", &self.path)
            .field("recursive", &self.recursive)
            .finish_non_exhaustive()
    }
}

/// Where an update is, for progress reports.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub files_done: u64,
    pub files_total: u64,
    pub chunks_embedded: u64,
    /// The file being worked on.
    pub path: &'a str,
}

/// One result of a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub path: String,
    /// Cosine similarity of the query and the chunk.
    pub score: f32,
    pub start_line: u32,
    pub end_line: u32,
    /// The chunk's text, cut to [`SNIPPET_CHARS`] characters.
    pub snippet: String,
}

/// Longest snippet in a [`Hit`].
pub const SNIPPET_CHARS: usize = 400;

/// What the index holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub files: u64,
    pub chunks: u64,
    pub model: Option<String>,
    /// Seconds since the epoch of the last change.
    pub updated: Option<u64>,
    pub generation: u64,
    pub saved_generation: u64,
    /// What the last load had to repair (0 after a clean shutdown).
    pub reconciled_vectors: u64,
    /// Chunks the last update embedded (0 before any).
    pub last_chunks_embedded: u64,
    /// Chunks the last update stored with a reused vector.
    pub last_chunks_reused: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FileRecord {
    size: u64,
    modified_ns: i64,
    sha256: String,
    keys: Vec<u64>,
    /// What embedded the chunks: a file of another precision than the
    /// embedder's is embedded again, even when unchanged.
    #[serde(default = "legacy_precision")]
    precision: Precision,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ChunkRecord {
    path: String,
    start_line: u32,
    end_line: u32,
    text: String,
    /// The content address ([`chunk_hash`], hex); empty only in an index
    /// from before them, until the open that migrates it.
    #[serde(default)]
    hash: String,
    /// What embedded it (its file's precision), kept with the key in the
    /// graph so that a search compares only vectors of one model.
    #[serde(default = "legacy_precision")]
    precision: Precision,
}

/// A chunk's content address: SHA-256 over the model's name, the
/// precision and the text exactly as embedded, each preceded by its length
/// (so no two triples run together into the same bytes).
pub fn chunk_hash(model: &str, precision: &str, text: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [model, precision, text] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())
}

/// A file read and chunked, waiting for its vectors.
struct Prepared {
    path: String,
    record: FileRecord,
    chunks: Vec<ChunkRecord>,
}

/// Indexes of `counts` in batches of at most `batch`, shortest first, so
/// that the texts of one batch have nearly the same length and the padding
/// to the longest is small.
fn batches_by_length(counts: &[usize], batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&index| counts[index]);
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// The graph and, per key, the path and precision of its chunk (for
/// scoped searches, and searches that must not compare two models).
struct Vectors {
    graph: usearch::Index,
    owners: HashMap<u64, Owner>,
    /// Keys per precision (indexed by [`precision_slot`]): a search needs a
    /// filter only while the index holds another precision than its own.
    counts: [usize; Precision::ALL.len()],
}

/// Whose a key's vector is.
struct Owner {
    path: Arc<str>,
    precision: Precision,
}

fn precision_slot(precision: Precision) -> usize {
    match precision {
        Precision::Fp32 => 0,
        Precision::Int8 => 1,
    }
}

impl Vectors {
    fn own(&mut self, key: u64, path: Arc<str>, precision: Precision) {
        if let Some(old) = self.owners.insert(key, Owner { path, precision }) {
            self.counts[precision_slot(old.precision)] -= 1;
        }
        self.counts[precision_slot(precision)] += 1;
    }

    fn disown(&mut self, key: u64) {
        if let Some(old) = self.owners.remove(&key) {
            self.counts[precision_slot(old.precision)] -= 1;
        }
    }

    fn clear(&mut self) {
        self.owners.clear();
        self.counts = [0; Precision::ALL.len()];
    }
}

/// The index of one tree. Searches run while an update embeds; updates run
/// one at a time.
pub struct Index {
    dir: PathBuf,
    db: Database,
    vectors: RwLock<Vectors>,
    writer: Mutex<()>,
    reconciled: u64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn new_graph() -> Result<usearch::Index, String> {
    usearch::Index::new(&IndexOptions {
        dimensions: DIMENSIONS,
        metric: MetricKind::Cos,
        // Vectors given as i8 (see `quantised`) and kept so; the exact
        // f32 vectors are in the database.
        quantization: GRAPH_SCALAR,
        connectivity: 0,
        expansion_add: 0,
        expansion_search: 0,
        multi: false,
    })
    .map_err(|error| error.to_string())
}

fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn vector_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A unit vector as the graph stores it: scaled so that its largest
/// component is ±127, then rounded. Cosine does not see the scale, and the
/// whole `i8` range carries the direction.
fn quantised(vector: &[f32]) -> Vec<i8> {
    let largest = vector
        .iter()
        .fold(0.0_f32, |largest, value| largest.max(value.abs()));
    // `f32::max` passes over NaN, so this is zero for a vector of zeros
    // and NaNs alone.
    if largest <= 0.0 {
        return vec![0; vector.len()];
    }
    let scale = 127.0 / largest;
    #[allow(clippy::cast_possible_truncation)]
    vector
        .iter()
        .map(|value| (value * scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// The dot product, in eight lanes so that the compiler can vectorise it
/// (a sum in order cannot be reordered); the search and the brute force
/// share it, so they give one vector one score.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0_f32; 8];
    let (a_lanes, a_rest) = a.as_chunks::<8>();
    let (b_lanes, b_rest) = b.as_chunks::<8>();
    for (a, b) in a_lanes.iter().zip(b_lanes) {
        for ((lane, a), b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    let rest: f32 = a_rest.iter().zip(b_rest).map(|(a, b)| a * b).sum();
    lanes.iter().sum::<f32>() + rest
}

fn norm(vector: &[f32]) -> f32 {
    dot(vector, vector).sqrt()
}

/// The cosine of two vectors from their dot product and lengths.
fn cosine(dot: f32, a_norm: f32, b_norm: f32) -> f32 {
    let lengths = a_norm * b_norm;
    if lengths > 0.0 { dot / lengths } else { 0.0 }
}

/// Vectors a rebuild at open quantises before it adds them together.
const RECONCILE_BATCH: usize = 8_192;

/// Below this many vectors, [`add_all`] adds on the calling thread.
const PARALLEL_ADD_MINIMUM: usize = 256;
/// A graph's first vectors, added on one thread.
const SEQUENTIAL_START: usize = 4_096;

/// Adds `vectors` to the graph, on every core for a large batch: an HNSW
/// insertion is a search, about as costly as a query, so a million
/// vectors (a rebuild at open, a benchmark) take most of an hour on one
/// core of these machines. usearch takes concurrent additions (a thread
/// context each, up to the cores `reserve` provided for). The first
/// [`SEQUENTIAL_START`] vectors of a graph go in one at a time: threads
/// that insert into a nearly empty graph do not see each other's nodes and
/// can leave parts of it unconnected (seen here: a 600-vector graph built
/// on two threads that missed true neighbours, which no rescoring brings
/// back).
fn add_all(graph: &usearch::Index, vectors: &[(u64, Vec<i8>)]) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let alone = vectors
        .len()
        .min(SEQUENTIAL_START.saturating_sub(graph.size()));
    let (first, vectors) = vectors.split_at(alone);
    for (key, vector) in first {
        graph.add(*key, vector).map_err(|error| error.to_string())?;
    }
    if threads < 2 || vectors.len() < PARALLEL_ADD_MINIMUM {
        for (key, vector) in vectors {
            graph.add(*key, vector).map_err(|error| error.to_string())?;
        }
        return Ok(());
    }
    let slice = vectors.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = vectors
            .chunks(slice)
            .map(|part| {
                scope.spawn(move || -> Result<(), String> {
                    for (key, vector) in part {
                        graph.add(*key, vector).map_err(|error| error.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .map_err(|_| "a graph thread panicked".to_owned())?
        })
    })
}

/// Grows the graph's capacity ahead of `more` additions.
fn reserve(graph: &usearch::Index, more: usize) -> Result<(), String> {
    let needed = graph.size() + more;
    if needed > graph.capacity() {
        let capacity = needed.max(graph.capacity() * 2).max(1024);
        graph.reserve(capacity).map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// What [`Index::vectors_for`] made of a group of files.
struct Resolved {
    changes: Vec<Change>,
    /// Whether it stopped for a cancellation (some files left out).
    cancelled: bool,
}

/// One file's change, ready to commit.
enum Change {
    /// New or changed content: replace the chunks.
    Replace {
        path: String,
        record: FileRecord,
        chunks: Vec<(ChunkRecord, Vec<f32>)>,
    },
    /// Same content, new size or time.
    Touch { path: String, record: FileRecord },
    /// Gone, or no longer indexable.
    Remove { path: String },
}

impl Index {
    /// Opens (or creates) the index in `dir` and reconciles the vector
    /// graph with the database (see the module's documentation).
    pub fn open(dir: &Path) -> Result<Index, SemanticError> {
        let fail = |reason: String| SemanticError::index(dir, reason);
        std::fs::create_dir_all(dir).map_err(|error| fail(format!("cannot create it: {error}")))?;
        let _ = std::fs::remove_file(dir.join(VECTORS_TEMPORARY));
        // An f32 graph of an earlier version: a cache of the database like
        // the new one, so dropping it loses nothing (the open rebuilds).
        for legacy in LEGACY_VECTORS_FILES {
            let _ = std::fs::remove_file(dir.join(legacy));
        }
        let db = Database::builder()
            .set_cache_size(DATABASE_CACHE_BYTES)
            .create(dir.join(DATABASE_FILE))
            .map_err(|error| fail(format!("{DATABASE_FILE}: {error}")))?;
        let txn = db.begin_write().map_err(|error| fail(error.to_string()))?;
        {
            // Creates the tables on first use.
            txn.open_table(FILES)
                .map_err(|error| fail(error.to_string()))?;
            txn.open_table(CHUNKS)
                .map_err(|error| fail(error.to_string()))?;
            txn.open_table(VECTORS)
                .map_err(|error| fail(error.to_string()))?;
            txn.open_table(TOMBSTONES)
                .map_err(|error| fail(error.to_string()))?;
            txn.open_table(META)
                .map_err(|error| fail(error.to_string()))?;
            txn.open_table(META_TEXT)
                .map_err(|error| fail(error.to_string()))?;
            txn.open_multimap_table(CHUNK_HASHES)
                .map_err(|error| fail(error.to_string()))?;
        }
        txn.commit().map_err(|error| fail(error.to_string()))?;
        migrate_chunk_hashes(&db).map_err(&fail)?;

        let mut graph = new_graph().map_err(&fail)?;
        let file = dir.join(VECTORS_FILE);
        let mut loaded = false;
        if file.exists() {
            let text = file.to_string_lossy();
            // `load` takes the file's scalar kind and dimensions: a graph
            // of another kind is not this version's and is rebuilt.
            loaded = graph.load(&text).is_ok()
                && graph.dimensions() == DIMENSIONS
                && graph.scalar_kind() == GRAPH_SCALAR;
            if !loaded {
                drop(graph);
                graph = new_graph().map_err(&fail)?;
            }
        }
        let mut index = Index {
            dir: dir.to_path_buf(),
            db,
            vectors: RwLock::new(Vectors {
                graph,
                owners: HashMap::new(),
                counts: [0; Precision::ALL.len()],
            }),
            writer: Mutex::new(()),
            reconciled: 0,
        };
        index.reconciled = index.reconcile(loaded)?;
        if index.reconciled > 0 {
            // Saved now, so that a rebuilt or repaired graph is not redone
            // at every open until the next update.
            index.save_graph()?;
        }
        Ok(index)
    }

    fn fail(&self, reason: impl std::fmt::Display) -> SemanticError {
        SemanticError::index(&self.dir, reason)
    }

    /// Brings the graph's key set to the database's; returns how many
    /// vectors had to be removed or added. Keys and their owners come from
    /// the file records (one parse per file, not per chunk).
    fn reconcile(&self, loaded: bool) -> Result<u64, SemanticError> {
        let mut vectors = self
            .vectors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let txn = self.db.begin_read().map_err(|error| self.fail(error))?;
        let files = txn.open_table(FILES).map_err(|error| self.fail(error))?;
        let chunks = txn.open_table(CHUNKS).map_err(|error| self.fail(error))?;
        let stored = txn.open_table(VECTORS).map_err(|error| self.fail(error))?;
        let tombstones = txn
            .open_table(TOMBSTONES)
            .map_err(|error| self.fail(error))?;
        let mut repaired = 0_u64;
        if loaded {
            for entry in tombstones.iter().map_err(|error| self.fail(error))? {
                let (key, _) = entry.map_err(|error| self.fail(error))?;
                if vectors.graph.contains(key.value()) {
                    vectors
                        .graph
                        .remove(key.value())
                        .map_err(|error| self.fail(error))?;
                    repaired += 1;
                }
            }
        }
        let count =
            usize::try_from(chunks.len().map_err(|error| self.fail(error))?).unwrap_or(usize::MAX);
        vectors.owners.reserve(count);
        let add = |vectors: &mut Vectors, repaired: &mut u64| -> Result<(), SemanticError> {
            // Added in batches, on every core; a batch is 384 bytes a
            // vector, so a rebuild holds little beside the graph.
            let mut missing: Vec<(u64, Vec<i8>)> = Vec::new();
            reserve(&vectors.graph, count.saturating_sub(vectors.graph.size()))
                .map_err(|error| self.fail(error))?;
            for entry in files.iter().map_err(|error| self.fail(error))? {
                let (path, value) = entry.map_err(|error| self.fail(error))?;
                let path = path.value();
                let record: FileRecord = serde_json::from_slice(value.value())
                    .map_err(|error| self.fail(format!("file {path}: {error}")))?;
                let shared: Arc<str> = Arc::from(path);
                for key in record.keys {
                    vectors.own(key, shared.clone(), record.precision);
                    if !vectors.graph.contains(key) {
                        let vector = stored
                            .get(key)
                            .map_err(|error| self.fail(error))?
                            .ok_or_else(|| {
                                self.fail(format!("chunk {key} has no vector in {DATABASE_FILE}"))
                            })?;
                        missing.push((key, quantised(&vector_of(vector.value()))));
                        if missing.len() == RECONCILE_BATCH {
                            add_all(&vectors.graph, &missing).map_err(|error| self.fail(error))?;
                            *repaired += missing.len() as u64;
                            missing.clear();
                        }
                    }
                }
            }
            add_all(&vectors.graph, &missing).map_err(|error| self.fail(error))?;
            *repaired += missing.len() as u64;
            Ok(())
        };
        add(&mut vectors, &mut repaired)?;
        if vectors.graph.size() != count || vectors.owners.len() != count {
            // Not a graph of this database: rebuild it from the database.
            vectors.graph.reset().map_err(|error| self.fail(error))?;
            vectors.clear();
            add(&mut vectors, &mut repaired)?;
        }
        Ok(repaired)
    }

    /// The directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files and chunks held, the model, the last change.
    pub fn status(&self) -> Result<Status, SemanticError> {
        let txn = self.db.begin_read().map_err(|error| self.fail(error))?;
        let files = txn.open_table(FILES).map_err(|error| self.fail(error))?;
        let chunks = txn.open_table(CHUNKS).map_err(|error| self.fail(error))?;
        let meta = txn.open_table(META).map_err(|error| self.fail(error))?;
        let text = txn
            .open_table(META_TEXT)
            .map_err(|error| self.fail(error))?;
        let number = |name: &str| -> Result<Option<u64>, SemanticError> {
            Ok(meta
                .get(name)
                .map_err(|error| self.fail(error))?
                .map(|value| value.value()))
        };
        Ok(Status {
            files: files.len().map_err(|error| self.fail(error))?,
            chunks: chunks.len().map_err(|error| self.fail(error))?,
            model: text
                .get("model")
                .map_err(|error| self.fail(error))?
                .map(|value| value.value().to_owned()),
            updated: number("updated")?,
            generation: number("generation")?.unwrap_or(0),
            saved_generation: number("saved_generation")?.unwrap_or(0),
            reconciled_vectors: self.reconciled,
            last_chunks_embedded: number("last_chunks_embedded")?.unwrap_or(0),
            last_chunks_reused: number("last_chunks_reused")?.unwrap_or(0),
        })
    }

    /// Indexes `path` (a file or directory, virtual) of `source`: new and
    /// changed files are embedded, unchanged ones skipped, deleted ones
    /// removed. Work is committed as it goes; on cancellation what was
    /// committed stays and the result is [`SemanticError::Cancelled`].
    pub fn update(
        &self,
        embedder: &Embedder,
        target: Target<'_>,
        settings: &Settings,
        progress: &mut dyn FnMut(&Progress<'_>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Counters, SemanticError> {
        let Target {
            source,
            path,
            recursive,
        } = target;
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = source::parse_path(path, "")?.to_string();
        let files = source::walk(source, &start, recursive, &settings.walk, cancelled)?;
        let mut counters = Counters {
            files_seen: files.len() as u64,
            ..Counters::default()
        };
        let known = self.known_files(&start, recursive)?;
        let walked: HashSet<&str> = files.iter().map(|file| file.path.as_str()).collect();

        let mut pending = Vec::new();
        let mut group: Vec<Prepared> = Vec::new();
        let mut pending_chunks = 0;
        let mut last_save = std::time::Instant::now();
        let total = files.len() as u64;
        let outcome = (|| -> Result<(), SemanticError> {
            for (done, file) in files.iter().enumerate() {
                if cancelled() {
                    return Err(SemanticError::Cancelled);
                }
                progress(&Progress {
                    files_done: done as u64,
                    files_total: total,
                    chunks_embedded: counters.chunks_embedded,
                    path: &file.path,
                });
                let precision = embedder.precision();
                let previous = known.get(&file.path);
                if let Some(previous) = previous
                    && previous.size == file.size
                    && previous.modified_ns == file.modified_ns
                    && previous.precision == precision
                {
                    counters.files_unchanged += 1;
                    continue;
                }
                let content = if file.size > settings.max_file_bytes {
                    Err(format!(
                        "it is {} bytes, more than the {}-byte read limit (max_read_bytes)",
                        file.size, settings.max_file_bytes
                    ))
                } else {
                    source
                        .read(&file.path, settings.max_file_bytes)
                        .map_err(|error| error.to_string())
                        .and_then(|bytes| {
                            text_of(bytes)
                                .ok_or_else(|| "it is not text (binary, or not UTF-8)".to_owned())
                        })
                };
                let text = match content {
                    Ok(text) => text,
                    Err(reason) => {
                        counters.skip(&file.path, reason);
                        if previous.is_some() {
                            pending.push(Change::Remove {
                                path: file.path.clone(),
                            });
                        }
                        continue;
                    }
                };
                let sha256 = hex_sha256(text.as_bytes());
                if let Some(previous) = previous
                    && previous.sha256 == sha256
                    && previous.precision == precision
                {
                    counters.files_rehashed += 1;
                    pending.push(Change::Touch {
                        path: file.path.clone(),
                        record: FileRecord {
                            size: file.size,
                            modified_ns: file.modified_ns,
                            sha256,
                            keys: previous.keys.clone(),
                            precision,
                        },
                    });
                    continue;
                }
                let pieces = chunk(&text, &settings.chunk, &|text| embedder.count_tokens(text));
                pending_chunks += pieces.len();
                group.push(Prepared {
                    path: file.path.clone(),
                    record: FileRecord {
                        size: file.size,
                        modified_ns: file.modified_ns,
                        sha256,
                        keys: Vec::new(),
                        precision,
                    },
                    chunks: pieces
                        .into_iter()
                        .map(|piece| ChunkRecord {
                            hash: chunk_hash(MODEL_NAME, precision.name(), &piece.text),
                            path: file.path.clone(),
                            start_line: piece.start_line,
                            end_line: piece.end_line,
                            text: piece.text,
                            precision,
                        })
                        .collect(),
                });
                if group.len() + pending.len() >= settings.files_per_commit || pending_chunks >= 512
                {
                    pending_chunks = 0;
                    let changes = self.vectors_for(
                        embedder,
                        std::mem::take(&mut group),
                        std::mem::take(&mut pending),
                        &mut counters,
                        cancelled,
                    )?;
                    counters.chunks_removed += self.apply(changes.changes)?;
                    if changes.cancelled {
                        return Err(SemanticError::Cancelled);
                    }
                    if last_save.elapsed() >= settings.save_interval {
                        self.save()?;
                        last_save = std::time::Instant::now();
                    }
                }
            }
            for path in known.keys() {
                if !walked.contains(path.as_str()) {
                    counters.files_removed += 1;
                    pending.push(Change::Remove { path: path.clone() });
                }
            }
            Ok(())
        })();
        // What was committed is kept, even when cancelled; after a walk to
        // the end the last files get their vectors (a cancellation seen
        // between two batches keeps the files whose vectors are all there).
        let outcome = outcome.and_then(|()| {
            let changes = self.vectors_for(
                embedder,
                std::mem::take(&mut group),
                std::mem::take(&mut pending),
                &mut counters,
                cancelled,
            )?;
            let cancelled = changes.cancelled;
            counters.chunks_removed += self.apply(changes.changes)?;
            if cancelled {
                Err(SemanticError::Cancelled)
            } else {
                Ok(())
            }
        });
        counters.chunks_removed += self.apply(pending)?;
        self.record_last_update(&counters)?;
        self.save()?;
        progress(&Progress {
            files_done: total,
            files_total: total,
            chunks_embedded: counters.chunks_embedded,
            path: &start,
        });
        outcome.map(|()| counters)
    }

    /// Gives the chunks of `group` their vectors: a copy of a stored one
    /// where the index has a live chunk with the same address, else
    /// embedded — once per address, in batches of nearly equal token
    /// counts. Returns `changes` followed by the replacement of every file
    /// whose chunks all have vectors (all of them unless cancelled).
    fn vectors_for(
        &self,
        embedder: &Embedder,
        group: Vec<Prepared>,
        mut changes: Vec<Change>,
        counters: &mut Counters,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Resolved, SemanticError> {
        let mut known: HashMap<String, Vec<f32>> = HashMap::new();
        let mut missing: Vec<&ChunkRecord> = Vec::new();
        {
            let txn = self.db.begin_read().map_err(|error| self.fail(error))?;
            let hashes = txn
                .open_multimap_table(CHUNK_HASHES)
                .map_err(|error| self.fail(error))?;
            let stored = txn.open_table(VECTORS).map_err(|error| self.fail(error))?;
            let mut seen = HashSet::new();
            for chunk in group.iter().flat_map(|file| &file.chunks) {
                if !seen.insert(chunk.hash.as_str()) {
                    continue;
                }
                let key = match hashes
                    .get(chunk.hash.as_str())
                    .map_err(|error| self.fail(error))?
                    .next()
                {
                    Some(key) => Some(key.map_err(|error| self.fail(error))?.value()),
                    None => None,
                };
                let vector = match key {
                    Some(key) => stored
                        .get(key)
                        .map_err(|error| self.fail(error))?
                        .map(|value| vector_of(value.value())),
                    None => None,
                };
                match vector {
                    Some(vector) => {
                        known.insert(chunk.hash.clone(), vector);
                    }
                    None => missing.push(chunk),
                }
            }
        }
        let counts: Vec<usize> = missing
            .iter()
            .map(|chunk| embedder.count_tokens(&chunk.text))
            .collect();
        let mut embedded: HashSet<String> = HashSet::new();
        let mut stopped = false;
        for batch in batches_by_length(&counts, BATCH) {
            if cancelled() {
                stopped = true;
                break;
            }
            let texts: Vec<&str> = batch
                .iter()
                .map(|&index| missing[index].text.as_str())
                .collect();
            let vectors = embedder.embed(&texts)?;
            if vectors.len() != batch.len() {
                return Err(SemanticError::Inference(format!(
                    "{} vectors for {} texts",
                    vectors.len(),
                    batch.len()
                )));
            }
            for (&index, vector) in batch.iter().zip(vectors) {
                known.insert(missing[index].hash.clone(), vector);
                embedded.insert(missing[index].hash.clone());
            }
            counters.chunks_embedded += batch.len() as u64;
        }
        for file in group {
            if !file
                .chunks
                .iter()
                .all(|chunk| known.contains_key(&chunk.hash))
            {
                continue;
            }
            let mut chunks = Vec::with_capacity(file.chunks.len());
            for chunk in file.chunks {
                // The first chunk of an address embedded here counts as
                // embedded; every other one reuses a vector.
                if !embedded.remove(&chunk.hash) {
                    counters.chunks_reused += 1;
                }
                let vector = known[&chunk.hash].clone();
                chunks.push((chunk, vector));
            }
            counters.files_embedded += 1;
            changes.push(Change::Replace {
                path: file.path,
                record: file.record,
                chunks,
            });
        }
        Ok(Resolved {
            changes,
            cancelled: stopped,
        })
    }

    /// Records what the last update embedded and reused, for [`Status`].
    fn record_last_update(&self, counters: &Counters) -> Result<(), SemanticError> {
        let txn = self.db.begin_write().map_err(|error| self.fail(error))?;
        {
            let mut meta = txn.open_table(META).map_err(|error| self.fail(error))?;
            meta.insert("last_chunks_embedded", counters.chunks_embedded)
                .map_err(|error| self.fail(error))?;
            meta.insert("last_chunks_reused", counters.chunks_reused)
                .map_err(|error| self.fail(error))?;
        }
        txn.commit().map_err(|error| self.fail(error))
    }

    /// The records of the files the index holds at or beneath `start`
    /// (only its direct children when not recursive).
    fn known_files(
        &self,
        start: &str,
        recursive: bool,
    ) -> Result<HashMap<String, FileRecord>, SemanticError> {
        let txn = self.db.begin_read().map_err(|error| self.fail(error))?;
        let files = txn.open_table(FILES).map_err(|error| self.fail(error))?;
        let mut known = HashMap::new();
        let range = files.range(start..).map_err(|error| self.fail(error))?;
        for entry in range {
            let (key, value) = entry.map_err(|error| self.fail(error))?;
            let path = key.value();
            if !path.starts_with(start) {
                break;
            }
            if !source::is_beneath(path, start) {
                continue;
            }
            if !recursive && path != start {
                let rest = if start == "/" {
                    &path[1..]
                } else {
                    &path[start.len() + 1..]
                };
                if rest.contains('/') {
                    continue;
                }
            }
            let record: FileRecord = serde_json::from_slice(value.value())
                .map_err(|error| self.fail(format!("file {path}: {error}")))?;
            known.insert(path.to_owned(), record);
        }
        Ok(known)
    }

    /// Commits changes in one transaction, then applies them to the graph.
    /// Returns the number of chunks removed.
    fn apply(&self, changes: Vec<Change>) -> Result<u64, SemanticError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let mut removed_keys = Vec::new();
        let mut added: Vec<(u64, Arc<str>, Precision, Vec<f32>)> = Vec::new();
        let txn = self.db.begin_write().map_err(|error| self.fail(error))?;
        {
            let mut files = txn.open_table(FILES).map_err(|error| self.fail(error))?;
            let mut chunks = txn.open_table(CHUNKS).map_err(|error| self.fail(error))?;
            let mut vectors = txn.open_table(VECTORS).map_err(|error| self.fail(error))?;
            let mut tombstones = txn
                .open_table(TOMBSTONES)
                .map_err(|error| self.fail(error))?;
            let mut hashes = txn
                .open_multimap_table(CHUNK_HASHES)
                .map_err(|error| self.fail(error))?;
            let mut meta = txn.open_table(META).map_err(|error| self.fail(error))?;
            let mut text = txn
                .open_table(META_TEXT)
                .map_err(|error| self.fail(error))?;
            let get =
                |meta: &redb::Table<'_, &str, u64>, name: &str| -> Result<u64, SemanticError> {
                    Ok(meta
                        .get(name)
                        .map_err(|error| self.fail(error))?
                        .map_or(0, |value| value.value()))
                };
            let generation = get(&meta, "generation")? + 1;
            let mut next_key = get(&meta, "next_key")?;
            for change in changes {
                let path = match &change {
                    Change::Replace { path, .. }
                    | Change::Touch { path, .. }
                    | Change::Remove { path } => path.clone(),
                };
                let old: Option<FileRecord> =
                    match files.get(path.as_str()).map_err(|error| self.fail(error))? {
                        Some(value) => Some(
                            serde_json::from_slice(value.value())
                                .map_err(|error| self.fail(format!("file {path}: {error}")))?,
                        ),
                        None => None,
                    };
                let mut remove_old = |files: &mut redb::Table<'_, &str, &[u8]>,
                                      chunks: &mut redb::Table<'_, u64, &[u8]>,
                                      hashes: &mut redb::MultimapTable<'_, &str, u64>|
                 -> Result<(), SemanticError> {
                    if let Some(old) = &old {
                        for &key in &old.keys {
                            let removed = chunks
                                .remove(key)
                                .map_err(|error| self.fail(error))?
                                .map(|value| serde_json::from_slice::<ChunkRecord>(value.value()))
                                .transpose()
                                .map_err(|error| self.fail(format!("chunk {key}: {error}")))?;
                            if let Some(removed) = removed {
                                hashes
                                    .remove(removed.hash.as_str(), key)
                                    .map_err(|error| self.fail(error))?;
                            }
                            vectors.remove(key).map_err(|error| self.fail(error))?;
                            tombstones
                                .insert(key, generation)
                                .map_err(|error| self.fail(error))?;
                            removed_keys.push(key);
                        }
                        files
                            .remove(path.as_str())
                            .map_err(|error| self.fail(error))?;
                    }
                    Ok(())
                };
                match change {
                    Change::Remove { .. } => remove_old(&mut files, &mut chunks, &mut hashes)?,
                    Change::Touch { record, .. } => {
                        let bytes =
                            serde_json::to_vec(&record).map_err(|error| self.fail(error))?;
                        files
                            .insert(path.as_str(), bytes.as_slice())
                            .map_err(|error| self.fail(error))?;
                    }
                    Change::Replace {
                        mut record,
                        chunks: new_chunks,
                        ..
                    } => {
                        remove_old(&mut files, &mut chunks, &mut hashes)?;
                        let shared: Arc<str> = Arc::from(path.as_str());
                        for (chunk, vector) in new_chunks {
                            let key = next_key;
                            next_key += 1;
                            let bytes =
                                serde_json::to_vec(&chunk).map_err(|error| self.fail(error))?;
                            chunks
                                .insert(key, bytes.as_slice())
                                .map_err(|error| self.fail(error))?;
                            hashes
                                .insert(chunk.hash.as_str(), key)
                                .map_err(|error| self.fail(error))?;
                            vectors
                                .insert(key, vector_bytes(&vector).as_slice())
                                .map_err(|error| self.fail(error))?;
                            record.keys.push(key);
                            added.push((key, shared.clone(), chunk.precision, vector));
                        }
                        let bytes =
                            serde_json::to_vec(&record).map_err(|error| self.fail(error))?;
                        files
                            .insert(path.as_str(), bytes.as_slice())
                            .map_err(|error| self.fail(error))?;
                    }
                }
            }
            meta.insert("generation", generation)
                .map_err(|error| self.fail(error))?;
            meta.insert("next_key", next_key)
                .map_err(|error| self.fail(error))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |duration| duration.as_secs());
            meta.insert("updated", now)
                .map_err(|error| self.fail(error))?;
            text.insert("model", MODEL_NAME)
                .map_err(|error| self.fail(error))?;
        }
        txn.commit().map_err(|error| self.fail(error))?;

        // Committed: now the graph may follow.
        let mut vectors = self
            .vectors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &removed_keys {
            vectors
                .graph
                .remove(*key)
                .map_err(|error| self.fail(error))?;
            vectors.disown(*key);
        }
        reserve(&vectors.graph, added.len()).map_err(|error| self.fail(error))?;
        let quantised_vectors: Vec<(u64, Vec<i8>)> = added
            .iter()
            .map(|(key, _, _, vector)| (*key, quantised(vector)))
            .collect();
        add_all(&vectors.graph, &quantised_vectors).map_err(|error| self.fail(error))?;
        for (key, path, precision, _) in added {
            vectors.own(key, path, precision);
        }
        Ok(removed_keys.len() as u64)
    }

    /// Writes the graph atomically if it changed since the last save.
    fn save(&self) -> Result<(), SemanticError> {
        let status = self.status()?;
        if status.generation == status.saved_generation {
            return Ok(());
        }
        self.save_graph()
    }

    /// Writes the graph atomically and records the generation it holds.
    /// The caller holds the writer lock or is the open, so the graph is of
    /// the generation read here.
    fn save_graph(&self) -> Result<(), SemanticError> {
        let status = self.status()?;
        let temporary = self.dir.join(VECTORS_TEMPORARY);
        {
            let vectors = self
                .vectors
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            vectors
                .graph
                .save(&temporary.to_string_lossy())
                .map_err(|error| self.fail(format!("saving {VECTORS_TEMPORARY}: {error}")))?;
        }
        let sync = |path: &Path| -> std::io::Result<()> { std::fs::File::open(path)?.sync_all() };
        sync(&temporary)
            .map_err(|error| self.fail(format!("syncing {VECTORS_TEMPORARY}: {error}")))?;
        std::fs::rename(&temporary, self.dir.join(VECTORS_FILE))
            .map_err(|error| self.fail(format!("renaming {VECTORS_TEMPORARY}: {error}")))?;
        sync(&self.dir).map_err(|error| self.fail(format!("syncing the directory: {error}")))?;
        let txn = self.db.begin_write().map_err(|error| self.fail(error))?;
        {
            let mut meta = txn.open_table(META).map_err(|error| self.fail(error))?;
            meta.insert("saved_generation", status.generation)
                .map_err(|error| self.fail(error))?;
            let mut tombstones = txn
                .open_table(TOMBSTONES)
                .map_err(|error| self.fail(error))?;
            tombstones
                .retain(|_, generation| generation > status.generation)
                .map_err(|error| self.fail(error))?;
        }
        txn.commit().map_err(|error| self.fail(error))?;
        Ok(())
    }

    /// Embeds `query` and searches with it (see [`Index::search`]).
    pub fn search_text(
        &self,
        embedder: &Embedder,
        query: &str,
        top_k: usize,
        scope: Option<&str>,
    ) -> Result<Vec<Hit>, SemanticError> {
        if query.trim().is_empty() {
            return Err(SemanticError::InvalidValue(
                "the query is empty; say in words what you are looking for".to_owned(),
            ));
        }
        let vector = embedder.embed(&[query])?.remove(0);
        self.search(&vector, embedder.precision(), top_k, scope)
    }

    /// The `top_k` chunks nearest to `query` (a unit vector embedded in
    /// `precision`) among the chunks embedded in that precision, optionally
    /// only those at or beneath the virtual path `scope`.
    pub fn search(
        &self,
        query: &[f32],
        precision: Precision,
        top_k: usize,
        scope: Option<&str>,
    ) -> Result<Vec<Hit>, SemanticError> {
        if query.len() != DIMENSIONS {
            return Err(SemanticError::InvalidValue(format!(
                "a query vector has {DIMENSIONS} dimensions, not {}",
                query.len()
            )));
        }
        let scope = match scope {
            Some(scope) => Some(source::parse_path(scope, "scope ")?.to_string()),
            None => None,
        };
        let wanted = candidates(top_k);
        let query_graph = quantised(query);
        let matches = {
            let vectors = self
                .vectors
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let own = vectors.counts[precision_slot(precision)];
            if own == 0 || top_k == 0 {
                return Ok(Vec::new());
            }
            let mixed = own != vectors.graph.size();
            match scope.as_deref() {
                None | Some("/") if !mixed => vectors.graph.search(&query_graph, wanted),
                None | Some("/") => vectors.graph.filtered_search(&query_graph, wanted, |key| {
                    vectors
                        .owners
                        .get(&key)
                        .is_some_and(|owner| owner.precision == precision)
                }),
                Some(scope) => vectors.graph.filtered_search(&query_graph, wanted, |key| {
                    vectors.owners.get(&key).is_some_and(|owner| {
                        owner.precision == precision && source::is_beneath(&owner.path, scope)
                    })
                }),
            }
            .map_err(|error| self.fail(error))?
        };
        // The graph's order is of quantised vectors: rank its candidates by
        // the exact cosine of the stored f32 vectors, in the transaction
        // that then reads the chunks.
        let txn = self.db.begin_read().map_err(|error| self.fail(error))?;
        let stored = txn.open_table(VECTORS).map_err(|error| self.fail(error))?;
        let query_norm = norm(query);
        let mut ranked = Vec::with_capacity(matches.keys.len());
        for &key in &matches.keys {
            // A key removed between the search and this read is skipped.
            let Some(vector) = stored.get(key).map_err(|error| self.fail(error))? else {
                continue;
            };
            let vector = vector_of(vector.value());
            ranked.push((cosine(dot(query, &vector), query_norm, norm(&vector)), key));
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.truncate(top_k);
        self.hits(&txn, &ranked)
    }

    /// The hits of `(score, key)` pairs, in their order; keys gone from the
    /// database are skipped.
    fn hits(
        &self,
        txn: &redb::ReadTransaction,
        ranked: &[(f32, u64)],
    ) -> Result<Vec<Hit>, SemanticError> {
        let chunks = txn.open_table(CHUNKS).map_err(|error| self.fail(error))?;
        let mut hits = Vec::with_capacity(ranked.len());
        for &(score, key) in ranked {
            let Some(value) = chunks.get(key).map_err(|error| self.fail(error))? else {
                continue;
            };
            let record: ChunkRecord = serde_json::from_slice(value.value())
                .map_err(|error| self.fail(format!("chunk {key}: {error}")))?;
            hits.push(Hit {
                path: record.path,
                score,
                start_line: record.start_line,
                end_line: record.end_line,
                snippet: snippet(&record.text),
            });
        }
        Ok(hits)
    }

    /// The exact answer of [`Index::search`] (no scope) for each of
    /// `queries`, by brute force over every stored vector of `precision`:
    /// one pass over the database for all the queries. For tests and
    /// benchmarks that measure the graph's recall; O(chunks × queries).
    #[doc(hidden)]
    pub fn exact_search(
        &self,
        queries: &[&[f32]],
        precision: Precision,
        top_k: usize,
    ) -> Result<Vec<Vec<Hit>>, SemanticError> {
        let txn = self.db.begin_read().map_err(|error| self.fail(error))?;
        let stored = txn.open_table(VECTORS).map_err(|error| self.fail(error))?;
        let norms: Vec<f32> = queries.iter().map(|query| norm(query)).collect();
        // Per query the best `top_k` so far, worst first.
        let mut best: Vec<Vec<(f32, u64)>> = vec![Vec::with_capacity(top_k + 1); queries.len()];
        {
            let vectors = self
                .vectors
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for entry in stored.iter().map_err(|error| self.fail(error))? {
                let (key, value) = entry.map_err(|error| self.fail(error))?;
                let key = key.value();
                if !vectors
                    .owners
                    .get(&key)
                    .is_some_and(|owner| owner.precision == precision)
                {
                    continue;
                }
                let vector = vector_of(value.value());
                let vector_norm = norm(&vector);
                for ((query, query_norm), best) in queries.iter().zip(&norms).zip(&mut best) {
                    let score = cosine(dot(query, &vector), *query_norm, vector_norm);
                    if best.len() < top_k || best.first().is_some_and(|worst| score > worst.0) {
                        let at = best.partition_point(|entry| entry.0 < score);
                        best.insert(at, (score, key));
                        if best.len() > top_k {
                            best.remove(0);
                        }
                    }
                }
            }
        }
        best.into_iter()
            .map(|mut best| {
                best.reverse();
                self.hits(&txn, &best)
            })
            .collect()
    }

    /// Checks the index's invariants: every file record's chunks exist and
    /// name it, every chunk belongs to a record and has its vector in the
    /// database and in the graph, and the graph holds nothing else. For
    /// tests; O(chunks).
    pub fn check(&self) -> Result<(), String> {
        let txn = self.db.begin_read().map_err(|error| error.to_string())?;
        let files = txn.open_table(FILES).map_err(|error| error.to_string())?;
        let chunks = txn.open_table(CHUNKS).map_err(|error| error.to_string())?;
        let stored = txn.open_table(VECTORS).map_err(|error| error.to_string())?;
        let mut owned = HashSet::new();
        for entry in files.iter().map_err(|error| error.to_string())? {
            let (path, value) = entry.map_err(|error| error.to_string())?;
            let record: FileRecord =
                serde_json::from_slice(value.value()).map_err(|error| error.to_string())?;
            for key in record.keys {
                let chunk = chunks
                    .get(key)
                    .map_err(|error| error.to_string())?
                    .ok_or_else(|| format!("{}: chunk {key} is missing", path.value()))?;
                let chunk: ChunkRecord =
                    serde_json::from_slice(chunk.value()).map_err(|error| error.to_string())?;
                if chunk.path != path.value() {
                    return Err(format!(
                        "chunk {key} names {}, not {}",
                        chunk.path,
                        path.value()
                    ));
                }
                if chunk.precision != record.precision {
                    return Err(format!(
                        "chunk {key} was embedded in {}, its file {} in {}",
                        chunk.precision,
                        path.value(),
                        record.precision
                    ));
                }
                owned.insert(key);
            }
        }
        let vectors = self
            .vectors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut count = 0;
        for entry in chunks.iter().map_err(|error| error.to_string())? {
            let (key, _) = entry.map_err(|error| error.to_string())?;
            let key = key.value();
            count += 1;
            if !owned.contains(&key) {
                return Err(format!("chunk {key} belongs to no file"));
            }
            if stored
                .get(key)
                .map_err(|error| error.to_string())?
                .is_none()
            {
                return Err(format!("chunk {key} has no stored vector"));
            }
            if !vectors.graph.contains(key) {
                return Err(format!("chunk {key} is not in the graph"));
            }
        }
        if stored.len().map_err(|error| error.to_string())? != count {
            return Err("stored vectors without chunks".to_owned());
        }
        if vectors.graph.size() as u64 != count {
            return Err(format!(
                "the graph holds {} vectors for {count} chunks",
                vectors.graph.size()
            ));
        }
        // Content addresses: every chunk is listed under its own, nothing
        // else is listed, and the chunks of one address share one vector.
        let hashes = txn
            .open_multimap_table(CHUNK_HASHES)
            .map_err(|error| error.to_string())?;
        let mut listed = 0_u64;
        for entry in hashes.iter().map_err(|error| error.to_string())? {
            let (hash, keys) = entry.map_err(|error| error.to_string())?;
            let hash = hash.value();
            let mut first: Option<Vec<u8>> = None;
            for key in keys {
                let key = key.map_err(|error| error.to_string())?.value();
                listed += 1;
                let chunk = chunks
                    .get(key)
                    .map_err(|error| error.to_string())?
                    .ok_or_else(|| format!("address {hash} lists chunk {key}, which is gone"))?;
                let chunk: ChunkRecord =
                    serde_json::from_slice(chunk.value()).map_err(|error| error.to_string())?;
                if chunk.hash != hash {
                    return Err(format!(
                        "address {hash} lists chunk {key}, whose address is {:?}",
                        chunk.hash
                    ));
                }
                let vector = stored
                    .get(key)
                    .map_err(|error| error.to_string())?
                    .map(|value| value.value().to_vec());
                match &first {
                    None => first = vector,
                    Some(first) if Some(first) != vector.as_ref() => {
                        return Err(format!("chunks of address {hash} have different vectors"));
                    }
                    Some(_) => {}
                }
            }
        }
        if listed != count {
            return Err(format!(
                "{listed} chunks listed by address for {count} chunks"
            ));
        }
        Ok(())
    }

    /// Adds files of chunks with given vectors, bypassing the embedder
    /// (benchmarks: large indexes of synthetic vectors). Each file is one
    /// transaction, taken from `files` only when its turn comes, so a large
    /// index never sits in memory whole; the graph is saved once, at the
    /// end.
    #[doc(hidden)]
    pub fn insert_vectors(
        &self,
        precision: Precision,
        files: impl IntoIterator<Item = (String, Vec<(String, Vec<f32>)>)>,
    ) -> Result<(), SemanticError> {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (path, texts_and_vectors) in files {
            let chunks = texts_and_vectors
                .into_iter()
                .enumerate()
                .map(|(line, (text, vector))| {
                    let line = u32::try_from(line + 1).unwrap_or(u32::MAX);
                    // Addressed by the vector too: synthetic vectors of equal
                    // texts differ, and must never be reused for a real one.
                    let hash = chunk_hash("synthetic", &hex_sha256(&vector_bytes(&vector)), &text);
                    (
                        ChunkRecord {
                            path: path.clone(),
                            start_line: line,
                            end_line: line,
                            text,
                            hash,
                            precision,
                        },
                        vector,
                    )
                })
                .collect();
            self.apply(vec![Change::Replace {
                path,
                record: FileRecord {
                    size: 0,
                    modified_ns: 0,
                    sha256: String::new(),
                    keys: Vec::new(),
                    precision,
                },
                chunks,
            }])?;
        }
        self.save()
    }

    /// What the index holds in memory beside the database's cache: the
    /// graph's bytes (usearch's own count) and the key → owner map's (its
    /// table, estimated from its capacity; the paths are shared per file).
    #[doc(hidden)]
    pub fn memory(&self) -> (usize, usize) {
        let vectors = self
            .vectors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = std::mem::size_of::<(u64, Owner)>() + 1;
        (
            vectors.graph.memory_usage(),
            vectors.owners.capacity() * entry,
        )
    }
}

/// Gives the chunks of an index from before content addresses their
/// address (from the stored text, the recorded model and the precision all
/// such indexes used) and fills `chunk_hashes`, in one transaction that
/// also records the version, so a crash leaves the index wholly before or
/// wholly after. Nothing else changes: no key, vector or generation.
fn migrate_chunk_hashes(db: &Database) -> Result<(), String> {
    let error = |error: &dyn std::fmt::Display| format!("migrating chunk addresses: {error}");
    {
        let txn = db.begin_read().map_err(|e| error(&e))?;
        let meta = txn.open_table(META).map_err(|e| error(&e))?;
        let version = meta
            .get(CHUNK_HASHES_VERSION_KEY)
            .map_err(|e| error(&e))?
            .map_or(0, |value| value.value());
        if version >= CHUNK_HASHES_VERSION {
            return Ok(());
        }
    }
    let txn = db.begin_write().map_err(|e| error(&e))?;
    {
        let mut chunks = txn.open_table(CHUNKS).map_err(|e| error(&e))?;
        let mut hashes = txn
            .open_multimap_table(CHUNK_HASHES)
            .map_err(|e| error(&e))?;
        let mut meta = txn.open_table(META).map_err(|e| error(&e))?;
        let model = txn
            .open_table(META_TEXT)
            .map_err(|e| error(&e))?
            .get("model")
            .map_err(|e| error(&e))?
            .map_or_else(|| MODEL_NAME.to_owned(), |value| value.value().to_owned());
        // In slices of keys, so memory stays bounded on a large index.
        let mut next = 0_u64;
        loop {
            let mut slice = Vec::new();
            for entry in chunks.range(next..).map_err(|e| error(&e))?.take(1024) {
                let (key, value) = entry.map_err(|e| error(&e))?;
                let record: ChunkRecord = serde_json::from_slice(value.value())
                    .map_err(|e| error(&format!("chunk {}: {e}", key.value())))?;
                slice.push((key.value(), record));
            }
            let Some(&(last, _)) = slice.last() else {
                break;
            };
            for (key, mut record) in slice {
                if record.hash.is_empty() {
                    record.hash = chunk_hash(&model, LEGACY_PRECISION.name(), &record.text);
                    let bytes = serde_json::to_vec(&record).map_err(|e| error(&e))?;
                    chunks
                        .insert(key, bytes.as_slice())
                        .map_err(|e| error(&e))?;
                }
                hashes
                    .insert(record.hash.as_str(), key)
                    .map_err(|e| error(&e))?;
            }
            next = last + 1;
        }
        meta.insert(CHUNK_HASHES_VERSION_KEY, CHUNK_HASHES_VERSION)
            .map_err(|e| error(&e))?;
    }
    txn.commit().map_err(|e| error(&e))
}

/// The text of a file, or `None` when it looks binary (a NUL byte in its
/// first 8 KiB, or not UTF-8).
fn text_of(bytes: Vec<u8>) -> Option<String> {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_texts_of_nearly_equal_length() {
        // (token counts, batch size, batches as indexes)
        type Case = (&'static [usize], usize, &'static [&'static [usize]]);
        let cases: &[Case] = &[
            (&[], 2, &[]),
            (&[5], 2, &[&[0]]),
            (&[200, 3, 150, 4, 201], 2, &[&[1, 3], &[2, 0], &[4]]),
            // Equal counts keep their order.
            (&[7, 7, 7], 2, &[&[0, 1], &[2]]),
            (&[9, 1, 5], 8, &[&[1, 2, 0]]),
        ];
        for (counts, batch, expected) in cases {
            let batches = batches_by_length(counts, *batch);
            let expected: Vec<Vec<usize>> = expected.iter().map(|b| b.to_vec()).collect();
            assert_eq!(batches, expected, "{counts:?} by {batch}");
        }
    }

    #[test]
    fn a_chunk_address_covers_model_precision_and_text() {
        let base = chunk_hash("all-MiniLM-L6-v2", "fp32", "some text");
        assert_eq!(base.len(), 64);
        assert_eq!(base, chunk_hash("all-MiniLM-L6-v2", "fp32", "some text"));
        for other in [
            chunk_hash("all-MiniLM-L6-v2", "int8", "some text"),
            chunk_hash("other-model", "fp32", "some text"),
            chunk_hash("all-MiniLM-L6-v2", "fp32", "some text "),
            // Lengths keep the parts apart.
            chunk_hash("all-MiniLM-L6-v2f", "p32", "some text"),
        ] {
            assert_ne!(base, other);
        }
    }

    /// `count` unit vectors around `centres` directions (the same ones for
    /// every seed), deterministic in `seed`.
    fn clustered(count: usize, centres: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = 1_u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1_u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut unit = |scale: f32, around: Option<&[f32]>| {
            let mut vector: Vec<f32> = (0..DIMENSIONS).map(|_| uniform() * scale).collect();
            if let Some(around) = around {
                for (value, centre) in vector.iter_mut().zip(around) {
                    *value += centre;
                }
            }
            crate::embed::normalise(&mut vector);
            vector
        };
        let centres: Vec<Vec<f32>> = (0..centres).map(|_| unit(1.0, None)).collect();
        // The points' own stream, from the seed.
        for _ in 0..seed * 97 {
            unit(1.0, None);
        }
        (0..count)
            .map(|index| unit(0.06, Some(&centres[index % centres.len()])))
            .collect()
    }

    fn synthetic_file(path: &str, vectors: &[Vec<f32>]) -> (String, Vec<(String, Vec<f32>)>) {
        let chunks = vectors
            .iter()
            .enumerate()
            .map(|(line, vector)| (format!("{path} chunk {line}"), vector.clone()))
            .collect();
        (path.to_owned(), chunks)
    }

    fn answers(index: &Index, queries: &[Vec<f32>]) -> Vec<Vec<Hit>> {
        queries
            .iter()
            .map(|query| {
                index
                    .search(query, Precision::Fp32, 10, None)
                    .expect("search")
            })
            .collect()
    }

    #[test]
    fn an_index_with_the_f32_graph_of_earlier_versions_is_rebuilt_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let vectors = clustered(600, 20, 3);
        let queries = clustered(20, 20, 5);
        let index = Index::open(dir.path()).expect("open");
        index
            .insert_vectors(
                Precision::Fp32,
                [
                    synthetic_file("/a.md", &vectors[..300]),
                    synthetic_file("/b.md", &vectors[300..]),
                ],
            )
            .expect("insert");
        let expected = answers(&index, &queries);
        let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        assert_eq!(
            index
                .exact_search(&refs, Precision::Fp32, 10)
                .expect("exact"),
            expected,
            "the graph with rescoring answers what brute force does"
        );
        drop(index);

        // What an earlier version left: its f32 graph of the same keys,
        // under the old name, and no i8 graph.
        let old = usearch::Index::new(&IndexOptions {
            dimensions: DIMENSIONS,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: 0,
            expansion_add: 0,
            expansion_search: 0,
            multi: false,
        })
        .expect("graph");
        {
            let db = Database::open(dir.path().join(DATABASE_FILE)).expect("database");
            let txn = db.begin_read().expect("read");
            let stored = txn.open_table(VECTORS).expect("vectors");
            old.reserve(vectors.len()).expect("reserve");
            for entry in stored.iter().expect("iterate") {
                let (key, value) = entry.expect("entry");
                old.add(key.value(), &vector_of(value.value()))
                    .expect("add");
            }
        }
        let legacy = dir.path().join(LEGACY_VECTORS_FILES[0]);
        old.save(&legacy.to_string_lossy()).expect("save");
        std::fs::remove_file(dir.path().join(VECTORS_FILE)).expect("remove");

        let index = Index::open(dir.path()).expect("open over the f32 graph");
        assert!(!legacy.exists(), "the f32 graph is removed");
        assert!(
            dir.path().join(VECTORS_FILE).exists(),
            "the rebuilt graph is saved"
        );
        assert_eq!(index.status().expect("status").reconciled_vectors, 600);
        index.check().expect("consistent after the rebuild");
        assert_eq!(
            index.vectors.read().expect("vectors").graph.scalar_kind(),
            GRAPH_SCALAR
        );
        assert_eq!(answers(&index, &queries), expected, "the same hits");
        drop(index);
        let index = Index::open(dir.path()).expect("reopen");
        assert_eq!(
            index.status().expect("status").reconciled_vectors,
            0,
            "the rebuild was saved: the next open loads it"
        );
        assert_eq!(answers(&index, &queries), expected);
        drop(index);

        // An f32 graph under the new name (a foreign file) is not loaded
        // either: the graph is rebuilt from the database.
        old.save(&dir.path().join(VECTORS_FILE).to_string_lossy())
            .expect("save");
        let index = Index::open(dir.path()).expect("open over a foreign graph");
        assert_eq!(index.status().expect("status").reconciled_vectors, 600);
        index.check().expect("consistent after the rebuild");
        assert_eq!(answers(&index, &queries), expected);
    }

    #[test]
    fn quantised_vectors_use_the_whole_i8_range() {
        let mut vector = vec![0.0_f32; DIMENSIONS];
        vector[0] = 0.5;
        vector[1] = -0.25;
        vector[2] = 0.125;
        let stored = quantised(&vector);
        assert_eq!(&stored[..4], &[127, -64, 32, 0]);
        assert_eq!(quantised(&[0.0; 4]), vec![0; 4]);
        assert_eq!(quantised(&[f32::NAN; 4]), vec![0; 4]);
        assert_eq!(candidates(10), 40);
        assert_eq!(candidates(1), RESCORE_MINIMUM);
        assert_eq!(candidates(25), 100);
    }

    /// An index as versions before content addresses wrote it: chunk
    /// records without `hash`, no `chunk_hashes` table, no version.
    fn write_legacy_index(dir: &Path, texts: &[&str]) {
        let db = Database::create(dir.join(DATABASE_FILE)).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut files = txn.open_table(FILES).expect("files");
            let mut chunks = txn.open_table(CHUNKS).expect("chunks");
            let mut vectors = txn.open_table(VECTORS).expect("vectors");
            let mut meta = txn.open_table(META).expect("meta");
            let mut text = txn.open_table(META_TEXT).expect("meta_text");
            txn.open_table(TOMBSTONES).expect("tombstones");
            let mut keys = Vec::new();
            for (key, chunk) in texts.iter().enumerate() {
                let key = key as u64;
                let record = serde_json::json!({
                    "path": "/old.md", "start_line": key + 1, "end_line": key + 1, "text": chunk,
                });
                chunks
                    .insert(key, serde_json::to_vec(&record).expect("json").as_slice())
                    .expect("insert");
                let mut vector = vec![0.0_f32; DIMENSIONS];
                vector[key as usize % DIMENSIONS] = 1.0;
                vectors
                    .insert(key, vector_bytes(&vector).as_slice())
                    .expect("insert");
                keys.push(key);
            }
            // No precision either: the records read back as fp32.
            let record = serde_json::json!({
                "size": 1, "modified_ns": 1, "sha256": "", "keys": keys,
            });
            files
                .insert(
                    "/old.md",
                    serde_json::to_vec(&record).expect("json").as_slice(),
                )
                .expect("insert");
            meta.insert("generation", 1).expect("meta");
            meta.insert("next_key", texts.len() as u64).expect("meta");
            text.insert("model", MODEL_NAME).expect("meta");
        }
        txn.commit().expect("commit");
    }

    #[test]
    fn an_index_from_before_content_addresses_is_migrated_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Two equal texts: one address, two keys.
        let texts = ["first chunk", "second chunk", "first chunk"];
        write_legacy_index(dir.path(), &texts);
        let index = Index::open(dir.path()).expect("open");
        // Unequal vectors under one address would fail the check; these
        // are equal texts with different vectors, which a real index never
        // has, so only the addresses are checked here.
        let txn = index.db.begin_read().expect("read");
        let chunks = txn.open_table(CHUNKS).expect("chunks");
        let hashes = txn.open_multimap_table(CHUNK_HASHES).expect("hashes");
        for (key, text) in texts.iter().enumerate() {
            let record: ChunkRecord = serde_json::from_slice(
                chunks.get(key as u64).expect("get").expect("chunk").value(),
            )
            .expect("record");
            assert_eq!(record.hash, chunk_hash(MODEL_NAME, "fp32", text));
        }
        let keys_of = |text: &str| -> Vec<u64> {
            hashes
                .get(chunk_hash(MODEL_NAME, "fp32", text).as_str())
                .expect("get")
                .map(|key| key.expect("key").value())
                .collect()
        };
        assert_eq!(keys_of("first chunk"), vec![0, 2]);
        assert_eq!(keys_of("second chunk"), vec![1]);
        let meta = txn.open_table(META).expect("meta");
        assert_eq!(
            meta.get(CHUNK_HASHES_VERSION_KEY)
                .expect("get")
                .map(|value| value.value()),
            Some(CHUNK_HASHES_VERSION)
        );
        // Nothing else moved: same generation, same keys in the graph.
        assert_eq!(
            meta.get("generation").expect("get").map(|v| v.value()),
            Some(1)
        );
        drop((chunks, hashes, meta, txn));
        assert_eq!(index.status().expect("status").chunks, 3);
        drop(index);

        // Distinct texts pass every invariant, and a second open is a no-op.
        let dir = tempfile::tempdir().expect("temp dir");
        write_legacy_index(dir.path(), &["alpha", "beta", "gamma"]);
        let index = Index::open(dir.path()).expect("open");
        index.check().expect("consistent after the migration");
        let vectors = index.vectors.read().expect("vectors");
        assert_eq!(vectors.counts, [3, 0], "the legacy chunks are fp32");
        drop(vectors);
        drop(index);
        let index = Index::open(dir.path()).expect("reopen");
        index.check().expect("consistent after a reopen");
    }
}
