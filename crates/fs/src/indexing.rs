//! Semantic search for the file service: the `semantic` library over the
//! confined root. Files are read only through [`RootSource`], which goes
//! through the cap-std [`Root`] like every other operation; the model and
//! the index are opened on first use (the server is socket-activated and
//! must start fast), and a missing model or runtime fails only embed and
//! search, with an error that says what to install. The index is the
//! root's own ([`crate::root_index`]): never another root's, never shared
//! by two servers at once.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use cap_std::fs::MetadataExt;
use semantic::source::{Entry, EntryKind, WalkOptions};
use semantic::{Counters, Embedder, Hit, Index, SemanticError, Settings, Target};
use serde::Serialize;

use crate::config::SemanticConfig;
use crate::ops::walk::{DEPTH_LIMIT, children};
use crate::ops::{EntryType, FsError, Root};
use crate::root_index::{self, OwnerError, RootIndexDir};
use crate::vpath::VirtualPath;

/// Why a semantic call failed: the library's error, or the index is not
/// this root's to use.
#[derive(Debug, thiserror::Error)]
pub enum IndexingError {
    #[error(transparent)]
    Semantic(#[from] SemanticError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// A path the request named (a search's scope) is not usable.
    #[error(transparent)]
    Path(#[from] FsError),
}

/// The indexer's view of the root: listing, metadata and reads through the
/// root handle, with the service's visibility policy (hidden names,
/// excludes) applied.
///
/// The indexer's walk is iterative (its stack is on the heap); like every
/// walk of the service it goes at most [`DEPTH_LIMIT`] levels deep: a
/// deeper directory is not listed (the walk skips it) and the log says so,
/// once per server.
#[derive(Debug)]
pub struct RootSource {
    root: Arc<Root>,
    warned_too_deep: AtomicBool,
}

impl RootSource {
    pub fn new(root: Arc<Root>) -> RootSource {
        RootSource {
            root,
            warned_too_deep: AtomicBool::new(false),
        }
    }
}

fn parse(path: &str) -> io::Result<VirtualPath> {
    VirtualPath::parse(path)
        .map_err(|problem| io::Error::new(io::ErrorKind::InvalidInput, format!("{problem:?}")))
}

fn to_io(error: FsError) -> io::Error {
    match error {
        FsError::NotFound { .. } | FsError::MissingParent { .. } => {
            io::Error::new(io::ErrorKind::NotFound, error.to_string())
        }
        FsError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

fn modified_ns(metadata: &cap_std::fs::Metadata) -> i64 {
    metadata
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(metadata.mtime_nsec())
}

fn kind(entry_type: EntryType) -> EntryKind {
    match entry_type {
        EntryType::File => EntryKind::File,
        EntryType::Directory => EntryKind::Directory,
        EntryType::Symlink | EntryType::Other => EntryKind::Other,
    }
}

impl semantic::Source for RootSource {
    fn list(&self, dir: &str) -> io::Result<Vec<Entry>> {
        let path = parse(dir)?;
        if path.depth() > DEPTH_LIMIT {
            if !self.warned_too_deep.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    dir = %proto::text::escaped(dir),
                    "embed: directories more than {DEPTH_LIMIT} levels beneath the root are not indexed"
                );
            }
            return Err(io::Error::other(format!(
                "more than {DEPTH_LIMIT} levels beneath the root"
            )));
        }
        let handle = self.root.open_dir(&path).map_err(to_io)?;
        let children = children(&self.root, &handle, &path, true).map_err(to_io)?;
        Ok(children
            .into_iter()
            .filter_map(|child| {
                let metadata = child.metadata?;
                Some(Entry {
                    name: child.name,
                    kind: kind(child.entry_type),
                    size: metadata.len(),
                    modified_ns: modified_ns(&metadata),
                })
            })
            .collect())
    }

    fn metadata(&self, path: &str) -> io::Result<Entry> {
        let path = parse(path)?;
        let metadata = self
            .root
            .lstat(&path)
            .map_err(to_io)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_string()))?;
        Ok(Entry {
            name: path.name().unwrap_or("/").to_owned(),
            kind: kind(EntryType::of(metadata.file_type())),
            size: metadata.len(),
            modified_ns: modified_ns(&metadata),
        })
    }

