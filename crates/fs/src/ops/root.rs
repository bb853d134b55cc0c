//! The confinement core: the root directory handle, the policy, and the
//! checked ways to open what lies beneath it.

use std::fmt;
use std::io;
use std::path::Path;

use cap_std::fs::OpenOptionsExt;
use cap_std::fs::{Dir, File, FileType, FileTypeExt, Metadata, MetadataExt, OpenOptions};
use globset::GlobSet;
use serde::Serialize;

use super::error::FsError;
use crate::vpath::VirtualPath;

/// What the configuration allows; fixed for the server's life.
#[derive(Clone, Debug)]
pub struct Policy {
    pub read_only: bool,
    /// Largest number of bytes one read returns.
    pub max_read_bytes: u64,
    /// Whether regular files with more than one hard link may be opened.
    pub allow_hard_links: bool,
    /// Whether walks (list, tree, glob, grep) show names starting with `.`.
    pub show_hidden: bool,
    /// Names or root-relative paths that walks skip.
    pub exclude: GlobSet,
    /// Longest line grep holds in memory; a file with a longer line is
    /// skipped (and reported) from there on.
    pub grep_max_line_bytes: usize,
}

/// Default for [`Policy::grep_max_line_bytes`]: 4 MiB, far past any line
/// of text (a minified bundle is a few hundred KiB).
pub const DEFAULT_GREP_MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            read_only: false,
            max_read_bytes: 10 * 1024 * 1024,
            allow_hard_links: false,
            show_hidden: true,
            exclude: GlobSet::empty(),
            grep_max_line_bytes: DEFAULT_GREP_MAX_LINE_BYTES,
        }
    }
}

/// The virtual root: a directory handle and the policy. Every operation
/// resolves paths relative to `dir`, and only through cap-std.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    policy: Policy,
}

/// How long walks report and check cancellation: the domain's view of
/// progress and cancellation, without knowing where they go.
pub struct Watch {
    cancelled: Box<dyn Fn() -> bool + Send>,
    progress: Box<ProgressFn>,
}

/// Receives the count of items done so far and what is being done.
type ProgressFn = dyn Fn(u64, &str) + Send;

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Items between two progress reports.
const REPORT_EVERY: u64 = 256;

impl Watch {
    pub fn new(
        cancelled: impl Fn() -> bool + Send + 'static,
        progress: impl Fn(u64, &str) + Send + 'static,
    ) -> Watch {
        Watch {
            cancelled: Box::new(cancelled),
            progress: Box::new(progress),
        }
    }

    /// Never cancelled, reports nowhere.
    pub fn none() -> Watch {
        Watch::new(|| false, |_, _| {})
    }

    /// Fails with [`FsError::Cancelled`] once the caller gave up.
    pub fn check(&self) -> Result<(), FsError> {
        if (self.cancelled)() {
            Err(FsError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Counts one more item: checks cancellation (an atomic load) and
    /// reports progress every few hundred items.
    pub fn tick(&self, count: u64, what: &str) -> Result<(), FsError> {
        if count.is_multiple_of(REPORT_EVERY) {
            (self.progress)(count, what);
        }
        self.check()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Directory,
    Symlink,
    /// A FIFO, socket or device: listed, never opened.
    Other,
}

impl EntryType {
    pub fn of(file_type: FileType) -> EntryType {
        if file_type.is_symlink() {
            EntryType::Symlink
        } else if file_type.is_dir() {
            EntryType::Directory
        } else if file_type.is_file() {
            EntryType::File
        } else {
            EntryType::Other
        }
    }
}

/// One directory entry as clients see it.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Seconds since the epoch, for sorting.
    #[serde(skip)]
    pub modified_seconds: u64,
}

impl Entry {
    pub fn new(path: &VirtualPath, metadata: &Metadata) -> Entry {
        let modified = metadata.modified().ok().map(|time| time.into_std());
        Entry {
            name: path.name().unwrap_or("/").to_owned(),
            path: path.to_string(),
            entry_type: EntryType::of(metadata.file_type()),
            size: if metadata.is_dir() { 0 } else { metadata.len() },
            modified: modified.and_then(super::rfc3339),
            modified_seconds: modified
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |duration| duration.as_secs()),
        }
    }
}

impl Root {
    /// Opens the root directory; the only place a host path is used.
    pub fn open(path: &Path, policy: Policy) -> io::Result<Root> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Root { dir, policy })
    }

