//! `services`: the one interface to llmbasedos' services and their logs,
//! with two implementations behind [`Manager`].
//!
//! - [`Manager::systemd`]: an installed system. Unit states and
//!   start/stop/restart go to `org.freedesktop.systemd1` on the system bus
//!   (zbus); logs come from `journalctl -o json` children whose argv is
//!   built from a typed [`LogFilter`] (module `journal`), never from text a
//!   user typed.
//! - [`Manager::up`]: `llmbasedos up`, which supervises the stack as child
//!   processes and serves a control socket (`<runtime>/up.sock`, JSON lines,
//!   module [`wire`]) with the same operations over its own log capture.
//!
//! [`Manager::detect`] picks `up` when its control socket answers, else
//! systemd. Whatever the implementation, **only llmbasedos' own services
//! can be controlled or read**: a unit is touched only when its name
//! matches `^llmbasedos-[a-z0-9-]+\.(service|socket)$` and [`Manager::list`]
//! returned it; anything else is [`Error::NotOurs`] before any D-Bus call,
//! and a log filter names services, never journal fields (so a
//! `_SYSTEMD_UNIT=` trick in a filter is a [`Error::BadFilter`] or a
//! substring, never a journal match).

mod filter;
mod journal;
mod systemd;
mod up;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use filter::{is_service_name, is_unit_name, service_of_unit};

/// What a service is doing now, as an operator reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its socket listens; the service starts on the first connection.
    Listening,
    /// The process runs.
    Running,
    /// It ran, exited cleanly after its idle timeout, and its socket listens
    /// again.
    IdleExited,
    /// Starting (or, under `up`, waiting for its restart delay).
    Activating,
    /// Stopping.
    Deactivating,
    /// It failed (see [`Service::last_error`]).
    Failed,
    /// Stopped, and nothing listens for it.
    Inactive,
}

impl State {
    /// The word the pages and the CLI show: `listening`, `idle-exited`, …
    pub fn as_str(self) -> &'static str {
        match self {
            State::Listening => "listening",
            State::Running => "running",
            State::IdleExited => "idle-exited",
            State::Activating => "activating",
            State::Deactivating => "deactivating",
            State::Failed => "failed",
            State::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One llmbasedos service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its short name: `fs`, `gateway`, `web`.
    pub name: String,
    /// What the implementation calls it: `llmbasedos-fs.service`, or `up:fs`.
    pub unit: String,
    pub state: State,
    /// Since when it has been in this state.
    pub since: Option<SystemTime>,
    pub memory_bytes: Option<u64>,
    /// Its main process, while it runs.
    pub pid: Option<u32>,
    /// Why it last failed (systemd's `Result`, or how the process exited),
    /// when it did.
    pub last_error: Option<String>,
}

/// What [`Manager::control`] does to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = Error;
    fn from_str(text: &str) -> Result<Action, Error> {
        match text {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "restart" => Ok(Action::Restart),
            _ => Err(Error::BadFilter {
                field: "action".to_owned(),
                hint: "one of start, stop, restart".to_owned(),
            }),
        }
    }
}

/// Which log entries to show. Every field narrows; the default shows all of
/// llmbasedos' entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    /// Short names as [`Manager::list`] returns them (`fs`); empty: every
    /// llmbasedos service. A name that is not listed is
    /// [`Error::NoSuchService`].
    #[serde(default)]
    pub services: Vec<String>,
    /// The least important priority shown, syslog's 0 (emerg) ..= 7 (debug):
    /// 4 shows warnings and worse.
    #[serde(default)]
    pub max_priority: Option<u8>,
    #[serde(default)]
    pub since: Option<SystemTime>,
    #[serde(default)]
    pub until: Option<SystemTime>,
    /// A plain, case-insensitive substring of the message; never a pattern
    /// and never a journal match.
    #[serde(default)]
    pub text: Option<String>,
}

impl LogFilter {
    /// Whether `entry` passes this filter: its service is named (or none
    /// is), its priority is at most `max_priority`, its time is within
    /// `since ..= until`, and its message contains `text` ignoring case.
    pub fn matches(&self, entry: &LogEntry) -> bool {
        filter::matches(self, entry)
    }

    /// Refuses a filter that cannot be meant ([`Error::BadFilter`] naming
    /// the field): what [`Manager::logs`] checks before either
    /// implementation sees it, and what `up`'s control server checks again.
    pub fn check(&self) -> Result<(), Error> {
        filter::check(self)
    }
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Where this entry sits: pass it as `before` to page back from it.
    pub cursor: String,
    pub time: SystemTime,
    /// The service's short name (`fs`).
    pub service: String,
    /// syslog priority, 0 ..= 7.
    pub priority: u8,
    /// The message as the service wrote it. Untrusted text: escape it
    /// wherever it is shown.
    pub message: String,
}

/// One page of [`Manager::logs`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// Newest first.
    pub entries: Vec<LogEntry>,
    /// The cursor to pass as `before` for the next older page; `None` when
    /// there is nothing older.
    pub older: Option<String>,
}

