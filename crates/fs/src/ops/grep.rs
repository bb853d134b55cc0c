//! Searching contents with ripgrep's libraries.
//!
//! The walk is ours (through cap-std handles, never following directory
//! symlinks); ripgrep's `grep-searcher` searches each file handle we opened
//! and checked, and `ignore`'s gitignore matcher is fed with the contents
//! of `.gitignore`/`.ignore` files read through the same handles. Nothing
//! here touches a host path.
//!
//! Memory is bounded per search: the searcher's buffer may grow to hold a
//! line of at most `max_line_bytes` (its heap limit); a file with a longer
//! line is not searched further and is listed in `skipped` with the
//! reason. Without the bound one 1 GiB line was read whole into memory
//! (and four searches at once took 5 GiB). Files with a NUL byte are
//! binary and not searched, so a sparse file costs one buffer.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use cap_std::fs::Dir;
use globset::{GlobSet, GlobSetBuilder};
use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::sinks::Lossy;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder};
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Serialize;

use super::root::identity;
use super::walk::{
    Child, DepthFirst, Skips, Step, WALK_LIMIT, children, results_limit_reason, walk_limit_reason,
};
use super::{EntryType, FsError, Root, Watch};
use crate::vpath::VirtualPath;

/// Ignore files honoured in every directory, in increasing precedence.
const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];
/// Ignore files are read up to this size.
const MAX_IGNORE_FILE: u64 = 1024 * 1024;
/// Most bytes of ignore files the open directories of one search hold
/// (each of 256 levels may have its own). Compiled, 1 MiB of patterns
/// took about 75 MiB; real ignore files are a few KiB.
const IGNORE_BUDGET: u64 = 1024 * 1024;
/// Longest line text returned, in characters.
const MAX_LINE_CHARS: usize = 500;

