//! systemd over the system bus (org.freedesktop.systemd1) and the journal.

use crate::{Action, Error, LogEntry, LogFilter, LogPage, Service};

/// A connection to systemd on the system bus.
#[derive(Debug)]
pub struct Systemd {
    _private: (),
}

fn not_yet(what: &str) -> Error {
    Error::Unavailable {
        what: format!("systemd {what}"),
        hint: "not implemented in this build of the services crate yet".to_owned(),
    }
}

impl Systemd {
    pub(crate) async fn connect() -> Result<Systemd, Error> {
        Err(not_yet("connection"))
    }

    pub(crate) async fn list(&self) -> Result<Vec<Service>, Error> {
        Err(not_yet("list"))
    }

    pub(crate) async fn control(&self, _name: &str, _action: Action) -> Result<(), Error> {
        Err(not_yet("control"))
    }

    pub(crate) async fn logs(
        &self,
        _filter: &LogFilter,
        _before: Option<&str>,
        _limit: usize,
    ) -> Result<LogPage, Error> {
        Err(not_yet("logs"))
    }

    pub(crate) async fn follow(
        &self,
        _filter: &LogFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>, Error> {
        Err(not_yet("follow"))
    }
}
