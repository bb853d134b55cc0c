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
pub const WALK_LIMIT: usize = 5_000_000;

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

/// One name read from a directory. Its path is its parent's joined with
/// `name`, made by the caller when it needs it: a walk keeps the names of
/// every open directory, and a path each (a vector of components) took
/// several times the name's bytes.
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) entry_type: EntryType,
    /// Boxed: most walks do not ask for it, and a `Metadata` is larger
    /// than the rest of a child.
    pub(crate) metadata: Option<Box<Metadata>>,
}

/// Reads the visible children of `dir` in the order the directory gives
/// them, handing each to `each` with its path, without holding them: a
/// directory of a million names costs one name at a time. `each` returns
/// false to stop. Names that are not UTF-8 cannot be named by a client and
/// are left out.
pub(crate) fn each_child(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    with_metadata: bool,
    mut each: impl FnMut(Child, VirtualPath) -> Result<bool, FsError>,
) -> Result<(), FsError> {
    let entries = dir
        .entries()
        .map_err(|error| FsError::io(path, "list", error))?;
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
                Ok(metadata) => Some(Box::new(metadata)),
                Err(_) => continue,
            }
        } else {
            None
        };
        let child = Child {
            name,
            entry_type: EntryType::of(file_type),
            metadata,
        };
        if !each(child, child_path)? {
            break;
        }
    }
    Ok(())
}

/// The visible children of `dir`, sorted by name.
pub(crate) fn children(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    with_metadata: bool,
) -> Result<Vec<Child>, FsError> {
    let mut children = Vec::new();
    each_child(root, dir, path, with_metadata, |child, _| {
        children.push(child);
        Ok(true)
    })?;
    children.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(children)
}

/// A child ordered by its name alone.
struct ByName(Child);

impl PartialEq for ByName {
    fn eq(&self, other: &ByName) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &ByName) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &ByName) -> std::cmp::Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

/// The first `limit` visible children of `dir` by name among those `keep`
/// accepts, sorted, and whether `keep` accepted more: a heap of `limit`,
/// so a directory of a million names costs `limit` of them.
pub(crate) fn first_children(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    limit: usize,
    mut keep: impl FnMut(&Child, &VirtualPath) -> bool,
) -> Result<(Vec<Child>, bool), FsError> {
    let mut first = std::collections::BinaryHeap::new();
    let mut more = false;
    each_child(root, dir, path, false, |child, child_path| {
        if !keep(&child, &child_path) {
            return Ok(true);
        }
        if first.len() >= limit {
            more = true;
            if first
                .peek()
                .is_none_or(|last: &ByName| child.name >= last.0.name)
            {
                return Ok(true);
            }
        }
        first.push(ByName(child));
        if first.len() > limit {
            first.pop();
        }
        Ok(true)
    })?;
    let first = first.into_sorted_vec().into_iter().map(|child| child.0);
    Ok((first.collect(), more))
}

/// The order of a listing (the `sort` param; its default is in fs.cap.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    Name,
    Size,
    Modified,
}

impl SortKey {
    fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Modified => "modified",
        }
    }
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
    /// List (and count) regular files only, not directories and the rest.
    pub files_only: bool,
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
    /// Why the listing is not the whole story, when `truncated` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
}

/// Why a walk stopped at [`WALK_LIMIT`]; `what` is what it was doing.
pub(crate) fn walk_limit_reason(what: &str) -> String {
    format!(
        "the walk stopped after {WALK_LIMIT} entries, the most one {what} visits; start from a subdirectory to see the rest"
    )
}

/// Why a search stopped at the `max_results` the caller gave.
pub(crate) fn results_limit_reason(max_results: usize) -> String {
    format!(
        "max_results ({max_results}) matches were found; there may be more: narrow the pattern or the path, or raise max_results"
    )
}

/// Where a listing is in its order: the sort value (0 by name, the size or
/// the modification time in seconds), then the path. Pages are cut on
/// these keys, not on offsets, so a page holds only its own entries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ListKey {
    value: u64,
    path: String,
}

/// The order of one listing.
#[derive(Clone, Copy)]
struct ListOrder {
    sort: SortKey,
    descending: bool,
}

impl ListOrder {
    fn compare(self, a: &ListKey, b: &ListKey) -> std::cmp::Ordering {
        let order = a.cmp(b);
        if self.descending {
            order.reverse()
        } else {
            order
        }
    }

    fn key(self, path: String, metadata: &Metadata) -> ListKey {
        let value = match self.sort {
            SortKey::Name => 0,
            SortKey::Size if metadata.is_dir() => 0,
            SortKey::Size => metadata.len(),
            SortKey::Modified => modified_seconds(metadata),
        };
        ListKey { value, path }
    }

