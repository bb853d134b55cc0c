//! What the command-line clients (`llmbasedos call`, luca-shell) share: where
//! a stack started by `llmbasedos up` lives, how to reach its gateway without
//! talking to an impostor, and how params typed as words become JSON.
//!
//! **Whom a client talks to.** A socket path proves nothing: in a directory
//! another user can write to, anyone can put a socket of their own in its
//! place (issue 12: `/tmp/llmbasedos-<uid>` created in advance by another
//! user, `gateway.sock` replaced, the user's file contents sent to the
//! attacker). So before sending anything a client checks that the
//! socket's directory chain belongs to the user or root and is not writable
//! by others, and — the check that cannot be raced — that the process
//! listening on the socket (SO_PEERCRED after connecting) runs as the user
//! or as root. Root covers the packaged gateway: systemd creates and listens
//! on `/run/llmbasedos/gateway.sock` (`SocketUser=root`), so the kernel
//! reports systemd's credentials for it, whatever user the gateway runs as.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Why a socket, or a directory on the way to it, is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// The process listening on the socket runs as another user.
    #[error(
        "it is served by a process of uid {uid}, not by you (uid {me}) or root: another user may be impersonating it"
    )]
    ServedBy { uid: u32, me: u32 },
    /// A file or directory on the way belongs to another user.
    #[error(
        "{} belongs to uid {uid}, not to you (uid {me}) or root: remove it, or choose another directory",
        path.display()
    )]
    Owner { path: PathBuf, uid: u32, me: u32 },
    /// A directory on the way is writable by other users.
    #[error(
        "{} is writable by other users (mode {mode:o}): anyone could replace what is in it; remove it, or restrict it with `chmod go-w`",
        path.display()
    )]
    Writable { path: PathBuf, mode: u32 },
    /// The path is a symbolic link where a directory of the user's own is
    /// needed.
    #[error("{} is a symbolic link, not a directory: remove it, or choose another directory", path.display())]
    Symlink { path: PathBuf },
    /// The path is not a directory.
    #[error("{} is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    /// The kernel would not say who serves the socket.
    #[error("cannot learn who serves it: {0}")]
    PeerUnknown(std::io::Error),
    /// The checks themselves failed.
    #[error("cannot check {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why a client could not reach a gateway it trusts.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Nothing to connect to (no socket, nobody listening).
    #[error("cannot connect to the gateway at {}: {error}", socket.display())]
    Connect {
        socket: PathBuf,
        error: std::io::Error,
    },
    /// The socket or its directory is not the user's; nothing was sent.
    #[error("refusing the gateway socket {}, nothing was sent: {reason}", socket.display())]
    Untrusted { socket: PathBuf, reason: Untrusted },
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Connects to the gateway's socket and checks who serves it (see the
/// module's docs) before anything is sent.
pub fn connect_gateway_blocking(
    socket: &Path,
) -> Result<std::os::unix::net::UnixStream, GatewayError> {
    check_socket_path(socket)?;
    let stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|error| GatewayError::Connect {
            socket: socket.to_owned(),
            error,
        })?;
    check_server(&stream).map_err(|reason| GatewayError::Untrusted {
        socket: socket.to_owned(),
        reason,
    })?;
    Ok(stream)
}

/// [`connect_gateway_blocking`] for async clients.
pub async fn connect_gateway(socket: &Path) -> Result<tokio::net::UnixStream, GatewayError> {
    check_socket_path(socket)?;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|error| GatewayError::Connect {
            socket: socket.to_owned(),
            error,
        })?;
    check_server(&stream).map_err(|reason| GatewayError::Untrusted {
        socket: socket.to_owned(),
        reason,
    })?;
    Ok(stream)
}

/// The socket's directory chain: see [`check_directory_chain`]. A missing
/// socket is left to the connect, which says so.
fn check_socket_path(socket: &Path) -> Result<(), GatewayError> {
    let untrusted = |reason| GatewayError::Untrusted {
        socket: socket.to_owned(),
        reason,
    };
    let directory = match socket.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if std::fs::symlink_metadata(directory)
        .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(());
    }
    check_directory_chain(directory).map_err(untrusted)?;
    if let Ok(metadata) = std::fs::symlink_metadata(socket) {
        check_owner(socket, &metadata).map_err(untrusted)?;
    }
    Ok(())
}

