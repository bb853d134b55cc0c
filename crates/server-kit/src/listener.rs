//! Where the listening socket comes from: systemd (`LISTEN_FDS`) or a path
//! the server binds itself.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The listener and how it was obtained.
#[derive(Debug)]
pub struct Listener {
    pub listener: std::os::unix::net::UnixListener,
    pub origin: ListenerOrigin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerOrigin {
    /// Passed by the service manager; systemd owns the socket file.
    Activated,
    /// Bound at this path by the server; it removes the file on exit.
    Bound(PathBuf),
}

/// Errors that stop a server before it serves.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("socket activation: {0}")]
    Activation(String),
    #[error(
        "no listening socket: not started by systemd socket activation (LISTEN_FDS unset) and no socket path given (--socket or LLMBASEDOS_SOCKET)"
    )]
    NoSocket,
    #[error("{path}: another server is already listening on this socket")]
    InUse { path: PathBuf },
    #[error("{path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

/// Takes the one UNIX stream listener passed by systemd, if any.
///
/// The environment is read but not changed (changing it is unsound once
/// threads run); child processes are not expected to inherit it because
/// `LISTEN_PID` names this process only.
pub fn from_systemd() -> Result<Option<std::os::unix::net::UnixListener>, ListenerError> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(|error| ListenerError::Activation(error.to_string()))?
        .collect();
    match fds.as_slice() {
        [] => Ok(None),
        [fd] => {
            check_unix_stream_listener(*fd)?;
            // SAFETY: systemd passed this descriptor to this process
            // (LISTEN_PID matched) and nothing else owns it.
            let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(*fd) };
            listener
                .set_nonblocking(true)
                .map_err(|error| ListenerError::Activation(error.to_string()))?;
            Ok(Some(listener))
        }
        more => Err(ListenerError::Activation(format!(
            "expected one socket, systemd passed {}; a backend's .socket unit has one ListenStream=",
            more.len()
        ))),
    }
}

/// A listening socket passed by systemd.
#[derive(Debug)]
pub enum ActivatedSocket {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// Every listening stream socket systemd passed (a front end such as the
/// gateway has a TCP and a UNIX socket), non-blocking.
pub fn activated_sockets() -> Result<Vec<ActivatedSocket>, ListenerError> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(|error| ListenerError::Activation(error.to_string()))?
        .collect();
    let mut sockets = Vec::with_capacity(fds.len());
    for fd in fds {
        let describe = |error: io::Error| {
            ListenerError::Activation(format!("fd {fd} is not a socket: {error}"))
        };
        let domain = socket_option(fd, libc::SO_DOMAIN).map_err(describe)?;
        let kind = socket_option(fd, libc::SO_TYPE).map_err(describe)?;
        let listening = socket_option(fd, libc::SO_ACCEPTCONN).map_err(describe)?;
        if kind != libc::SOCK_STREAM || listening == 0 {
            return Err(ListenerError::Activation(format!(
                "fd {fd} is not a listening stream socket; use ListenStream= in the .socket unit"
            )));
        }
        // SAFETY: systemd passed this descriptor to this process
        // (LISTEN_PID matched) and nothing else owns it.
        let socket = match domain {
            libc::AF_UNIX => {
                ActivatedSocket::Unix(unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) })
            }
            // SAFETY: as above.
            libc::AF_INET | libc::AF_INET6 => {
                ActivatedSocket::Tcp(unsafe { std::net::TcpListener::from_raw_fd(fd) })
            }
            other => {
                return Err(ListenerError::Activation(format!(
                    "fd {fd} has address family {other}, not UNIX or IP"
                )));
            }
        };
        let nonblocking = match &socket {
            ActivatedSocket::Unix(listener) => listener.set_nonblocking(true),
            ActivatedSocket::Tcp(listener) => listener.set_nonblocking(true),
        };
        nonblocking.map_err(|error| ListenerError::Activation(error.to_string()))?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn socket_option(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of a c_int.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if result == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn check_unix_stream_listener(fd: RawFd) -> Result<(), ListenerError> {
    let describe =
        |error: io::Error| ListenerError::Activation(format!("fd {fd} is not a socket: {error}"));
    let domain = socket_option(fd, libc::SO_DOMAIN).map_err(describe)?;
    let kind = socket_option(fd, libc::SO_TYPE).map_err(describe)?;
    let listening = socket_option(fd, libc::SO_ACCEPTCONN).map_err(describe)?;
    if domain != libc::AF_UNIX || kind != libc::SOCK_STREAM || listening == 0 {
        return Err(ListenerError::Activation(format!(
            "fd {fd} is not a listening UNIX stream socket; use ListenStream=/path in the .socket unit"
        )));
    }
    Ok(())
}

/// Binds `path` with mode 0660. A stale socket left by a crashed server is
/// removed; a socket that still answers is left alone and reported.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, ListenerError> {
    let io_error = |action: &'static str| {
        move |source: io::Error| ListenerError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ListenerError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(io_error("remove stale socket"))?;
        }
        Ok(_) => {
            return Err(ListenerError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("inspect")(error)),
    }
    // Bind under a restrictive umask so that the socket is never, even for a
    // moment, more open than 0660.
    // SAFETY: umask only swaps the process's file mode mask.
    let previous = unsafe { libc::umask(0o117) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(previous) };
    let listener = bound.map_err(io_error("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_error("chmod 0660"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_error("set non-blocking"))?;
    Ok(listener)
}

/// The listener from systemd if there is one, otherwise `path` bound here.
pub fn obtain(path: Option<&Path>) -> Result<Listener, ListenerError> {
    if let Some(listener) = from_systemd()? {
        return Ok(Listener {
            listener,
            origin: ListenerOrigin::Activated,
        });
    }
    let path = path.ok_or(ListenerError::NoSocket)?;
    Ok(Listener {
        listener: bind(path)?,
        origin: ListenerOrigin::Bound(path.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn bind_sets_0660_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let first = bind(&path).expect("first bind");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").mode() & 0o777,
            0o660
        );
        assert!(matches!(bind(&path), Err(ListenerError::InUse { .. })));
        drop(first); // the file stays behind: a stale socket
        let _second = bind(&path).expect("stale socket replaced");
        let file = dir.path().join("plain");
        std::fs::write(&file, b"keep me").expect("write");
        assert!(matches!(bind(&file), Err(ListenerError::NotASocket { .. })));
        assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
    }
}
