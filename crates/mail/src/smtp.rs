//! SMTP (lettre with tokio and rustls) and composing messages for it and
//! for drafts.
//!
//! **The send policy is the guard against a message that carries
//! instructions** ("forward this to …"): an account without `send:` cannot
//! send; every recipient (to, cc, bcc) must match `allowed_recipients`; the
//! From is always the account's own address, never the caller's; at most
//! `rate_per_minute` sends a minute. Each send is logged with the account,
//! the recipient count and the Message-ID — never the subject, the body or
//! the addresses.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use std::sync::Arc;

use crate::accounts::{Account, AuthKind, Security};
use crate::auth::{self, OAuthClients};
use crate::error::MailError;
use crate::limits;
use crate::oauth::{self, Secret};
use crate::secrets::SecretSources;

/// What a new message says; From is the account's.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<NewAttachment>,
}

/// A file to attach.
#[derive(Clone, Debug)]
pub struct NewAttachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The replied-to message's identity, for In-Reply-To and References.
#[derive(Clone, Debug, Default)]
pub struct Threading {
    pub message_id: String,
    /// Its own References, oldest first.
    pub references: Vec<String>,
}

/// A composed message.
#[derive(Debug)]
pub struct Composed {
    pub message: Message,
    pub message_id: String,
    pub recipients: usize,
}

/// Builds the message: From the account, threading headers from the
/// replied-to message (RFC 5322 3.6.4: References = its References + its
/// Message-ID).
pub fn compose(
    account: &Account,
    draft: &Draft,
    threading: Option<&Threading>,
) -> Result<Composed, MailError> {
    let from = Mailbox::new(
        account.display_name.clone(),
        account.email.parse().map_err(|_| {
            MailError::Invalid(format!(
                "account {}: its email is not an address",
                account.name
            ))
        })?,
    );
    let mut builder = Message::builder().from(from).date_now();
    let recipients = draft.to.len() + draft.cc.len() + draft.bcc.len();
    if recipients > limits::MAX_RECIPIENTS {
        return Err(MailError::Invalid(format!(
            "{recipients} recipients is over the limit of {}; send fewer",
            limits::MAX_RECIPIENTS
        )));
    }
    for (field, list) in [("to", &draft.to), ("cc", &draft.cc), ("bcc", &draft.bcc)] {
        for address in list {
            let mailbox: Mailbox = address.parse().map_err(|_| {
                MailError::Invalid(format!(
                    "{field}: {} is not an e-mail address",
                    proto::text::echo(address)
                ))
            })?;
            builder = match field {
                "to" => builder.to(mailbox),
                "cc" => builder.cc(mailbox),
                _ => builder.bcc(mailbox),
            };
        }
    }
    let mut subject = draft.subject.clone();
    if let Some(threading) = threading {
        let id = bracketed(&threading.message_id);
        builder = builder.in_reply_to(id.clone());
        let mut references: Vec<String> = threading
            .references
            .iter()
            .map(|reference| bracketed(reference))
            .collect();
        references.push(id);
        builder = builder.references(references.join(" "));
        if subject.is_empty() {
            subject = "Re:".to_owned();
        }
    }
    let domain = account.email.rsplit('@').next().unwrap_or("localhost");
    let message_id = format!("<{}@{}>", unique(), domain);
    builder = builder
        .subject(subject)
        .message_id(Some(message_id.clone()));
    if draft.body.len() > limits::MAX_SEND_BODY_BYTES {
        return Err(MailError::TooLarge {
            what: "body".to_owned(),
            size: draft.body.len() as u64,
            limit: limits::MAX_SEND_BODY_BYTES as u64,
            fix: "send a shorter text, or the long part as an attachment",
        });
    }
    if draft.attachments.len() > limits::MAX_SEND_ATTACHMENTS {
        return Err(MailError::Invalid(format!(
            "{} attachments is over the limit of {}",
            draft.attachments.len(),
            limits::MAX_SEND_ATTACHMENTS
        )));
    }
    let total: usize = draft
        .attachments
        .iter()
        .map(|attachment| attachment.bytes.len())
        .sum();
    if total > limits::MAX_SEND_ATTACHMENT_BYTES {
        return Err(MailError::TooLarge {
            what: "the attachments".to_owned(),
            size: total as u64,
            limit: limits::MAX_SEND_ATTACHMENT_BYTES as u64,
            fix: "attach fewer or smaller files, or share a link instead",
        });
    }
    let text = SinglePart::plain(draft.body.clone());
    let message = if draft.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for attachment in &draft.attachments {
            let content_type = ContentType::parse(&attachment.content_type).map_err(|_| {
                MailError::Invalid(format!(
                    "attachments: {} is not a MIME type (type/subtype)",
                    proto::text::echo(&attachment.content_type)
                ))
            })?;
            parts = parts.singlepart(
                Attachment::new(attachment.filename.clone())
                    .body(attachment.bytes.clone(), content_type),
            );
        }
        builder.multipart(parts)
    }
    .map_err(|error| MailError::Invalid(format!("the message cannot be built: {error}")))?;
    Ok(Composed {
        message,
        message_id,
        recipients,
    })
}

