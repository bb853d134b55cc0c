//! The one error type of the file operations. Every message names the
//! virtual path (never a host path) and says what to do. A next step that
//! is a call of another method is not text but data ([`FsError::hint`]):
//! the handler layer renders it in the caller's vocabulary, so no message
//! names a wire method.

use std::io;

use proto::ErrorHint;
use serde_json::{Map, Value};

use crate::vpath::{PathProblem, VirtualPath};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path} does not exist")]
    NotFound { path: String },
    #[error("{parent} does not exist (it would hold {path})")]
    MissingParent { parent: String, path: String },
    #[error("{path} already exists; {hint}")]
    AlreadyExists { path: String, hint: &'static str },
    #[error("permission denied for {path}: {reason}")]
    Denied { path: String, reason: String },
    #[error("invalid path {path}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("{0}")]
    InvalidValue(String),
    #[error("{path} is {size} bytes, more than the {limit}-byte read limit; {hint}")]
    TooLarge {
        path: String,
        size: u64,
        limit: u64,
        hint: &'static str,
    },
    #[error("{path} is a directory that is not empty")]
    NotEmpty { path: String, action: &'static str },
    #[error(
        "{path} lies {limit} levels beneath the start of the walk, the deepest the file service goes; {hint}"
    )]
    TooDeep {
        path: String,
        limit: usize,
        hint: &'static str,
    },
    #[error(
        "cannot {action} {path}: no space left on the device (or the disk quota is used up); nothing was written, {path} is as it was; free some space, then try again"
    )]
    NoSpace { path: String, action: &'static str },
    #[error(
        "appending to {path} failed ({source}), and the file could not be cut back to its length before: part of the content may have been added; check its end before trying again"
    )]
    PartlyAppended { path: String, source: io::Error },
    #[error("the operation was cancelled")]
    Cancelled,
    /// Another error with a next step the caller can take.
    #[error("{error}")]
    Hinted {
        error: Box<FsError>,
        hint: ErrorHint,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: String,
        action: &'static str,
        source: io::Error,
    },
}

/// Why a path reached outside the root, in words for the client.
/// Paths are resolved beneath the root (RESOLVE_BENEATH), so an absolute
/// symbolic link is refused even when it names a place inside the root:
/// the kernel cannot tell where "/" of the link is meant to be.
pub(crate) const OUTSIDE_ROOT: &str = "it leads outside the file service's root (through \"..\", a symbolic link that escapes it, or /proc magic links), or the service user may not access it. Absolute symbolic links are refused even when they point inside the root; make the link relative (e.g. `ln -sfr TARGET LINK`)";

/// A next step: call `method` with `arguments` (every one a param of it).
pub(crate) fn hint(action: &str, method: &str, arguments: &[(&str, Value)]) -> ErrorHint {
    let arguments: Map<String, Value> = arguments
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    ErrorHint {
        action: action.to_owned(),
        method: method.to_owned(),
        arguments,
    }
}

impl FsError {
    /// This error with `hint` as the next step.
    pub fn with_hint(self, hint: ErrorHint) -> FsError {
        FsError::Hinted {
            error: Box::new(self),
            hint,
        }
    }

    /// The error without its hint.
    pub fn unhinted(&self) -> &FsError {
        match self {
            FsError::Hinted { error, .. } => error.unhinted(),
            other => other,
        }
    }

