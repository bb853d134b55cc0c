//! What the stack is made of, and where its files live.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A backend server of the stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backend {
    /// The service name: socket `<caps dir>/<name>.sock`, caps `<name>.cap.json`.
    pub(crate) name: &'static str,
    /// The server binary, looked up beside the `llmbasedos` binary.
    pub(crate) binary: &'static str,
    /// Started only with `--with-test-server`.
    pub(crate) development_only: bool,
}

/// The backends `llmbasedos up` starts when their binary is built. Each
/// server issue adds its line here.
pub(crate) const BACKENDS: &[Backend] = &[
    Backend {
        name: "fs",
        binary: "llmbasedos-fs",
        development_only: false,
    },
    Backend {
        name: "sync",
        binary: "llmbasedos-sync",
        development_only: false,
    },
    Backend {
        name: "test",
        binary: "llmbasedos-test-server",
        development_only: true,
    },
    Backend {
        name: "agent",
        binary: "llmbasedos-agent",
        development_only: false,
    },
    Backend {
        name: "mail",
        binary: "llmbasedos-mail",
        development_only: false,
    },
];

pub(crate) const GATEWAY_BINARY: &str = "llmbasedos-gateway";
/// The web console, started by `up` when it is built.
pub(crate) const WEB_BINARY: &str = "llmbasedos-web";
/// The console's client at the gateway under `up` (`token:llmbasedos-web`).
pub(crate) const WEB_CLIENT: &str = "llmbasedos-web";

/// The files of a running stack, under one runtime directory (mode 0700).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) runtime_dir: PathBuf,
}

impl Layout {
    pub(crate) fn new(runtime_dir: &Path) -> Layout {
        Layout {
            runtime_dir: runtime_dir.to_owned(),
        }
    }

    /// Caps files and backend sockets, as `/run/mcp` on an installed system.
    pub(crate) fn caps_dir(&self) -> PathBuf {
        self.runtime_dir.join("mcp")
    }

    pub(crate) fn backend_socket(&self, service: &str) -> PathBuf {
        self.caps_dir().join(format!("{service}.sock"))
    }

    pub(crate) fn caps_file(&self, service: &str) -> PathBuf {
        self.caps_dir().join(format!("{service}.cap.json"))
    }

    pub(crate) fn gateway_socket(&self) -> PathBuf {
        client::cli::gateway_socket(&self.runtime_dir)
    }

    pub(crate) fn gateway_config(&self) -> PathBuf {
        self.runtime_dir.join("gateway.yaml")
    }

    /// `up`'s control socket (`services::wire`).
    pub(crate) fn control_socket(&self) -> PathBuf {
        services::up_socket(&self.runtime_dir)
    }

    /// The console's configuration, written by `up`.
    pub(crate) fn web_config(&self) -> PathBuf {
        self.runtime_dir.join("web.yaml")
    }

    /// Where the console looks for one-time sign-in tokens.
    pub(crate) fn web_bootstrap_dir(&self) -> PathBuf {
        self.runtime_dir.join("web")
    }

    pub(crate) fn token_file(&self) -> PathBuf {
        self.runtime_dir.join("gateway.token")
    }
}

/// The fs root when none is given: `$XDG_DATA_HOME/llmbasedos/files`
/// (`~/.local/share/llmbasedos/files`), a directory of its own rather than
/// the whole home, so that trying llmbasedos exposes nothing by surprise.
/// `$XDG_<kind>_HOME` (or `~/<fallback>`) joined with `llmbasedos`.
fn user_dir(variable: &str, fallback: &str) -> PathBuf {
    std::env::var_os(variable)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(fallback)))
        .unwrap_or_else(|| PathBuf::from(OsString::from("/tmp")))
        .join("llmbasedos")
}

/// The mail accounts `up` uses without --mail-accounts, if the file is there.
pub(crate) fn default_mail_accounts() -> Option<PathBuf> {
    [
        user_dir("XDG_CONFIG_HOME", ".config").join("mail_accounts.yaml"),
        PathBuf::from("/etc/llmbasedos/mail_accounts.yaml"),
    ]
    .into_iter()
    .find(|path| path.is_file())
}

/// Where the mail server of `up` keeps private secret files.
pub(crate) fn mail_secrets_dir() -> PathBuf {
    user_dir("XDG_STATE_HOME", ".local/state")
        .join("mail")
        .join("secrets")
}

pub(crate) fn default_fs_root() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(OsString::from("/tmp")));
    data_home.join("llmbasedos").join("files")
}