/// The process listening on a connected UNIX socket, as the kernel recorded
/// it when that process called listen().
pub fn peer_credentials(stream: &impl AsFd) -> std::io::Result<libc::ucred> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer is a ucred of the given length, and the descriptor
    // is borrowed for the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &raw mut length,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(credentials)
}

/// Whether the process serving a connected socket runs as this user or as
/// root.
pub fn check_server(stream: &impl AsFd) -> Result<(), Untrusted> {
    let me = current_uid();
    let peer = peer_credentials(stream).map_err(Untrusted::PeerUnknown)?;
    if peer.uid == me || peer.uid == 0 {
        Ok(())
    } else {
        Err(Untrusted::ServedBy { uid: peer.uid, me })
    }
}

/// Whether `directory` and every directory above it belong to this user or
/// root and are not writable by others — except sticky directories of root
/// such as `/tmp`, where others may add entries but not replace ours. A
/// symbolic link on the way must belong to the user or root too; where it
/// leads is checked as well.
pub fn check_directory_chain(directory: &Path) -> Result<(), Untrusted> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| Untrusted::Io { path, error }
    };
    let absolute = std::path::absolute(directory).map_err(io(directory))?;
    check_ancestors(&absolute)?;
    let resolved = absolute.canonicalize().map_err(io(&absolute))?;
    if resolved != absolute {
        check_ancestors(&resolved)?;
    }
    Ok(())
}

fn check_ancestors(absolute: &Path) -> Result<(), Untrusted> {
    for path in absolute.ancestors() {
        let metadata = std::fs::symlink_metadata(path).map_err(|error| Untrusted::Io {
            path: path.to_owned(),
            error,
        })?;
        check_owner(path, &metadata)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = metadata.permissions().mode();
        let sticky_of_root = mode & libc::S_ISVTX != 0 && metadata.uid() == 0;
        if mode & 0o022 != 0 && !sticky_of_root {
            return Err(Untrusted::Writable {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

fn check_owner(path: &Path, metadata: &std::fs::Metadata) -> Result<(), Untrusted> {
    let me = current_uid();
    if metadata.uid() == me || metadata.uid() == 0 {
        Ok(())
    } else {
        Err(Untrusted::Owner {
            path: path.to_owned(),
            uid: metadata.uid(),
            me,
        })
    }
}

/// The runtime directory of `llmbasedos up`: `$XDG_RUNTIME_DIR/llmbasedos`,
/// or `/tmp/llmbasedos-<uid>` without one.
pub fn default_runtime_dir() -> PathBuf {
    runtime_dir_from(std::env::var_os("XDG_RUNTIME_DIR"), current_uid())
}

/// [`default_runtime_dir`] from its inputs, for tests.
pub fn runtime_dir_from(xdg_runtime_dir: Option<OsString>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("llmbasedos"),
        _ => PathBuf::from(format!("/tmp/llmbasedos-{uid}")),
    }
}

/// The gateway's UNIX socket in a runtime directory.
pub fn gateway_socket(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("gateway.sock")
}

/// Params as typed: words (plain values first, then `key=value`), or one
/// JSON object or array.
#[derive(Clone, Debug, PartialEq)]
pub enum Params {
    Words {
        positional: Vec<Value>,
        named: Map<String, Value>,
    },
    Json(Value),
}

/// Reads params from words: a value that reads as JSON is JSON, anything
/// else a string; plain values come before `key=value` ones.
pub fn parse_params(words: &[String]) -> Result<Params, String> {
    if let [single] = words
        && (single.starts_with('{') || single.starts_with('['))
    {
        return serde_json::from_str(single)
            .map(Params::Json)
            .map_err(|error| format!("the params are not valid JSON: {error}"));
    }
    let mut positional = Vec::new();
    let mut named = Map::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if is_param_name(key) => {
                named.insert(key.to_owned(), json_or_string(value));
            }
            _ if named.is_empty() => positional.push(json_or_string(word)),
            _ => {
                return Err(format!(
                    "{word:?} comes after key=value params; give it as key=value too"
                ));
            }
        }
    }
    Ok(Params::Words { positional, named })
}

fn is_param_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|character| character.is_alphanumeric() || character == '_' || character == '-')
}

