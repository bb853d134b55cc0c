//! Where the semantic index of one root lives, and the proof of whose it
//! is.
//!
//! One `index_dir` (fs.yaml, `$STATE_DIRECTORY`, or what `llmbasedos up`
//! hands over) may serve several roots, so each root's index lives in its
//! own directory beneath it: `roots/<name>-<hash>/`, where `<hash>` is the
//! start of the SHA-256 of the root's canonical path and `<name>` its last
//! component, for people. There:
//!
//! - `root.json` records the root the index was built for: its canonical
//!   path, device and inode. Written (atomically) before the index is
//!   first created, so an index without it was not made by this code.
//!   An index recorded for another path is refused, never searched and
//!   never deleted (it got there by hand, or by a hash collision).
//! - `lock` is held (`flock`) by the one server that uses the index, so a
//!   second server on the same root gets a clear error instead of the
//!   database's own "already open".
//!
//! **Why the path, not the (device, inode), names the index:** a user who
//! replaces the root (a fresh clone, a restore from backup) at the same
//! path expects its index to carry on, and the next embed brings it up to
//! date (files are compared by size, time and content hash). Device
//! numbers also change across boots on some file systems. A changed
//! (device, inode) is logged and recorded. A root moved to another path
//! gets a fresh index; the old one stays where it was.
//!
//! Before this layout, every root's index was `index_dir` itself (flat,
//! no root recorded): after embedding root A, a server on root B searched
//! A's passages and B's embed deleted them. Such an index is left where it
//! is and not used (nothing proves whose it is); the log says so.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The subdirectory of `index_dir` holding one directory per root.
const ROOTS: &str = "roots";
const RECORD: &str = "root.json";
const LOCK: &str = "lock";
/// A file of the flat layout of older versions, directly in `index_dir`.
const OLD_LAYOUT_FILE: &str = "meta.redb";
/// Hex digits of the path's hash in the directory name.
const HASH_DIGITS: usize = 16;

/// Why the index of this root cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "the index of {root} is in use by another fs server (it holds {lock}); stop that server, or give this one another index_dir"
    )]
    InUse { root: String, lock: PathBuf },
    #[error(
        "{dir} holds the index built for {recorded}, not for this server's root {root}; it is left untouched and not used: move it back, or remove that directory to start a fresh index of {root}"
    )]
    OtherRoot {
        dir: PathBuf,
        recorded: String,
        root: String,
    },
    #[error(
        "{dir} holds an index that does not say which root it was built for (no readable {RECORD}); it is left untouched and not used: remove that directory to start a fresh index of {root}"
    )]
    Unrecorded { dir: PathBuf, root: String },
    #[error("cannot prepare the index directory {dir} for {root}: {source}")]
    Io {
        dir: PathBuf,
        root: String,
        source: io::Error,
    },
}

/// What `root.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The root's canonical host path.
    root: String,
    device: u64,
    inode: u64,
}

/// The index directory of one root, locked for this process while held.
#[derive(Debug)]
pub struct RootIndexDir {
    pub dir: PathBuf,
    /// The root's canonical path, as recorded.
    pub root: String,
    /// Holds the `flock`; released when dropped (or when the process ends).
    _lock: File,
}

