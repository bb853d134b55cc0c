//! The client of `llmbasedos up`'s control socket ([`crate::wire`]).

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::wire::{Request, Response};
use crate::{Action, Error, LogEntry, LogFilter, LogPage, Service, filter};

/// The longest answer line read (a page of [`crate::MAX_PAGE`] entries of
/// bounded messages fits).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// `up`'s control socket.
#[derive(Debug)]
pub struct Up {
    socket: PathBuf,
}

impl Up {
    pub(crate) fn new(socket: PathBuf) -> Up {
        Up { socket }
    }

    /// Connects and sends `request`. The write half is returned: closing it
    /// ends a follow.
    async fn connect(
        &self,
        request: &Request,
    ) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), Error> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|error| {
            let hint = match error.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    return Error::Denied {
                        hint: format!(
                            "{} belongs to another user; run as the user who started `llmbasedos up`",
                            self.socket.display()
                        ),
                    };
                }
                _ => format!(
                    "nothing answers at {} ({error}); start the stack with `llmbasedos up`",
                    self.socket.display()
                ),
            };
            Error::Unavailable {
                what: "llmbasedos up".to_owned(),
                hint,
            }
        })?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).map_err(|error| broken(&error))?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|error| broken(&error))?;
        Ok((BufReader::new(read), write))
    }

    async fn call(&self, request: &Request) -> Result<Response, Error> {
        let (mut reader, _write) = self.connect(request).await?;
        match read_answer(&mut reader).await? {
            Some(Response::Error { error }) => Err(error),
            Some(answer) => Ok(answer),
            None => Err(broken(&"the connection closed without an answer")),
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<Service>, Error> {
        match self.call(&Request::List).await? {
            Response::Services { services } => Ok(services),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn control(&self, name: &str, action: Action) -> Result<(), Error> {
        let request = Request::Control {
            name: name.to_owned(),
            action,
        };
        match self.call(&request).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn logs(
        &self,
        filter: &LogFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        let request = Request::Logs {
            filter: filter.clone(),
            before: before.map(str::to_owned),
            limit,
        };
        match self.call(&request).await? {
            Response::Page { page } => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn follow(
        &self,
        filter: &LogFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>, Error> {
        let (mut reader, write) = self
            .connect(&Request::Follow {
                filter: filter.clone(),
            })
            .await?;
        match read_answer(&mut reader).await? {
            Some(Response::Following) => {}
            Some(Response::Error { error }) => return Err(error),
            Some(other) => return Err(unexpected(&other)),
            None => return Err(broken(&"the connection closed without an answer")),
        }
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let _write = write;
            loop {
                tokio::select! {
                    answer = read_answer(&mut reader) => match answer {
                        Ok(Some(Response::Entry { entry })) => {
                            if sender.send(entry).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    () = sender.closed() => return,
                }
            }
        });
        Ok(receiver)
    }

    /// `llmbasedos --runtime-dir <dir> logs …` for `filter`.
    pub(crate) fn equivalent_command(&self, filter: &LogFilter) -> Vec<String> {
        let mut argv = vec!["llmbasedos".to_owned()];
        if let Some(dir) = self.socket.parent() {
            argv.push(format!("--runtime-dir={}", dir.display()));
        }
        argv.push("logs".to_owned());
        let mut names: Vec<&str> = filter
            .services
            .iter()
            .map(String::as_str)
            .filter(|name| filter::is_service_name(name))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            argv.push(format!("--service={name}"));
        }
        if let Some(priority) = filter.max_priority.filter(|priority| *priority <= 7) {
            argv.push(format!("--priority={priority}"));
        }
        for (flag, time) in [("--since", filter.since), ("--until", filter.until)] {
            if let Some(time) = time {
                let seconds = time
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                argv.push(format!("{flag}=@{seconds}"));
            }
        }
        if let Some(text) = filter.text.as_deref().filter(|text| !text.is_empty()) {
            argv.push(format!("--grep={text}"));
        }
        argv
    }
}

async fn read_answer(reader: &mut BufReader<OwnedReadHalf>) -> Result<Option<Response>, Error> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_ANSWER as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|error| broken(&error))?;
    if read == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|error| broken(&error))
}

fn broken(error: &dyn std::fmt::Display) -> Error {
    Error::Failed {
        what: "llmbasedos up's control socket".to_owned(),
        detail: error.to_string(),
    }
}

fn unexpected(answer: &Response) -> Error {
    broken(&format!("unexpected answer {answer:?}"))
}