fn json_or_string(value: &str) -> Value {
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
}

impl Params {
    /// The JSON-RPC params: an object for named ones, an array for plain
    /// values only (the classic vocabulary's positional form), nothing when empty.
    pub fn into_value(self) -> Result<Option<Value>, String> {
        match self {
            Params::Json(value) => Ok(Some(value)),
            Params::Words { positional, named } if positional.is_empty() && named.is_empty() => {
                Ok(None)
            }
            Params::Words { positional, named } if named.is_empty() => {
                Ok(Some(Value::Array(positional)))
            }
            Params::Words { positional, named } if positional.is_empty() => {
                Ok(Some(Value::Object(named)))
            }
            Params::Words { .. } => {
                Err("give either plain values or key=value params, not both".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn params_from_words() {
        let cases = [
            (words(&[]), Ok(None)),
            (
                words(&["text=hi", "repeat=2"]),
                Ok(Some(json!({"text": "hi", "repeat": 2}))),
            ),
            (words(&["text=a=b"]), Ok(Some(json!({"text": "a=b"})))),
            (
                words(&["flag=true", "list=[1,2]"]),
                Ok(Some(json!({"flag": true, "list": [1, 2]}))),
            ),
            (words(&["hi", "2"]), Ok(Some(json!(["hi", 2])))),
            (words(&[r#"{"text":"x"}"#]), Ok(Some(json!({"text": "x"})))),
            (words(&[r#"["x",3]"#]), Ok(Some(json!(["x", 3])))),
        ];
        for (input, expected) in cases {
            let got = parse_params(&input).and_then(Params::into_value);
            assert_eq!(got, expected, "{input:?}");
        }
        assert!(parse_params(&words(&["{broken"])).is_err());
        assert!(parse_params(&words(&["a=1", "loose"])).is_err());
        assert!(
            parse_params(&words(&["loose", "a=1"]))
                .and_then(Params::into_value)
                .is_err()
        );
    }

    #[test]
    fn directories_others_can_write_to_are_untrusted() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().expect("tempdir");
        let make = |name: &str, mode: u32| {
            let dir = base.path().join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            dir
        };
        let private = make("private", 0o700);
        let readable = make("readable", 0o755);
        let open = make("open", 0o777);
        let group = make("group", 0o770);
        let below_open = make("open/below", 0o700);
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&private, &link).expect("symlink");
        let link_to_open = base.path().join("link-to-open");
        std::os::unix::fs::symlink(&open, &link_to_open).expect("symlink");
        let cases = [
            (&private, true),
            (&readable, true),
            (&link, true),
            (&open, false),
            (&group, false),
            (&below_open, false),
            (&link_to_open, false),
        ];
        for (dir, trusted) in cases {
            let outcome = check_directory_chain(dir);
            assert_eq!(outcome.is_ok(), trusted, "{}: {outcome:?}", dir.display());
            if let Err(error) = outcome {
                assert!(
                    matches!(error, Untrusted::Writable { .. }),
                    "{}: {error}",
                    dir.display()
                );
            }
        }
    }

    #[test]
    fn runtime_dirs() {
        assert_eq!(
            runtime_dir_from(Some("/run/user/7".into()), 7),
            PathBuf::from("/run/user/7/llmbasedos")
        );
        assert_eq!(
            runtime_dir_from(Some("".into()), 7),
            PathBuf::from("/tmp/llmbasedos-7")
        );
        assert_eq!(
            runtime_dir_from(None, 7),
            PathBuf::from("/tmp/llmbasedos-7")
        );
    }
}
