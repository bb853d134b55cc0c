//! IMAP: connections (TLS or STARTTLS through tokio-rustls, DESIGN.md 7), a
//! small pool of logged-in sessions per account, and the typed operations
//! the handlers call. No JSON-RPC here.
//!
//! **Sessions.** Each account has at most [`MAX_SESSIONS`] sessions at once;
//! idle ones are kept and reused, checked with `NOOP` when they were idle
//! longer than [`NOOP_AFTER`], dropped at once when the server ended them
//! while idle (a `BYE` or the end of the stream already received), and
//! dropped on any error (the next call connects anew, so a server that was
//! down works again as soon as it is back). Connect, login and every
//! command have a timeout: a server that accepts and never answers costs
//! one call its timeout, not the runtime.
//!
//! **Refusals are data**: a tagged `NO`/`BAD` is parsed from the line the
//! server sent into a [`Refusal`] with its [`ResponseCode`] (see
//! `imap/response.rs`), and what it means (folder not found, unavailable,
//! not permitted, over quota) is decided on the code, never on the words.
//!
//! **Reading never marks anything seen**: folders are opened with
//! `EXAMINE` for reads and bodies fetched with `BODY.PEEK`.
//!
//! **Searches run on the server** (`UID SEARCH` built from typed
//! [`Search`] criteria); nothing is scanned locally. **Mutations touch
//! exactly the uids given**: `UID MOVE`, or `UID COPY` + `\Deleted` +
//! `UID EXPUNGE` of those uids (UIDPLUS); never a folder-wide `EXPUNGE`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_imap::imap_proto::{BodyStructure, ContentDisposition};
use async_imap::types::{Fetch, Flag, NameAttribute};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::accounts::{Account, AuthKind, Security};
use crate::auth;
use crate::error::MailError;
use crate::mime;
use crate::secrets::SecretSources;
use crate::tls;

mod response;
pub mod structure;

pub use response::{Refusal, ResponseCode, Status};
pub use structure::PartInfo;

/// Sessions per account at once; further calls wait for one.
pub const MAX_SESSIONS: usize = 3;
/// An idle session older than this is checked with NOOP before use.
pub const NOOP_AFTER: Duration = Duration::from_secs(2);
/// An idle session older than this is closed instead (servers drop idle
/// clients after 30 minutes; RFC 3501 5.4).
pub const IDLE_LIMIT: Duration = Duration::from_secs(20 * 60);

/// The timeouts of one account's IMAP traffic.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub login: Duration,
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            login: Duration::from_secs(15),
            command: Duration::from_secs(60),
        }
    }
}

/// The byte stream under a session: TLS, or plain TCP on loopback.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

type Session = async_imap::Session<Box<dyn Io>>;

/// A logged-in session and what the server said it can do.
struct Connection {
    session: Session,
    capabilities: Vec<String>,
    used: Instant,
    /// The last line the server sent, read after a refusal.
    tap: response::Tap,
    /// The folder selected now, if any (see [`Lease::open`]).
    selected: Option<Selected>,
}

/// A folder a session has open.
struct Selected {
    /// Its name as sent (modified UTF-7).
    name: String,
    /// `SELECT` (read-write) rather than `EXAMINE`.
    write: bool,
    /// Its UIDVALIDITY, which cannot change while it is selected (RFC 3501
    /// 2.3.1.1: a server that must change it ends the session).
    uid_validity: Option<u32>,
}

impl Connection {
    fn can(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|have| have.eq_ignore_ascii_case(capability))
    }
}

#[derive(Default)]
struct AccountPool {
    idle: Mutex<Vec<Connection>>,
}

/// Every account's sessions.
pub struct Imap {
    secrets: SecretSources,
    oauth: Arc<auth::OAuthClients>,
    timeouts: Timeouts,
    pools: HashMap<String, (Arc<Semaphore>, AccountPool)>,
    tls: tls::Configs,
}

impl Debug for Imap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("accounts", &self.pools.keys())
            .finish()
    }
}

/// One session lent out; it goes back to the pool when dropped, unless an
/// error left it in an unknown state.
struct Lease<'a> {
    connection: Option<Connection>,
    pool: &'a AccountPool,
    _permit: tokio::sync::SemaphorePermit<'a>,
    account: &'a Account,
    timeouts: Timeouts,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            while connection.session.unsolicited_responses.try_recv().is_ok() {}
            connection.used = Instant::now();
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push(connection);
            }
        }
    }
}

impl Lease<'_> {
    fn connection(&mut self) -> &mut Connection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Runs one IMAP exchange under the command timeout. On any failure the
    /// session is not returned to the pool.
    async fn run<T>(
        &mut self,
        what: &str,
        work: impl AsyncFnOnce(&mut Connection) -> Result<T, async_imap::error::Error>,
    ) -> Result<T, MailError> {
        let timeout = self.timeouts.command;
        let account = self.account.name.clone();
        let result = tokio::time::timeout(timeout, work(self.connection())).await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let refusal = self.connection().tap.refusal();
                let keep = matches!(error, async_imap::error::Error::No(_));
                if !keep {
                    self.connection = None;
                }
                Err(server_error(&account, what, &error, refusal))
            }
            Err(_) => {
                self.connection = None;
                Err(MailError::Timeout {
                    account,
                    what: what.to_owned(),
                    seconds: timeout.as_secs(),
                })
            }
        }
    }

    /// `UID FETCH set query`, every answer collected.
    async fn fetch(
        &mut self,
        what: &str,
        set: String,
        query: impl Into<String>,
    ) -> Result<Vec<Fetch>, MailError> {
        let query = query.into();
        self.run(what, async move |connection| {
            connection
                .session
                .uid_fetch(set, query)
                .await?
                .try_collect()
                .await
        })
        .await
    }

    /// Opens `folder`: read-only (`EXAMINE`) unless `write`. A session
    /// that has it open already in that mode keeps it and only asks `NOOP`,
    /// which makes the server bring the session's view up to date (new and
    /// expunged messages, RFC 3501 6.1.2) as a fresh `EXAMINE` would. In
    /// the mail bench (dovecot over TLS, 10,000 messages) opening the
    /// folder anew for every call made a `listMessages` page 24–28 ms
    /// against 8 ms in the open folder; dovecot itself, asked by a raw
    /// plain-text client, takes about as long either way (the bench prints
    /// both), so the cost was this session's extra exchange, not the
    /// server's work.
    /// Returns the folder's UIDVALIDITY.
    async fn open(&mut self, folder: &str, write: bool) -> Result<Option<u32>, MailError> {
        let account = self.account.name.clone();
        let name = encode_folder(folder);
        let connection = self.connection();
        if let Some(selected) = connection
            .selected
            .as_ref()
            .filter(|selected| selected.name == name && selected.write == write)
        {
            let uid_validity = selected.uid_validity;
            self.run("bring the folder up to date (NOOP)", async |connection| {
                connection.session.noop().await
            })
            .await?;
            return Ok(uid_validity);
        }
        // A SELECT or EXAMINE that fails leaves no folder selected
        // (RFC 3501 6.3.1).
        connection.selected = None;
        let selecting = name.clone();
        let result = self
            .run("open the folder", async move |connection| {
                let mailbox = if write {
                    connection.session.select(&selecting).await?
                } else {
                    connection.session.examine(&selecting).await?
                };
                connection.selected = Some(Selected {
                    name: selecting,
                    write,
                    uid_validity: mailbox.uid_validity,
                });
                Ok(mailbox.uid_validity)
            })
            .await;
        result.map_err(|error| match error {
            // A NO to SELECT/EXAMINE is "no such mailbox, can't access
            // mailbox" (RFC 3501 6.3.1); dovecot 2.3 gives it no code.
            // Codes that say more (NOPERM, UNAVAILABLE, CANNOT...) keep
            // their own meaning.
            MailError::Server {
                status: Some(Status::No),
                code: None,
                ..
            } => MailError::FolderNotFound {
                account: account.clone(),
                folder: folder.to_owned(),
                parameter: "folder",
            },
            other => folder_missing(other, &account, folder, "folder"),
        })
    }
}