    fn read(&self, path: &str, limit: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let path = parse(path)?;
        // Opened and checked through the handle: regular files only, hard
        // links refused unless the policy allows them.
        let (file, metadata) = self.root.open_read(&path).map_err(to_io)?;
        if metadata.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{path} is larger than {limit} bytes"),
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{path} grew past {limit} bytes"),
            ));
        }
        Ok(bytes)
    }
}

/// What `mcp.fs.embed` answers.
#[derive(Debug, Serialize)]
pub struct EmbedResult {
    pub path: String,
    pub recursive: bool,
    #[serde(flatten)]
    pub counters: Counters,
    pub seconds: f64,
    pub index: StatusResult,
}

/// What `mcp.fs.search` answers.
#[derive(Debug, Serialize)]
pub struct SearchResult {
    pub query: String,
    pub results: Vec<Hit>,
}

/// What `mcp.fs.index_status` answers.
#[derive(Debug, Serialize)]
pub struct StatusResult {
    /// The root (its canonical host path) the index was built for.
    pub root: String,
    pub files: u64,
    pub chunks: u64,
    /// The model the index was built with (none before the first embed).
    pub model: Option<String>,
    /// When the index last changed (RFC 3339, UTC).
    pub updated: Option<String>,
    /// Whether the model is loaded in this process.
    pub model_loaded: bool,
}

/// The semantic index of the service: lazily opened model and index.
pub struct Semantic {
    config: SemanticConfig,
    source: RootSource,
    settings: Settings,
    embedder: Mutex<Option<Arc<Embedder>>>,
    index: Mutex<Option<OpenIndex>>,
    /// Watch mode: the watcher and the virtual directories it watches.
    watcher: Mutex<Option<Watcher>>,
}

/// The open index and the claim on its directory (held as long as it).
struct OpenIndex {
    index: Arc<Index>,
    home: RootIndexDir,
}

struct Watcher {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<String>,
}

