//! llmbasedos-mail: a person's mailbox for a language model, with the
//! sharp edges guarded.
//!
//! The pieces:
//! - [`accounts`]: `mail_accounts.yaml` in two stages (this project's shape
//!   and the original's), no secret allowed in it, the send policy.
//! - [`secrets`]: passwords and refresh tokens from systemd credentials,
//!   the Secret Service or a private file; a [`secrets::Secret`] cannot be
//!   printed.
//! - [`imap`]: a small session pool per account (async-imap on
//!   tokio-rustls) and the typed operations: folders, server-side search,
//!   pages, whole messages with `BODY.PEEK`, flags, moves of exactly the
//!   uids given, APPEND.
//! - [`smtp`]: composing, with threading headers from the replied-to message,
//!   and sending with lettre, behind the send policy and rate.
//! - [`tls`]: the rustls client configurations (system roots + `ca_file`).
//! - [`limits`]: every bound, in one place.
//! - [`handlers`]: the thin server layer and the one error mapping.

pub mod accounts;
pub mod auth;
pub mod calendar;
pub mod error;
pub mod handlers;
pub mod imap;
pub mod limits;
pub mod mime;
pub mod oauth;
pub mod secrets;
pub mod smtp;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use server_kit::{BuildError, Server};

/// The service's contract, shipped inside the binary.
pub const CAPS: &str = include_str!("../mail.cap.json");

/// Where the caps come from, for error messages.
pub const CAPS_ORIGIN: &str = "crates/mail/mail.cap.json";

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] BuildError),
    /// TLS or OAuth2 settings that cannot be used.
    #[error("{0}")]
    Tls(String),
}

/// Builds the mail server for `accounts`, its secrets found through
/// `secrets`.
pub fn server(
    accounts: accounts::Accounts,
    secrets: secrets::SecretSources,
    timeouts: imap::Timeouts,
) -> Result<Server, StartError> {
    let caps = proto::CompiledCaps::embedded(CAPS, CAPS_ORIGIN).map_err(BuildError::from)?;
    let oauth = Arc::new(auth::OAuthClients::new(&accounts, &secrets).map_err(StartError::Tls)?);
    let imap = imap::Imap::new(&accounts, secrets.clone(), oauth.clone(), timeouts)
        .map_err(StartError::Tls)?;
    let smtp = smtp::Smtp::new(
        secrets,
        oauth,
        Duration::from_secs(30).max(timeouts.command / 2),
    );
    let state = handlers::Mail {
        accounts,
        imap,
        smtp,
    };
    Ok(handlers::register(Server::builder(caps, CAPS_ORIGIN).with_state(state)).build()?)
}

/// At run time the caps are compiled method by method at first use
/// ([`proto::CompiledCaps::embedded`]); here every schema is compiled whole.
#[cfg(test)]
#[test]
fn the_embedded_caps_compile_whole() {
    proto::CompiledCaps::from_json(CAPS, CAPS_ORIGIN).expect("every schema of the caps compiles");
}
