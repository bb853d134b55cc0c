//! `mail_accounts.yaml`: the accounts, loaded in two stages. [`file`] is the
//! file as written (two shapes: this project's, and the original
//! llmbasedos's flat `accounts: {name: {email, host, port, user, password,
//! ssl, starttls, auth_type}}`); [`resolve`] checks it and gives the
//! runtime [`Accounts`]. Every error names the file, the line and the fix.
//!
//! **No secret is ever in this file.** A `password` key is refused with a
//! message saying where secrets go (secrets.rs). Plain-text connections
//! need `insecure: true` and a loopback host: a password must never cross
//! a network unencrypted.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the accounts live when no `--accounts` is given.
pub const DEFAULT_PATH: &str = "/etc/llmbasedos/mail_accounts.yaml";
/// Sends per minute and account when the policy names no rate.
pub const DEFAULT_SENDS_PER_MINUTE: u32 = 10;

/// A configuration error: the file, the line where known, what is wrong
/// and the fix, in one message.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|line| format!(":{line}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// How a connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain first, then `STARTTLS` before anything else is said (143, 587).
    Starttls,
    /// No encryption: only with `insecure: true`, only to loopback.
    Plain,
}

/// How the account logs in; the secret itself comes from secrets.rs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    Password,
    Oauth2,
}

/// The stage-one shapes, close to the file.
pub mod file {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub accounts: BTreeMap<String, Account>,
    }

    /// One account in either shape: the new one has `imap:`/`smtp:` blocks,
    /// the original's has `host`/`port`/`ssl`/`starttls` at the top.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Account {
        pub email: Option<String>,
        pub display_name: Option<String>,
        pub username: Option<String>,
        pub auth: Option<AuthKind>,
        pub imap: Option<Endpoint>,
        pub smtp: Option<Endpoint>,
        #[serde(default)]
        pub insecure: bool,
        pub ca_file: Option<PathBuf>,
        pub drafts_folder: Option<String>,
        pub send: Option<SendPolicy>,
        pub oauth2: Option<OAuth2>,
        /// Never allowed: read only to refuse it with the way out.
        pub password: Option<yaml_serde::Value>,
        // The original llmbasedos's keys.
        pub host: Option<String>,
        pub port: Option<u16>,
        pub user: Option<String>,
        pub ssl: Option<bool>,
        pub starttls: Option<bool>,
        pub auth_type: Option<String>,
        pub smtp_host: Option<String>,
        pub smtp_port: Option<u16>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Endpoint {
        pub host: String,
        pub port: Option<u16>,
        pub security: Option<Security>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct OAuth2 {
        /// `google`, `microsoft` or `custom`.
        pub provider: String,
        pub client_id: String,
        /// Microsoft's tenant (default `common`).
        pub tenant: Option<String>,
        pub token_endpoint: Option<String>,
        pub device_authorization_endpoint: Option<String>,
        pub scopes: Option<Vec<String>>,
        /// `xoauth2` (default) or `oauthbearer`, for IMAP.
        pub mechanism: Option<SaslMechanism>,
        /// Never allowed: read only to refuse it with the way out.
        pub client_secret: Option<yaml_serde::Value>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SendPolicy {
        #[serde(default)]
        pub allowed_recipients: Vec<String>,
        pub rate_per_minute: Option<u32>,
    }
}

/// A server to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

/// Who an account may send to and how often. Absent: sending is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendPolicy {
    /// Lower-case patterns: `someone@example.org`, `*@example.org`, `*`.
    pub allowed_recipients: Vec<String>,
    pub rate_per_minute: u32,
}

impl SendPolicy {
    /// Whether `address` matches one of the patterns (case-insensitively;
    /// `*` stands for any run of characters).
    pub fn allows(&self, address: &str) -> bool {
        let address = address.trim().to_ascii_lowercase();
        self.allowed_recipients
            .iter()
            .any(|pattern| wildcard(pattern.as_bytes(), address.as_bytes()))
    }
}

fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| wildcard(rest, &text[skip..])),
        Some((first, rest)) => text
            .split_first()
            .is_some_and(|(head, tail)| head == first && wildcard(rest, tail)),
    }
}

