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

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use std::sync::Arc;

use crate::accounts::{Account, AuthKind, Security};
use crate::auth::{self, OAuthClients};
use crate::error::MailError;
use crate::limits;
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
        let tls = match endpoint.security {
            Security::Tls => Tls::Wrapper(parameters),
            Security::Starttls => Tls::Required(parameters),
            Security::Plain => Tls::None,
        };
        for attempt in 0..2 {
            // A password, or a fresh access token over XOAUTH2 (lettre has
            // no OAUTHBEARER); a refused token is replaced once.
            let (credentials, mechanism, token) = match account.auth {
                AuthKind::Password => {
                    let secret = auth::password(&self.secrets, account).await?;
                    (
                        Credentials::new(account.username.clone(), secret.expose().to_owned()),
                        vec![Mechanism::Plain, Mechanism::Login],
                        None,
                    )
                }
                AuthKind::Oauth2 => {
                    let oauth = self.oauth.get(account)?;
                    let token = oauth
                        .access_token()
                        .await
                        .map_err(|error| auth::oauth_error(account, error))?;
                    (
                        Credentials::new(account.username.clone(), token.expose().to_owned()),
                        vec![Mechanism::Xoauth2],
                        Some(token),
                    )
                }
            };
            let transport =
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.clone())
                    .port(endpoint.port)
                    .tls(tls.clone())
                    .credentials(credentials)
                    .authentication(mechanism)
                    .timeout(Some(self.timeout))
                    .build();
            let sending = transport.send(composed.message.clone());
            let result = tokio::time::timeout(self.timeout + Duration::from_secs(5), sending).await;
            match result {
                Ok(Ok(_)) => {
                    tracing::info!(
                        account = %account.name,
                        recipients = composed.recipients,
                        message_id = %composed.message_id,
                        "mail sent"
                    );
                    return Ok(());
                }
                Ok(Err(error)) => {
                    let error = smtp_error(account, &server, &error);
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
