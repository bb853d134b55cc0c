//! Walking directories: list, tree, glob.
//!
//! Walks never follow symlinks to directories (a symlink is reported as
//! one) and remember every directory's (device, inode), so a loop of
//! links or bind mounts cannot make them run forever. Every walk is
//! bounded, reports progress and stops when cancelled.
//!
//! Walks that go as deep as the tree does (glob, grep, copy, delete) are
//! iterative: a [`DepthFirst`] keeps the open directories on a heap stack,
//! so no tree can overflow the thread's stack (a recursive walk aborted
//! the whole server at about 2,000 levels). Every walk goes at most
//! [`DEPTH_LIMIT`] levels deep: each level holds a directory descriptor,
//! and the limit keeps them well within the process's descriptor limit.
//! What lies deeper is reported, never silently dropped.

use std::collections::HashSet;

use cap_std::fs::{Dir, Metadata};
use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::Serialize;

use super::manage::open_dir_nofollow;
use super::root::identity;
use super::{Entry, EntryType, FsError, Root, Watch};
use crate::vpath::VirtualPath;

/// Most entries one walk collects before it stops and says so.
pub const WALK_LIMIT: usize = 100_000;

/// The deepest any walk goes, in directory levels beneath its start. Real
/// trees are a few dozen levels deep; a tree thousands of levels deep is
/// an attack on the walk.
pub const DEPTH_LIMIT: usize = 256;

/// Most skipped entries one result lists.
pub const SKIPPED_LIMIT: usize = 100;

/// Something a walk did not look into, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What a walk left out, with why: the first [`SKIPPED_LIMIT`] listed, all
/// of them counted (so a client knows when the list is not the whole story).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Skips {
    pub skipped: Vec<Skipped>,
    pub skipped_count: u64,
}

impl Skips {
    /// Counts `path`, and lists it unless the list is full.
    pub(crate) fn add(&mut self, path: &VirtualPath, reason: String) {
        self.skipped_count += 1;
        if self.skipped.len() < SKIPPED_LIMIT {
            self.skipped.push(Skipped {
                // A path this deep may be longer than any a client can send.
                path: proto::text::bounded(&path.to_string(), crate::vpath::MAX_PATH_BYTES)
                    .into_owned(),
                reason,
            });
        }
    }
}

/// Why a directory at the depth limit was not walked.
pub(crate) fn too_deep_reason() -> String {
    format!(
        "it lies {DEPTH_LIMIT} levels beneath the start of the walk, the deepest walks go; what it holds was not walked (start from a directory further down to reach it)"
    )
}

/// One open directory of a [`DepthFirst`] walk: its handle, its path, the
/// entries not visited yet, and what the walk keeps per level.
pub(crate) struct Level<C, T> {
    pub(crate) dir: Dir,
    pub(crate) path: VirtualPath,
    /// Entries still to visit, last first.
    pending: Vec<C>,
    pub(crate) extra: T,
}

/// What [`DepthFirst::next`] found.
pub(crate) enum Step<C, T> {
    /// The next entry of the deepest open directory ([`DepthFirst::current`]).
    Entry(C),
    /// A directory whose entries are all visited, closed; its parent is
    /// [`DepthFirst::current`] again.
    Left(Level<C, T>),
}

/// A depth-first walk with its stack on the heap: entries come in the
/// order they were given (pre-order), and a directory entered with
/// [`DepthFirst::enter`] is walked before the rest of its parent.
pub(crate) struct DepthFirst<C, T> {
    levels: Vec<Level<C, T>>,
}

impl<C, T> DepthFirst<C, T> {
    pub(crate) fn new(dir: Dir, path: VirtualPath, entries: Vec<C>, extra: T) -> Self {
        let mut walk = DepthFirst { levels: Vec::new() };
        walk.push(dir, path, entries, extra);
        walk
    }

    fn push(&mut self, dir: Dir, path: VirtualPath, mut entries: Vec<C>, extra: T) {
        entries.reverse();
        self.levels.push(Level {
            dir,
            path,
            pending: entries,
            extra,
        });
    }

    /// The next entry, or the directory just finished; `None` at the end.
    pub(crate) fn next(&mut self) -> Option<Step<C, T>> {
        let top = self.levels.last_mut()?;
        match top.pending.pop() {
            Some(entry) => Some(Step::Entry(entry)),
            None => self.levels.pop().map(Step::Left),
        }
    }

