//! Writing files: atomic replacement, create-only, append; exact-text edits
//! with a unified diff.
//!
//! An overwrite never exposes a half-written file: the new content goes to
//! a temporary file created exclusively in the same directory, is flushed
//! to disk, then renamed over the target, and the directory is flushed.
//! Killed at any moment, the target holds the old content or the new one.
//!
//! An append that fails (a full disk, a quota) takes the file back to its
//! length before, so a retry never duplicates data.
//!
//! What the server creates or replaces never carries setuid, setgid or
//! sticky bits ([`SPECIAL_BITS`]): the server (root, or the service user)
//! owns what it writes, so keeping a source's setuid bit would hand out a
//! program that runs as the server's user with a client's content.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, PermissionsExt};
use serde::Serialize;
use similar::TextDiff;

use super::{FsError, Root};
use crate::vpath::VirtualPath;

/// setuid, setgid and sticky: never on a file the server writes.
pub(crate) const SPECIAL_BITS: u32 = 0o7000;

/// How a write treats an existing file (the `mode` param; its default is
/// in fs.cap.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Replace the file (atomically) or create it.
    Overwrite,
    /// Create the file; fail if it exists.
    Create,
    /// Add to the end of the file, creating it if needed.
    Append,
}

#[derive(Clone, Debug, Serialize)]
pub struct WriteResult {
    pub path: String,
    pub bytes_written: u64,
    /// Whether the file did not exist before.
    pub created: bool,
}

/// Writes `content` to `path`.
pub fn write(
    root: &Root,
    path: &VirtualPath,
    content: &[u8],
    mode: WriteMode,
    create_parents: bool,
) -> Result<WriteResult, FsError> {
    root.check_writable(path)?;
    let parent_path = path.parent();
    if create_parents && !parent_path.is_root() {
        create_dir_all(root, &parent_path)?;
    }
    let (parent, name) = parent_dir(root, path)?;
    let existing = existing_target(root, path)?;
    let created = existing.is_none();
    match (mode, existing) {
        (WriteMode::Create, Some(_)) => {
            return Err(FsError::AlreadyExists {
                path: path.to_string(),
                hint: "use mode \"overwrite\" to replace it or \"append\" to add to it",
            });
        }
        (WriteMode::Append, Some(_)) => {
            let file = root.open_append(path)?;
            append(path, file, content)?;
        }
        (WriteMode::Overwrite, Some(permissions)) => {
            atomic_write(path, &parent, &name, &mut &content[..], true, permissions)?;
        }
        // A name that appears meanwhile is replaced as a name (rename never
        // follows a symlink), so overwrite stays safe without a check.
        (WriteMode::Overwrite, None) => {
            atomic_write(path, &parent, &name, &mut &content[..], true, 0o644)?;
        }
        (WriteMode::Create | WriteMode::Append, None) => {
            atomic_write(path, &parent, &name, &mut &content[..], false, 0o644)?;
        }
    }
    Ok(WriteResult {
        path: path.to_string(),
        bytes_written: content.len() as u64,
        created,
    })
}