/// Whether the server ended an idle session (a `* BYE`, the end of the
/// stream, a reset): what it sent is already in the socket, so a read that
/// completes at once tells, for no round trip. Nothing waiting means the
/// session is as good as when it was returned (NOOP checks the rest after
/// [`NOOP_AFTER`]). Without this a restarted or kicking server costs the
/// first call after it a "connection lost".
fn closed_while_idle(connection: &mut Connection) -> bool {
    use futures::FutureExt;
    // Bounded: unsolicited updates (EXISTS, EXPUNGE) are dropped, as the
    // lease does when it returns a session.
    for _ in 0..32 {
        match connection.session.read_response().now_or_never() {
            None => return false,
            Some(Ok(Some(response))) => {
                if let async_imap::imap_proto::Response::Data {
                    status: async_imap::imap_proto::Status::Bye,
                    ..
                } = response.parsed()
                {
                    return true;
                }
            }
            Some(Ok(None) | Err(_)) => return true,
        }
    }
    false
}

/// `error` as [`MailError::FolderNotFound`] when the server said the
/// folder does not exist (NONEXISTENT; TRYCREATE where a command names a
/// destination); `parameter` is what named the folder.
fn folder_missing(
    error: MailError,
    account: &str,
    folder: &str,
    parameter: &'static str,
) -> MailError {
    match error {
        MailError::Server {
            code: Some(ResponseCode::NonExistent | ResponseCode::TryCreate),
            ..
        } => MailError::FolderNotFound {
            account: account.to_owned(),
            folder: folder.to_owned(),
            parameter,
        },
        other => other,
    }
}

/// What a failed exchange means, decided on the refusal's response code
/// when the server sent one (`refusal`, the tagged line itself), never on
/// its words.
fn server_error(
    account: &str,
    what: &str,
    error: &async_imap::error::Error,
    refusal: Option<Refusal>,
) -> MailError {
    use async_imap::error::Error;
    let (account, what) = (account.to_owned(), what.to_owned());
    let status = match error {
        Error::No(_) => Some(Status::No),
        Error::Bad(_) => Some(Status::Bad),
        _ => None,
    };
    let reason = match (error, refusal) {
        (Error::No(_) | Error::Bad(_), Some(refusal)) => {
            let reason = proto::text::echo(&refusal.text).into_owned();
            return match refusal.code {
                Some(ResponseCode::Unavailable | ResponseCode::InUse) => MailError::Unavailable {
                    account,
                    what,
                    reason,
                },
                Some(ResponseCode::NoPerm | ResponseCode::AuthorizationFailed) => {
                    MailError::NotPermitted {
                        account,
                        what,
                        reason,
                    }
                }
                Some(ResponseCode::OverQuota | ResponseCode::Limit) => MailError::OverQuota {
                    account,
                    what,
                    reason,
                },
                code => MailError::Server {
                    account,
                    what,
                    reason,
                    status: Some(refusal.status),
                    code,
                },
            };
        }
        // A refusal whose line was not kept (too long, or not the last).
        (Error::No(_) | Error::Bad(_), None) => "it refused the command".to_owned(),
        (Error::Io(io), _) => format!("connection failed ({})", io.kind()),
        (Error::ConnectionLost, _) => "the connection was lost".to_owned(),
        (Error::Parse(_), _) => "its answer could not be parsed".to_owned(),
        (other, _) => proto::text::echo(&other.to_string()).into_owned(),
    };
    MailError::Server {
        account,
        what,
        reason,
        status,
        code: None,
    }
}

/// A folder with its counts.
#[derive(Clone, Debug, Serialize)]
pub struct Folder {
    pub name: String,
    pub delimiter: Option<String>,
    /// RFC 6154 special use, lower-case without the backslash: `sent`,
    /// `drafts`, `trash`, `junk`, `archive`, `all`, `flagged`.
    pub special_use: Option<String>,
    pub attributes: Vec<String>,
    pub selectable: bool,
    pub messages: Option<u32>,
    pub unseen: Option<u32>,
}

/// Structured search criteria, each an IMAP SEARCH key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub body: Option<String>,
    /// `YYYY-MM-DD`.
    pub since: Option<String>,
    /// `YYYY-MM-DD`.
    pub before: Option<String>,
    pub seen: Option<bool>,
    pub flagged: Option<bool>,
    pub answered: Option<bool>,
    pub has_attachment: Option<bool>,
}

impl Search {
    /// The `UID SEARCH` arguments. Non-ASCII strings go as literals with
    /// `CHARSET UTF-8`, which needs the server's LITERAL+ (non-synchronising
    /// literals: the command is still written in one go).
    pub fn to_imap(&self, literal_plus: bool) -> Result<String, MailError> {
        let mut keys: Vec<String> = Vec::new();
        let mut utf8 = false;
        let mut string = |name: &str,
                          value: &Option<String>,
                          keys: &mut Vec<String>|
         -> Result<(), MailError> {
            if let Some(value) = value {
                if value.contains(['\r', '\n']) {
                    return Err(MailError::Invalid(format!(
                        "search.{name} must be one line"
                    )));
                }
                if value.is_ascii() {
                    keys.push(format!("{} {}", name.to_ascii_uppercase(), quote(value)));
                } else if literal_plus {
                    utf8 = true;
                    keys.push(format!(
                        "{} {{{}+}}\r\n{}",
                        name.to_ascii_uppercase(),
                        value.len(),
                        value
                    ));
                } else {
                    return Err(MailError::Invalid(format!(
                        "search.{name} has non-ASCII text, which this server cannot take in a search (no LITERAL+); search for an ASCII part of it"
                    )));
                }
            }
            Ok(())
        };
        string("from", &self.from, &mut keys)?;
        string("to", &self.to, &mut keys)?;
        string("subject", &self.subject, &mut keys)?;
        string("text", &self.text, &mut keys)?;
        string("body", &self.body, &mut keys)?;
        if let Some(since) = &self.since {
            keys.push(format!("SINCE {}", imap_date(since, "since")?));
        }
        if let Some(before) = &self.before {
            keys.push(format!("BEFORE {}", imap_date(before, "before")?));
        }
        for (value, yes, no) in [
            (self.seen, "SEEN", "UNSEEN"),
            (self.flagged, "FLAGGED", "UNFLAGGED"),
            (self.answered, "ANSWERED", "UNANSWERED"),
        ] {
            if let Some(value) = value {
                keys.push(if value { yes } else { no }.to_owned());
            }
        }
        // IMAP has no attachment key: a multipart/mixed message or an
        // attachment disposition header is what the server can see.
        let attachment =
            "OR HEADER Content-Type \"multipart/mixed\" HEADER Content-Disposition \"attachment\"";
        match self.has_attachment {
            Some(true) => keys.push(attachment.to_owned()),
            Some(false) => keys.push(format!("NOT ({attachment})")),
            None => {}
        }
        if keys.is_empty() {
            keys.push("ALL".to_owned());
        }
        let keys = keys.join(" ");
        Ok(if utf8 {
            format!("CHARSET UTF-8 {keys}")
        } else {
            keys
        })
    }
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `2024-03-07` → `7-Mar-2024`.
fn imap_date(date: &str, name: &str) -> Result<String, MailError> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let invalid = || {
        MailError::Invalid(format!(
            "search.{name} must be a date YYYY-MM-DD, not {}",
            proto::text::echo(date)
        ))
    };
    let mut parts = date.split('-');
    let (Some(year), Some(month), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let year: u32 = year.parse().map_err(|_| invalid())?;
    let month: usize = month.parse().map_err(|_| invalid())?;
    let day: u32 = day.parse().map_err(|_| invalid())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1900..=9999).contains(&year) {
        return Err(invalid());
    }
    Ok(format!("{day}-{}-{year}", MONTHS[month - 1]))
}

