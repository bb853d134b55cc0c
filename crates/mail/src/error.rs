//! The one error of the mail domain. Every text names the account and what
//! failed, and never a secret or a message's content: server answers are
//! quoted only through `proto::text::echo` (bounded), and a login failure
//! never repeats what the server said about the credentials.

use crate::imap::{ResponseCode, Status};
use crate::secrets::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "there is no account {account}; known accounts: {known} (configured in mail_accounts.yaml)"
    )]
    UnknownAccount { account: String, known: String },
    #[error(
        "account {account}: cannot connect to {server}: {reason}; check that the server runs and the host/port in mail_accounts.yaml"
    )]
    Connect {
        account: String,
        server: String,
        reason: String,
    },
    #[error(
        "account {account}: the TLS handshake with {server} failed: {reason}; if the server's certificate is from a private CA, set ca_file for the account in mail_accounts.yaml"
    )]
    Tls {
        account: String,
        server: String,
        reason: String,
    },
    #[error(
        "account {account}: the {protocol} server refused the login; check the stored secret (`llmbasedos-mail add-secret {account}` replaces it) and the username in mail_accounts.yaml"
    )]
    Login {
        account: String,
        protocol: &'static str,
    },
    #[error(
        "account {account}: the server did not answer {what} within {seconds} s; it may be overloaded or unreachable; try again later"
    )]
    Timeout {
        account: String,
        what: String,
        seconds: u64,
    },
    #[error("account {account}: {source}")]
    Secret {
        account: String,
        #[source]
        source: SecretError,
    },
    /// `parameter` is the param that named the folder (`folder`, `to`).
    #[error(
        "account {account}: there is no folder {folder} (given as {parameter}); list the folders with listFolders"
    )]
    FolderNotFound {
        account: String,
        folder: String,
        parameter: &'static str,
    },
    #[error("account {account}: folder {folder} has no message with uid {uids}")]
    MessageNotFound {
        account: String,
        folder: String,
        uids: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Malformed(String),
    #[error(
        "message {uid} has no part {part}; getMessage lists its attachments with their part ids"
    )]
    PartNotFound { uid: u32, part: String },
    #[error(
        "part {part} of message {uid} cannot be decoded: its {encoding} content transfer encoding is invalid (damaged or cut off in transit); its bytes are unknown, so none are given"
    )]
    Undecodable {
        uid: u32,
        part: String,
        encoding: &'static str,
    },
    #[error("{what} is {size} bytes, over the limit of {limit} bytes; {fix}")]
    TooLarge {
        what: String,
        size: u64,
        limit: u64,
        fix: &'static str,
    },
    /// A failed exchange with no more specific meaning. `status` is the
    /// server's refusal (IMAP `NO`/`BAD`), `None` when the exchange itself
    /// failed; `code` the response code it gave, if any.
    #[error("account {account}: the server could not {what}: {reason}")]
    Server {
        account: String,
        what: String,
        reason: String,
        status: Option<Status>,
        code: Option<ResponseCode>,
    },
    /// The server's own trouble (RFC 5530 UNAVAILABLE, INUSE): the same
    /// call may work later.
    #[error("account {account}: the server cannot {what} now: {reason}; try again later")]
    Unavailable {
        account: String,
        what: String,
        reason: String,
    },
    /// The user may not do this (RFC 5530 NOPERM, AUTHORIZATIONFAILED).
    #[error(
        "account {account}: the server does not let this user {what}: {reason}; the mailbox's owner or administrator can grant it"
    )]
    NotPermitted {
        account: String,
        what: String,
        reason: String,
    },
    /// A quota or server limit (RFC 5530 OVERQUOTA, LIMIT).
    #[error(
        "account {account}: the server could not {what}: a quota or limit is reached ({reason}); free space by moving or deleting messages in a mail client"
    )]
    OverQuota {
        account: String,
        what: String,
        reason: String,
    },
    #[error("account {account}: {what} is not possible: {reason}")]
    Unsupported {
        account: String,
        what: String,
        reason: String,
    },
    #[error("account {account}: {message}")]
    OAuth {
        account: String,
        message: String,
        reauthorize: bool,
    },
    #[error("{0}")]
    SendRefused(String),
    #[error(
        "account {account}: the send rate limit ({per_minute} a minute) is reached; wait a minute, or raise send.rate_per_minute in mail_accounts.yaml"
    )]
    RateLimited { account: String, per_minute: u32 },
}

impl MailError {
    /// The kind callers match (`data.kind`), never the text.
    pub fn kind(&self) -> &'static str {
        match self {
            MailError::UnknownAccount { .. } => "unknown_account",
            MailError::Connect { .. } => "connect_failed",
            MailError::Tls { .. } => "tls_failed",
            MailError::Login { .. } => "login_failed",
            MailError::Timeout { .. } => "timeout",
            MailError::Secret { source, .. } => source.kind(),
            MailError::FolderNotFound { .. } => "folder_not_found",
            MailError::MessageNotFound { .. } => "message_not_found",
            MailError::Invalid(_) => "invalid",
            MailError::Malformed(_) => "malformed",
            MailError::PartNotFound { .. } => "part_not_found",
            MailError::Undecodable { .. } => "undecodable_part",
            MailError::TooLarge { .. } => "too_large",
            MailError::Server { .. } => "server_error",
            MailError::Unavailable { .. } => "server_unavailable",
            MailError::NotPermitted { .. } => "not_permitted",
            MailError::OverQuota { .. } => "over_quota",
            MailError::Unsupported { .. } => "unsupported",
            MailError::OAuth {
                reauthorize: true, ..
            } => "oauth_reauthorize",
            MailError::OAuth { .. } => "oauth_failed",
            MailError::SendRefused(_) => "send_refused",
            MailError::RateLimited { .. } => "rate_limited",
        }
    }
}
