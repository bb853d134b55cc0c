//! OAuth2 wiring: one [`OAuth2Client`] per `auth: oauth2` account, its
//! refresh token kept by [`RefreshTokens`] (secrets.rs's places), and the
//! SASL responses IMAP (XOAUTH2 or OAUTHBEARER) and SMTP (XOAUTH2) log in
//! with. A mail server that refuses a token gets one fresh token more
//! ([`OAuth2Client::invalidate`]) before the login counts as refused.

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::{Account, Accounts, SaslMechanism};
use crate::error::MailError;
use crate::oauth::{self, ClientConfig, OAuth2Client, OAuthError};
use crate::secrets::{RefreshTokens, Secret, SecretSources};

/// The OAuth2 clients, by account.
#[derive(Debug, Default)]
pub struct OAuthClients(HashMap<String, Arc<OAuth2Client>>);

impl OAuthClients {
    /// A client for every `auth: oauth2` account. An optional client secret
    /// is read from the systemd credential or the private file
    /// `<account>.client_secret` (at start, before the runtime runs).
    pub fn new(accounts: &Accounts, secrets: &SecretSources) -> Result<OAuthClients, String> {
        let mut clients = HashMap::new();
        let oauth_accounts: Vec<_> = accounts
            .accounts
            .values()
            .filter_map(|account| account.oauth2.as_ref().map(|settings| (account, settings)))
            .collect();
        if oauth_accounts.is_empty() {
            return Ok(OAuthClients(clients));
        }
        let http = oauth::http_client()
            .map_err(|error| format!("cannot make the OAuth2 HTTP client: {error}"))?;
        let store: Arc<dyn oauth::TokenStore> = Arc::new(RefreshTokens(secrets.clone()));
        for (account, settings) in oauth_accounts {
            let config = ClientConfig {
                account: account.name.clone(),
                provider: settings.provider.clone(),
                client_id: settings.client_id.clone(),
                client_secret: client_secret(secrets, &account.name),
            };
            let client = OAuth2Client::new(config, store.clone(), http.clone())
                .map_err(|error| format!("account {}: {error}", account.name))?;
            clients.insert(account.name.clone(), Arc::new(client));
        }
        Ok(OAuthClients(clients))
    }

    pub fn get(&self, account: &Account) -> Result<&Arc<OAuth2Client>, MailError> {
        self.0
            .get(&account.name)
            .ok_or_else(|| MailError::Unsupported {
                account: account.name.clone(),
                what: "OAuth2 login".to_owned(),
                reason: "the account has no oauth2 settings".to_owned(),
            })
    }
}

fn client_secret(secrets: &SecretSources, account: &str) -> Option<oauth::Secret> {
    let name = format!("{account}.client_secret");
    let places = secrets
        .credentials_directory
        .iter()
        .map(|directory| directory.join(&name))
        .chain(std::iter::once(secrets.secrets_dir.join(&name)));
    for path in places {
        if let Ok(value) = std::fs::read_to_string(&path) {
            return Some(oauth::Secret::new(
                value.trim_end_matches(['\r', '\n']).to_owned(),
            ));
        }
    }
    None
}

/// The password of an `auth: password` account (IMAP and SMTP log in
/// with it), from the first of its places that has it.
pub async fn password(secrets: &SecretSources, account: &Account) -> Result<Secret, MailError> {
    secrets
        .lookup(&account.name, account.auth)
        .await
        .map_err(|source| MailError::Secret {
            account: account.name.clone(),
            source,
        })
}

/// An OAuth2 failure as a mail error: a refused or missing refresh token
/// says to run `authorize`.
pub fn oauth_error(account: &Account, error: OAuthError) -> MailError {
    let reauthorize = matches!(
        error,
        OAuthError::NotAuthorized { .. }
            | OAuthError::Revoked { .. }
            | OAuthError::DeviceCodeExpired { .. }
    );
    MailError::OAuth {
        account: account.name.clone(),
        message: error.to_string(),
        reauthorize,
    }
}

/// The SASL initial response for IMAP.
pub fn imap_response(
    account: &Account,
    token: &oauth::Secret,
) -> Result<(&'static str, oauth::Secret), MailError> {
    let mechanism = account
        .oauth2
        .as_ref()
        .map_or(SaslMechanism::Xoauth2, |settings| settings.mechanism);
    let response = match mechanism {
        SaslMechanism::Xoauth2 => oauth::xoauth2_initial_response(&account.username, token),
        SaslMechanism::Oauthbearer => oauth::oauthbearer_initial_response(
            &account.username,
            &account.imap.host,
            account.imap.port,
            token,
        ),
    }
    .map_err(|error| oauth_error(account, error))?;
    Ok((
        match mechanism {
            SaslMechanism::Xoauth2 => "XOAUTH2",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        },
        response,
    ))
}

/// async-imap's side of a one-step SASL exchange: the initial response,
/// then `failure_reply` to the server's error challenge (XOAUTH2 wants an
/// empty line, OAUTHBEARER `%x01`; RFC 7628 3.2.3).
#[derive(Debug)]
pub struct InitialResponse(Option<oauth::Secret>, Vec<u8>);

impl InitialResponse {
    pub fn new(response: oauth::Secret, failure_reply: Vec<u8>) -> InitialResponse {
        InitialResponse(Some(response), failure_reply)
    }
}

impl async_imap::Authenticator for InitialResponse {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0
            .take()
            .map(|response| response.expose().as_bytes().to_vec())
            .unwrap_or_else(|| self.1.clone())
    }
}