    /// The root directory handle, for cap-std calls that take paths
    /// relative to it.
    pub(crate) fn handle(&self) -> &Dir {
        &self.dir
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Refuses any change when the service is read-only.
    pub fn check_writable(&self, path: &VirtualPath) -> Result<(), FsError> {
        if self.policy.read_only {
            return Err(FsError::denied(
                path,
                "the file service is read-only (read_only: true in fs.yaml, or LLMBASEDOS_FS_READ_ONLY); only reading methods work",
            ));
        }
        Ok(())
    }

    /// Opens a directory, following symlinks only while they stay beneath.
    pub fn open_dir(&self, path: &VirtualPath) -> Result<Dir, FsError> {
        let result = if path.is_root() {
            self.dir.try_clone()
        } else {
            self.dir.open_dir(path.relative())
        };
        result.map_err(|error| match error.kind() {
            io::ErrorKind::NotADirectory => {
                FsError::invalid_path(path, "it is a file, not a directory")
            }
            _ => FsError::io(path, "open the directory", error),
        })
    }

    /// The parent directory of `path` and its final name, for operations on
    /// the name itself (rename, unlink, lstat) that must not follow a final
    /// symlink. The root has no parent: refused.
    pub fn parent_of(&self, path: &VirtualPath) -> Result<(Dir, String), FsError> {
        let Some(name) = path.name() else {
            return Err(FsError::invalid_path(
                path,
                "this operation cannot apply to the root itself; name something beneath it",
            ));
        };
        let dir = self.open_dir(&path.parent())?;
        Ok((dir, name.to_owned()))
    }

    /// Metadata of the name itself (a symlink is reported as one), or
    /// `None` when nothing has that name.
    pub fn lstat(&self, path: &VirtualPath) -> Result<Option<Metadata>, FsError> {
        let result = if path.is_root() {
            self.dir.dir_metadata()
        } else {
            self.dir.symlink_metadata(path.relative())
        };
        match result {
            Ok(metadata) => Ok(Some(metadata)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(FsError::io(path, "inspect", error)),
        }
    }

    /// Metadata following symlinks (beneath the root only).
    pub fn stat(&self, path: &VirtualPath) -> Result<Metadata, FsError> {
        let result = if path.is_root() {
            self.dir.dir_metadata()
        } else {
            self.dir.metadata(path.relative())
        };
        result.map_err(|error| FsError::io(path, "inspect", error))
    }

    /// Opens a regular file for reading. Opened with O_NONBLOCK (a FIFO
    /// cannot block the open) and checked through the opened handle, so
    /// what is checked is what is read.
    pub fn open_read(&self, path: &VirtualPath) -> Result<(File, Metadata), FsError> {
        self.open_read_in(&self.dir, path.relative(), path)
    }

    /// As [`Root::open_read`], relative to a directory already opened
    /// beneath the root (walks); `path` is what errors show.
    pub fn open_read_in(
        &self,
        dir: &Dir,
        relative: impl AsRef<Path>,
        path: &VirtualPath,
    ) -> Result<(File, Metadata), FsError> {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = dir
            .open_with(relative, &options)
            .map_err(|error| FsError::io(path, "open", error))?;
        let metadata = file
            .metadata()
            .map_err(|error| FsError::io(path, "inspect", error))?;
        self.check_regular(path, &metadata)?;
        Ok((file, metadata))
    }

    /// Opens an existing regular file for appending, refusing a final
    /// symlink (O_NOFOLLOW) and checking the opened handle.
    pub fn open_append(&self, path: &VirtualPath) -> Result<File, FsError> {
        let mut options = OpenOptions::new();
        options
            .append(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW);
        let file = self
            .dir
            .open_with(path.relative(), &options)
            .map_err(|error| FsError::io(path, "open", error))?;
        let metadata = file
            .metadata()
            .map_err(|error| FsError::io(path, "inspect", error))?;
        self.check_regular(path, &metadata)?;
        Ok(file)
    }

    /// Refuses directories, FIFOs, sockets, devices and (by default) files
    /// with more than one hard link, whose other names may lie outside.
    pub fn check_regular(&self, path: &VirtualPath, metadata: &Metadata) -> Result<(), FsError> {
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            return Err(FsError::invalid_path(path, "it is a directory").with_hint(
                super::error::hint(
                    "see what it holds",
                    "mcp.fs.list",
                    &[("path", path.to_string().into())],
                ),
            ));
        }
        if file_type.is_fifo()
            || file_type.is_socket()
            || file_type.is_char_device()
            || file_type.is_block_device()
        {
            return Err(FsError::denied(
                path,
                "it is a FIFO, socket or device, which the file service does not open",
            ));
        }
        if !file_type.is_file() {
            return Err(FsError::denied(path, "it is not a regular file"));
        }
        if metadata.nlink() > 1 && !self.policy.allow_hard_links {
            return Err(FsError::denied(path, HARD_LINK_REFUSED));
        }
        Ok(())
    }

    /// Whether a walk shows this entry: hidden names and configured
    /// excludes are skipped. `relative` is the path from the root without
    /// the leading `/`.
    pub fn visible(&self, name: &str, relative: &str) -> bool {
        if !self.policy.show_hidden && name.starts_with('.') {
            return false;
        }
        !(self.policy.exclude.is_match(name) || self.policy.exclude.is_match(relative))
    }
}

/// Why a hard-linked file is refused, and how each kind of install allows
/// it: `llmbasedos up` has no fs.yaml of its own, a systemd install has
/// /etc/llmbasedos/fs.yaml.
pub(crate) const HARD_LINK_REFUSED: &str = "it has more than one hard link, so its other names may lie outside the root; to open such files, set allow_hard_links: true in a file given to `llmbasedos up --fs-config FILE`, or in /etc/llmbasedos/fs.yaml for the systemd service (then restart it)";

/// The (device, inode) of a directory, to refuse visiting it twice.
pub(crate) fn identity(metadata: &Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}