#[derive(Clone, Debug)]
pub struct GrepOptions {
    pub pattern: String,
    pub case_insensitive: bool,
    /// Treat the pattern as literal text, not a regular expression.
    pub fixed_strings: bool,
    /// Only search files whose name matches one of these globs (all
    /// files when empty).
    pub include: Vec<String>,
    pub max_results: usize,
    pub honour_ignore_files: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct GrepMatch {
    pub path: String,
    pub line: u64,
    pub text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GrepResult {
    pub path: String,
    pub pattern: String,
    pub matches: Vec<GrepMatch>,
    pub files_searched: u64,
    /// Whether the result limit (or the walk limit) stopped the search.
    pub truncated: bool,
    /// Which limit, when `truncated` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
    /// Files not searched (or not to the end) and directories not walked,
    /// with why.
    #[serde(flatten)]
    pub skips: Skips,
}

struct GrepState {
    matcher: RegexMatcher,
    searcher: Searcher,
    include: Option<GlobSet>,
    max_results: usize,
    max_line_bytes: usize,
    honour_ignore_files: bool,
    result: GrepResult,
}

pub fn grep(
    root: &Root,
    path: &VirtualPath,
    options: &GrepOptions,
    watch: &Watch,
) -> Result<GrepResult, FsError> {
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(options.case_insensitive)
        .fixed_strings(options.fixed_strings)
        .line_terminator(Some(b'\n'))
        .build(&options.pattern)
        .map_err(|error| {
            FsError::InvalidValue(format!(
                "{:?} is not a valid regular expression: {error}",
                proto::text::echo(&options.pattern)
            ))
            .with_hint(super::error::hint(
                "search for the text as written",
                "mcp.fs.grep",
                &[
                    ("pattern", options.pattern.as_str().into()),
                    ("fixed_strings", true.into()),
                ],
            ))
        })?;
    let include = if options.include.is_empty() {
        None
    } else {
        let mut set = GlobSetBuilder::new();
        for (index, pattern) in options.include.iter().enumerate() {
            set.add(globset::Glob::new(pattern).map_err(|error| {
                FsError::InvalidValue(format!(
                    "include[{index}] {:?} is not a valid glob pattern: {error}",
                    proto::text::echo(pattern)
                ))
            })?);
        }
        Some(set.build().map_err(|error| {
            FsError::InvalidValue(format!("include is not a valid set of globs: {error}"))
        })?)
    };
    let max_line_bytes = root.policy().grep_max_line_bytes;
    let searcher = SearcherBuilder::new()
        .line_number(true)
        .binary_detection(BinaryDetection::quit(0))
        .heap_limit(Some(max_line_bytes))
        .build();
    let mut state = GrepState {
        matcher,
        searcher,
        include,
        max_results: options.max_results,
        max_line_bytes,
        honour_ignore_files: options.honour_ignore_files,
        result: GrepResult {
            path: path.to_string(),
            pattern: options.pattern.clone(),
            matches: Vec::new(),
            files_searched: 0,
            truncated: false,
            truncated_reason: None,
            skips: Skips::default(),
        },
    };
    let metadata = root.stat(path)?;
    if metadata.is_dir() {
        let dir = root.open_dir(path)?;
        walk(root, dir, path, &mut state, watch)?;
    } else {
        let (file, _) = root.open_read(path)?;
        search(&mut state, file, path)?;
    }
    Ok(state.result)
}

/// The walk: depth first, each open level keeping its ignore rules.
fn walk(
    root: &Root,
    dir: Dir,
    path: &VirtualPath,
    state: &mut GrepState,
    watch: &Watch,
) -> Result<(), FsError> {
    let mut visited = HashSet::new();
    if let Ok(metadata) = dir.dir_metadata() {
        visited.insert(identity(&metadata));
    }
    let ignores = state
        .honour_ignore_files
        .then(|| ignore_matcher(root, &dir, path, IGNORE_BUDGET));
    let entries = children(root, &dir, path, false)?;
    let mut walk: DepthFirst<Child, Option<IgnoreRules>> =
        DepthFirst::new(dir, path.clone(), entries, ignores);
    let mut seen = 0_u64;
    while let Some(step) = walk.next() {
        let Step::Entry(child) = step else {
            continue;
        };
        if state.result.truncated {
            return Ok(());
        }
        seen += 1;
        if seen as usize > WALK_LIMIT {
            state.result.truncated = true;
            state.result.truncated_reason = Some(walk_limit_reason("grep"));
            return Ok(());
        }
        watch.tick(seen, "searching")?;
        let is_dir = child.entry_type == EntryType::Directory;
        if is_dir && child.name == ".git" {
            continue;
        }
        let child_path = walk.current().path.join(&child.name);
        let rules = walk.extras().flatten().map(|rules| &rules.matcher);
        if is_ignored(rules, &child_path, is_dir) {
            continue;
        }
        match child.entry_type {
            EntryType::Directory => {
                let Some(sub) = walk.open_child(
                    &child.name,
                    &child_path,
                    &mut visited,
                    &mut state.result.skips,
                ) else {
                    continue;
                };
                let ignores = state.honour_ignore_files.then(|| {
                    let held: u64 = walk.extras().flatten().map(|rules| rules.bytes).sum();
                    let rules = ignore_matcher(
                        root,
                        &sub,
                        &child_path,
                        IGNORE_BUDGET.saturating_sub(held),
                    );
                    if rules.cut {
                        state.result.skips.add(
                            &child_path,
                            format!("its .gitignore/.ignore were read only in part: the directories above hold {held} bytes of them, and a search keeps at most {IGNORE_BUDGET}; files they would leave out may be searched"),
                        );
                    }
                    rules
                });
                let entries = children(root, &sub, &child_path, false)?;
                walk.enter(sub, child_path, entries, ignores);
            }
            EntryType::File => {
                if state
                    .include
                    .as_ref()
                    .is_some_and(|include| !include.is_match(&child.name))
                {
                    continue;
                }
                // Hard-linked, vanished or unreadable files are skipped, not
                // fatal, and listed with why: a file left out in silence
                // reads as "no match" (issue 13).
                match root.open_read_in(&walk.current().dir, &child.name, &child_path) {
                    Ok((file, _)) => search(state, file, &child_path)?,
                    Err(error) => state.result.skips.add(&child_path, error.to_string()),
                }
            }
            // Symlinks are not followed in walks; special files are never opened.
            EntryType::Symlink | EntryType::Other => {}
        }
    }
    Ok(())
}

/// A reader that keeps its own error, so that a failed search can tell a
/// file that could not be read from a line the searcher would not hold.
struct Reading<R> {
    inner: R,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Reading<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buffer).inspect_err(|error| {
            self.failed = Some(io::Error::new(error.kind(), error.to_string()));
        })
    }
}