/// Appends `content` to an open file, all of it or nothing: the space is
/// reserved first (so a full disk fails before a byte is written), and on
/// any failure the file is cut back to its length before and flushed.
/// (Another writer appending at the same instant would be cut back too;
/// appends through this server to one file do not race in practice, and
/// a half-appended file is the worse outcome.)
fn append(path: &VirtualPath, mut file: cap_std::fs::File, content: &[u8]) -> Result<(), FsError> {
    let metadata = file
        .metadata()
        .map_err(|error| FsError::io(path, "inspect", error))?;
    let length = metadata.len();
    // Content appended by a client must not run with the file's setuid or
    // setgid bits. The kernel clears them on write only for writers without
    // CAP_FSETID, and the server may run as root. A writer that may not
    // change the mode (not the owner) is such a writer.
    let mode = metadata.permissions().mode();
    if mode & SPECIAL_BITS != 0 {
        match file.set_permissions(cap_std::fs::Permissions::from_mode(mode & !SPECIAL_BITS)) {
            Err(error) if error.kind() != io::ErrorKind::PermissionDenied => {
                return Err(FsError::io(path, "clear the setuid/setgid bits of", error));
            }
            _ => {}
        }
    }
    let written = reserve(&file, length, content.len())
        .and_then(|()| file.write_all(content))
        .and_then(|()| file.sync_data());
    match written {
        Ok(()) => Ok(()),
        Err(error) => match file.set_len(length).and_then(|()| file.sync_data()) {
            Ok(()) => Err(FsError::io(path, "append to", error)),
            Err(undo) => {
                tracing::error!(
                    path = %proto::text::escaped(&path.to_string()),
                    %error,
                    %undo,
                    "a failed append could not be undone"
                );
                Err(FsError::PartlyAppended {
                    path: path.to_string(),
                    source: error,
                })
            }
        },
    }
}

/// Reserves `more` bytes after `length` without changing the file's size
/// (fallocate with FALLOC_FL_KEEP_SIZE). File systems that cannot reserve
/// space are written to directly.
fn reserve(file: &cap_std::fs::File, length: u64, more: usize) -> io::Result<()> {
    let (Ok(offset), Ok(more)) = (libc::off_t::try_from(length), libc::off_t::try_from(more))
    else {
        return Ok(());
    };
    if more == 0 {
        return Ok(());
    }
    // SAFETY: the descriptor is open for the duration of the call.
    let result =
        unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, more) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Ok(()),
        _ => Err(error),
    }
}

/// The parent directory handle and name, with a clear error when the
/// parent does not exist.
pub(crate) fn parent_dir(root: &Root, path: &VirtualPath) -> Result<(Dir, String), FsError> {
    root.parent_of(path).map_err(|error| match error {
        FsError::NotFound { path: parent } => FsError::MissingParent {
            parent,
            path: path.to_string(),
        },
        other => other,
    })
}

/// Checks what a write would replace: `None` if nothing has the name, the
/// permission bits of a regular file otherwise (without setuid, setgid and
/// sticky). Symlinks, directories,
/// special files and (by default) hard-linked files are refused.
pub(crate) fn existing_target(root: &Root, path: &VirtualPath) -> Result<Option<u32>, FsError> {
    let Some(metadata) = root.lstat(path)? else {
        return Ok(None);
    };
    if metadata.file_type().is_symlink() {
        return Err(FsError::denied(
            path,
            "it is a symbolic link, and the file service does not write through symbolic links; write to the path of its target",
        ));
    }
    root.check_regular(path, &metadata)?;
    Ok(Some(metadata.permissions().mode() & 0o777))
}

pub(crate) fn create_dir_all(root: &Root, path: &VirtualPath) -> Result<(), FsError> {
    root.handle()
        .create_dir_all(path.relative())
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                FsError::invalid_path(path, "a component of it exists and is not a directory")
            }
            _ => FsError::io(path, "create the directory", error),
        })
}

