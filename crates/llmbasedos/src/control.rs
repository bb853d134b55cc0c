//! `up`'s control socket (`<runtime>/up.sock`, mode 0600): the server side
//! of `services::wire`, which the web console's `services::Manager::up`
//! and `llmbasedos logs` speak.
//!
//! - [`Board`]: what `up` knows of its children. Each [`Unit`] has its
//!   status (state, since when, pid, why it last stopped) and the command
//!   an operator gave it (wanted running or not, and a restart generation
//!   that a restart bumps); the supervisor of the child watches the
//!   command, the control server watches the status.
//! - [`LogStore`]: every line a child writes to stdout or stderr, in a
//!   bounded ring per service (lines and bytes; an overlong line is cut),
//!   with a global sequence number as its cursor, and a broadcast of new
//!   lines for `follow`.
//! - [`serve`]: one task per connection, one request per line, peers of
//!   another uid refused (SO_PEERCRED). A malformed or overlong line is
//!   answered with an error and the connection keeps serving.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use services::wire::{MAX_REQUEST, Request, Response};
use services::{Action, Error, LogEntry, LogFilter, LogPage, MAX_PAGE, Service, State};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

/// The most lines kept per service.
pub(crate) const MAX_LINES: usize = 10_000;
/// The most message bytes kept per service.
pub(crate) const MAX_BYTES: usize = 2 * 1024 * 1024;
/// The longest message kept; the rest of a longer line is cut.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// New lines a follower may be behind before it is told it fell behind.
const FOLLOW_BACKLOG: usize = 16 * 1024;

/// What a child is doing, as the control socket reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) state: State,
    pub(crate) since: SystemTime,
    pub(crate) pid: Option<u32>,
    pub(crate) last_error: Option<String>,
    /// The restart generation the current run was started for.
    pub(crate) run: u64,
}

/// What the operator wants of a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Command {
    pub(crate) wanted: bool,
    /// Bumped by each restart: a run of an older generation is stopped and
    /// started again.
    pub(crate) generation: u64,
}

/// One supervised child, as the supervisor and the control server share it.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(crate) name: String,
    status: watch::Sender<Status>,
    command: watch::Sender<Command>,
}

impl Unit {
    pub(crate) fn new(name: &str) -> Unit {
        Unit {
            name: name.to_owned(),
            status: watch::Sender::new(Status {
                state: State::Activating,
                since: SystemTime::now(),
                pid: None,
                last_error: None,
                run: 0,
            }),
            command: watch::Sender::new(Command {
                wanted: true,
                generation: 0,
            }),
        }
    }

    /// Records a new state; `since` moves only when the state changes.
    pub(crate) fn set(&self, state: State, pid: Option<u32>, last_error: Option<String>, run: u64) {
        self.status.send_modify(|status| {
            if status.state != state {
                status.since = SystemTime::now();
            }
            status.state = state;
            status.pid = pid;
            if last_error.is_some() {
                status.last_error = last_error;
            }
            status.run = run;
        });
    }

    pub(crate) fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub(crate) fn commands(&self) -> watch::Receiver<Command> {
        self.command.subscribe()
    }

    fn service(&self) -> Service {
        let status = self.status();
        Service {
            name: self.name.clone(),
            unit: format!("up:{}", self.name),
            state: status.state,
            since: Some(status.since),
            memory_bytes: status.pid.and_then(resident_bytes),
            pid: status.pid,
            last_error: status.last_error,
        }
    }