    /// The deepest open directory. Only called while the walk runs.
    pub(crate) fn current(&self) -> &Level<C, T> {
        self.levels.last().expect("a walk has an open directory")
    }

    /// The directory the walk started from.
    pub(crate) fn start(&self) -> &Level<C, T> {
        self.levels.first().expect("a walk has an open directory")
    }

    pub(crate) fn start_mut(&mut self) -> &mut Level<C, T> {
        self.levels
            .first_mut()
            .expect("a walk has an open directory")
    }

    /// Whether entering one more directory would pass [`DEPTH_LIMIT`].
    pub(crate) fn is_full(&self) -> bool {
        self.levels.len() >= DEPTH_LIMIT
    }

    /// The subdirectory `name` (at `path`) of [`DepthFirst::current`],
    /// opened to be entered; `None` when the walk is full (listed in
    /// `skips`), when it cannot be opened, or when it was entered before
    /// (a bind mount or a loop: `visited` holds the directories' identities).
    pub(crate) fn open_child(
        &self,
        name: &str,
        path: &VirtualPath,
        visited: &mut HashSet<(u64, u64)>,
        skips: &mut Skips,
    ) -> Option<Dir> {
        if self.is_full() {
            skips.add(path, too_deep_reason());
            return None;
        }
        let sub = open_dir_nofollow(&self.current().dir, name).ok()?;
        if let Ok(metadata) = sub.dir_metadata()
            && !visited.insert(identity(&metadata))
        {
            return None;
        }
        Some(sub)
    }

    /// Enters a subdirectory of [`DepthFirst::current`]: its entries come
    /// next. The caller checks [`DepthFirst::is_full`] first.
    pub(crate) fn enter(&mut self, dir: Dir, path: VirtualPath, entries: Vec<C>, extra: T) {
        debug_assert!(!self.is_full());
        self.push(dir, path, entries, extra);
    }

    /// What each open level keeps, from the start down.
    pub(crate) fn extras(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.levels.iter().map(|level| &level.extra)
    }
}

impl<C, T> Level<C, T> {
    /// Adds an entry to visit when the walk comes back to this level.
    pub(crate) fn add_pending(&mut self, entry: C) {
        self.pending.push(entry);
    }
}

/// One name read from a directory.
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) path: VirtualPath,
    pub(crate) entry_type: EntryType,
    pub(crate) metadata: Option<Metadata>,
}

/// The visible children of `dir`, sorted by name. Names that are not UTF-8
/// cannot be named by a client and are left out.
pub(crate) fn children(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    with_metadata: bool,
) -> Result<Vec<Child>, FsError> {
    let entries = dir
        .entries()
        .map_err(|error| FsError::io(path, "list", error))?;
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| FsError::io(path, "list", error))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let child_path = path.join(&name);
        let relative = child_path
            .relative_to(&VirtualPath::root())
            .unwrap_or_default();
        if !root.visible(&name, &relative) {
            continue;
        }
        // A name removed since the listing is simply not there any more.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let metadata = if with_metadata {
            match entry.metadata() {
                Ok(metadata) => Some(metadata),
                Err(_) => continue,
            }
        } else {
            None
        };
        children.push(Child {
            name,
            path: child_path,
            entry_type: EntryType::of(file_type),
            metadata,
        });
    }
    children.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(children)
}

/// The order of a listing (the `sort` param; its default is in fs.cap.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    Name,
    Size,
    Modified,
}