static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes everything `source` yields to `name` in `parent` through a
/// temporary file: renamed over the target when `replace`, linked to the
/// name (which fails if it exists) otherwise. Returns the bytes written.
///
/// The temporary file is anonymous (O_TMPFILE) where the file system
/// allows it, so a crash while writing leaves nothing behind; it gets a
/// name only for the instant between being complete and being renamed.
/// Elsewhere it is a hidden file created exclusively in the same directory.
pub(crate) fn atomic_write(
    path: &VirtualPath,
    parent: &Dir,
    name: &str,
    source: &mut dyn Read,
    replace: bool,
    permissions: u32,
) -> Result<u64, FsError> {
    // The one place modes of new and replaced files are decided.
    let permissions = permissions & 0o777;
    let (mut file, mut temporary) = match create_anonymous(parent, permissions) {
        Some(file) => (file, None),
        None => {
            let (temporary, file) = create_temporary(path, parent, permissions)?;
            (file, Some(temporary))
        }
    };
    let result = (|| -> Result<u64, FsError> {
        let written = io::copy(source, &mut file)
            .and_then(|written| file.sync_all().map(|()| written))
            .map_err(|error| FsError::io(path, "write", error))?;
        if temporary.is_none() {
            if !replace {
                // Linking an anonymous file to its name fails if the name exists.
                link_anonymous(&file, parent, name)
                    .map_err(|error| FsError::io(path, "create", error))?;
                return Ok(written);
            }
            temporary = Some(link_to_temporary_name(path, &file, parent)?);
        }
        let temporary = temporary.as_deref().expect("named by now");
        if replace {
            parent
                .rename(temporary, parent, name)
                .map_err(|error| FsError::io(path, "replace", error))?;
        } else {
            parent
                .hard_link(temporary, parent, name)
                .map_err(|error| FsError::io(path, "create", error))?;
            let _ = parent.remove_file(temporary);
        }
        Ok(written)
    })();
    drop(file);
    match result {
        Ok(written) => {
            sync_dir(parent).map_err(|error| FsError::io(path, "flush the directory of", error))?;
            Ok(written)
        }
        Err(error) => {
            if let Some(temporary) = &temporary {
                let _ = parent.remove_file(temporary);
            }
            Err(error)
        }
    }
}

/// Whether anonymous temporary files can be given a name: linking one
/// goes through /proc/self/fd.
fn proc_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::path::Path::new("/proc/self/fd").is_dir())
}

/// An unnamed file in `parent` (O_TMPFILE), or `None` where the file
/// system or the kernel does not offer one.
fn create_anonymous(parent: &Dir, permissions: u32) -> Option<cap_std::fs::File> {
    if !proc_available() {
        return None;
    }
    let mut options = OpenOptions::new();
    options
        .write(true)
        .mode(permissions)
        .custom_flags(libc::O_TMPFILE);
    parent.open_with(".", &options).ok()
}

/// Gives an anonymous file the single-component `name` in `parent`.
fn link_anonymous(file: &cap_std::fs::File, parent: &Dir, name: &str) -> io::Result<()> {
    let source =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the call, both strings are
    // NUL-terminated; the name is one component, resolved in `parent` only.
    let result = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            parent.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn link_to_temporary_name(
    path: &VirtualPath,
    file: &cap_std::fs::File,
    parent: &Dir,
) -> Result<String, FsError> {
    for _ in 0..16 {
        let name = temporary_name();
        match link_anonymous(file, parent, &name) {
            Ok(()) => return Ok(name),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(FsError::io(path, "name the temporary file for", error)),
        }
    }
    Err(FsError::io(
        path,
        "name the temporary file for",
        io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"),
    ))
}

fn temporary_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |duration| duration.subsec_nanos());
    format!(
        ".llmbasedos-{}-{}-{nanos}.tmp",
        std::process::id(),
        TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn create_temporary(
    path: &VirtualPath,
    parent: &Dir,
    permissions: u32,
) -> Result<(String, cap_std::fs::File), FsError> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .create_new(true)
        .mode(permissions)
        .custom_flags(libc::O_NOFOLLOW);
    for _ in 0..16 {
        let name = temporary_name();
        match parent.open_with(&name, &options) {
            Ok(file) => return Ok((name, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(FsError::io(path, "create a temporary file for", error)),
        }
    }
    Err(FsError::io(
        path,
        "create a temporary file for",
        io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"),
    ))
}

/// Flushes a directory's entries (a rename is durable only then). cap-std
/// holds directories as O_PATH descriptors, which cannot be fsynced: the
/// directory is opened again for reading through the handle.
pub(crate) fn sync_dir(dir: &Dir) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_DIRECTORY);
    dir.open_with(".", &options)?.sync_all()
}