    /// Applies `action` and waits (up to `patience`) until the child's
    /// status shows it.
    async fn control(&self, action: Action, patience: Duration) -> Result<(), Error> {
        let mut status = self.status.subscribe();
        let command = *self.command.borrow();
        let target = match action {
            Action::Start if command.wanted && self.status().state != State::Failed => {
                return Ok(());
            }
            Action::Stop if !command.wanted => return Ok(()),
            Action::Start | Action::Restart => Command {
                wanted: true,
                generation: command.generation + 1,
            },
            Action::Stop => Command {
                wanted: false,
                generation: command.generation,
            },
        };
        self.command.send_replace(target);
        let reached = |status: &Status| match action {
            Action::Stop => matches!(status.state, State::Inactive | State::Failed),
            Action::Start | Action::Restart => {
                status.run >= target.generation
                    && matches!(status.state, State::Running | State::Failed)
            }
        };
        match tokio::time::timeout(patience, status.wait_for(reached)).await {
            Ok(Ok(status)) if status.state == State::Failed && action != Action::Stop => {
                Err(Error::Failed {
                    what: format!("{} {}", action.as_str(), self.name),
                    detail: status
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "it did not start; see its log".to_owned()),
                })
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Unavailable {
                what: "llmbasedos up".to_owned(),
                hint: "the stack is stopping".to_owned(),
            }),
            Err(_) => Err(Error::Failed {
                what: format!("{} {}", action.as_str(), self.name),
                detail: format!(
                    "still {} after {} s; see its log",
                    self.status().state,
                    patience.as_secs()
                ),
            }),
        }
    }
}

/// Resident memory of `pid` from /proc, in bytes.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Everything the control server answers from.
#[derive(Debug)]
pub(crate) struct Board {
    /// Sorted by name.
    units: Vec<Arc<Unit>>,
    pub(crate) logs: Arc<LogStore>,
    /// How long a control request waits for the state it asked for.
    patience: Duration,
}

impl Board {
    pub(crate) fn new(mut units: Vec<Arc<Unit>>, logs: Arc<LogStore>, patience: Duration) -> Board {
        units.sort_by(|a, b| a.name.cmp(&b.name));
        Board {
            units,
            logs,
            patience,
        }
    }

    fn unit(&self, name: &str) -> Result<&Arc<Unit>, Error> {
        let short = name
            .strip_prefix("up:")
            .or_else(|| services::service_of_unit(name))
            .unwrap_or(name);
        self.units
            .iter()
            .find(|unit| unit.name == short)
            .ok_or_else(|| Error::NoSuchService {
                name: proto::text::bounded(name, 64).into_owned(),
            })
    }

    pub(crate) fn list(&self) -> Vec<Service> {
        self.units.iter().map(|unit| unit.service()).collect()
    }

    pub(crate) async fn control(&self, name: &str, action: Action) -> Result<(), Error> {
        self.unit(name)?.control(action, self.patience).await
    }

    /// Checks `filter` as the client does, and that the services it names
    /// are `up`'s.
    fn check(&self, filter: &LogFilter) -> Result<(), Error> {
        filter.check()?;
        for name in &filter.services {
            if !self.units.iter().any(|unit| unit.name == *name) {
                return Err(Error::NoSuchService { name: name.clone() });
            }
        }
        Ok(())
    }

    pub(crate) fn logs(
        &self,
        filter: &LogFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        self.check(filter)?;
        let before = match before {
            None => None,
            Some(cursor) => Some(cursor.parse::<u64>().map_err(|_| Error::BadFilter {
                field: "before".to_owned(),
                hint: "a cursor from an earlier page (its `older`)".to_owned(),
            })?),
        };
        Ok(self.logs.page(filter, before, limit.clamp(1, MAX_PAGE)))
    }
}

/// The ring of one service.
#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<(u64, LogEntry)>,
    bytes: usize,
}