    /// The cursor that resumes after `key`: opaque to clients (base64 of
    /// the order and the key), checked when it comes back.
    fn cursor(self, key: &ListKey) -> String {
        use base64::Engine;
        let text = format!(
            "{}\n{}\n{}\n{}",
            self.sort.as_str(),
            u8::from(self.descending),
            key.value,
            key.path
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// The key a cursor given by [`ListOrder::cursor`] resumes after, for
    /// a listing of `listed` in this order.
    fn parse_cursor(self, cursor: &str, listed: &VirtualPath) -> Result<ListKey, FsError> {
        use base64::Engine;
        let foreign = || {
            FsError::InvalidValue(format!(
                "cursor {:?} is not one this server gave; pass the next cursor of the previous page, or no cursor to start again",
                proto::text::echo(cursor)
            ))
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| foreign())?;
        let text = String::from_utf8(bytes).map_err(|_| foreign())?;
        let mut fields = text.splitn(4, '\n');
        let (Some(sort), Some(descending), Some(value), Some(path)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(foreign());
        };
        let value = value.parse::<u64>().map_err(|_| foreign())?;
        let path = super::parse_path(path).map_err(|_| foreign())?;
        if !path.starts_with(listed) || path == *listed {
            return Err(FsError::InvalidValue(format!(
                "cursor {:?} continues a listing of another directory; pass it with the path of the page it came from, or no cursor to start again",
                proto::text::echo(cursor)
            )));
        }
        if sort != self.sort.as_str() || descending != u8::from(self.descending).to_string() {
            return Err(FsError::InvalidValue(format!(
                "cursor {:?} continues a listing in another order; pass the same sort and descending as the page it came from, or no cursor to start again",
                proto::text::echo(cursor)
            )));
        }
        Ok(ListKey {
            value,
            path: path.to_string(),
        })
    }
}

fn modified_seconds(metadata: &Metadata) -> u64 {
    metadata
        .modified()
        .ok()
        .and_then(|time| time.into_std().duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_secs())
}

/// One entry of the page being selected, ordered by where it stands in the
/// listing: the heap's greatest is the last of the page.
struct Ranked {
    key: ListKey,
    entry: Entry,
    order: ListOrder,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.key == other.key
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> std::cmp::Ordering {
        self.order.compare(&self.key, &other.key)
    }
}

/// What a listing's walk keeps: the counts of everything, and of the
/// entries after the cursor only the first `limit` (a heap of at most
/// `limit + 1`), so a page of a directory of a million names holds a page,
/// not the directory.
struct Listing {
    order: ListOrder,
    after: Option<ListKey>,
    limit: usize,
    page: std::collections::BinaryHeap<Ranked>,
    /// Entries after the cursor: more than `limit` means a next page.
    remaining: u64,
    summary: ListSummary,
    total: u64,
    files_only: bool,
    truncated: bool,
    visited: HashSet<(u64, u64)>,
}

impl Listing {
    fn offer(&mut self, path: &VirtualPath, metadata: &Metadata) {
        let entry_type = EntryType::of(metadata.file_type());
        if self.files_only && entry_type != EntryType::File {
            return;
        }
        self.total += 1;
        match entry_type {
            EntryType::File => {
                self.summary.files += 1;
                self.summary.total_size += metadata.len();
            }
            EntryType::Directory => self.summary.directories += 1,
            EntryType::Symlink | EntryType::Other => self.summary.other += 1,
        }
        let key = self.order.key(path.to_string(), metadata);
        if let Some(after) = &self.after
            && self.order.compare(&key, after).is_le()
        {
            return;
        }
        self.remaining += 1;
        if self.page.len() >= self.limit
            && self
                .page
                .peek()
                .is_some_and(|last| self.order.compare(&key, &last.key).is_ge())
        {
            return;
        }
        self.page.push(Ranked {
            key,
            entry: Entry::new(path, metadata),
            order: self.order,
        });
        if self.page.len() > self.limit {
            self.page.pop();
        }
    }
}

/// Lists `path` (and, with `depth` above 1, what lies beneath it) one page
/// at a time: the walk streams every directory once and keeps the counts
/// and the page, so memory is O(`limit`) whatever the directory holds.
/// Each page walks again; the cursor is where the last one ended.
pub fn list(
    root: &Root,
    path: &VirtualPath,
    options: &ListOptions,
    watch: &Watch,
) -> Result<ListResult, FsError> {
    let order = ListOrder {
        sort: options.sort,
        descending: options.descending,
    };
    let after = options
        .cursor
        .as_deref()
        .map(|cursor| order.parse_cursor(cursor, path))
        .transpose()?;
    let dir = root.open_dir(path)?;
    let limit = options.limit.max(1);
    let mut listing = Listing {
        order,
        after,
        limit,
        page: std::collections::BinaryHeap::with_capacity(limit.min(WALK_LIMIT) + 1),
        remaining: 0,
        summary: ListSummary {
            files: 0,
            directories: 0,
            other: 0,
            total_size: 0,
        },
        total: 0,
        files_only: options.files_only,
        truncated: false,
        visited: HashSet::new(),
    };
    let mut seen = 0_u64;
    list_walk(
        root,
        &dir,
        path,
        options.depth.clamp(1, DEPTH_LIMIT),
        &mut listing,
        &mut seen,
        watch,
    )?;
    let more = listing.remaining > limit as u64;
    let entries: Vec<Ranked> = listing.page.into_sorted_vec();
    let next_cursor = if more {
        entries.last().map(|last| order.cursor(&last.key))
    } else {
        None
    };
    Ok(ListResult {
        path: path.to_string(),
        entries: entries.into_iter().map(|ranked| ranked.entry).collect(),
        next_cursor,
        total: listing.total,
        summary: listing.summary,
        truncated: listing.truncated,
        truncated_reason: listing.truncated.then(|| walk_limit_reason("listing")),
    })
}

/// The walk of a listing, as deep as `depth`; recursive, no deeper than
/// the caps allow (64 levels).
fn list_walk(
    root: &Root,
    dir: &Dir,
    path: &VirtualPath,
    depth: usize,
    listing: &mut Listing,
    seen: &mut u64,
    watch: &Watch,
) -> Result<(), FsError> {
    if let Ok(metadata) = dir.dir_metadata()
        && !listing.visited.insert(identity(&metadata))
    {
        return Ok(());
    }
    each_child(root, dir, path, true, |child, child_path| {
        if *seen >= WALK_LIMIT as u64 {
            listing.truncated = true;
            return Ok(false);
        }
        *seen += 1;
        watch.tick(*seen, "listing")?;
        let metadata = child.metadata.as_ref().expect("asked for metadata");
        listing.offer(&child_path, metadata);
        if depth > 1
            && child.entry_type == EntryType::Directory
            && let Ok(sub) = open_dir_nofollow(dir, &child.name)
        {
            list_walk(root, &sub, &child_path, depth - 1, listing, seen, watch)?;
        }
        Ok(!listing.truncated)
    })
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
    /// Why, when `truncated` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
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
        truncated_reason: state.truncated.then(|| {
            format!(
                "a tree holds at most {TREE_LIMIT} nodes; ask for less depth, exclude names, or start from a subdirectory to see the rest"
            )
        }),
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
    let exclude = &state.exclude;
    // No more than the nodes left are read into memory, even from a
    // directory of a million names.
    let room = usize::try_from(TREE_LIMIT.saturating_sub(state.nodes)).unwrap_or(usize::MAX);
    let (shown, more) = first_children(root, dir, path, room, |child, child_path| {
        let relative = child_path
            .relative_to(&VirtualPath::root())
            .unwrap_or_default();
        !(exclude.is_match(&child.name) || exclude.is_match(&relative))
    })?;
    if more {
        state.truncated = true;
    }
    for child in shown {
        let child_path = path.join(&child.name);
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
                Ok(sub) => tree_children(root, &sub, &child_path, depth - 1, state, watch)?,
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
    /// Which limit, when `truncated` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
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
        truncated_reason: None,
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
            result.truncated_reason = Some(walk_limit_reason("glob"));
            break;
        }
        watch.tick(seen, "matching names")?;
        let child_path = walk.current().path.join(&child.name);
        let matched = if by_name {
            matcher.is_match(&child.name)
        } else {
            matcher.is_match(child_path.relative_to(path).unwrap_or_default())
        };
        if matched {
            if result.matches.len() >= max_results {
                result.truncated = true;
                result.truncated_reason = Some(results_limit_reason(max_results));
                break;
            }
            result.matches.push(GlobMatch {
                path: child_path.to_string(),
                entry_type: child.entry_type,
            });
        }
        if child.entry_type != EntryType::Directory {
            continue;
        }
        let Some(sub) = walk.open_child(&child.name, &child_path, &mut visited, &mut result.skips)
        else {
            continue;
        };
        let entries = children(root, &sub, &child_path, false)?;
        walk.enter(sub, child_path, entries, ());
    }
    Ok(result)
}
