//! The runtime directory of `llmbasedos up`: made private before anything is
//! written to it, and locked so that one stack at a time runs in it.
//!
//! Without `XDG_RUNTIME_DIR` the directory is `/tmp/llmbasedos-<uid>`, a
//! name any user can take first (issue 12: such a directory, made writable
//! by another user, was accepted, and that user replaced `gateway.sock`).
//! So the directory is created with mode 0700 — `mkdir` fails when the name
//! exists, and then what exists must be a real directory (not a symbolic
//! link) of this user that nobody else can write to — and every directory
//! above it must belong to this user or root and not be writable by others
//! (sticky directories of root such as `/tmp` excepted):
//! `client::cli::check_directory_chain`, which the clients use too.
//!
//! A second `up` on a live directory once broke the running stack on its
//! way out (its caps files deleted, its `gateway.yaml` rewritten). The lock
//! (`flock` on `up.lock`, holding the pid) is taken before anything else is
//! written, and a second `up` stops there.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct RuntimeLock {
    _file: File,
}

/// Makes `dir` private (or checks that it is), then locks it.
pub(crate) fn prepare_and_lock(dir: &Path) -> anyhow::Result<RuntimeLock> {
    let dir = std::path::absolute(dir)
        .with_context(|| format!("cannot resolve the runtime directory {}", dir.display()))?;
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        client::cli::check_directory_chain(parent).with_context(|| refused(&dir))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot create {}", dir.display()));
        }
    }
    check_own_private_dir(&dir).with_context(|| refused(&dir))?;
    lock(&dir)
}

fn refused(dir: &Path) -> String {
    format!(
        "refusing the runtime directory {} (choose another with --runtime-dir)",
        dir.display()
    )
}

/// The directory itself: not a link, this user's, no one else's to write.
/// Group and others lose any read bits an older version left.
fn check_own_private_dir(dir: &Path) -> Result<(), client::cli::Untrusted> {
    use client::cli::Untrusted;
    let io = |error| Untrusted::Io {
        path: dir.to_owned(),
        error,
    };
    let metadata = std::fs::symlink_metadata(dir).map_err(io)?;
    if metadata.file_type().is_symlink() {
        return Err(Untrusted::Symlink {
            path: dir.to_owned(),
        });
    }
    if !metadata.is_dir() {
        return Err(Untrusted::NotDirectory {
            path: dir.to_owned(),
        });
    }
    let me = client::cli::current_uid();
    if metadata.uid() != me {
        return Err(Untrusted::Owner {
            path: dir.to_owned(),
            uid: metadata.uid(),
            me,
        });
    }
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: dir.to_owned(),
            mode: mode & 0o7777,
        });
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// `up.lock`: an exclusive `flock`, held for the life of this process,
/// with this process's pid as its contents for the next one to name.
fn lock(dir: &Path) -> anyhow::Result<RuntimeLock> {
    let path = dir.join("up.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::WouldBlock {
            return Err(error).with_context(|| format!("cannot lock {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let pid = holder.trim();
        let pid = if !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit()) {
            pid
        } else {
            "unknown"
        };
        bail!(
            "already running (pid {pid}) in {}: stop that one first, or choose another --runtime-dir",
            dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(RuntimeLock { _file: file })
}