/// The directory of `root`'s index beneath `index_dir` (not created).
pub fn dir_of(index_dir: &Path, root: &Path) -> PathBuf {
    let digest: String = Sha256::digest(root.as_os_str().as_encoded_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let name: String = root
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(32)
        .collect();
    let name = match name.trim_start_matches('.') {
        "" => "root",
        name => name,
    };
    index_dir
        .join(ROOTS)
        .join(format!("{name}-{}", &digest[..HASH_DIGITS]))
}

/// Finds (or makes) the index directory of the root at the canonical path
/// `root` with identity (`device`, `inode`), checks whose it is and locks
/// it.
pub fn claim(
    index_dir: &Path,
    root: &Path,
    device: u64,
    inode: u64,
) -> Result<RootIndexDir, OwnerError> {
    let dir = dir_of(index_dir, root);
    let shown = root.display().to_string();
    let io_error = |source| OwnerError::Io {
        dir: dir.clone(),
        root: shown.clone(),
        source,
    };
    if index_dir.join(OLD_LAYOUT_FILE).exists() {
        tracing::warn!(
            index_dir = %index_dir.display(),
            "an index of the older layout (one for every root, no root recorded) lies in index_dir; it is not used, since nothing says whose it is: this root gets its own index beneath roots/; remove meta.redb and vectors.usearch there to free the space"
        );
    }
    // The index holds passages of the root's files: private to the service user.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_error)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))
        .map_err(io_error)?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(OwnerError::InUse {
                root: shown,
                lock: dir.join(LOCK),
            });
        }
        return Err(io_error(error));
    }
    let wanted = Record {
        root: shown.clone(),
        device,
        inode,
    };
    match std::fs::read(dir.join(RECORD)) {
        Ok(bytes) => {
            let Ok(recorded) = serde_json::from_slice::<Record>(&bytes) else {
                return Err(OwnerError::Unrecorded { dir, root: shown });
            };
            if recorded.root != wanted.root {
                return Err(OwnerError::OtherRoot {
                    dir,
                    recorded: recorded.root,
                    root: shown,
                });
            }
            if recorded != wanted {
                tracing::warn!(
                    root = %shown,
                    "the root is another directory than the one its index was built for (replaced or restored at the same path); the index carries on, and the next embed brings it up to date"
                );
                write_record(&dir, &wanted).map_err(io_error)?;
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // Never adopt an index whose owner is unknown.
            if dir.join(OLD_LAYOUT_FILE).exists() {
                return Err(OwnerError::Unrecorded { dir, root: shown });
            }
            write_record(&dir, &wanted).map_err(io_error)?;
        }
        Err(error) => return Err(io_error(error)),
    }
    Ok(RootIndexDir {
        dir,
        root: shown,
        _lock: lock,
    })
}

/// Writes `root.json` atomically: a temporary file, flushed, renamed over
/// it, the directory flushed.
fn write_record(dir: &Path, record: &Record) -> io::Result<()> {
    let temporary = dir.join(format!("{RECORD}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(&serde_json::to_vec_pretty(record).map_err(io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(RECORD))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_root_has_its_own_directory_named_for_people() {
        let index = Path::new("/var/lib/llmbasedos/fs");
        let a = dir_of(index, Path::new("/home/alice/notes"));
        let b = dir_of(index, Path::new("/home/bob/notes"));
        assert_ne!(a, b);
        assert_eq!(a, dir_of(index, Path::new("/home/alice/notes")));
        let name = a
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("notes-"), "{name}");
        assert_eq!(name.len(), "notes-".len() + HASH_DIGITS);
        assert!(a.starts_with("/var/lib/llmbasedos/fs/roots"));
        let odd = dir_of(index, Path::new("/"));
        assert!(
            odd.file_name()
                .expect("a name")
                .to_string_lossy()
                .starts_with("root-")
        );
        let hidden = dir_of(index, Path::new("/srv/../..hidden\n"));
        assert!(
            hidden
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .starts_with("hidden-")
        );
    }

    #[test]
    fn a_second_claim_is_refused_while_the_first_holds_the_lock() {
        let temp = tempfile::tempdir().expect("temp dir");
        let root = Path::new("/srv/a");
        let first = claim(temp.path(), root, 1, 2).expect("first claim");
        let second = claim(temp.path(), root, 1, 2).expect_err("locked");
        assert!(
            second
                .to_string()
                .contains("the index of /srv/a is in use by another fs server"),
            "{second}"
        );
        drop(first);
        claim(temp.path(), root, 1, 2).expect("free again");
        let other = claim(temp.path(), Path::new("/srv/b"), 1, 3).expect("another root");
        assert_ne!(other.dir, dir_of(temp.path(), root));
    }
}