/// One entry of a message list.
#[derive(Clone, Debug)]
pub struct Summary {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: Option<String>,
    pub size: Option<u32>,
    pub has_attachments: bool,
    /// `HEADER.FIELDS` of the list's headers followed by the first bytes
    /// of the text: a message prefix that a MIME parser can read.
    pub head: Vec<u8>,
}

/// A page of a folder, newest first.
#[derive(Clone, Debug)]
pub struct Page {
    pub total: usize,
    pub messages: Vec<Summary>,
    pub next_cursor: Option<String>,
}

/// A whole message as fetched (`BODY.PEEK[]`): the server's answer
/// itself, so the message is in memory once, read where it was received.
#[derive(Debug)]
pub struct Raw {
    pub uid: u32,
    pub flags: Vec<String>,
    fetch: Fetch,
}

impl Raw {
    /// The message's bytes (RFC 5322).
    pub fn bytes(&self) -> &[u8] {
        self.fetch.body().unwrap_or_default()
    }
}

/// The start of a message whose one part is a long plain text: its header
/// and the first bytes of its body (`BODY.PEEK[HEADER]`,
/// `BODY.PEEK[TEXT]<0.n>`), as the server answered them.
#[derive(Debug)]
pub struct Start {
    pub uid: u32,
    pub flags: Vec<String>,
    /// The whole message's bytes (RFC822.SIZE).
    pub size: u64,
    pub encoding: mime::TransferEncoding,
    fetch: Fetch,
}

impl Start {
    pub fn header(&self) -> &[u8] {
        self.fetch.header().unwrap_or_default()
    }

    /// The first bytes of the body, cut wherever the fetch ended.
    pub fn body_start(&self) -> &[u8] {
        self.fetch.text().unwrap_or_default()
    }
}

/// A message read for its view: whole, or only its start when that is all
/// a window into its one long text needs.
#[derive(Debug)]
pub enum Read {
    Whole(Raw),
    Start(Start),
}

/// Which part [`Imap::fetch_part`] fetches.
#[derive(Clone, Copy, Debug)]
pub enum Wanted<'a> {
    /// By IMAP section number.
    Id(&'a [u32]),
    /// The first content part of one of these types (`type/subtype`).
    FirstOfType(&'a [&'a str]),
}

/// One part fetched alone: its MIME header and its stored body.
#[derive(Debug)]
pub struct FetchedPart {
    /// Its section number, `1.2`.
    pub id: String,
    /// Its `type/subtype` as the structure gives it (the type of a part
    /// without header lines).
    pub content_type: String,
    header: structure::Section,
    body: structure::Section,
    fetch: Fetch,
}

impl FetchedPart {
    pub fn header(&self) -> &[u8] {
        self.fetch.section(&self.header.path()).unwrap_or_default()
    }

    pub fn body(&self) -> &[u8] {
        self.fetch.section(&self.body.path()).unwrap_or_default()
    }
}

/// A single text part's encoding as [`mime`] reads the start of it.
fn text_encoding(encoding: structure::Encoding) -> Option<mime::TransferEncoding> {
    match encoding {
        structure::Encoding::Identity => Some(mime::TransferEncoding::Identity),
        structure::Encoding::QuotedPrintable => Some(mime::TransferEncoding::QuotedPrintable),
        structure::Encoding::Base64 => Some(mime::TransferEncoding::Base64),
        structure::Encoding::Other => None,
    }
}

/// The message's structure as parts, or why it cannot be used.
fn structure_parts(fetch: &Fetch, uid: u32) -> Result<Vec<PartInfo>, MailError> {
    let structure = fetch.bodystructure().ok_or_else(|| {
        MailError::Malformed(format!(
            "message {uid}: the server gave no description of its parts (BODYSTRUCTURE)"
        ))
    })?;
    structure::parts(structure).map_err(|error| {
        MailError::Malformed(format!(
            "message {uid}: the server's description of its parts (BODYSTRUCTURE) cannot be used: {error}"
        ))
    })
}

/// What `setFlags`/`moveMessages` did.
#[derive(Clone, Debug, Serialize)]
pub struct Mutation {
    pub uids: Vec<u32>,
    pub missing: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<HashMap<u32, Vec<String>>>,
}

/// Bytes of text fetched for a list preview.
const PREVIEW_BYTES: usize = 2048;

