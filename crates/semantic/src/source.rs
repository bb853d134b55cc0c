//! Where files come from: a small trait the indexer reads through, so the
//! fs server can hand it its confined root (cap-std, `openat2`
//! `RESOLVE_BENEATH`) and tests a plain directory, and the walk over it
//! with `.gitignore`/`.ignore` files and configured excludes.
//!
//! Paths are virtual: `/` is the root, `/notes/a.md` a file beneath it;
//! they never name a host path. They are normalised by the one
//! [`VirtualPath`] type the fs server parses clients' paths with, and
//! handed through [`Source`] in its text form.

use std::io;
use std::path::{Path, PathBuf};

use globset::GlobSet;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::SemanticError;
use crate::vpath::VirtualPath;

/// What a directory entry is. Symbolic links, FIFOs, sockets and devices
/// are `Other`, which the indexer never opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Other,
}

/// One entry of a directory, or one file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub modified_ns: i64,
}

/// Read access to a tree of files, by virtual path.
pub trait Source: Send + Sync {
    /// The entries of a directory (not following a final symbolic link).
    fn list(&self, dir: &str) -> io::Result<Vec<Entry>>;
    /// The metadata of one name (not following a final symbolic link).
    fn metadata(&self, path: &str) -> io::Result<Entry>;
    /// The contents of a regular file, at most `limit` bytes (a longer file
    /// is an error).
    fn read(&self, path: &str, limit: u64) -> io::Result<Vec<u8>>;
}

/// A file the walk found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub modified_ns: i64,
}

/// Joins a virtual directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// `path` in its one normal form ([`VirtualPath`]), or the indexer's
/// refusal of it; `what` names it in the message ("scope ", or "").
pub(crate) fn parse_path(path: &str, what: &str) -> Result<VirtualPath, SemanticError> {
    VirtualPath::parse(path).map_err(|_| {
        SemanticError::InvalidValue(format!(
            "{what}{path:?} is not a valid path; give a /-rooted path without .. components"
        ))
    })
}

/// Whether `path` is `dir` itself or lies beneath it.
pub fn is_beneath(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// What the walk leaves out.
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Glob patterns matched against names and root-relative paths.
    pub exclude: GlobSet,
    /// Whether names starting with `.` are walked.
    pub include_hidden: bool,
}

/// The files beneath `start` (a file or a directory), recursively or one
/// level, skipping what `.gitignore`/`.ignore` files (of `start` and of its
/// ancestors) and the options exclude. `.git` is never walked. Symbolic
/// links are not followed, so a walk always ends.
pub fn walk(
    source: &dyn Source,
    start: &str,
    recursive: bool,
    options: &WalkOptions,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<FileInfo>, SemanticError> {
    let start = parse_path(start, "")?.to_string();
    let top = source
        .metadata(&start)
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => SemanticError::SourceMissing {
                path: start.clone(),
            },
            _ => SemanticError::Source {
                path: start.clone(),
                reason: format!("cannot be inspected: {error}"),
            },
        })?;
    match top.kind {
        EntryKind::File => {
            return Ok(vec![FileInfo {
                path: start,
                size: top.size,
                modified_ns: top.modified_ns,
            }]);
        }
        EntryKind::Other => {
            return Err(SemanticError::Source {
                path: start,
                reason: "is not a regular file or a directory".to_owned(),
            });
        }
        EntryKind::Directory => {}
    }
    // The ignore files of the ancestors apply too.
    let mut matchers = Vec::new();
    let mut ancestors = Vec::new();
    let mut dir = start.as_str();
    while dir != "/" {
        let parent = dir
            .rfind('/')
            .map_or("/", |at| if at == 0 { "/" } else { &dir[..at] });
        ancestors.push(parent.to_owned());
        dir = parent;
    }
    for ancestor in ancestors.iter().rev() {
        if let Some(matcher) = ignore_files(source, ancestor, None) {
            matchers.push(matcher);
        }
    }
    let mut files = Vec::new();
    let mut stack = vec![(start, matchers.len())];
    let mut visited = 0_u64;
    while let Some((dir, depth)) = stack.pop() {
        if cancelled() {
            return Err(SemanticError::Cancelled);
        }
        matchers.truncate(depth);
        let entries = match source.list(&dir) {
            Ok(entries) => entries,
            // A directory that vanished or cannot be read is skipped.
            Err(_) => continue,
        };
        if let Some(matcher) = ignore_files(source, &dir, Some(&entries)) {
            matchers.push(matcher);
        }
        let depth = matchers.len();
        let mut subdirs = Vec::new();
        for entry in entries {
            visited += 1;
            if visited.is_multiple_of(1024) && cancelled() {
                return Err(SemanticError::Cancelled);
            }
            if entry.name == ".git" || (!options.include_hidden && entry.name.starts_with('.')) {
                continue;
            }
            let path = join(&dir, &entry.name);
            let relative = &path[1..];
            if options.exclude.is_match(&entry.name) || options.exclude.is_match(relative) {
                continue;
            }
            let is_dir = entry.kind == EntryKind::Directory;
            if ignored(&matchers, &path, is_dir) {
                continue;
            }
            match entry.kind {
                EntryKind::File => files.push(FileInfo {
                    path,
                    size: entry.size,
                    modified_ns: entry.modified_ns,
                }),
                EntryKind::Directory if recursive => subdirs.push(path),
                _ => {}
            }
        }
        // Depth-first, in name order.
        subdirs.sort();
        for subdir in subdirs.into_iter().rev() {
            stack.push((subdir, depth));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Largest ignore file read.
const IGNORE_FILE_LIMIT: u64 = 1024 * 1024;

/// The rules of `dir`'s `.gitignore` and `.ignore`, if it has any.
fn ignore_files(source: &dyn Source, dir: &str, entries: Option<&[Entry]>) -> Option<Gitignore> {
    let mut builder = GitignoreBuilder::new(dir);
    let mut found = false;
    for name in [".gitignore", ".ignore"] {
        if let Some(entries) = entries
            && !entries
                .iter()
                .any(|entry| entry.name == name && entry.kind == EntryKind::File)
        {
            continue;
        }
        let Ok(bytes) = source.read(&join(dir, name), IGNORE_FILE_LIMIT) else {
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).lines() {
            // A bad line is skipped, as git does.
            let _ = builder.add_line(None, line);
        }
        found = true;
    }
    if !found {
        return None;
    }
    builder.build().ok()
}

/// Whether the innermost rule that matches says ignore. A parent
/// directory that is ignored is never walked, so only `path` is checked.
fn ignored(matchers: &[Gitignore], path: &str, is_dir: bool) -> bool {
    for matcher in matchers.iter().rev() {
        let matched = matcher.matched(Path::new(path), is_dir);
        if matched.is_ignore() {
            return true;
        }
        if matched.is_whitelist() {
            return false;
        }
    }
    false
}

/// A [`Source`] over a host directory, for tests, benchmarks and tools
/// that have no confined root. Refuses `..`; does not follow symbolic links
/// it lists, but (unlike the fs server's root) does not confine them.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> DirSource {
        DirSource { root: root.into() }
    }

    fn host(&self, path: &str) -> io::Result<PathBuf> {
        let path = VirtualPath::parse(path)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "malformed path"))?;
        Ok(self.root.join(path.relative()))
    }
}