/// The SASL mechanism carrying an OAuth2 token to IMAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaslMechanism {
    Xoauth2,
    Oauthbearer,
}

/// An account's OAuth2 registration (no secret: the refresh token and an
/// optional client secret are in secrets.rs's places).
#[derive(Clone, Debug)]
pub struct OAuth2Settings {
    pub provider: crate::oauth::Provider,
    pub client_id: String,
    pub mechanism: SaslMechanism,
}

/// One resolved account.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub email: String,
    pub display_name: Option<String>,
    pub username: String,
    pub auth: AuthKind,
    pub imap: Endpoint,
    pub smtp: Option<Endpoint>,
    /// An extra trust anchor (PEM) besides the system's.
    pub ca_file: Option<PathBuf>,
    pub drafts_folder: String,
    pub send: Option<SendPolicy>,
    pub oauth2: Option<OAuth2Settings>,
}

/// Every account, by name.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    pub accounts: BTreeMap<String, Account>,
}

impl Accounts {
    /// Loads and resolves `path`; a missing file is an error naming it.
    pub fn load(path: &Path) -> Result<Accounts, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!(
                "cannot read the mail accounts: {error}; create it (see /usr/share/doc/llmbasedos/mail_accounts.yaml) or pass --accounts FILE"
            ),
        })?;
        Accounts::parse(&text, &path.display().to_string())
    }

    /// Both stages on a file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Accounts, ConfigError> {
        let file: file::File = yaml_serde::from_str(text).map_err(|error| ConfigError {
            file: origin.to_owned(),
            line: error.location().map(|location| location.line()),
            message: format!("{error}; see the shipped example config/mail_accounts.yaml"),
        })?;
        resolve(file, text, origin)
    }
}