fn search(
    state: &mut GrepState,
    file: cap_std::fs::File,
    path: &VirtualPath,
) -> Result<(), FsError> {
    state.result.files_searched += 1;
    let shown = path.to_string();
    let max_results = state.max_results;
    let matches = &mut state.result.matches;
    let mut truncated = false;
    let mut reading = Reading {
        inner: file.into_std(),
        failed: None,
    };
    let outcome = state.searcher.search_reader(
        &state.matcher,
        &mut reading,
        Lossy(|line, text| {
            if matches.len() >= max_results {
                truncated = true;
                return Ok(false);
            }
            let text = text.trim_end_matches(['\n', '\r']);
            let text = if text.chars().count() > MAX_LINE_CHARS {
                let mut cut: String = text.chars().take(MAX_LINE_CHARS).collect();
                cut.push('…');
                cut
            } else {
                text.to_owned()
            };
            matches.push(GrepMatch {
                path: shown.clone(),
                line,
                text,
            });
            Ok(true)
        }),
    );
    if truncated {
        state.result.truncated = true;
        state.result.truncated_reason = Some(results_limit_reason(max_results));
    }
    // A file that cannot be searched to the end keeps the matches found so
    // far; the search goes on, and says why this file stopped.
    if outcome.is_err() {
        let reason = match reading.failed {
            Some(error) => format!("it could not be read to the end: {error}"),
            // The sink never fails and binary data ends a search quietly:
            // the searcher's only error of its own is its heap limit.
            None => format!(
                "it has a line longer than {} bytes (grep_max_line_bytes in fs.yaml), which is not searched; the matches before it are listed",
                state.max_line_bytes
            ),
        };
        state.result.skips.add(path, reason);
    }
    Ok(())
}

/// The ignore rules of one directory, read through its handle, and the
/// bytes they took. At most `allowance` bytes are read; `cut` says whether
/// a file held more (its further lines do not apply: more is searched,
/// never less).
fn ignore_matcher(root: &Root, dir: &Dir, path: &VirtualPath, allowance: u64) -> IgnoreRules {
    let shown = path.to_string();
    let mut builder = GitignoreBuilder::new(Path::new(&shown));
    let mut bytes = 0_u64;
    let mut cut = false;
    for name in IGNORE_FILES {
        // Opened and checked like any file: a FIFO or a link cannot hang or leak.
        let Ok((file, _)) = root.open_read_in(dir, name, &path.join(name)) else {
            continue;
        };
        let limit = MAX_IGNORE_FILE.min(allowance.saturating_sub(bytes));
        let mut data = Vec::new();
        if file.take(limit + 1).read_to_end(&mut data).is_err() {
            continue;
        }
        if data.len() as u64 > limit {
            cut = limit < MAX_IGNORE_FILE;
            data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        bytes += data.len() as u64;
        for line in String::from_utf8_lossy(&data).lines() {
            // A bad line is skipped, as git does.
            let _ = builder.add_line(None, line);
        }
    }
    IgnoreRules {
        matcher: builder.build().unwrap_or_else(|_| Gitignore::empty()),
        bytes,
        cut,
    }
}

/// One directory's ignore rules on the walk's stack.
struct IgnoreRules {
    matcher: Gitignore,
    /// Bytes of ignore files read, counted against [`IGNORE_BUDGET`].
    bytes: u64,
    cut: bool,
}

/// The deepest rule that matches decides: a whitelist (`!pattern`) in a
/// nested ignore file overrides an ignore above it.
fn is_ignored<'a>(
    ignores: impl DoubleEndedIterator<Item = &'a Gitignore>,
    path: &VirtualPath,
    is_dir: bool,
) -> bool {
    let shown = path.to_string();
    for gitignore in ignores.rev() {
        match gitignore.matched(Path::new(&shown), is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    false
}