impl Imap {
    pub fn new(
        accounts: &crate::accounts::Accounts,
        secrets: SecretSources,
        oauth: Arc<auth::OAuthClients>,
        timeouts: Timeouts,
    ) -> Result<Imap, String> {
        let pools = accounts
            .accounts
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    (
                        Arc::new(Semaphore::new(MAX_SESSIONS)),
                        AccountPool::default(),
                    ),
                )
            })
            .collect();
        Ok(Imap {
            secrets,
            oauth,
            timeouts,
            pools,
            tls: tls::Configs::new(accounts)?,
        })
    }

    pub fn secrets(&self) -> &SecretSources {
        &self.secrets
    }

    async fn lease<'a>(&'a self, account: &'a Account) -> Result<Lease<'a>, MailError> {
        let (slots, pool) = self
            .pools
            .get(&account.name)
            .expect("every account has a pool");
        let permit = slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut lease = Lease {
            connection: None,
            pool,
            _permit: permit,
            account,
            timeouts: self.timeouts,
        };
        loop {
            let candidate = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut connection) = candidate else {
                break;
            };
            let idle_for = connection.used.elapsed();
            if idle_for > IDLE_LIMIT || closed_while_idle(&mut connection) {
                continue;
            }
            lease.connection = Some(connection);
            if idle_for < NOOP_AFTER {
                return Ok(lease);
            }
            if lease
                .run("answer NOOP", async |connection| {
                    connection.session.noop().await
                })
                .await
                .is_ok()
            {
                return Ok(lease);
            }
        }
        lease.connection = Some(self.connect(account).await?);
        Ok(lease)
    }

    /// A logged-in connection. With OAuth2, a refused access token costs
    /// one more connection with a fresh token (it may have been revoked
    /// early or expired in flight) before the login counts as refused.
    async fn connect(&self, account: &Account) -> Result<Connection, MailError> {
        match self.connect_once(account).await {
            Err(MailError::Login { .. }) if account.auth == AuthKind::Oauth2 => {
                self.connect_once(account).await
            }
            other => other,
        }
    }

    async fn connect_once(&self, account: &Account) -> Result<Connection, MailError> {
        let endpoint = &account.imap;
        let server = format!("{}:{}", endpoint.host, endpoint.port);
        let timeouts = self.timeouts;
        let timeout = |what: &str, seconds: Duration| MailError::Timeout {
            account: account.name.clone(),
            what: format!("{what} ({server})"),
            seconds: seconds.as_secs(),
        };
        let tcp = tokio::time::timeout(
            timeouts.connect,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| timeout("the connection", timeouts.connect))?
        .map_err(|error| MailError::Connect {
            account: account.name.clone(),
            server: server.clone(),
            reason: error.to_string(),
        })?;
        let _ = tcp.set_nodelay(true);
        let greeting_and_login = async {
            let tap = response::Tap::default();
            let stream: Box<dyn Io> = match endpoint.security {
                Security::Tls => Box::new(self.tls.connect(account, &endpoint.host, tcp).await?),
                Security::Plain => Box::new(tcp),
                Security::Starttls => {
                    let mut client = async_imap::Client::new(tcp);
                    read_greeting(&mut client, account, &server).await?;
                    client
                        .run_command_and_check_ok("STARTTLS", None)
                        .await
                        .map_err(|error| {
                            server_error(&account.name, "start TLS (STARTTLS)", &error, None)
                        })?;
                    Box::new(
                        self.tls
                            .connect(account, &endpoint.host, client.into_inner())
                            .await?,
                    )
                }
            };
            let stream: Box<dyn Io> = Box::new(tap.wrap(stream));
            let mut client = async_imap::Client::new(stream);
            if endpoint.security != Security::Starttls {
                read_greeting(&mut client, account, &server).await?;
            }
            let mut session = match account.auth {
                AuthKind::Password => {
                    let secret = auth::password(&self.secrets, account).await?;
                    client
                        .login(&account.username, secret.expose())
                        .await
                        .map_err(|(error, _)| login_error(account, &error, tap.refusal()))?
                }
                AuthKind::Oauth2 => self.oauth_login(account, client, &tap).await?,
            };
            let capabilities = session
                .capabilities()
                .await
                .map_err(|error| {
                    server_error(
                        &account.name,
                        "list its capabilities",
                        &error,
                        tap.refusal(),
                    )
                })?
                .iter()
                .map(|capability| format!("{capability:?}"))
                .collect::<Vec<_>>();
            Ok::<_, MailError>(Connection {
                session,
                capabilities: normalise_capabilities(capabilities),
                used: Instant::now(),
                tap,
                selected: None,
            })
        };
        tokio::time::timeout(timeouts.login, greeting_and_login)
            .await
            .map_err(|_| timeout("the greeting and login", timeouts.login))?
    }

    /// AUTHENTICATE with an access token; a refused token is replaced by a
    /// fresh one once (it may have been revoked early or expired in flight).
    async fn oauth_login(
        &self,
        account: &Account,
        client: async_imap::Client<Box<dyn Io>>,
        tap: &response::Tap,
    ) -> Result<Session, MailError> {
        let oauth = self.oauth.get(account)?;
        let token = oauth
            .access_token()
            .await
            .map_err(|error| auth::oauth_error(account, error))?;
        let (mechanism, response) = auth::imap_response(account, &token)?;
        let failure_reply = if mechanism == "OAUTHBEARER" {
            vec![1]
        } else {
            Vec::new()
        };
        match client
            .authenticate(
                mechanism,
                auth::InitialResponse::new(response, failure_reply),
            )
            .await
        {
            Ok(session) => Ok(session),
            Err((error, _)) => {
                if matches!(
                    error,
                    async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_)
                ) {
                    // The next connection asks for a fresh token.
                    tracing::info!(account = %account.name, "the IMAP server refused the access token");
                    oauth.invalidate(&token).await;
                }
                Err(login_error(account, &error, tap.refusal()))
            }
        }
    }

    /// The folders with their counts and special uses.
    pub async fn list_folders(&self, account: &Account) -> Result<Vec<Folder>, MailError> {
        let mut lease = self.lease(account).await?;
        let names = lease
            .run("list the folders", async move |connection| {
                let names: Vec<_> = connection
                    .session
                    .list(Some(""), Some("*"))
                    .await?
                    .try_collect()
                    .await?;
                Ok(names)
            })
            .await?;
        let mut folders = Vec::new();
        for name in names {
            let attributes: Vec<String> = name.attributes().iter().map(attribute_name).collect();
            let selectable = !name
                .attributes()
                .iter()
                .any(|attribute| matches!(attribute, NameAttribute::NoSelect));
            let special_use = name
                .attributes()
                .iter()
                .find_map(special_use)
                .map(str::to_owned);
            let raw = name.name().to_owned();
            let (messages, unseen) = if selectable {
                let raw = raw.clone();
                // A folder the server lists but cannot count (not created
                // yet, say) is still listed, without counts.
                match lease
                    .run(
                        "give the folder's counts (STATUS)",
                        async move |connection| {
                            connection.session.status(&raw, "(MESSAGES UNSEEN)").await
                        },
                    )
                    .await
                {
                    Ok(status) => (Some(status.exists), status.unseen),
                    Err(
                        MailError::Server { .. }
                        | MailError::Unavailable { .. }
                        | MailError::NotPermitted { .. },
                    ) if lease.connection.is_some() => (None, None),
                    Err(error) => return Err(error),
                }
            } else {
                (None, None)
            };
            folders.push(Folder {
                name: decode_folder(&raw),
                delimiter: name.delimiter().map(str::to_owned),
                special_use,
                attributes,
                selectable,
                messages,
                unseen,
            });
        }
        Ok(folders)
    }

    /// A page of `folder`, newest (highest uid) first, after `cursor`.
    pub async fn list_messages(
        &self,
        account: &Account,
        folder: &str,
        limit: usize,
        cursor: Option<&str>,
        search: &Search,
    ) -> Result<Page, MailError> {
        let mut lease = self.lease(account).await?;
        let validity = lease.open(folder, false).await?.unwrap_or(0);
        let before = match cursor {
            None => None,
            Some(cursor) => Some(parse_cursor(cursor, validity)?),
        };
        let literal_plus = lease.connection().can("LITERAL+");
        let query = search.to_imap(literal_plus)?;
        let mut uids: Vec<u32> = lease
            .run("search the folder", async move |connection| {
                connection.session.uid_search(query).await
            })
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable_by(|a, b| b.cmp(a));
        let total = uids.len();
        let start = match before {
            Some(before) => uids.partition_point(|&uid| uid >= before),
            None => 0,
        };
        let page: Vec<u32> = uids[start..].iter().copied().take(limit).collect();
        let next_cursor = (start + page.len() < total)
            .then(|| page.last().map(|last| format!("{validity}:{last}")))
            .flatten();
        if page.is_empty() {
            return Ok(Page {
                total,
                messages: Vec::new(),
                next_cursor: None,
            });
        }
        let set = uid_set(&page);
        let query = format!(
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT MESSAGE-ID MIME-VERSION CONTENT-TYPE CONTENT-TRANSFER-ENCODING)] BODY.PEEK[TEXT]<0.{PREVIEW_BYTES}>)"
        );
        let fetches: Vec<Fetch> = lease.fetch("fetch the messages", set, query).await?;
        let mut by_uid: HashMap<u32, Summary> = HashMap::new();
        for fetch in &fetches {
            let Some(uid) = fetch.uid else { continue };
            let mut head = fetch.header().unwrap_or_default().to_vec();
            head.extend_from_slice(fetch.text().unwrap_or_default());
            by_uid.insert(
                uid,
                Summary {
                    uid,
                    flags: flags(fetch),
                    internal_date: fetch.internal_date().map(|date| date.to_rfc3339()),
                    size: fetch.size,
                    has_attachments: fetch.bodystructure().is_some_and(has_attachment),
                    head,
                },
            );
        }
        let messages = page.iter().filter_map(|uid| by_uid.remove(uid)).collect();
        Ok(Page {
            total,
            messages,
            next_cursor,
        })
    }

    /// One whole message, without setting `\Seen`; refused over `limit`
    /// bytes before anything big is fetched.
    pub async fn fetch_message(
        &self,
        account: &Account,
        folder: &str,
        uid: u32,
        limit: u64,
    ) -> Result<Raw, MailError> {
        let mut lease = self.lease(account).await?;
        lease.open(folder, false).await?;
        let set = uid.to_string();
        let sized: Vec<Fetch> = lease
            .fetch("give the message's size", set, "(UID FLAGS RFC822.SIZE)")
            .await?;
        let Some(sized) = sized.iter().find(|fetch| fetch.uid == Some(uid)) else {
            return Err(not_found(account, folder, &[uid]));
        };
        let size = u64::from(sized.size.unwrap_or(0));
        if size > limit {
            return Err(message_too_large(uid, size, limit));
        }
        let flags = flags(sized);
        let fetch = Imap::fetch_whole(&mut lease, account, folder, uid).await?;
        Ok(Raw { uid, flags, fetch })
    }

    /// One message for its view, without setting `\Seen`; refused over
    /// `limit` bytes before anything big is fetched. When its one part is a
    /// plain text longer than the first `chars` characters need (in a
    /// charset and encoding whose start can be read alone), only its
    /// header and those first bytes are fetched; otherwise it is fetched
    /// whole.
    pub async fn read_message(
        &self,
        account: &Account,
        folder: &str,
        uid: u32,
        limit: u64,
        chars: usize,
    ) -> Result<Read, MailError> {
        let mut lease = self.lease(account).await?;
        lease.open(folder, false).await?;
        let set = uid.to_string();
        let described: Vec<Fetch> = lease
            .fetch(
                "describe the message",
                set,
                "(UID FLAGS RFC822.SIZE BODYSTRUCTURE)",
            )
            .await?;
        let Some(described) = described.iter().find(|fetch| fetch.uid == Some(uid)) else {
            return Err(not_found(account, folder, &[uid]));
        };
        let size = u64::from(described.size.unwrap_or(0));
        if size > limit {
            return Err(message_too_large(uid, size, limit));
        }
        let flags = flags(described);
        // A structure that cannot be used only means the message is read
        // whole, by the parser that reads any message.
        let parts = structure_parts(described, uid).unwrap_or_default();
        let start = match parts.as_slice() {
            [part]
                if part.content_type == "text/plain"
                    && !part.attachment
                    && mime::prefix_safe_charset(part.charset.as_deref()) =>
            {
                text_encoding(part.encoding)
                    .map(|encoding| (encoding, mime::start_bytes(chars, encoding)))
                    .filter(|(_, bytes)| (*bytes as u64) < part.octets)
            }
            _ => None,
        };
        let Some((encoding, bytes)) = start else {
            let fetch = Imap::fetch_whole(&mut lease, account, folder, uid).await?;
            return Ok(Read::Whole(Raw { uid, flags, fetch }));
        };
        let query = format!("(UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{bytes}>)");
        let fetched: Vec<Fetch> = lease
            .fetch("fetch the start of the message", uid.to_string(), query)
            .await?;
        let fetch = fetched
            .into_iter()
            .find(|fetch| fetch.uid == Some(uid) && fetch.header().is_some())
            .ok_or_else(|| not_found(account, folder, &[uid]))?;
        Ok(Read::Start(Start {
            uid,
            flags,
            size,
            encoding,
            fetch,
        }))
    }

    /// `BODY.PEEK[]` of one message in the open folder.
    async fn fetch_whole(
        lease: &mut Lease<'_>,
        account: &Account,
        folder: &str,
        uid: u32,
    ) -> Result<Fetch, MailError> {
        let fetched: Vec<Fetch> = lease
            .fetch("fetch the message", uid.to_string(), "(UID BODY.PEEK[])")
            .await?;
        fetched
            .into_iter()
            .find(|fetch| fetch.uid == Some(uid) && fetch.body().is_some())
            .ok_or_else(|| not_found(account, folder, &[uid]))
    }

    /// One part of a message alone (`BODY.PEEK[n.MIME] BODY.PEEK[n]`),
    /// found in its BODYSTRUCTURE, without setting `\Seen`; refused before
    /// it is fetched when it is stored larger than a part of `limit`
    /// decoded bytes can be (`fix` says what to do instead).
    pub async fn fetch_part(
        &self,
        account: &Account,
        folder: &str,
        uid: u32,
        wanted: Wanted<'_>,
        limit: usize,
        fix: &'static str,
    ) -> Result<FetchedPart, MailError> {
        let mut lease = self.lease(account).await?;
        lease.open(folder, false).await?;
        let described: Vec<Fetch> = lease
            .fetch(
                "describe the message",
                uid.to_string(),
                "(UID BODYSTRUCTURE)",
            )
            .await?;
        let Some(described) = described.iter().find(|fetch| fetch.uid == Some(uid)) else {
            return Err(not_found(account, folder, &[uid]));
        };
        let parts = structure_parts(described, uid)?;
        let part = match wanted {
            Wanted::Id(id) => {
                let part = parts.iter().find(|part| part.id == id).ok_or_else(|| {
                    MailError::PartNotFound {
                        uid,
                        part: structure::id_text(id),
                    }
                })?;
                if part.multipart {
                    return Err(MailError::Invalid(format!(
                        "part: {}",
                        mime::MimeError::NotContent
                    )));
                }
                part
            }
            Wanted::FirstOfType(types) => parts
                .iter()
                .find(|part| !part.multipart && types.contains(&part.content_type.as_str()))
                .ok_or_else(|| MailError::PartNotFound {
                    uid,
                    part: types.join(" or "),
                })?,
        };
        let stored = match text_encoding(part.encoding) {
            Some(encoding) => mime::max_stored_bytes(limit, encoding),
            // An encoding nobody defined: its bytes are the stored ones.
            None => limit,
        };
        if part.octets > stored as u64 {
            return Err(MailError::TooLarge {
                what: format!(
                    "part {} of message {uid} as stored (transfer-encoded)",
                    part.id_text()
                ),
                size: part.octets,
                limit: stored as u64,
                fix,
            });
        }
        let body = structure::Section::Body(part.id.clone());
        let query = format!(
            "(UID BODY.PEEK[{}] BODY.PEEK[{}])",
            part.header.text(),
            body.text()
        );
        let fetched: Vec<Fetch> = lease
            .fetch("fetch the part", uid.to_string(), query)
            .await?;
        let header = part.header.clone();
        let fetch = fetched
            .into_iter()
            .find(|fetch| fetch.uid == Some(uid) && fetch.section(&body.path()).is_some())
            .ok_or_else(|| not_found(account, folder, &[uid]))?;
        Ok(FetchedPart {
            id: part.id_text(),
            content_type: part.content_type.clone(),
            header,
            body,
            fetch,
        })
    }

    /// Some header fields of one message (`BODY.PEEK[HEADER.FIELDS (…)]`).
    pub async fn header_fields(
        &self,
        account: &Account,
        folder: &str,
        uid: u32,
        fields: &str,
    ) -> Result<Vec<u8>, MailError> {
        let mut lease = self.lease(account).await?;
        lease.open(folder, false).await?;
        let query = format!("(UID BODY.PEEK[HEADER.FIELDS ({fields})])");
        let set = uid.to_string();
        let fetched: Vec<Fetch> = lease
            .fetch("fetch the message's headers", set, query)
            .await?;
        fetched
            .iter()
            .find(|fetch| fetch.uid == Some(uid))
            .map(|fetch| fetch.header().unwrap_or_default().to_vec())
            .ok_or_else(|| not_found(account, folder, &[uid]))
    }

    /// Which of `uids` exist in the open folder.
    async fn existing(lease: &mut Lease<'_>, uids: &[u32]) -> Result<Vec<u32>, MailError> {
        let set = uid_set(uids);
        let mut found: Vec<u32> = lease
            .run("look the messages up", async move |connection| {
                connection.session.uid_search(format!("UID {set}")).await
            })
            .await?
            .into_iter()
            .filter(|uid| uids.contains(uid))
            .collect();
        found.sort_unstable();
        Ok(found)
    }

    /// Adds and removes flags on exactly `uids`; returns their flags after.
    pub async fn set_flags(
        &self,
        account: &Account,
        folder: &str,
        uids: &[u32],
        add: &[String],
        remove: &[String],
    ) -> Result<Mutation, MailError> {
        let add = flag_list(add)?;
        let remove = flag_list(remove)?;
        let mut lease = self.lease(account).await?;
        lease.open(folder, true).await?;
        let found = Imap::existing(&mut lease, uids).await?;
        let missing = missing(uids, &found);
        if found.is_empty() {
            return Err(not_found(account, folder, &missing));
        }
        let set = uid_set(&found);
        for (sign, list) in [("+", &add), ("-", &remove)] {
            if list.is_empty() {
                continue;
            }
            let set = set.clone();
            let query = format!("{sign}FLAGS.SILENT ({list})");
            lease
                .run("store the flags", async move |connection| {
                    let _: Vec<Fetch> = connection
                        .session
                        .uid_store(set, query)
                        .await?
                        .try_collect()
                        .await?;
                    Ok(())
                })
                .await?;
        }
        let fetches: Vec<Fetch> = lease.fetch("give the flags", set, "(UID FLAGS)").await?;
        let flags_after = fetches
            .iter()
            .filter_map(|fetch| fetch.uid.map(|uid| (uid, flags(fetch))))
            .collect();
        Ok(Mutation {
            uids: found,
            missing,
            method: None,
            flags: Some(flags_after),
        })
    }

    /// Moves exactly `uids` from `folder` to `to`.
    pub async fn move_messages(
        &self,
        account: &Account,
        folder: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<Mutation, MailError> {
        let mut lease = self.lease(account).await?;
        lease.open(folder, true).await?;
        let found = Imap::existing(&mut lease, uids).await?;
        let missing = missing(uids, &found);
        if found.is_empty() {
            return Err(not_found(account, folder, &missing));
        }
        let set = uid_set(&found);
        let destination = encode_folder(to);
        let destination_missing = |error: MailError| folder_missing(error, &account.name, to, "to");
        let method = if lease.connection().can("MOVE") {
            let (set, destination) = (set.clone(), destination.clone());
            lease
                .run("move the messages (UID MOVE)", async move |connection| {
                    connection.session.uid_mv(set, destination).await
                })
                .await
                .map_err(destination_missing)?;
            "move"
        } else if lease.connection().can("UIDPLUS") {
            let (copy_set, store_set, expunge_set) = (set.clone(), set.clone(), set.clone());
            lease
                .run("copy the messages (UID COPY)", async move |connection| {
                    connection.session.uid_copy(copy_set, destination).await
                })
                .await
                .map_err(destination_missing)?;
            lease
                .run("flag the originals \\Deleted", async move |connection| {
                    let _: Vec<Fetch> = connection
                        .session
                        .uid_store(store_set, "+FLAGS.SILENT (\\Deleted)")
                        .await?
                        .try_collect()
                        .await?;
                    Ok(())
                })
                .await?;
            lease
                .run(
                    "expunge the moved messages (UID EXPUNGE)",
                    async move |connection| {
                        let _: Vec<u32> = connection
                            .session
                            .uid_expunge(expunge_set)
                            .await?
                            .try_collect()
                            .await?;
                        Ok(())
                    },
                )
                .await?;
            "copy_expunge"
        } else {
            return Err(MailError::Unsupported {
                account: account.name.clone(),
                what: "moving messages".to_owned(),
                reason: "the server has neither MOVE nor UIDPLUS, and a folder-wide EXPUNGE could delete other messages; move them in another client".to_owned(),
            });
        };
        Ok(Mutation {
            uids: found,
            missing,
            method: Some(method),
            flags: None,
        })
    }

    /// Appends `message` to `folder` with `flags` (drafts: `\Draft \Seen`).
    pub async fn append(
        &self,
        account: &Account,
        folder: &str,
        flags: &str,
        message: &[u8],
    ) -> Result<(), MailError> {
        let mut lease = self.lease(account).await?;
        let name = encode_folder(folder);
        let flags = flags.to_owned();
        lease
            .run("store the draft (APPEND)", async move |connection| {
                connection
                    .session
                    .append(name, Some(&flags), None, message)
                    .await
            })
            .await
            .map_err(|error| {
                folder_missing(
                    error,
                    &account.name,
                    folder,
                    "drafts_folder in mail_accounts.yaml",
                )
            })
    }
}