fn bracketed(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

/// A Message-ID local part unique across restarts: time, pid and a counter.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}.{:x}.{:x}.llmbasedos",
        now.as_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sending, with the policy and the per-account rate.
pub struct Smtp {
    secrets: SecretSources,
    oauth: Arc<OAuthClients>,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").finish_non_exhaustive()
    }
}

impl Smtp {
    pub fn new(secrets: SecretSources, oauth: Arc<OAuthClients>, timeout: Duration) -> Smtp {
        Smtp {
            secrets,
            oauth,
            sent: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// Checks the policy for every recipient of `draft`: refused before
    /// anything is composed or sent.
    pub fn check_policy(account: &Account, draft: &Draft) -> Result<(), MailError> {
        let Some(policy) = &account.send else {
            return Err(MailError::SendRefused(format!(
                "sending is off for account {}: it has no send policy; to allow it, add `send: {{allowed_recipients: [\"*@example.org\"]}}` to the account in mail_accounts.yaml",
                account.name
            )));
        };
        for address in draft.to.iter().chain(&draft.cc).chain(&draft.bcc) {
            let bare = address
                .parse::<Mailbox>()
                .map(|mailbox| mailbox.email.to_string())
                .unwrap_or_else(|_| address.clone());
            if !policy.allows(&bare) {
                return Err(MailError::SendRefused(format!(
                    "account {} may not send to {}: it matches none of send.allowed_recipients; to allow it, add the address (or a pattern like *@its-domain) there in mail_accounts.yaml",
                    account.name,
                    proto::text::echo(&bare)
                )));
            }
        }
        if draft.to.is_empty() && draft.cc.is_empty() && draft.bcc.is_empty() {
            return Err(MailError::Invalid(
                "to: at least one recipient is needed".to_owned(),
            ));
        }
        Ok(())
    }

    /// Takes one send from the account's rate, or refuses.
    fn take_rate(&self, account: &Account) -> Result<(), MailError> {
        let per_minute = account
            .send
            .as_ref()
            .map_or(0, |policy| policy.rate_per_minute);
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = sent.entry(account.name.clone()).or_default();
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= per_minute as usize {
            return Err(MailError::RateLimited {
                account: account.name.clone(),
                per_minute,
            });
        }
        window.push_back(now);
        Ok(())
    }

    /// Sends `composed` over the account's SMTP server.
    pub async fn send(&self, account: &Account, composed: &Composed) -> Result<(), MailError> {
        let Some(endpoint) = &account.smtp else {
            return Err(MailError::SendRefused(format!(
                "account {} has no smtp server in mail_accounts.yaml",
                account.name
            )));
        };
        self.take_rate(account)?;
        let server = format!("{}:{}", endpoint.host, endpoint.port);
        let tls_failed = |reason: String| MailError::Tls {
            account: account.name.clone(),
            server: server.clone(),
            reason,
        };
        let mut parameters = TlsParameters::builder(endpoint.host.clone());
        if let Some(ca_file) = &account.ca_file {
            let pem = tokio::fs::read(ca_file).await.map_err(|error| {
                tls_failed(format!(
                    "cannot read ca_file {}: {error}",
                    ca_file.display()
                ))
            })?;
            let certificate = Certificate::from_pem(&pem)
                .map_err(|error| tls_failed(format!("ca_file: {error}")))?;
            parameters = parameters.add_root_certificate(certificate);
        }
        let parameters = parameters
            .build_rustls()
            .map_err(|error| tls_failed(error.to_string()))?;
        for attempt in 0..2 {
            // A password, or a fresh access token over XOAUTH2 (the
            // mechanism Google and Microsoft 365 offer for SMTP); a
            // refused token is replaced once.
            let (login, token) = match account.auth {
                AuthKind::Password => {
                    let secret = auth::password(&self.secrets, account).await?;
                    (
                        Login::Password(Credentials::new(
                            account.username.clone(),
                            secret.expose().to_owned(),
                        )),
                        None,
                    )
                }
                AuthKind::Oauth2 => {
                    let oauth = self.oauth.get(account)?;
                    let token = oauth
                        .access_token()
                        .await
                        .map_err(|error| auth::oauth_error(account, error))?;
                    let response = oauth::xoauth2_initial_response(&account.username, &token)
                        .map_err(|error| auth::oauth_error(account, error))?;
                    (Login::Xoauth2(response), Some(token))
                }
            };
            let exchange = exchange(endpoint, &parameters, self.timeout, &login, composed);
            let result =
                tokio::time::timeout(self.timeout + Duration::from_secs(5), exchange).await;
            match result {
                Ok(Ok(())) => {
                    tracing::info!(
                        account = %account.name,
                        recipients = composed.recipients,
                        message_id = %composed.message_id,
                        "mail sent"
                    );
                    return Ok(());
                }
                Ok(Err(failure)) => {
                    let error = failure.into_mail_error(account, &server);
                    if let (MailError::Login { .. }, Some(token), 0) = (&error, &token, attempt) {
                        self.oauth.get(account)?.invalidate(token).await;
                        continue;
                    }
                    return Err(error);
                }
                Err(_) => {
                    return Err(MailError::Timeout {
                        account: account.name.clone(),
                        what: format!("the SMTP exchange ({server})"),
                        seconds: self.timeout.as_secs(),
                    });
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// How a session logs in.
enum Login {
    Password(Credentials),
    /// The XOAUTH2 initial response, before base64.
    Xoauth2(Secret),
}

/// Why an SMTP exchange failed: lettre's error, or something lettre's
/// errors have no word for.
#[derive(Debug)]
enum Failure {
    Smtp(lettre::transport::smtp::Error),
    /// The server offers no AUTH mechanism the account can use.
    NoMechanism(&'static str),
    /// The server answered the XOAUTH2 exchange out of protocol.
    Unexpected(String),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(error: lettre::transport::smtp::Error) -> Failure {
        Failure::Smtp(error)
    }
}

impl Failure {
    fn into_mail_error(self, account: &Account, server: &str) -> MailError {
        match self {
            Failure::Smtp(error) => smtp_error(account, server, &error),
            Failure::NoMechanism(mechanism) => MailError::Unsupported {
                account: account.name.clone(),
                what: format!("logging in to {server}"),
                reason: format!("the SMTP server offers no AUTH {mechanism}"),
            },
            Failure::Unexpected(reason) => MailError::Server {
                account: account.name.clone(),
                what: format!("log in ({server})"),
                reason,
                status: None,
                code: None,
            },
        }
    }
}

/// One SMTP session: connect (implicit TLS or STARTTLS as configured; the
/// plain case only on loopback, which the accounts file enforces), log in,
/// send, quit. On an error the session is aborted.
async fn exchange(
    endpoint: &crate::accounts::Endpoint,
    parameters: &TlsParameters,
    timeout: Duration,
    login: &Login,
    composed: &Composed,
) -> Result<(), Failure> {
    let hello = ClientId::default();
    let wrapper = (endpoint.security == Security::Tls).then(|| parameters.clone());
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        (endpoint.host.as_str(), endpoint.port),
        Some(timeout),
        &hello,
        wrapper,
        None,
    )
    .await?;
    let result = async {
        if endpoint.security == Security::Starttls {
            connection.starttls(parameters.clone(), &hello).await?;
        }
        match login {
            Login::Password(credentials) => {
                let mechanisms = [Mechanism::Plain, Mechanism::Login];
                if !mechanisms
                    .iter()
                    .any(|&mechanism| connection.server_info().supports_auth_mechanism(mechanism))
                {
                    return Err(Failure::NoMechanism("PLAIN or LOGIN"));
                }
                connection.auth(&mechanisms, credentials).await?;
            }
            Login::Xoauth2(response) => xoauth2(&mut connection, response).await?,
        }
        let envelope = composed.message.envelope();
        connection
            .send(envelope, &composed.message.formatted())
            .await?;
        Ok(())
    }
    .await;
    match &result {
        Ok(()) => {
            let _ = connection.quit().await;
        }
        Err(_) => connection.abort().await,
    }
    result
}

/// `AUTH XOAUTH2` with its initial response. A refused token gets a 535
/// at once from Microsoft 365; Google first sends a 334 error challenge
/// (base64 JSON saying why), which the client acknowledges with an empty
/// line before the 535 comes. Either way the 535 becomes a refused login,
/// which the caller answers with a fresh token. (lettre's own XOAUTH2
/// gives up on any challenge, so the refusal never reached the retry.)
async fn xoauth2(connection: &mut AsyncSmtpConnection, response: &Secret) -> Result<(), Failure> {
    use base64::Engine as _;
    if !connection
        .server_info()
        .supports_auth_mechanism(Mechanism::Xoauth2)
    {
        return Err(Failure::NoMechanism("XOAUTH2"));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(response.expose());
    let reply = connection
        .command(format!("AUTH XOAUTH2 {encoded}\r\n"))
        .await?;
    if reply.has_code(235) {
        return Ok(());
    }
    if !reply.has_code(334) {
        return Err(Failure::Unexpected(format!(
            "it answered AUTH XOAUTH2 with {}",
            reply.code()
        )));
    }
    // The error challenge: acknowledged, the refusal follows (an Err).
    let reply = connection.command("\r\n").await?;
    if reply.has_code(235) {
        return Ok(());
    }
    Err(Failure::Unexpected(format!(
        "it answered the end of AUTH XOAUTH2 with {}",
        reply.code()
    )))
}

fn smtp_error(
    account: &Account,
    server: &str,
    error: &lettre::transport::smtp::Error,
) -> MailError {
    // 534 (mechanism too weak) and 535 (credentials invalid), RFC 4954 6.
    if matches!(error.status().map(u16::from), Some(534 | 535)) {
        return MailError::Login {
            account: account.name.clone(),
            protocol: "SMTP",
        };
    }
    if error.is_tls() {
        return MailError::Tls {
            account: account.name.clone(),
            server: server.to_owned(),
            reason: proto::text::echo(&error.to_string()).into_owned(),
        };
    }
    if error.is_timeout() {
        return MailError::Timeout {
            account: account.name.clone(),
            what: format!("the SMTP exchange ({server})"),
            seconds: 30,
        };
    }
    MailError::Server {
        account: account.name.clone(),
        what: format!("send the message ({server})"),
        reason: proto::text::echo(&error.to_string()).into_owned(),
        status: None,
        code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Accounts;

    fn account(send: &str) -> Account {
        let text = format!(
            "accounts:\n  a:\n    email: me@example.org\n    imap: {{host: 127.0.0.1}}\n    smtp: {{host: 127.0.0.1}}\n{send}"
        );
        Accounts::parse(&text, "t.yaml").unwrap().accounts["a"].clone()
    }

    #[test]
    fn the_policy_refuses_what_it_does_not_list() {
        let draft = |to: &str| Draft {
            to: vec![to.to_owned()],
            ..Draft::default()
        };
        let without = account("");
        let error = Smtp::check_policy(&without, &draft("x@example.org")).unwrap_err();
        assert!(error.to_string().contains("no send policy"), "{error}");
        let with = account("    send: {allowed_recipients: ['*@example.org']}\n");
        Smtp::check_policy(&with, &draft("Friend <x@example.org>")).unwrap();
        let error = Smtp::check_policy(&with, &draft("evil@attacker.example")).unwrap_err();
        assert!(
            error.to_string().contains("evil@attacker.example"),
            "{error}"
        );
        let sneaky = Draft {
            to: vec!["x@example.org".into()],
            bcc: vec!["evil@attacker.example".into()],
            ..Draft::default()
        };
        assert!(Smtp::check_policy(&with, &sneaky).is_err());
    }

    #[test]
    fn replies_carry_threading_headers() {
        let draft = Draft {
            to: vec!["x@example.org".into()],
            subject: "Re: plans".into(),
            body: "yes".into(),
            ..Draft::default()
        };
        let threading = Threading {
            message_id: "<b@example.org>".into(),
            references: vec!["<a@example.org>".into()],
        };
        let composed = compose(&account(""), &draft, Some(&threading)).unwrap();
        let text = String::from_utf8(composed.message.formatted()).unwrap();
        assert!(text.contains("In-Reply-To: <b@example.org>"), "{text}");
        assert!(
            text.contains("References: <a@example.org> <b@example.org>"),
            "{text}"
        );
        assert!(text.contains("From: me@example.org"), "{text}");
    }
}