#[derive(Clone, Debug)]
pub struct ListOptions {
    /// 1 lists the directory itself; more descends.
    pub depth: usize,
    pub sort: SortKey,
    pub descending: bool,
    /// Where the previous page ended (from `next_cursor`).
    pub cursor: Option<String>,
    pub limit: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ListSummary {
    pub files: u64,
    pub directories: u64,
    pub other: u64,
    /// Bytes in the files listed (all pages).
    pub total_size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ListResult {
    pub path: String,
    pub entries: Vec<Entry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Entries in all pages.
    pub total: u64,
    pub summary: ListSummary,
    /// Whether the walk stopped at its entry limit.
    pub truncated: bool,
}

pub fn list(
    root: &Root,
    path: &VirtualPath,
    options: &ListOptions,
    watch: &Watch,
) -> Result<ListResult, FsError> {
    let start = match options.cursor.as_deref() {
        None => 0,
        Some(cursor) => cursor.parse::<usize>().map_err(|_| {
            FsError::InvalidValue(format!(
                "cursor {:?} is not one this server gave; pass the next_cursor of the previous page, or no cursor to start again",
                proto::text::echo(cursor)
            ))
        })?,
    };
    let dir = root.open_dir(path)?;
    let mut entries = Vec::new();
    let mut visited = HashSet::new();
    let mut truncated = false;
    collect(
        root,
        &dir,
        path,
        options.depth.clamp(1, DEPTH_LIMIT),
        &mut visited,
        &mut entries,
        &mut truncated,
        watch,
    )?;
    match options.sort {
        SortKey::Name if options.depth <= 1 => {}
        SortKey::Name => entries.sort_by(|a, b| a.path.cmp(&b.path)),
        SortKey::Size => entries.sort_by(|a, b| a.size.cmp(&b.size).then(a.path.cmp(&b.path))),
        SortKey::Modified => entries.sort_by(|a, b| {
            a.modified_seconds
                .cmp(&b.modified_seconds)
                .then(a.path.cmp(&b.path))
        }),
    }
    if options.descending {
        entries.reverse();
    }
    let mut summary = ListSummary {
        files: 0,
        directories: 0,
        other: 0,
        total_size: 0,
    };
    for entry in &entries {
        match entry.entry_type {
            EntryType::File => {
                summary.files += 1;
                summary.total_size += entry.size;
            }
            EntryType::Directory => summary.directories += 1,
            EntryType::Symlink | EntryType::Other => summary.other += 1,
        }
    }
    let total = entries.len();
    let end = start.saturating_add(options.limit.max(1)).min(total);
    let page = if start < total {
        entries.drain(start..end).collect()
    } else {
        Vec::new()
    };
    Ok(ListResult {
        path: path.to_string(),
        entries: page,
        next_cursor: (end < total).then(|| end.to_string()),
        total: total as u64,
        summary,
        truncated,
    })
}

#[allow(clippy::too_many_arguments)]
fn collect(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    depth: usize,
    visited: &mut HashSet<(u64, u64)>,
    entries: &mut Vec<Entry>,
    truncated: &mut bool,
    watch: &Watch,
) -> Result<(), FsError> {
    if let Ok(metadata) = dir.dir_metadata()
        && !visited.insert(identity(&metadata))
    {
        return Ok(());
    }
    for child in children(root, dir, path, true)? {
        if entries.len() >= WALK_LIMIT {
            *truncated = true;
            return Ok(());
        }
        watch.tick(entries.len() as u64, "listing")?;
        let metadata = child.metadata.as_ref().expect("asked for metadata");
        entries.push(Entry::new(&child.path, metadata));
        if depth > 1
            && child.entry_type == EntryType::Directory
            && let Ok(sub) = open_dir_nofollow(dir, &child.name)
        {
            collect(
                root,
                &sub,
                &child.path,
                depth - 1,
                visited,
                entries,
                truncated,
                watch,
            )?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct TreeNode {
    pub name: String,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<TreeNode>>,
    /// Set on a directory whose children were not shown (depth or limit).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct TreeResult {
    pub path: String,
    pub tree: TreeNode,
    pub nodes: u64,
    /// Whether the node limit cut the tree short.
    pub truncated: bool,
}

/// Most nodes one tree holds.
pub const TREE_LIMIT: u64 = 20_000;

pub fn tree(
    root: &Root,
    path: &VirtualPath,
    depth: usize,
    exclude: &[String],
    watch: &Watch,
) -> Result<TreeResult, FsError> {
    let exclude = compile_globs(exclude)?;
    let dir = root.open_dir(path)?;
    let mut state = TreeState {
        visited: HashSet::new(),
        nodes: 1,
        truncated: false,
        exclude,
    };
    // Recursive, but never deeper than the shared bound (the caps allow 64).
    let depth = depth.min(DEPTH_LIMIT);
    let children = tree_children(root, &dir, path, depth, &mut state, watch)?;
    Ok(TreeResult {
        path: path.to_string(),
        tree: TreeNode {
            name: path.name().unwrap_or("/").to_owned(),
            entry_type: EntryType::Directory,
            truncated: children.is_none(),
            children,
        },
        nodes: state.nodes,
        truncated: state.truncated,
    })
}

struct TreeState {
    visited: HashSet<(u64, u64)>,
    nodes: u64,
    truncated: bool,
    exclude: GlobSet,
}

fn tree_children(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    depth: usize,
    state: &mut TreeState,
    watch: &Watch,
) -> Result<Option<Vec<TreeNode>>, FsError> {
    if depth == 0 {
        return Ok(None);
    }
    if let Ok(metadata) = dir.dir_metadata()
        && !state.visited.insert(identity(&metadata))
    {
        return Ok(None);
    }
    let mut nodes = Vec::new();
    for child in children(root, dir, path, false)? {
        let relative = child
            .path
            .relative_to(&VirtualPath::root())
            .unwrap_or_default();
        if state.exclude.is_match(&child.name) || state.exclude.is_match(&relative) {
            continue;
        }
        if state.nodes >= TREE_LIMIT {
            state.truncated = true;
            break;
        }
        state.nodes += 1;
        watch.tick(state.nodes, "walking the tree")?;
        let mut node = TreeNode {
            name: child.name.clone(),
            entry_type: child.entry_type,
            children: None,
            truncated: false,
        };
        if child.entry_type == EntryType::Directory {
            node.children = match open_dir_nofollow(dir, &child.name) {
                Ok(sub) => tree_children(root, &sub, &child.path, depth - 1, state, watch)?,
                Err(_) => None,
            };
            node.truncated = node.children.is_none();
        }
        nodes.push(node);
    }
    Ok(Some(nodes))
}

/// Compiles patterns given by a client, naming the bad one.
pub(crate) fn compile_globs(patterns: &[String]) -> Result<GlobSet, FsError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(compile_glob(pattern)?.glob().clone());
    }
    builder.build().map_err(|error| {
        FsError::InvalidValue(format!("the exclude patterns do not compile: {error}"))
    })
}

fn compile_glob(pattern: &str) -> Result<GlobMatcher, FsError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|error| {
            FsError::InvalidValue(format!(
                "{:?} is not a valid glob pattern: {error}; use *, ?, [abc], {{a,b}} and ** (e.g. \"**/*.rs\")",
                proto::text::echo(pattern)
            ))
        })
}

#[derive(Clone, Debug, Serialize)]
pub struct GlobMatch {
    pub path: String,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
}

#[derive(Clone, Debug, Serialize)]
pub struct GlobResult {
    pub path: String,
    pub pattern: String,
    pub matches: Vec<GlobMatch>,
    /// Whether the result limit (or the walk limit) was reached.
    pub truncated: bool,
    /// Directories not walked (deeper than [`DEPTH_LIMIT`]).
    #[serde(flatten)]
    pub skips: Skips,
}

/// Finds names matching `pattern` beneath `path`. A pattern without `/`
/// matches names at any depth; a pattern with `/` matches the path relative
/// to `path`. Contents are never read.
pub fn glob(
    root: &Root,
    path: &VirtualPath,
    pattern: &str,
    max_results: usize,
    watch: &Watch,
) -> Result<GlobResult, FsError> {
    let matcher = compile_glob(pattern)?;
    let by_name = !pattern.contains('/');
    let dir = root.open_dir(path)?;
    let mut result = GlobResult {
        path: path.to_string(),
        pattern: pattern.to_owned(),
        matches: Vec::new(),
        truncated: false,
        skips: Skips::default(),
    };
    let mut visited = HashSet::new();
    if let Ok(metadata) = dir.dir_metadata() {
        visited.insert(identity(&metadata));
    }
    let entries = children(root, &dir, path, false)?;
    let mut walk = DepthFirst::new(dir, path.clone(), entries, ());
    let mut seen = 0_u64;
    while let Some(step) = walk.next() {
        let Step::Entry(child) = step else {
            continue;
        };
        seen += 1;
        if seen as usize > WALK_LIMIT {
            result.truncated = true;
            break;
        }
        watch.tick(seen, "matching names")?;
        let candidate = if by_name {
            child.name.clone()
        } else {
            child.path.relative_to(path).unwrap_or_default()
        };
        if matcher.is_match(&candidate) {
            if result.matches.len() >= max_results {
                result.truncated = true;
                break;
            }
            result.matches.push(GlobMatch {
                path: child.path.to_string(),
                entry_type: child.entry_type,
            });
        }
        if child.entry_type != EntryType::Directory {
            continue;
        }
        let Some(sub) = walk.open_child(&child.name, &child.path, &mut visited, &mut result.skips)
        else {
            continue;
        };
        let entries = children(root, &sub, &child.path, false)?;
        walk.enter(sub, child.path, entries, ());
    }
    Ok(result)
}