/// The most entries one [`Manager::logs`] call returns.
pub const MAX_PAGE: usize = 1000;

/// Why a call failed. Kinds, not texts: match on the variant; the hint says
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Error {
    /// The unit is not one of llmbasedos' own; nothing was sent anywhere.
    #[error("{unit} is not an llmbasedos service; only llmbasedos-* units can be managed")]
    NotOurs { unit: String },
    /// No such llmbasedos service (not installed, or not started by `up`).
    #[error("no llmbasedos service named {name}; the services list shows which exist")]
    NoSuchService { name: String },
    /// The service manager refused: polkit, permissions of the socket.
    #[error("not allowed: {hint}")]
    Denied { hint: String },
    /// The service manager or the journal cannot be reached.
    #[error("{what} is not available: {hint}")]
    Unavailable { what: String, hint: String },
    /// A filter or argument cannot be used as given.
    #[error("bad {field}: {hint}")]
    BadFilter { field: String, hint: String },
    /// The service manager took the request and it failed (a start job
    /// that failed, journalctl exiting with an error).
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
}

impl Error {
    /// The kind as one word, for the pages and the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotOurs { .. } => "not_ours",
            Error::NoSuchService { .. } => "no_such_service",
            Error::Denied { .. } => "denied",
            Error::Unavailable { .. } => "unavailable",
            Error::BadFilter { .. } => "bad_filter",
            Error::Failed { .. } => "failed",
        }
    }
}

/// The services and logs of one llmbasedos installation.
#[derive(Debug)]
pub enum Manager {
    /// systemd on the system bus, and the journal.
    Systemd(systemd::Systemd),
    /// `llmbasedos up`'s control socket.
    Up(up::Up),
}

/// The control socket of `llmbasedos up` in its runtime directory.
pub fn up_socket(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("up.sock")
}

impl Manager {
    /// `up`'s manager when `<runtime_dir>/up.sock` answers, else systemd's.
    pub async fn detect(runtime_dir: &Path) -> Result<Manager, Error> {
        let socket = up_socket(runtime_dir);
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Ok(Manager::up(socket));
        }
        Manager::systemd().await
    }

    /// systemd over the system bus. Fails with [`Error::Unavailable`] when
    /// there is no system bus.
    pub async fn systemd() -> Result<Manager, Error> {
        Ok(Manager::Systemd(systemd::Systemd::connect().await?))
    }

    /// `llmbasedos up`'s control socket at `control_path`; each call
    /// connects anew (a restarted `up` is found again).
    pub fn up(control_path: impl Into<PathBuf>) -> Manager {
        Manager::Up(up::Up::new(control_path.into()))
    }

    /// Every llmbasedos service, sorted by name.
    pub async fn list(&self) -> Result<Vec<Service>, Error> {
        match self {
            Manager::Systemd(systemd) => systemd.list().await,
            Manager::Up(up) => up.list().await,
        }
    }

    /// Starts, stops or restarts one service by its short name (`fs`) or
    /// unit (`llmbasedos-fs.service`). Under systemd the name must match
    /// `^llmbasedos-[a-z0-9-]+\.(service|socket)$` and be one that
    /// [`Manager::list`] returns, else [`Error::NotOurs`] /
    /// [`Error::NoSuchService`] before any D-Bus call.
    pub async fn control(&self, name: &str, action: Action) -> Result<(), Error> {
        match self {
            Manager::Systemd(systemd) => systemd.control(name, action).await,
            Manager::Up(up) => up.control(name, action).await,
        }
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) entries matching `filter`, newest
    /// first, older than the entry at cursor `before` if given.
    pub async fn logs(
        &self,
        filter: &LogFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        filter::check(filter)?;
        let limit = limit.clamp(1, MAX_PAGE);
        match self {
            Manager::Systemd(systemd) => systemd.logs(filter, before, limit).await,
            Manager::Up(up) => up.logs(filter, before, limit).await,
        }
    }

    /// New entries matching `filter` as they are written, oldest first,
    /// until the receiver is dropped (which ends the journalctl child or the
    /// socket connection behind it).
    pub async fn follow(
        &self,
        filter: &LogFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>, Error> {
        filter::check(filter)?;
        match self {
            Manager::Systemd(systemd) => systemd.follow(filter).await,
            Manager::Up(up) => up.follow(filter).await,
        }
    }

    /// The command a user can run in a terminal for the same filter: under
    /// systemd, exactly the `journalctl` argv [`Manager::logs`] runs for its
    /// first page, without its paging arguments (`-r -n <limit>`); under
    /// `up`, the `llmbasedos logs` argv. Services named in the filter that
    /// are not llmbasedos' own are left out (they would be refused).
    pub fn equivalent_command(&self, filter: &LogFilter) -> Vec<String> {
        match self {
            Manager::Systemd(_) => journal::argv(filter),
            Manager::Up(up) => up.equivalent_command(filter),
        }
    }
}