/// How long the tree must be quiet before watch mode re-indexes, and the
/// longest a busy tree waits.
const WATCH_QUIET: Duration = Duration::from_millis(500);
const WATCH_MAX_DELAY: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semantic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Semantic {
    pub fn new(config: SemanticConfig, root: Arc<Root>) -> Semantic {
        let max_file_bytes = root.policy().max_read_bytes;
        Semantic {
            config,
            source: RootSource::new(root),
            settings: Settings {
                // The root's policy already leaves out its excludes; hidden
                // files (configuration, caches) are not indexed.
                walk: WalkOptions {
                    include_hidden: false,
                    ..WalkOptions::default()
                },
                max_file_bytes,
                ..Settings::default()
            },
            embedder: Mutex::new(None),
            index: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &SemanticConfig {
        &self.config
    }

    /// The model, loaded on first use. A failure is not remembered: after
    /// installing what was missing, the next call succeeds.
    pub fn embedder(&self) -> Result<Arc<Embedder>, SemanticError> {
        let mut slot = self.embedder.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(embedder) = slot.as_ref() {
            return Ok(embedder.clone());
        }
        let started = std::time::Instant::now();
        let embedder = Arc::new(Embedder::load(
            &self.config.model_dir,
            &self.config.runtime,
            self.config.model_precision,
        )?);
        tracing::info!(
            model_dir = %self.config.model_dir.display(),
            precision = %self.config.model_precision,
            runtime = %self.config.runtime.display(),
            milliseconds = started.elapsed().as_millis(),
            "embedding model loaded"
        );
        *slot = Some(embedder.clone());
        Ok(embedder)
    }

    /// The index of this root, opened (and reconciled) on first use, with
    /// the root it was built for. A failure is not remembered: once the
    /// other server is gone, the next call succeeds.
    pub fn index(&self) -> Result<(Arc<Index>, String), IndexingError> {
        let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = slot.as_ref() {
            return Ok((open.index.clone(), open.home.root.clone()));
        }
        let root = std::fs::canonicalize(&self.config.host_root).map_err(|error| {
            SemanticError::Index {
                dir: self.config.index_dir.clone(),
                reason: format!(
                    "the root {} cannot be resolved: {error}",
                    self.config.host_root.display()
                ),
            }
        })?;
        let metadata =
            self.source
                .root
                .handle()
                .dir_metadata()
                .map_err(|error| SemanticError::Index {
                    dir: self.config.index_dir.clone(),
                    reason: format!("the root cannot be inspected: {error}"),
                })?;
        let home = root_index::claim(
            &self.config.index_dir,
            &root,
            metadata.dev(),
            metadata.ino(),
        )?;
        let index = Arc::new(Index::open(&home.dir)?);
        let status = index.status()?;
        if status.reconciled_vectors > 0 {
            tracing::warn!(
                vectors = status.reconciled_vectors,
                "the index was not saved cleanly last time; its vectors were reconciled with its database"
            );
        }
        tracing::info!(root = %home.root, index = %home.dir.display(), "semantic index opened");
        let root = home.root.clone();
        *slot = Some(OpenIndex {
            index: index.clone(),
            home,
        });
        Ok((index, root))
    }

    /// Indexes `path` (blocking; run it on the blocking pool). In watch
    /// mode a directory indexed is then watched, and kept fresh.
    pub fn embed(
        self: &Arc<Self>,
        path: &VirtualPath,
        recursive: bool,
        progress: &mut dyn FnMut(&semantic::Progress<'_>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<EmbedResult, IndexingError> {
        let started = std::time::Instant::now();
        let (index, _) = self.index()?;
        let embedder = self.embedder()?;
        let shown = path.to_string();
        let counters = index.update(
            &embedder,
            Target {
                source: &self.source,
                path: &shown,
                recursive,
            },
            &self.settings,
            progress,
            cancelled,
        )?;
        if self.config.watch && recursive {
            self.watch(&shown);
        }
        Ok(EmbedResult {
            path: shown,
            recursive,
            counters,
            seconds: started.elapsed().as_secs_f64(),
            index: self.status()?,
        })
    }

    /// Embeds the query and returns the nearest chunks (blocking).
    pub fn search(
        &self,
        query: &str,
        top_k: usize,
        scope: Option<&VirtualPath>,
    ) -> Result<SearchResult, IndexingError> {
        if query.trim().is_empty() {
            return Err(SemanticError::InvalidValue(
                "query is empty; say in words what you are looking for".to_owned(),
            )
            .into());
        }
        // A scope that does not exist is a mistake to report, not a place
        // that happens to hold no results (issue 13).
        if let Some(scope) = scope {
            self.source.root.stat(scope)?;
        }
        let (index, _) = self.index()?;
        let embedder = self.embedder()?;
        let scope = scope.map(ToString::to_string);
        let results = index.search_text(&embedder, query, top_k, scope.as_deref())?;
        Ok(SearchResult {
            query: query.to_owned(),
            results,
        })
    }

    /// What the index holds; does not need the model.
    pub fn status(&self) -> Result<StatusResult, IndexingError> {
        let (index, root) = self.index()?;
        let status = index.status()?;
        let model_loaded = self
            .embedder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        Ok(StatusResult {
            root,
            files: status.files,
            chunks: status.chunks,
            model: status.model,
            updated: status.updated.and_then(|seconds| {
                crate::ops::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
            }),
            model_loaded,
        })
    }

    /// Watches the virtual directory `dir` (recursively) for changes; a
    /// change re-indexes the watched directory that holds it, a moment
    /// later. Watches are notifications only: files are read through the
    /// root as always. They last as long as the process.
    fn watch(self: &Arc<Self>, dir: &str) {
        let host = self.config.host_root.join(dir.trim_start_matches('/'));
        if !host.is_dir() {
            return;
        }
        let mut slot = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let (sender, receiver) = std::sync::mpsc::channel();
            match notify::recommended_watcher(sender) {
                Ok(watcher) => {
                    *slot = Some(Watcher {
                        watcher,
                        dirs: BTreeSet::new(),
                    });
                    let weak = Arc::downgrade(self);
                    let spawned = std::thread::Builder::new()
                        .name("fs-index-watch".to_owned())
                        .spawn(move || watch_loop(&weak, &receiver));
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "watch mode: cannot start its thread");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "watch mode: cannot watch for changes");
                    return;
                }
            }
        }
        let Some(state) = slot.as_mut() else {
            return;
        };
        if state
            .dirs
            .iter()
            .any(|watched| semantic::source::is_beneath(dir, watched))
        {
            return;
        }
        use notify::Watcher as _;
        match state.watcher.watch(&host, notify::RecursiveMode::Recursive) {
            Ok(()) => {
                tracing::info!(dir, "watch mode: keeping the index of this directory fresh");
                state.dirs.insert(dir.to_owned());
            }
            Err(error) => tracing::warn!(dir, %error, "watch mode: cannot watch this directory"),
        }
    }

    /// The watched directory holding the host path `changed`, if any.
    fn watched_dir_of(&self, changed: &std::path::Path) -> Option<String> {
        let relative = changed.strip_prefix(&self.config.host_root).ok()?;
        let virtual_path = format!("/{}", relative.to_str()?);
        let slot = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()?
            .dirs
            .iter()
            .find(|dir| semantic::source::is_beneath(&virtual_path, dir))
            .cloned()
    }

    /// The index directory, for messages.
    pub fn index_dir(&self) -> PathBuf {
        self.config.index_dir.clone()
    }
}