async fn read_greeting<T: Io>(
    client: &mut async_imap::Client<T>,
    account: &Account,
    server: &str,
) -> Result<(), MailError> {
    match client.read_response().await {
        Ok(Some(response)) => match response.parsed() {
            async_imap::imap_proto::Response::Data {
                status: async_imap::imap_proto::Status::Ok | async_imap::imap_proto::Status::PreAuth,
                ..
            } => Ok(()),
            _ => Err(MailError::Connect {
                account: account.name.clone(),
                server: server.to_owned(),
                reason: "the server's greeting was not OK (it may be refusing connections)"
                    .to_owned(),
            }),
        },
        Ok(None) => Err(MailError::Connect {
            account: account.name.clone(),
            server: server.to_owned(),
            reason: "the server closed the connection before greeting".to_owned(),
        }),
        Err(error) => Err(MailError::Connect {
            account: account.name.clone(),
            server: server.to_owned(),
            reason: format!("reading the greeting failed: {error}"),
        }),
    }
}

/// A failed LOGIN/AUTHENTICATE: a refusal is the credentials' fault
/// unless its code says it is the server's own trouble (RFC 5530
/// UNAVAILABLE, INUSE). The server's words are not repeated: they may be
/// about the credentials.
fn login_error(
    account: &Account,
    error: &async_imap::error::Error,
    refusal: Option<Refusal>,
) -> MailError {
    use async_imap::error::Error;
    match (error, refusal.and_then(|refusal| refusal.code)) {
        (Error::No(_), Some(ResponseCode::Unavailable | ResponseCode::InUse)) => {
            MailError::Unavailable {
                account: account.name.clone(),
                what: "log in".to_owned(),
                reason: "it is temporarily unable to authenticate (UNAVAILABLE)".to_owned(),
            }
        }
        (Error::No(_) | Error::Bad(_), _) => MailError::Login {
            account: account.name.clone(),
            protocol: "IMAP",
        },
        (other, _) => server_error(&account.name, "log in", other, None),
    }
}

