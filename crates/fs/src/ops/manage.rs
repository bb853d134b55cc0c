//! Managing names: stat, mkdir, move, copy, delete.

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt, PermissionsExt};
use serde::Serialize;

use super::root::identity;
use super::walk::{DEPTH_LIMIT, DepthFirst, Step};
use super::write::{atomic_write, create_dir_all, existing_target, parent_dir, sync_dir};
use super::{EntryType, FsError, Root, Watch};
use crate::vpath::VirtualPath;

#[derive(Clone, Debug, Serialize)]
pub struct StatResult {
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accessed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Permission bits in octal, e.g. `"0644"`.
    pub permissions: String,
    pub nlink: u64,
    pub readonly: bool,
    /// For a symlink: the type of what it points to, when that lies beneath
    /// the root; `None` when it dangles or leads outside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<EntryType>,
}

pub fn stat(root: &Root, path: &VirtualPath) -> Result<StatResult, FsError> {
    let metadata = root.lstat(path)?.ok_or_else(|| FsError::NotFound {
        path: path.to_string(),
    })?;
    let entry_type = EntryType::of(metadata.file_type());
    let target_type = if entry_type == EntryType::Symlink {
        root.stat(path)
            .ok()
            .map(|target| EntryType::of(target.file_type()))
    } else {
        None
    };
    let time = |time: io::Result<cap_std::time::SystemTime>| {
        time.ok().and_then(|time| super::rfc3339(time.into_std()))
    };
    let mode = metadata.permissions().mode();
    Ok(StatResult {
        path: path.to_string(),
        name: path.name().unwrap_or("/").to_owned(),
        entry_type,
        size: metadata.len(),
        modified: time(metadata.modified()),
        accessed: time(metadata.accessed()),
        created: time(metadata.created()),
        permissions: format!("{:04o}", mode & 0o7777),
        nlink: metadata.nlink(),
        readonly: mode & 0o222 == 0,
        target_type,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct MkdirResult {
    pub path: String,
    /// Whether the directory did not exist before.
    pub created: bool,
}

pub fn mkdir(root: &Root, path: &VirtualPath, parents: bool) -> Result<MkdirResult, FsError> {
    root.check_writable(path)?;
    if let Some(existing) = root.lstat(path)? {
        if existing.is_dir() && parents {
            return Ok(MkdirResult {
                path: path.to_string(),
                created: false,
            });
        }
        let error = FsError::AlreadyExists {
            path: path.to_string(),
            hint: if existing.is_dir() {
                "it is a directory"
            } else {
                "it is not a directory; choose another name"
            },
        };
        return Err(if existing.is_dir() {
            error.with_hint(super::error::hint(
                "accept the existing directory",
                "mcp.fs.mkdir",
                &[("path", path.to_string().into()), ("parents", true.into())],
            ))
        } else {
            error
        });
    }
    if parents {
        create_dir_all(root, path)?;
    } else {
        let (parent, name) = parent_dir(root, path)?;
        parent
            .create_dir(&name)
            .map_err(|error| FsError::io(path, "create the directory", error))?;
    }
    Ok(MkdirResult {
        path: path.to_string(),
        created: true,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct MoveResult {
    pub from: String,
    pub to: String,
}

/// Renames `from` to `to` (both beneath the root); refuses to replace an
/// existing name unless `overwrite`.
pub fn rename(
    root: &Root,
    from: &VirtualPath,
    to: &VirtualPath,
    overwrite: bool,
) -> Result<MoveResult, FsError> {
    rename_unhinted(root, from, to, overwrite)
        .map_err(|error| replace_hint(error, "mcp.fs.move", from, to, &[]))
}

/// An existing destination's error with the call that replaces it.
fn replace_hint(
    error: FsError,
    method: &str,
    from: &VirtualPath,
    to: &VirtualPath,
    extra: &[(&str, serde_json::Value)],
) -> FsError {
    match error {
        FsError::AlreadyExists { .. } => {
            let mut arguments = vec![
                ("from", from.to_string().into()),
                ("to", to.to_string().into()),
                ("overwrite", true.into()),
            ];
            arguments.extend_from_slice(extra);
            error.with_hint(super::error::hint("replace it", method, &arguments))
        }
        other => other,
    }
}

fn rename_unhinted(
    root: &Root,
    from: &VirtualPath,
    to: &VirtualPath,
    overwrite: bool,
) -> Result<MoveResult, FsError> {
    root.check_writable(from)?;
    if to.starts_with(from) {
        return Err(FsError::InvalidValue(format!(
            "cannot move {from} to {to}, which is {from} itself or inside it"
        )));
    }
    let (from_dir, from_name) = root.parent_of(from)?;
    if root.lstat(from)?.is_none() {
        return Err(FsError::NotFound {
            path: from.to_string(),
        });
    }
    let (to_dir, to_name) = parent_dir(root, to)?;
    if overwrite {
        from_dir
            .rename(&from_name, &to_dir, &to_name)
            .map_err(|error| FsError::io(to, "move", error))?;
    } else {
        rename_no_replace(&from_dir, &from_name, &to_dir, &to_name).map_err(|error| match error
            .kind()
        {
            io::ErrorKind::AlreadyExists => FsError::AlreadyExists {
                path: to.to_string(),
                hint: "choose another destination, or replace what is there",
            },
            _ => FsError::io(to, "move", error),
        })?;
    }
    let _ = sync_dir(&to_dir);
    Ok(MoveResult {
        from: from.to_string(),
        to: to.to_string(),
    })
}

/// renameat2(RENAME_NOREPLACE) between two directory handles: names are
/// single components, so nothing is resolved outside the handles.
fn rename_no_replace(
    from_dir: &Dir,
    from: impl AsRef<OsStr>,
    to_dir: &Dir,
    to: impl AsRef<OsStr>,
) -> io::Result<()> {
    let from = CString::new(from.as_ref().as_bytes()).map_err(io::Error::other)?;
    let to = CString::new(to.as_ref().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the duration of the call and
    // both names are NUL-terminated C strings.
    let result = unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyResult {
    pub from: String,
    pub to: String,
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
    /// Entries not copied: symlinks, special files, hard-linked files,
    /// names that are not UTF-8.
    pub skipped: Vec<String>,
}

/// Copies a file, or a directory tree when `recursive`. Symlinks inside a
/// tree are not followed (they are skipped), so a copy never reads outside
/// the root and never loops.
pub fn copy(
    root: &Root,
    from: &VirtualPath,
    to: &VirtualPath,
    recursive: bool,
    overwrite: bool,
    watch: &Watch,
) -> Result<CopyResult, FsError> {
    let extra = [("recursive", recursive.into())];
    copy_unhinted(root, from, to, recursive, overwrite, watch)
        .map_err(|error| replace_hint(error, "mcp.fs.copy", from, to, &extra))
}

fn copy_unhinted(
    root: &Root,
    from: &VirtualPath,
    to: &VirtualPath,
    recursive: bool,
    overwrite: bool,
    watch: &Watch,
) -> Result<CopyResult, FsError> {
    root.check_writable(to)?;
    if to.starts_with(from) {
        return Err(FsError::InvalidValue(format!(
            "cannot copy {from} to {to}, which is {from} itself or inside it"
        )));
    }
    let source = root.stat(from)?;
    let mut result = CopyResult {
        from: from.to_string(),
        to: to.to_string(),
        ..CopyResult::default()
    };
    if source.is_dir() {
        if !recursive {
            return Err(
                FsError::InvalidValue(format!("{from} is a directory")).with_hint(
                    super::error::hint(
                        "copy it with its contents",
                        "mcp.fs.copy",
                        &[
                            ("from", from.to_string().into()),
                            ("to", to.to_string().into()),
                            ("recursive", true.into()),
                        ],
                    ),
                ),
            );
        }
        if let Some(existing) = root.lstat(to)?
            && !(overwrite && existing.is_dir())
        {
            return Err(FsError::AlreadyExists {
                path: to.to_string(),
                hint: "choose another destination, or replace what is there",
            });
        }
        let source_dir = root.open_dir(from)?;
        let (to_parent, to_name) = parent_dir(root, to)?;
        match to_parent.create_dir(&to_name) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(FsError::io(to, "create the directory", error)),
        }
        let target_dir = root.open_dir(to)?;
        let mut visited = HashSet::new();
        // The copy must never walk into itself (e.g. through a symlinked parent).
        if let Ok(metadata) = target_dir.dir_metadata() {
            visited.insert(identity(&metadata));
        }
        result.directories += 1;
        copy_tree(
            root,
            source_dir,
            from,
            target_dir,
            to,
            overwrite,
            &mut visited,
            &mut result,
            watch,
        )?;
    } else {
        let (mut file, _) = root.open_read(from)?;
        let replace = match existing_target(root, to)? {
            Some(_) if !overwrite => {
                return Err(FsError::AlreadyExists {
                    path: to.to_string(),
                    hint: "choose another destination, or replace what is there",
                });
            }
            Some(_) => true,
            None => false,
        };
        let (parent, name) = parent_dir(root, to)?;
        let mode = source.permissions().mode();
        result.bytes = atomic_write(to, &parent, &name, &mut file, replace, mode)?;
        result.files = 1;
    }
    Ok(result)
}

/// The entries of a directory being copied, sorted; names that are not
/// UTF-8 cannot be named by a client and are reported as skipped.
fn copy_entries(
    source: &Dir,
    source_path: &VirtualPath,
    result: &mut CopyResult,
) -> Result<Vec<(String, EntryType)>, FsError> {
    let entries = source
        .entries()
        .map_err(|error| FsError::io(source_path, "list", error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| FsError::io(source_path, "list", error))?;
        let file_type = entry
            .file_type()
            .map_err(|error| FsError::io(source_path, "list", error))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push((name, EntryType::of(file_type))),
            Err(name) => result
                .skipped
                .push(format!("{source_path}/{}", name.to_string_lossy())),
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// Copies the contents of `source` into `target`, depth first (the walk's
/// stack is on the heap); a tree deeper than [`DEPTH_LIMIT`] stops the copy
/// with an error naming where.
#[allow(clippy::too_many_arguments)]
fn copy_tree(
    root: &Root,
    source: Dir,
    source_path: &VirtualPath,
    target: Dir,
    target_path: &VirtualPath,
    overwrite: bool,
    visited: &mut HashSet<(u64, u64)>,
    result: &mut CopyResult,
    watch: &Watch,
) -> Result<(), FsError> {
    if let Ok(metadata) = source.dir_metadata()
        && !visited.insert(identity(&metadata))
    {
        result.skipped.push(source_path.to_string());
        return Ok(());
    }
    let entries = copy_entries(&source, source_path, result)?;
    let mut walk = DepthFirst::new(
        source,
        source_path.clone(),
        entries,
        (target, target_path.clone()),
    );
    while let Some(step) = walk.next() {
        let Step::Entry((name, entry_type)) = step else {
            continue;
        };
        let level = walk.current();
        let (target, target_path) = &level.extra;
        let from = level.path.join(&name);
        let to = target_path.join(&name);
        watch.tick(result.files + result.directories, "copying")?;
        match entry_type {
            EntryType::Directory => {
                if walk.is_full() {
                    return Err(FsError::TooDeep {
                        path: proto::text::echo(&from.to_string()).into_owned(),
                        limit: DEPTH_LIMIT,
                        hint: "the copy stopped there, and what it copied before stays in the destination (delete it if you do not want it); copy the deeper part on its own",
                    });
                }
                match target.create_dir(&name) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists && overwrite => {}
                    Err(error) => return Err(FsError::io(&to, "create the directory", error)),
                }
                let child_source = open_dir_nofollow(&level.dir, &name)
                    .map_err(|error| FsError::io(&from, "open the directory", error))?;
                let child_target = open_dir_nofollow(target, &name)
                    .map_err(|error| FsError::io(&to, "open the directory", error))?;
                result.directories += 1;
                if let Ok(metadata) = child_source.dir_metadata()
                    && !visited.insert(identity(&metadata))
                {
                    result.skipped.push(from.to_string());
                    continue;
                }
                let entries = copy_entries(&child_source, &from, result)?;
                walk.enter(child_source, from, entries, (child_target, to));
            }
            EntryType::File => {
                let Ok((mut file, metadata)) = root.open_read_in(&level.dir, &name, &from) else {
                    result.skipped.push(from.to_string());
                    continue;
                };
                let replace = match target.symlink_metadata(&name) {
                    Ok(existing) if overwrite && existing.is_file() => true,
                    Ok(_) => {
                        return Err(FsError::AlreadyExists {
                            path: to.to_string(),
                            hint: "choose another destination, or replace what is there",
                        });
                    }
                    Err(_) => false,
                };
                let mode = metadata.permissions().mode();
                result.bytes += atomic_write(&to, target, &name, &mut file, replace, mode)?;
                result.files += 1;
            }
            EntryType::Symlink | EntryType::Other => result.skipped.push(from.to_string()),
        }
    }
    Ok(())
}

/// Opens a directory by a single name without following a symlink there,
/// so that a name swapped for a link between listing and opening fails.
pub(crate) fn open_dir_nofollow(parent: &Dir, name: impl AsRef<Path>) -> io::Result<Dir> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW);
    let file = parent.open_with(name, &options)?;
    Ok(Dir::from_std_file(file.into_std()))
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DeleteResult {
    pub path: String,
    pub files: u64,
    pub directories: u64,
}

/// Deletes a file, a symlink (not its target), an empty directory, or a
/// whole tree when `recursive`.
pub fn delete(
    root: &Root,
    path: &VirtualPath,
    recursive: bool,
    watch: &Watch,
) -> Result<DeleteResult, FsError> {
    root.check_writable(path)?;
    let (parent, name) = root.parent_of(path)?;
    let metadata = root.lstat(path)?.ok_or_else(|| FsError::NotFound {
        path: path.to_string(),
    })?;
    let mut result = DeleteResult {
        path: path.to_string(),
        ..DeleteResult::default()
    };
    if metadata.is_dir() {
        if recursive {
            let dir = open_dir_nofollow(&parent, &name)
                .map_err(|error| FsError::io(path, "open the directory", error))?;
            empty_tree(dir, path, &mut result, watch)?;
        }
        parent
            .remove_dir(&name)
            .map_err(|error| match error.kind() {
                io::ErrorKind::DirectoryNotEmpty => FsError::NotEmpty {
                    path: path.to_string(),
                    action: "delete",
                },
                _ => FsError::io(path, "delete", error),
            })?;
        result.directories += 1;
    } else {
        parent
            .remove_file(&name)
            .map_err(|error| FsError::io(path, "delete", error))?;
        result.files += 1;
    }
    let _ = sync_dir(&parent);
    Ok(result)
}

/// A directory entry being deleted: its name and whether it is a directory.
type DeleteEntry = (OsString, bool);

fn delete_entries(dir: &Dir, path: &VirtualPath) -> Result<Vec<DeleteEntry>, FsError> {
    let entries = dir
        .entries()
        .map_err(|error| FsError::io(path, "list", error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| FsError::io(path, "list", error))?;
        let name = entry.file_name();
        let is_dir = entry
            .file_type()
            .map_err(|error| FsError::io(&path.join(&name.to_string_lossy()), "inspect", error))?
            .is_dir();
        names.push((name, is_dir));
    }
    Ok(names)
}

/// Deletes everything in `dir`, depth first with the stack on the heap.
///
/// A tree deeper than [`DEPTH_LIMIT`] is deleted too (what a client could
/// build with mkdir and move, it can remove): a directory found at the
/// limit is first moved up to be an entry of `dir` itself — a rename
/// between two handles of the tree being deleted, so nothing leaves it —
/// and deleted from there, so no more than [`DEPTH_LIMIT`] directories
/// are ever open.
fn empty_tree(
    dir: Dir,
    path: &VirtualPath,
    result: &mut DeleteResult,
    watch: &Watch,
) -> Result<(), FsError> {
    let entries = delete_entries(&dir, path)?;
    // Each level keeps its name in its parent, to remove it once empty.
    let mut walk: DepthFirst<DeleteEntry, Option<OsString>> =
        DepthFirst::new(dir, path.clone(), entries, None);
    let mut moved_up = 0_u64;
    while let Some(step) = walk.next() {
        let (name, is_dir) = match step {
            Step::Entry(entry) => entry,
            Step::Left(level) => {
                if let Some(name) = &level.extra {
                    let parent = walk.current();
                    parent
                        .dir
                        .remove_dir(name)
                        .map_err(|error| FsError::io(&level.path, "delete", error))?;
                    result.directories += 1;
                }
                continue;
            }
        };
        watch.tick(result.files + result.directories, "deleting")?;
        let level = walk.current();
        let shown = level.path.join(&name.to_string_lossy());
        if !is_dir {
            level
                .dir
                .remove_file(&name)
                .map_err(|error| FsError::io(&shown, "delete", error))?;
            result.files += 1;
            continue;
        }
        if walk.is_full() {
            let parked =
                move_up(&level.dir, &name, &walk.start().dir, &mut moved_up).map_err(|error| {
                    FsError::io(&shown, "move up (to delete a tree this deep)", error)
                })?;
            walk.start_mut().add_pending((parked, true));
            continue;
        }
        let child = open_dir_nofollow(&level.dir, &name)
            .map_err(|error| FsError::io(&shown, "open the directory", error))?;
        let entries = delete_entries(&child, &shown)?;
        walk.enter(child, shown, entries, Some(name));
    }
    Ok(())
}

/// Renames `name` in `from` to a fresh hidden name in `to`; returns it.
fn move_up(from: &Dir, name: &OsStr, to: &Dir, counter: &mut u64) -> io::Result<OsString> {
    loop {
        *counter += 1;
        let parked = format!(".llmbasedos-deep-{}-{counter}", std::process::id());
        match rename_no_replace(from, name, to, &parked) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            outcome => return outcome.map(|()| OsString::from(parked)),
        }
    }
}