/// Stage two: checks and defaults.
pub fn resolve(file: file::File, text: &str, origin: &str) -> Result<Accounts, ConfigError> {
    let mut accounts = BTreeMap::new();
    for (name, account) in file.accounts {
        let line = line_of(text, &name);
        let fail = |message: String| ConfigError {
            file: origin.to_owned(),
            line,
            message: format!("account {name}: {message}"),
        };
        if !valid_name(&name) {
            return Err(fail(
                "an account name is letters, digits, '-', '_' and '.' (it names the secret's file too); rename it".to_owned(),
            ));
        }
        if account.password.is_some() {
            return Err(fail(format!(
                "a password does not belong in this file; remove the password line and store it with `llmbasedos-mail add-secret {name}` (Secret Service or a private file), or as the systemd credential {name}.password (LoadCredential=)"
            )));
        }
        let original = account.host.is_some();
        let (imap, smtp, auth) = if original {
            let host = account.host.clone().unwrap_or_default();
            let security = match (account.ssl, account.starttls) {
                (_, Some(true)) => Security::Starttls,
                (Some(false), _) => Security::Plain,
                _ => Security::Tls,
            };
            let port = account.port.unwrap_or(match security {
                Security::Tls => 993,
                _ => 143,
            });
            let imap = file::Endpoint {
                host: host.clone(),
                port: Some(port),
                security: Some(security),
            };
            let smtp = account.smtp_host.clone().map(|smtp_host| file::Endpoint {
                host: smtp_host,
                port: account.smtp_port,
                security: Some(security),
            });
            let auth = match account.auth_type.as_deref() {
                None | Some("password") | Some("plain") | Some("login") => AuthKind::Password,
                Some("oauth2") | Some("xoauth2") => AuthKind::Oauth2,
                Some(other) => {
                    return Err(fail(format!(
                        "auth_type {} is not known; use password or oauth2",
                        proto::text::echo(other)
                    )));
                }
            };
            (imap, smtp, auth)
        } else {
            let Some(imap) = account.imap else {
                return Err(fail(
                    "no imap server; add `imap: {host: imap.example.org, port: 993, security: tls}`".to_owned(),
                ));
            };
            (
                imap,
                account.smtp,
                account.auth.unwrap_or(AuthKind::Password),
            )
        };
        let imap = endpoint(&imap, 993, 143, account.insecure)
            .map_err(|message| fail(format!("imap: {message}")))?;
        let smtp = smtp
            .as_ref()
            .map(|smtp| endpoint(smtp, 465, 587, account.insecure))
            .transpose()
            .map_err(|message| fail(format!("smtp: {message}")))?;
        let email = match account.email.clone() {
            Some(email) if email.contains('@') => email,
            Some(_) => return Err(fail("email must be an address (name@domain)".to_owned())),
            None => {
                return Err(fail(
                    "no email; add `email: you@example.org` (the From of what it sends)".to_owned(),
                ));
            }
        };
        let username = account
            .username
            .or(account.user)
            .unwrap_or_else(|| email.clone());
        let send = match account.send {
            None => None,
            Some(policy) => {
                if policy.allowed_recipients.is_empty() {
                    return Err(fail(
                        "send.allowed_recipients is empty; list the addresses or patterns (`*@example.org`) it may send to, or remove send: to turn sending off".to_owned(),
                    ));
                }
                for pattern in &policy.allowed_recipients {
                    if pattern.trim().is_empty() || pattern.contains(char::is_whitespace) {
                        return Err(fail(format!(
                            "send.allowed_recipients has {}, which is not an address pattern",
                            proto::text::echo(pattern)
                        )));
                    }
                }
                let rate = policy.rate_per_minute.unwrap_or(DEFAULT_SENDS_PER_MINUTE);
                if rate == 0 {
                    return Err(fail(
                        "send.rate_per_minute is 0; remove send: to turn sending off".to_owned(),
                    ));
                }
                Some(SendPolicy {
                    allowed_recipients: policy
                        .allowed_recipients
                        .iter()
                        .map(|pattern| pattern.trim().to_ascii_lowercase())
                        .collect(),
                    rate_per_minute: rate,
                })
            }
        };
        let oauth2 = match (auth, account.oauth2) {
            (AuthKind::Oauth2, None) => {
                return Err(fail(
                    "auth: oauth2 needs an oauth2 block: `oauth2: {provider: google, client_id: …}` (or microsoft, or custom with token_endpoint)".to_owned(),
                ));
            }
            (AuthKind::Password, Some(_)) => {
                return Err(fail(
                    "has an oauth2 block but auth: password; set auth: oauth2 or remove the block"
                        .to_owned(),
                ));
            }
            (AuthKind::Password, None) => None,
            (AuthKind::Oauth2, Some(settings)) => {
                Some(oauth2_settings(&name, settings).map_err(&fail)?)
            }
        };
        if send.is_some() && smtp.is_none() {
            return Err(fail(
                "send: needs an smtp server; add `smtp: {host: …, port: 465, security: tls}`"
                    .to_owned(),
            ));
        }
        accounts.insert(
            name.clone(),
            Account {
                name: name.clone(),
                email,
                display_name: account.display_name,
                username,
                auth,
                imap,
                smtp,
                ca_file: account.ca_file,
                drafts_folder: account.drafts_folder.unwrap_or_else(|| "Drafts".to_owned()),
                send,
                oauth2,
            },
        );
    }
    Ok(Accounts { accounts })
}

fn oauth2_settings(name: &str, settings: file::OAuth2) -> Result<OAuth2Settings, String> {
    use crate::oauth::Provider;
    if settings.client_secret.is_some() {
        return Err(format!(
            "oauth2.client_secret does not belong in this file; store it with `llmbasedos-mail add-secret {name} --kind client-secret` or as the systemd credential {name}.client_secret"
        ));
    }
    if settings.client_id.trim().is_empty() {
        return Err(
            "oauth2.client_id is empty; give the client id registered with the provider".to_owned(),
        );
    }
    let mut provider = match settings.provider.as_str() {
        "google" => Provider::google(),
        "microsoft" => Provider::microsoft(settings.tenant.as_deref().unwrap_or("common")),
        "custom" => {
            let Some(token_endpoint) = &settings.token_endpoint else {
                return Err("oauth2.provider custom needs token_endpoint (and device_authorization_endpoint for authorize)".to_owned());
            };
            Provider::custom(
                token_endpoint,
                settings.device_authorization_endpoint.as_deref(),
                &[],
            )
        }
        other => {
            return Err(format!(
                "oauth2.provider {} is not known; use google, microsoft or custom",
                proto::text::echo(other)
            ));
        }
    };
    if settings.provider != "custom"
        && (settings.token_endpoint.is_some() || settings.device_authorization_endpoint.is_some())
    {
        return Err("oauth2 endpoints are set by the google/microsoft presets; use provider: custom to give your own".to_owned());
    }
    if let Some(scopes) = settings.scopes {
        provider.scopes = scopes;
    }
    Ok(OAuth2Settings {
        provider,
        client_id: settings.client_id,
        mechanism: settings.mechanism.unwrap_or(SaslMechanism::Xoauth2),
    })
}