/// Every child's captured lines, bounded per service.
#[derive(Debug)]
pub(crate) struct LogStore {
    inner: Mutex<Store>,
    new: broadcast::Sender<(u64, LogEntry)>,
    max_lines: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Store {
    next: u64,
    rings: Vec<(String, Ring)>,
}

impl LogStore {
    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> LogStore {
        LogStore {
            inner: Mutex::new(Store {
                next: 1,
                rings: Vec::new(),
            }),
            new: broadcast::Sender::new(FOLLOW_BACKLOG),
            max_lines: max_lines.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps one line of `service` (cut to [`MAX_LINE`] bytes), evicting
    /// its oldest lines beyond the bounds.
    pub(crate) fn push(&self, service: &str, priority: u8, message: &str) {
        let message = proto::text::bounded(message, MAX_LINE).into_owned();
        let mut store = self.lock();
        let sequence = store.next;
        store.next += 1;
        let entry = LogEntry {
            cursor: sequence.to_string(),
            time: SystemTime::now(),
            service: service.to_owned(),
            priority: priority.min(7),
            message,
        };
        let index = match store.rings.iter().position(|(name, _)| name == service) {
            Some(index) => index,
            None => {
                store.rings.push((service.to_owned(), Ring::default()));
                store.rings.len() - 1
            }
        };
        let ring = &mut store.rings[index].1;
        ring.bytes += entry.message.len();
        ring.lines.push_back((sequence, entry.clone()));
        while ring.lines.len() > self.max_lines
            || (ring.bytes > self.max_bytes && ring.lines.len() > 1)
        {
            if let Some((_, old)) = ring.lines.pop_front() {
                ring.bytes -= old.message.len();
            }
        }
        drop(store);
        // No follower: nothing to do.
        let _ = self.new.send((sequence, entry));
    }

    /// Lines kept for `service`, and their bytes.
    #[cfg(test)]
    fn held(&self, service: &str) -> (usize, usize) {
        self.lock()
            .rings
            .iter()
            .find(|(name, _)| name == service)
            .map_or((0, 0), |(_, ring)| (ring.lines.len(), ring.bytes))
    }

    /// Up to `limit` entries matching `filter` older than `before`, newest
    /// first; `older` is set when more match further back.
    fn page(&self, filter: &LogFilter, before: Option<u64>, limit: usize) -> LogPage {
        let store = self.lock();
        let mut found: Vec<&(u64, LogEntry)> = Vec::new();
        for (name, ring) in &store.rings {
            if !filter.services.is_empty() && !filter.services.contains(name) {
                continue;
            }
            found.extend(
                ring.lines
                    .iter()
                    .rev()
                    .filter(|(sequence, _)| before.is_none_or(|before| *sequence < before))
                    .filter(|(_, entry)| filter.matches(entry))
                    .take(limit + 1),
            );
        }
        found.sort_unstable_by_key(|(sequence, _)| std::cmp::Reverse(*sequence));
        let more = found.len() > limit;
        let entries: Vec<LogEntry> = found
            .into_iter()
            .take(limit)
            .map(|(_, entry)| entry.clone())
            .collect();
        LogPage {
            older: more
                .then(|| entries.last().map(|entry| entry.cursor.clone()))
                .flatten(),
            entries,
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<(u64, LogEntry)> {
        self.new.subscribe()
    }
}

/// The syslog priority of a line as server-kit's logging writes it
/// (`<time>  WARN message`, or JSON with `"level"`), or an sd-daemon
/// `<N>` prefix; 6 (info) when none can be read.
pub(crate) fn priority_of(line: &str) -> u8 {
    let level_priority = |level: &str| match level {
        "ERROR" => Some(3),
        "WARN" => Some(4),
        "INFO" => Some(6),
        "DEBUG" | "TRACE" => Some(7),
        _ => None,
    };
    if let Some(rest) = line.strip_prefix('<')
        && let Some((digit, _)) = rest.split_once('>')
        && let Ok(priority) = digit.parse::<u8>()
        && priority <= 7
    {
        return priority;
    }
    if line.starts_with('{')
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
        && let Some(priority) = value
            .get("level")
            .and_then(serde_json::Value::as_str)
            .and_then(level_priority)
    {
        return priority;
    }
    line.split_whitespace()
        .take(2)
        .find_map(level_priority)
        .unwrap_or(6)
}

/// Reads one line of at most `max` bytes into `line` (without its
/// newline). `Ok(None)` at the end; `Ok(Some(true))` when the line was
/// longer and its rest was skipped.
pub(crate) async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut cut = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok((!line.is_empty() || cut).then_some(cut));
        }
        let (chunk, done) = match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) => (&buffer[..end], Some(end + 1)),
            None => (buffer, None),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buffer.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// Binds `<runtime>/up.sock` with mode 0600 (a leftover socket of an
/// earlier `up` is removed: the runtime directory is locked by this one).
pub(crate) fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context as _;
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
    Ok(listener)
}

/// Serves the control socket until `stop` to peers of uid `owner` (the
/// user running `up`).
pub(crate) async fn serve(
    listener: UnixListener,
    board: Arc<Board>,
    owner: u32,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(
                stream,
                Error::Unavailable {
                    what: "llmbasedos up's control socket".to_owned(),
                    hint: format!("{MAX_CONNECTIONS} connections are open; try again"),
                },
            ));
            continue;
        };
        let board = board.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            connection(stream, &board, owner, &stop).await;
        });
    }
}

