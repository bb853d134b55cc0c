//! The JSON-lines protocol of `llmbasedos up`'s control socket
//! (`<runtime>/up.sock`, mode 0600): one [`Request`] per line, one
//! [`Response`] per line. `follow` answers [`Response::Following`] and then
//! one [`Response::Entry`] per new entry until the client closes.
//! The server side is `crates/llmbasedos/src/control.rs` (up's supervisor); both
//! sides use these types.

use serde::{Deserialize, Serialize};

use crate::{Action, Error, LogEntry, LogFilter, LogPage, Service};

/// The longest request line the server reads.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List,
    Control {
        name: String,
        action: Action,
    },
    Logs {
        #[serde(default)]
        filter: LogFilter,
        #[serde(default)]
        before: Option<String>,
        limit: usize,
    },
    Follow {
        #[serde(default)]
        filter: LogFilter,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Response {
    Services { services: Vec<Service> },
    Done,
    Page { page: LogPage },
    Following,
    Entry { entry: LogEntry },
    Error { error: Error },
}