fn endpoint(
    endpoint: &file::Endpoint,
    tls_port: u16,
    plain_port: u16,
    insecure: bool,
) -> Result<Endpoint, String> {
    if endpoint.host.trim().is_empty() {
        return Err("host is empty".to_owned());
    }
    let security = endpoint.security.unwrap_or(Security::Tls);
    if security == Security::Plain {
        if !insecure {
            return Err(
                "security: plain sends the password unencrypted; use tls or starttls, or (loopback only) add insecure: true to the account".to_owned(),
            );
        }
        if !is_loopback(&endpoint.host) {
            return Err(format!(
                "security: plain is refused for {} (not a loopback address) even with insecure: true; use tls or starttls",
                proto::text::echo(&endpoint.host)
            ));
        }
    }
    let port = endpoint.port.unwrap_or(match security {
        Security::Tls => tls_port,
        _ => plain_port,
    });
    Ok(Endpoint {
        host: endpoint.host.trim().to_owned(),
        port,
        security,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Names safe as file names and D-Bus attribute values.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// The 1-based line where `key:` first appears as a mapping key.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let trimmed = line.trim_start();
            trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
                || trimmed
                    .strip_prefix(&format!("\"{key}\""))
                    .is_some_and(|rest| rest.starts_with(':'))
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Accounts, String> {
        Accounts::parse(text, "test.yaml").map_err(|error| error.to_string())
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../config/mail_accounts.yaml");
        let accounts = parse(text).unwrap();
        assert!(!accounts.accounts.is_empty());
    }

    #[test]
    fn the_original_format_loads_and_its_password_is_refused() {
        let original = "accounts:\n  work:\n    email: a@example.org\n    host: imap.example.org\n    port: 993\n    user: a\n    ssl: true\n";
        let accounts = parse(original).unwrap();
        let work = &accounts.accounts["work"];
        assert_eq!(work.imap.security, Security::Tls);
        assert_eq!(work.username, "a");
        assert!(work.send.is_none());
        let with_password = format!("{original}    password: hunter2\n");
        let error = parse(&with_password).unwrap_err();
        assert!(error.contains("test.yaml:2:"), "{error}");
        assert!(error.contains("add-secret work"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn refusals_name_the_line_and_the_fix() {
        let cases = [
            (
                "accounts:\n  a:\n    email: a@x\n    imap: {host: mail.example.org, security: plain}\n",
                "insecure: true",
            ),
            (
                "accounts:\n  a:\n    email: a@x\n    insecure: true\n    imap: {host: mail.example.org, security: plain}\n",
                "not a loopback",
            ),
            ("accounts:\n  a:\n    email: a@x\n", "no imap server"),
            (
                "accounts:\n  a:\n    email: a@x\n    imap: {host: h}\n    send: {allowed_recipients: []}\n",
                "empty",
            ),
            (
                "accounts:\n  a:\n    email: a@x\n    imap: {host: h}\n    bogus: 1\n",
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.starts_with("test.yaml:"), "{error}");
        }
        let loopback = "accounts:\n  a:\n    email: a@x\n    insecure: true\n    imap: {host: 127.0.0.1, port: 1143, security: plain}\n";
        assert_eq!(parse(loopback).unwrap().accounts["a"].imap.port, 1143);
    }

    #[test]
    fn recipient_patterns() {
        let policy = SendPolicy {
            allowed_recipients: vec!["*@example.org".into(), "boss@corp.example".into()],
            rate_per_minute: 10,
        };
        for (address, allowed) in [
            ("Someone@Example.org", true),
            ("boss@corp.example", true),
            ("boss@corp.example.evil", false),
            ("x@example.org.evil", false),
            ("a@other.org", false),
        ] {
            assert_eq!(policy.allows(address), allowed, "{address}");
        }
    }
}