async fn refuse(mut stream: UnixStream, error: Error) {
    let _ = write(&mut stream, &Response::Error { error }).await;
}

async fn write(out: &mut (impl AsyncWrite + Unpin), answer: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await
}

/// One client: its uid checked, then one answer per request line.
async fn connection(stream: UnixStream, board: &Board, me: u32, stop: &CancellationToken) {
    match client::cli::peer_credentials(&stream) {
        Ok(peer) if peer.uid == me => {}
        Ok(peer) => {
            tracing::warn!(
                uid = peer.uid,
                "control socket: refused a peer of another user"
            );
            return refuse(
                stream,
                Error::Denied {
                    hint: format!(
                        "uid {} is not the user running `llmbasedos up` (uid {me})",
                        peer.uid
                    ),
                },
            )
            .await;
        }
        Err(error) => {
            return refuse(
                stream,
                Error::Denied {
                    hint: format!("cannot tell who is connecting ({error})"),
                },
            )
            .await;
        }
    }
    let (read, mut out) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        let request = tokio::select! {
            read = read_line(&mut reader, &mut line, MAX_REQUEST) => read,
            () = stop.cancelled() => return,
        };
        let answer = match request {
            Err(_) | Ok(None) => return,
            Ok(Some(true)) => Response::Error {
                error: Error::BadFilter {
                    field: "request".to_owned(),
                    hint: format!("a request line is at most {MAX_REQUEST} bytes"),
                },
            },
            Ok(Some(false)) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(Some(false)) => match serde_json::from_slice::<Request>(&line) {
                Err(error) => Response::Error {
                    error: Error::BadFilter {
                        field: "request".to_owned(),
                        hint: format!(
                            "not a request ({error}); send one JSON object per line, such as {{\"op\":\"list\"}}"
                        ),
                    },
                },
                Ok(Request::Follow { filter }) => {
                    return follow(board, &filter, &mut reader, &mut out, stop).await;
                }
                Ok(request) => answer(board, request).await,
            },
        };
        if write(&mut out, &answer).await.is_err() {
            return;
        }
    }
}

async fn answer(board: &Board, request: Request) -> Response {
    let outcome = match request {
        Request::List => Ok(Response::Services {
            services: board.list(),
        }),
        Request::Control { name, action } => {
            board.control(&name, action).await.map(|()| Response::Done)
        }
        Request::Logs {
            filter,
            before,
            limit,
        } => board
            .logs(&filter, before.as_deref(), limit)
            .map(|page| Response::Page { page }),
        Request::Follow { .. } => unreachable!("follow is answered by `follow`"),
    };
    outcome.unwrap_or_else(|error| Response::Error { error })
}