/// `Capability::Atom("MOVE")` and the like, as plain upper-case names.
fn normalise_capabilities(debug_forms: Vec<String>) -> Vec<String> {
    debug_forms
        .into_iter()
        .map(|form| {
            form.trim_start_matches("Atom(")
                .trim_start_matches("Auth(")
                .trim_end_matches(')')
                .trim_matches('"')
                .to_ascii_uppercase()
        })
        .collect()
}

fn flags(fetch: &Fetch) -> Vec<String> {
    fetch
        .flags()
        .map(|flag| match flag {
            Flag::Seen => "\\Seen".to_owned(),
            Flag::Answered => "\\Answered".to_owned(),
            Flag::Flagged => "\\Flagged".to_owned(),
            Flag::Deleted => "\\Deleted".to_owned(),
            Flag::Draft => "\\Draft".to_owned(),
            Flag::Recent => "\\Recent".to_owned(),
            Flag::MayCreate => "\\*".to_owned(),
            Flag::Custom(name) => name.into_owned(),
        })
        .collect()
}

/// Validates flags for STORE: system flags by name, keywords as atoms.
/// `\Deleted` is refused: with no expunge it only hides a message from
/// some clients, and another client's EXPUNGE would destroy it.
fn flag_list(flags: &[String]) -> Result<String, MailError> {
    let mut out = Vec::new();
    for flag in flags {
        let canonical = match flag.to_ascii_lowercase().as_str() {
            "\\seen" | "seen" => "\\Seen".to_owned(),
            "\\answered" | "answered" => "\\Answered".to_owned(),
            "\\flagged" | "flagged" => "\\Flagged".to_owned(),
            "\\draft" | "draft" => "\\Draft".to_owned(),
            "\\deleted" | "deleted" => {
                return Err(MailError::Invalid(
                    "the \\Deleted flag is not set through setFlags; move the message to Trash with moveMessages".to_owned(),
                ));
            }
            _ if !flag.is_empty()
                && flag.len() <= 64
                && flag
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() && !b"(){%*\"\\]".contains(&byte)) =>
            {
                flag.clone()
            }
            _ => {
                return Err(MailError::Invalid(format!(
                    "{} is not a flag: use \\Seen, \\Answered, \\Flagged, \\Draft or a keyword of letters and digits",
                    proto::text::echo(flag)
                )));
            }
        };
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out.join(" "))
}