/// Collects change events until the tree is quiet, then re-indexes each
/// watched directory that changed. Ends when the service is gone.
fn watch_loop(
    semantic: &Weak<Semantic>,
    events: &std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
) {
    let mut dirty = BTreeSet::new();
    let mut first_change: Option<Instant> = None;
    loop {
        let timeout = if first_change.is_some() {
            WATCH_QUIET
        } else {
            Duration::from_secs(3600)
        };
        match events.recv_timeout(timeout) {
            // Reads (the refresh's own, a client's) raise open, access and
            // close events; only changes matter, or every refresh would
            // start the next.
            Ok(Ok(event)) if matches!(event.kind, notify::EventKind::Access(_)) => continue,
            Ok(Ok(event)) => {
                let Some(service) = semantic.upgrade() else {
                    return;
                };
                // The index's own files may lie beneath a watched directory.
                for path in event
                    .paths
                    .iter()
                    .filter(|path| !path.starts_with(&service.config.index_dir))
                {
                    if let Some(dir) = service.watched_dir_of(path) {
                        dirty.insert(dir);
                        first_change.get_or_insert_with(Instant::now);
                    }
                }
                if first_change.is_none_or(|first| first.elapsed() < WATCH_MAX_DELAY) {
                    continue;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "watch mode: a watch failed");
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if dirty.is_empty() {
            first_change = None;
            continue;
        }
        let Some(service) = semantic.upgrade() else {
            return;
        };
        for dir in std::mem::take(&mut dirty) {
            let Ok(path) = VirtualPath::parse(&dir) else {
                continue;
            };
            match service.refresh(&path) {
                Ok(counters) => tracing::info!(
                    dir,
                    embedded = counters.files_embedded,
                    removed = counters.files_removed,
                    "watch mode: index refreshed"
                ),
                Err(error) => tracing::warn!(dir, %error, "watch mode: refresh failed"),
            }
        }
        first_change = None;
    }
}

impl Semantic {
    /// Re-indexes a watched directory (no progress, not cancellable).
    fn refresh(&self, path: &VirtualPath) -> Result<Counters, IndexingError> {
        let embedder = self.embedder()?;
        let (index, _) = self.index()?;
        let shown = path.to_string();
        Ok(index.update(
            &embedder,
            Target {
                source: &self.source,
                path: &shown,
                recursive: true,
            },
            &self.settings,
            &mut |_| {},
            &|| false,
        )?)
    }
}