/// `follow`: [`Response::Following`], then every new matching entry until
/// the client closes its side or falls behind.
async fn follow(
    board: &Board,
    filter: &LogFilter,
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    out: &mut tokio::net::unix::OwnedWriteHalf,
    stop: &CancellationToken,
) {
    if let Err(error) = board.check(filter) {
        let _ = write(out, &Response::Error { error }).await;
        return;
    }
    let mut new = board.logs.subscribe();
    if write(out, &Response::Following).await.is_err() {
        return;
    }
    let mut ignored = Vec::new();
    loop {
        tokio::select! {
            received = new.recv() => match received {
                Ok((_, entry)) => {
                    if filter.matches(&entry)
                        && write(out, &Response::Entry { entry }).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let error = Error::Failed {
                        what: "follow".to_owned(),
                        detail: format!("this reader fell {missed} entries behind; follow again and page back for what was missed"),
                    };
                    let _ = write(out, &Response::Error { error }).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // Whatever the client sends now is ignored; its end closes the stream.
            read = read_line(reader, &mut ignored, MAX_REQUEST) => {
                if !matches!(read, Ok(Some(_))) {
                    return;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(lines: &[(&str, &str)]) -> LogStore {
        let store = LogStore::new(MAX_LINES, MAX_BYTES);
        for (service, message) in lines {
            store.push(service, priority_of(message), message);
        }
        store
    }

    #[test]
    fn the_log_of_each_service_is_bounded_in_lines_and_bytes_and_long_lines_are_cut() {
        let store = LogStore::new(100, 10_000);
        for number in 0..1000 {
            store.push("fs", 6, &format!("line {number}"));
        }
        store.push("gateway", 6, "one");
        assert_eq!(store.held("fs").0, 100, "lines bounded");
        assert_eq!(store.held("gateway").0, 1, "each service has its own ring");
        let page = store.page(&LogFilter::default(), None, MAX_PAGE);
        assert_eq!(page.entries[0].message, "one");
        assert_eq!(page.entries[1].message, "line 999");
        assert_eq!(
            page.entries.last().map(|e| e.message.as_str()),
            Some("line 900")
        );
        assert_eq!(page.older, None, "what was evicted is gone");

        for _ in 0..10 {
            store.push("sync", 6, &"x".repeat(3000));
        }
        let (lines, bytes) = store.held("sync");
        assert!(
            bytes <= 10_000 && lines == 3,
            "{lines} lines, {bytes} bytes"
        );

        store.push("agent", 6, &"y".repeat(MAX_LINE * 3));
        let page = store.page(
            &LogFilter {
                services: vec!["agent".into()],
                ..LogFilter::default()
            },
            None,
            10,
        );
        assert!(page.entries[0].message.len() < MAX_LINE + 64, "cut");
    }

    #[test]
    fn pages_go_back_in_time_with_the_filters_and_see_each_entry_once() {
        let mut lines = Vec::new();
        for number in 0..250 {
            let service = if number % 2 == 0 { "fs" } else { "gateway" };
            let level = if number % 5 == 0 { "WARN" } else { "INFO" };
            lines.push((
                service,
                format!("2026-01-01T00:00:00Z  {level} message {number}"),
            ));
        }
        let refs: Vec<(&str, &str)> = lines.iter().map(|(s, m)| (*s, m.as_str())).collect();
        let store = store_with(&refs);
        let filter = LogFilter {
            services: vec!["fs".into()],
            max_priority: Some(4),
            ..LogFilter::default()
        };
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store.page(&filter, before, 7);
            assert!(page.entries.len() <= 7);
            seen.extend(page.entries.iter().map(|entry| entry.message.clone()));
            match page.older {
                Some(older) => before = Some(older.parse().expect("a number")),
                None => break,
            }
        }
        let expected: Vec<String> = (0..250)
            .rev()
            .filter(|number| number % 10 == 0)
            .map(|number| format!("2026-01-01T00:00:00Z  WARN message {number}"))
            .collect();
        assert_eq!(seen, expected);
        let text = store.page(
            &LogFilter {
                text: Some("MESSAGE 24".into()),
                ..LogFilter::default()
            },
            None,
            100,
        );
        assert_eq!(text.entries.len(), 11, "24 and 240..=249, any case");
    }

    #[test]
    fn priorities_are_read_from_the_logging_formats() {
        assert_eq!(priority_of("2026-12-02T13:35:36.1Z ERROR boom"), 3);
        assert_eq!(priority_of("2026-12-02T13:35:36.1Z  WARN careful"), 4);
        assert_eq!(priority_of("2026-12-02T13:35:36.1Z DEBUG detail"), 7);
        assert_eq!(
            priority_of(r#"{"timestamp":"x","level":"WARN","fields":{}}"#),
            4
        );
        assert_eq!(priority_of("<2>critical"), 2);
        assert_eq!(priority_of("plain output mentioning ERROR later"), 6);
        assert_eq!(priority_of(""), 6);
    }

    async fn request(stream: &mut BufReader<UnixStream>, line: &[u8]) -> Response {
        stream.get_mut().write_all(line).await.expect("write");
        let mut answer = Vec::new();
        read_line(stream, &mut answer, 1 << 20)
            .await
            .expect("read")
            .expect("an answer");
        serde_json::from_slice(&answer).expect("an answer line")
    }

    fn board() -> Arc<Board> {
        let logs = Arc::new(store_with(&[
            ("fs", "2026-01-01T00:00:00Z  INFO hello"),
            ("fs", "2026-01-01T00:00:00Z ERROR <script>bad</script>"),
        ]));
        let fs = Arc::new(Unit::new("fs"));
        fs.set(State::Running, Some(std::process::id()), None, 0);
        Arc::new(Board::new(
            vec![fs, Arc::new(Unit::new("gateway"))],
            logs,
            Duration::from_secs(5),
        ))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_socket_answers_the_client_and_keeps_serving_after_bad_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("up.sock");
        let listener = bind(&path).expect("bind");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let stop = CancellationToken::new();
        let board = board();
        let server = tokio::spawn(serve(
            listener,
            board.clone(),
            client::cli::current_uid(),
            stop.clone(),
        ));

        let mut raw = BufReader::new(UnixStream::connect(&path).await.expect("connect"));
        for bad in [
            &b"not json\n"[..],
            b"{\"op\":\"format_disk\"}\n",
            b"[1,2]\n",
        ] {
            match request(&mut raw, bad).await {
                Response::Error {
                    error: Error::BadFilter { field, hint },
                } => assert!(
                    field == "request" && hint.contains("one JSON object"),
                    "{hint}"
                ),
                other => panic!("{other:?}"),
            }
        }
        let mut long = vec![b'x'; MAX_REQUEST * 2];
        long.push(b'\n');
        assert!(matches!(
            request(&mut raw, &long).await,
            Response::Error {
                error: Error::BadFilter { .. }
            }
        ));
        match request(&mut raw, b"{\"op\":\"list\"}\n").await {
            Response::Services { services } => {
                let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["fs", "gateway"]);
                assert_eq!(services[0].state, State::Running);
                assert_eq!(services[0].unit, "up:fs");
                assert!(services[0].memory_bytes.is_some_and(|bytes| bytes > 0));
            }
            other => panic!("{other:?}"),
        }

        // The crate's client speaks the same protocol.
        let manager = services::Manager::up(path.clone());
        assert_eq!(manager.list().await.expect("list").len(), 2);
        assert!(matches!(
            manager.control("ssh", Action::Stop).await,
            Err(Error::NoSuchService { .. })
        ));
        assert!(matches!(
            manager
                .control("llmbasedos-ssh.service", Action::Stop)
                .await,
            Err(Error::NoSuchService { .. })
        ));
        let only = |name: &str| LogFilter {
            services: vec![name.to_owned()],
            ..LogFilter::default()
        };
        assert!(matches!(
            manager.logs(&only("mail"), None, 10).await,
            Err(Error::NoSuchService { .. })
        ));
        assert!(matches!(
            manager.logs(&LogFilter::default(), Some("x"), 10).await,
            Err(Error::BadFilter { field, .. }) if field == "before"
        ));
        let errors = LogFilter {
            max_priority: Some(3),
            ..only("fs")
        };
        let page = manager.logs(&errors, None, 10).await.expect("logs");
        assert_eq!(page.entries.len(), 1);
        assert!(page.entries[0].message.contains("<script>"));
        assert_eq!(page.entries[0].priority, 3);

        let mut followed = manager.follow(&only("gateway")).await.expect("follow");
        board.logs.push("fs", 6, "not this one");
        board.logs.push("gateway", 6, "this one");
        let entry = tokio::time::timeout(Duration::from_secs(10), followed.recv())
            .await
            .expect("in time")
            .expect("an entry");
        assert_eq!(entry.message, "this one");
        drop(followed);

        stop.cancel();
        server.await.expect("server");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn peers_of_another_uid_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("up.sock");
        let listener = bind(&path).expect("bind");
        let stop = CancellationToken::new();
        // The socket belongs to "another user": this test's own uid is the
        // stranger, with its real credentials checked by the kernel.
        let owner = client::cli::current_uid().wrapping_add(1);
        let server = tokio::spawn(serve(listener, board(), owner, stop.clone()));
        match services::Manager::up(path.clone()).list().await {
            Err(Error::Denied { hint }) => assert!(hint.contains("is not the user"), "{hint}"),
            other => panic!("{other:?}"),
        }
        stop.cancel();
        server.await.expect("server");
    }
}