fn missing(asked: &[u32], found: &[u32]) -> Vec<u32> {
    let mut missing: Vec<u32> = asked
        .iter()
        .copied()
        .filter(|uid| !found.contains(uid))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

fn message_too_large(uid: u32, size: u64, limit: u64) -> MailError {
    MailError::TooLarge {
        what: format!("message {uid}"),
        size,
        limit,
        fix: "its headers and text part can still be listed with listMessages; attachments are fetched one by one with getAttachment",
    }
}

fn not_found(account: &Account, folder: &str, missing: &[u32]) -> MailError {
    MailError::MessageNotFound {
        account: account.name.clone(),
        folder: folder.to_owned(),
        uids: missing
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `1,2,3` (uids are few: the handlers bound them).
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_cursor(cursor: &str, validity: u32) -> Result<u32, MailError> {
    let invalid = || {
        MailError::Invalid(
            "cursor is not one listMessages returned; call it again without cursor".to_owned(),
        )
    };
    let (cursor_validity, uid) = cursor.split_once(':').ok_or_else(invalid)?;
    let cursor_validity: u32 = cursor_validity.parse().map_err(|_| invalid())?;
    let uid: u32 = uid.parse().map_err(|_| invalid())?;
    if cursor_validity != validity {
        return Err(MailError::Invalid(
            "the folder was rebuilt since this cursor was made (UIDVALIDITY changed); list it again without cursor".to_owned(),
        ));
    }
    Ok(uid)
}

fn attribute_name(attribute: &NameAttribute<'_>) -> String {
    match attribute {
        NameAttribute::NoInferiors => "\\Noinferiors".to_owned(),
        NameAttribute::NoSelect => "\\Noselect".to_owned(),
        NameAttribute::Marked => "\\Marked".to_owned(),
        NameAttribute::Unmarked => "\\Unmarked".to_owned(),
        NameAttribute::All => "\\All".to_owned(),
        NameAttribute::Archive => "\\Archive".to_owned(),
        NameAttribute::Drafts => "\\Drafts".to_owned(),
        NameAttribute::Flagged => "\\Flagged".to_owned(),
        NameAttribute::Junk => "\\Junk".to_owned(),
        NameAttribute::Sent => "\\Sent".to_owned(),
        NameAttribute::Trash => "\\Trash".to_owned(),
        NameAttribute::Extension(name) => name.to_string(),
        _ => "\\Unknown".to_owned(),
    }
}

fn special_use(attribute: &NameAttribute<'_>) -> Option<&'static str> {
    Some(match attribute {
        NameAttribute::All => "all",
        NameAttribute::Archive => "archive",
        NameAttribute::Drafts => "drafts",
        NameAttribute::Flagged => "flagged",
        NameAttribute::Junk => "junk",
        NameAttribute::Sent => "sent",
        NameAttribute::Trash => "trash",
        _ => return None,
    })
}

fn has_attachment(structure: &BodyStructure<'_>) -> bool {
    let attached = |disposition: &Option<ContentDisposition<'_>>| {
        disposition
            .as_ref()
            .is_some_and(|disposition| disposition.ty.eq_ignore_ascii_case("attachment"))
    };
    match structure {
        BodyStructure::Multipart { bodies, .. } => bodies.iter().any(has_attachment),
        BodyStructure::Basic { common, .. } => {
            attached(&common.disposition) || !common.ty.ty.eq_ignore_ascii_case("multipart")
        }
        BodyStructure::Text { common, .. } => attached(&common.disposition),
        BodyStructure::Message { .. } => true,
    }
}

/// A folder name for a command, non-ASCII in modified UTF-7 (RFC 3501
/// 5.1.3); async-imap quotes it.
fn encode_folder(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(bytes)
            .replace('/', ",");
        out.push('&');
        out.push_str(&encoded);
        out.push('-');
        pending.clear();
    };
    for character in name.chars() {
        if (' '..='~').contains(&character) {
            flush(&mut pending, &mut out);
            if character == '&' {
                out.push_str("&-");
            } else {
                out.push(character);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(character.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Modified UTF-7 → UTF-8; a name that does not decode is shown raw.
fn decode_folder(name: &str) -> String {
    use base64::Engine;
    let mut out = String::new();
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            return name.to_owned();
        };
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let Ok(bytes) =
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded.replace(',', "/"))
            else {
                return name.to_owned();
            };
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            match String::from_utf16(&units) {
                Ok(text) => out.push_str(&text),
                Err(_) => return name.to_owned(),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_decided_on_their_response_codes() {
        use ResponseCode::*;
        let account = crate::accounts::Accounts::parse(
            "accounts:\n  a:\n    email: me@example.org\n    imap: {host: 127.0.0.1}\n",
            "t.yaml",
        )
        .unwrap()
        .accounts["a"]
            .clone();
        let no = async_imap::error::Error::No("code: None, info: None".to_owned());
        let refusal = |code: Option<ResponseCode>| {
            Some(Refusal {
                status: Status::No,
                code,
                text: "the server's words".to_owned(),
            })
        };
        // (code, kind of a command's error, of the same for a command that
        // names a folder, of a login's error)
        let cases = [
            (None, "server_error", "server_error", "login_failed"),
            (
                Some(NonExistent),
                "server_error",
                "folder_not_found",
                "login_failed",
            ),
            (
                Some(TryCreate),
                "server_error",
                "folder_not_found",
                "login_failed",
            ),
            (
                Some(Unavailable),
                "server_unavailable",
                "server_unavailable",
                "server_unavailable",
            ),
            (
                Some(InUse),
                "server_unavailable",
                "server_unavailable",
                "server_unavailable",
            ),
            (
                Some(NoPerm),
                "not_permitted",
                "not_permitted",
                "login_failed",
            ),
            (
                Some(AuthorizationFailed),
                "not_permitted",
                "not_permitted",
                "login_failed",
            ),
            (Some(OverQuota), "over_quota", "over_quota", "login_failed"),
            (Some(Limit), "over_quota", "over_quota", "login_failed"),
            (
                Some(AuthenticationFailed),
                "server_error",
                "server_error",
                "login_failed",
            ),
            (Some(Cannot), "server_error", "server_error", "login_failed"),
            (
                Some(Other("X-NEW".to_owned())),
                "server_error",
                "server_error",
                "login_failed",
            ),
        ];
        for (code, command, folder, login) in cases {
            let error = server_error("a", "do it", &no, refusal(code.clone()));
            assert_eq!(error.kind(), command, "{code:?}");
            let named = folder_missing(error, "a", "Nope", "to");
            assert_eq!(named.kind(), folder, "{code:?}");
            if let MailError::FolderNotFound { parameter, .. } = &named {
                assert_eq!(*parameter, "to");
                assert!(named.to_string().contains("(given as to)"), "{named}");
            }
            let refused_login = login_error(&account, &no, refusal(code.clone()));
            assert_eq!(refused_login.kind(), login, "{code:?}");
            assert!(!refused_login.to_string().contains("the server's words"));
        }
        // The server's words are the reason, never the library's Debug text.
        let error = server_error("a", "do it", &no, refusal(Some(NonExistent)));
        assert_eq!(
            error.to_string(),
            "account a: the server could not do it: the server's words"
        );
        // A refusal whose line was not kept is still a plain server error,
        // known as a refusal.
        let unkept = server_error("a", "do it", &no, None);
        assert!(matches!(
            unkept,
            MailError::Server {
                status: Some(Status::No),
                code: None,
                ..
            }
        ));
        let lost = server_error(
            "a",
            "do it",
            &async_imap::error::Error::ConnectionLost,
            None,
        );
        assert!(matches!(lost, MailError::Server { status: None, .. }));
    }

    #[test]
    fn searches_become_imap_keys() {
        let search = Search {
            from: Some("alice@example.org".into()),
            subject: Some("say \"hi\"".into()),
            since: Some("2024-03-07".into()),
            seen: Some(false),
            ..Search::default()
        };
        assert_eq!(
            search.to_imap(false).unwrap(),
            "FROM \"alice@example.org\" SUBJECT \"say \\\"hi\\\"\" SINCE 7-Mar-2024 UNSEEN"
        );
        assert_eq!(Search::default().to_imap(false).unwrap(), "ALL");
        let utf8 = Search {
            text: Some("Größe".into()),
            ..Search::default()
        };
        assert_eq!(
            utf8.to_imap(true).unwrap(),
            "CHARSET UTF-8 TEXT {7+}\r\nGröße"
        );
        assert!(utf8.to_imap(false).is_err());
        let bad = Search {
            before: Some("yesterday".into()),
            ..Search::default()
        };
        assert!(
            bad.to_imap(true)
                .unwrap_err()
                .to_string()
                .contains("search.before")
        );
        let injection = Search {
            from: Some("a\r\nA1 DELETE INBOX".into()),
            ..Search::default()
        };
        assert!(injection.to_imap(true).is_err());
    }

    #[test]
    fn folder_names_round_trip_through_modified_utf7() {
        for (name, wire) in [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
        ] {
            assert_eq!(encode_folder(name), wire);
            assert_eq!(decode_folder(wire), name);
        }
    }

    #[test]
    fn flags_are_checked() {
        assert_eq!(
            flag_list(&["seen".into(), "\\Flagged".into(), "$label1".into()]).unwrap(),
            "\\Seen \\Flagged $label1"
        );
        assert!(flag_list(&["\\Deleted".into()]).is_err());
        assert!(flag_list(&["a) UID EXPUNGE".into()]).is_err());
    }
}