fn entry_of(name: String, metadata: &std::fs::Metadata) -> Entry {
    use std::os::unix::fs::MetadataExt;
    let file_type = metadata.file_type();
    Entry {
        name,
        kind: if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_dir() {
            EntryKind::Directory
        } else {
            EntryKind::Other
        },
        size: metadata.len(),
        modified_ns: metadata
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(metadata.mtime_nsec()),
    }
}

impl Source for DirSource {
    fn list(&self, dir: &str) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(self.host(dir)?)? {
            let entry = entry?;
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            entries.push(entry_of(
                entry.file_name().to_string_lossy().into_owned(),
                &metadata,
            ));
        }
        Ok(entries)
    }

    fn metadata(&self, path: &str) -> io::Result<Entry> {
        let host = self.host(path)?;
        let metadata = std::fs::symlink_metadata(&host)?;
        let name = host
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        Ok(entry_of(name, &metadata))
    }

    fn read(&self, path: &str, limit: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let file = std::fs::File::open(self.host(path)?)?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("larger than {limit} bytes"),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_and_nest() {
        // The one normal form; relative and empty paths are refused like
        // the fs server refuses them.
        let cases = [
            ("/", Some("/")),
            ("", None),
            ("a/b/", None),
            ("/a/b/", Some("/a/b")),
            ("//a/./b", Some("/a/b")),
            ("/a/../b", None),
            ("/a\0", None),
        ];
        for (input, expected) in cases {
            let parsed = parse_path(input, "").ok().map(|path| path.to_string());
            assert_eq!(parsed.as_deref(), expected, "{input:?}");
        }
        assert!(is_beneath("/a/b", "/a"));
        assert!(is_beneath("/a", "/a"));
        assert!(is_beneath("/a", "/"));
        assert!(!is_beneath("/ab", "/a"));
    }

    #[test]
    fn walk_honours_ignore_files_and_excludes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = [
            ".gitignore",
            "keep.md",
            "build/out.txt",
            "notes/a.md",
            "notes/skip.log",
            "notes/.ignore",
            "notes/secret/x.md",
            "node_modules/m.js",
            ".hidden/h.md",
            ".git/config",
        ];
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, "text").expect("write");
        }
        std::fs::write(dir.path().join(".gitignore"), "build/\n*.log\n").expect("write");
        std::fs::write(dir.path().join("notes/.ignore"), "secret\n").expect("write");
        let mut exclude = globset::GlobSetBuilder::new();
        exclude.add(globset::Glob::new("node_modules").expect("glob"));
        let options = WalkOptions {
            exclude: exclude.build().expect("globset"),
            include_hidden: false,
        };
        let source = DirSource::new(dir.path());
        let paths = |start: &str, recursive: bool| -> Vec<String> {
            walk(&source, start, recursive, &options, &|| false)
                .expect("walk")
                .into_iter()
                .map(|file| file.path)
                .collect()
        };
        assert_eq!(paths("/", true), ["/keep.md", "/notes/a.md"]);
        assert_eq!(paths("/", false), ["/keep.md"]);
        // The root's .gitignore applies below it too.
        assert_eq!(paths("/notes", true), ["/notes/a.md"]);
        assert_eq!(paths("/notes/a.md", false), ["/notes/a.md"]);
        let missing = walk(&source, "/nope", true, &options, &|| false).expect_err("missing");
        assert_eq!(missing.to_string(), "/nope does not exist");
    }
}