    /// What kind of error this is, for clients to match (`error.data.kind`).
    pub fn kind(&self) -> &'static str {
        match self.unhinted() {
            FsError::NotFound { .. } | FsError::MissingParent { .. } => "not_found",
            FsError::AlreadyExists { .. } => "already_exists",
            FsError::Denied { .. } => "permission",
            FsError::InvalidPath { .. } | FsError::InvalidValue(_) => "invalid",
            FsError::TooLarge { .. } => "too_large",
            FsError::NotEmpty { .. } => "not_empty",
            FsError::TooDeep { .. } => "too_deep",
            FsError::NoSpace { .. } => "no_space",
            FsError::PartlyAppended { .. } | FsError::Io { .. } => "failed",
            FsError::Cancelled => "cancelled",
            FsError::Hinted { .. } => unreachable!("unhinted returns no hinted error"),
        }
    }

    /// The next step the caller can take, as a call: the one given with
    /// [`FsError::with_hint`], or the one each kind implies.
    pub fn hint(&self) -> Option<ErrorHint> {
        match self {
            FsError::Hinted { hint, .. } => Some(hint.clone()),
            FsError::NotFound { .. } => Some(hint("see what exists", "mcp.fs.list", &[])),
            FsError::MissingParent { parent, .. } => Some(hint(
                "create it",
                "mcp.fs.mkdir",
                &[("path", parent.as_str().into()), ("parents", true.into())],
            )),
            FsError::NotEmpty { path, action } if *action == "delete" => Some(hint(
                "delete it and its contents",
                "mcp.fs.delete",
                &[("path", path.as_str().into()), ("recursive", true.into())],
            )),
            _ => None,
        }
    }

    /// Maps an I/O error of `action` on `path` to the error a client can act on.
    pub fn io(path: &VirtualPath, action: &'static str, error: io::Error) -> FsError {
        let shown = path.to_string();
        match error.raw_os_error() {
            Some(libc::EXDEV) if action != "move" => {
                return FsError::Denied {
                    path: shown,
                    reason: OUTSIDE_ROOT.to_owned(),
                };
            }
            Some(libc::ELOOP) => {
                return FsError::InvalidPath {
                    path: shown,
                    reason: "it is a symbolic link where none may be (or a loop of symbolic links); name the link's target instead".to_owned(),
                };
            }
            Some(libc::ENXIO) => {
                return FsError::Denied {
                    path: shown,
                    reason: "it is a FIFO, socket or device, which the file service does not open"
                        .to_owned(),
                };
            }
            Some(libc::ENOSPC | libc::EDQUOT) => {
                return FsError::NoSpace {
                    path: shown,
                    action,
                };
            }
            Some(libc::EROFS) => {
                return FsError::Denied {
                    path: shown,
                    reason: "the file system is mounted read-only".to_owned(),
                };
            }
            _ => {}
        }
        match error.kind() {
            io::ErrorKind::NotFound => FsError::NotFound { path: shown },
            io::ErrorKind::PermissionDenied => FsError::Denied {
                path: shown,
                reason: OUTSIDE_ROOT.to_owned(),
            },
            io::ErrorKind::AlreadyExists => FsError::AlreadyExists {
                path: shown,
                hint: "choose another name, or allow replacing it",
            },
            io::ErrorKind::NotADirectory => FsError::InvalidPath {
                path: shown,
                reason: "a component of it is a file, not a directory".to_owned(),
            },
            io::ErrorKind::IsADirectory => FsError::InvalidPath {
                path: shown,
                reason: "it is a directory; this operation needs a file".to_owned(),
            },
            io::ErrorKind::DirectoryNotEmpty => FsError::NotEmpty {
                path: shown,
                action: "delete",
            },
            io::ErrorKind::InvalidFilename => FsError::InvalidPath {
                path: shown,
                reason: "a name in it is too long".to_owned(),
            },
            _ => FsError::Io {
                path: shown,
                action,
                source: error,
            },
        }
    }

    pub(crate) fn denied(path: &VirtualPath, reason: impl Into<String>) -> FsError {
        FsError::Denied {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_path(path: &VirtualPath, reason: impl Into<String>) -> FsError {
        FsError::InvalidPath {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// The error for a string that is not a usable virtual path.
    pub fn from_problem(text: &str, problem: PathProblem) -> FsError {
        // Debug formatting shows a NUL or control character as an escape;
        // a long string is quoted in part.
        let shown = format!("{:?}", proto::text::echo(text));
        match problem {
            PathProblem::Malformed(reason) => FsError::InvalidPath {
                path: shown,
                reason,
            },
            PathProblem::ParentComponent => FsError::Denied {
                path: shown,
                reason: "\"..\" is not allowed in paths (it could leave the root); name the path from the root without \"..\"".to_owned(),
            },
        }
    }
}

/// Parses a client's path string.
pub fn parse_path(text: &str) -> Result<VirtualPath, FsError> {
    VirtualPath::parse(text).map_err(|problem| FsError::from_problem(text, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_what_a_client_can_act_on() {
        let path = VirtualPath::parse("/a/b").expect("valid");
        let escape = io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a path led outside of the filesystem",
        );
        let cases = [
            (
                io::Error::from_raw_os_error(libc::ENOENT),
                "/a/b does not exist",
            ),
            (escape, "permission denied for /a/b: it leads outside"),
            (
                io::Error::from_raw_os_error(libc::EXDEV),
                "permission denied for /a/b: it leads outside",
            ),
            (
                io::Error::from_raw_os_error(libc::ELOOP),
                "invalid path /a/b: it is a symbolic link",
            ),
            (
                io::Error::from_raw_os_error(libc::ENXIO),
                "permission denied for /a/b: it is a FIFO",
            ),
            (
                io::Error::from_raw_os_error(libc::ENOTDIR),
                "invalid path /a/b: a component of it is a file",
            ),
            (
                io::Error::from_raw_os_error(libc::EEXIST),
                "/a/b already exists",
            ),
            (
                io::Error::from_raw_os_error(libc::ENOTEMPTY),
                "/a/b is a directory that is not empty",
            ),
            (
                io::Error::from_raw_os_error(libc::EROFS),
                "mounted read-only",
            ),
            (
                io::Error::from_raw_os_error(libc::ENOSPC),
                "cannot write /a/b: no space left on the device",
            ),
            (
                io::Error::from_raw_os_error(libc::EDQUOT),
                "nothing was written, /a/b is as it was",
            ),
            (
                io::Error::from_raw_os_error(libc::EIO),
                "cannot write /a/b: Input/output error",
            ),
        ];
        for (error, expected) in cases {
            let message = FsError::io(&path, "write", error).to_string();
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }
}