/// One exact-text replacement.
#[derive(Clone, Debug)]
pub struct Edit {
    pub old_text: String,
    pub new_text: String,
    /// Replace every occurrence instead of requiring exactly one.
    pub replace_all: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct EditResult {
    pub path: String,
    /// Unified diff of the change (empty when nothing changed).
    pub diff: String,
    pub replacements: u64,
    pub dry_run: bool,
    /// Whether the file was written.
    pub applied: bool,
}

/// Applies exact-text edits in order; with `dry_run`, only returns the diff.
pub fn edit(
    root: &Root,
    path: &VirtualPath,
    edits: &[Edit],
    dry_run: bool,
) -> Result<EditResult, FsError> {
    if !dry_run {
        root.check_writable(path)?;
    }
    let permissions = existing_target(root, path)?.ok_or_else(|| FsError::NotFound {
        path: path.to_string(),
    })?;
    let (mut file, metadata) = root.open_read(path)?;
    let limit = root.policy().max_read_bytes;
    if metadata.len() > limit {
        return Err(FsError::TooLarge {
            path: path.to_string(),
            size: metadata.len(),
            limit,
            hint: "edit smaller files, or write it whole",
        }
        .with_hint(super::error::hint(
            "replace it",
            "mcp.fs.write",
            &[
                ("path", path.to_string().into()),
                ("mode", "overwrite".into()),
            ],
        )));
    }
    let mut original = String::new();
    file.read_to_string(&mut original)
        .map_err(|error| match error.kind() {
            io::ErrorKind::InvalidData => FsError::InvalidValue(format!(
                "{path} is not UTF-8 text; only text files can be edited"
            )),
            _ => FsError::io(path, "read", error),
        })?;
    let mut text = original.clone();
    let mut replacements = 0;
    for (index, edit) in edits.iter().enumerate() {
        let number = index + 1;
        if edit.old_text.is_empty() {
            return Err(FsError::InvalidValue(format!(
                "edit {number} for {path}: old_text is empty; give the exact text to replace"
            )));
        }
        let count = text.matches(edit.old_text.as_str()).count();
        if count == 0 {
            return Err(FsError::InvalidValue(format!(
                "edit {number} for {path}: old_text was not found (after the edits before it); copy it exactly from the file, whitespace included"
            ))
            .with_hint(super::error::hint(
                "read the file",
                "mcp.fs.read",
                &[("path", path.to_string().into())],
            )));
        }
        if count > 1 && !edit.replace_all {
            return Err(FsError::InvalidValue(format!(
                "edit {number} for {path}: old_text occurs {count} times; include more surrounding text to make it unique, or set replace_all: true"
            )));
        }
        text = text.replace(edit.old_text.as_str(), &edit.new_text);
        replacements += count as u64;
    }
    let shown = path.to_string();
    let diff = TextDiff::from_lines(original.as_str(), text.as_str())
        .unified_diff()
        .context_radius(3)
        .header(&shown, &shown)
        .to_string();
    let changed = text != original;
    if changed && !dry_run {
        let (parent, name) = root.parent_of(path)?;
        atomic_write(
            path,
            &parent,
            &name,
            &mut text.as_bytes(),
            true,
            permissions,
        )?;
    }
    Ok(EditResult {
        path: shown,
        diff,
        replacements,
        dry_run,
        applied: changed && !dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The temp dirs of the tests (and /home on Arch: ext4, btrfs, xfs, tmpfs)
    /// offer O_TMPFILE; if this fails the server still works, with named
    /// temporary files.
    #[test]
    fn anonymous_temporary_files_are_available_and_linkable() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = Dir::open_ambient_dir(temp.path(), cap_std::ambient_authority()).expect("open");
        let mut file = create_anonymous(&dir, 0o640).expect("O_TMPFILE works here");
        file.write_all(b"data").expect("write");
        link_anonymous(&file, &dir, "named").expect("link");
        assert_eq!(
            std::fs::read(temp.path().join("named")).expect("read"),
            b"data"
        );
        let error = link_anonymous(&file, &dir, "named").expect_err("the name exists");
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    }
}
