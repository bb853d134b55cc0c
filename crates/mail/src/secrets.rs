//! Where an account's secret (password or OAuth2 refresh token) comes from,
//! in this order:
//! 1. a systemd credential: `$CREDENTIALS_DIRECTORY/<account>.password`
//!    (or `.oauth2`), given by `LoadCredential=`;
//! 2. the Secret Service over D-Bus (`secret-service` on zbus), an item with
//!    the attributes `application=llmbasedos-mail`, `account`, `kind`;
//! 3. a file `<secrets dir>/<account>.<kind>` readable only by the service
//!    user: refused if its group or others may read it.
//!
//! Secrets are a [`Secret`], which cannot be printed: its `Debug` says
//! `<redacted>` and it has no `Display`, so a `{:?}` in a log line or an
//! error cannot carry one. Secrets come only from the terminal
//! (`llmbasedos-mail add-secret`) or from the places above, never from an
//! MCP call: a chat transcript must not become a credential channel.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secret_service::{EncryptionType, SecretService};

use crate::accounts::AuthKind;

/// The application attribute of our Secret Service items.
const APPLICATION: &str = "llmbasedos-mail";
/// How long a Secret Service call may take before it counts as unavailable.
const SECRET_SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret's value. Never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that sends it (a login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why no secret could be had. Texts name places, never values.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no {kind} is stored for account {account}; store one with `llmbasedos-mail add-secret {account}`, or give the systemd credential {account}.{kind} (LoadCredential=); looked in: {tried}"
    )]
    Missing {
        account: String,
        kind: &'static str,
        tried: String,
    },
    #[error(
        "the secret file {path} can be read by its group or others, so it is not used; run `chmod 600 {path}` (and make it the service user's)"
    )]
    Insecure { path: String },
    #[error("cannot store the secret: {0}")]
    Store(String),
}

impl SecretError {
    pub fn kind(&self) -> &'static str {
        match self {
            SecretError::Missing { .. } => "secret_missing",
            SecretError::Insecure { .. } => "secret_insecure",
            SecretError::Store(_) => "secret_store",
        }
    }
}

/// The file-name suffix and Secret Service `kind` of an auth kind.
pub fn kind_name(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::Password => "password",
        AuthKind::Oauth2 => "oauth2",
    }
}

/// Where secrets are looked up.
#[derive(Clone, Debug)]
pub struct SecretSources {
    /// `$CREDENTIALS_DIRECTORY`, if set.
    pub credentials_directory: Option<PathBuf>,
    /// Whether to ask the Secret Service (a session bus is there).
    pub secret_service: bool,
    /// The directory of private secret files.
    pub secrets_dir: PathBuf,
}

impl SecretSources {
    /// From the environment: `CREDENTIALS_DIRECTORY`, a D-Bus session bus
    /// (`DBUS_SESSION_BUS_ADDRESS`), and `secrets_dir` (or
    /// `$STATE_DIRECTORY/secrets`, else `/var/lib/llmbasedos/mail/secrets`).
    pub fn from_environment(secrets_dir: Option<PathBuf>) -> SecretSources {
        let credentials_directory = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let secret_service = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
        let secrets_dir = secrets_dir.unwrap_or_else(|| {
            std::env::var_os("STATE_DIRECTORY")
                .and_then(|dirs| {
                    // systemd may pass several, colon-separated: the first is ours.
                    dirs.to_str()
                        .and_then(|dirs| dirs.split(':').next().map(PathBuf::from))
                })
                .map(|dir| dir.join("secrets"))
                .unwrap_or_else(|| PathBuf::from("/var/lib/llmbasedos/mail/secrets"))
        });
        SecretSources {
            credentials_directory,
            secret_service,
            secrets_dir,
        }
    }

    /// The secret of `account` for `kind`, from the first place that has it.
    pub async fn lookup(&self, account: &str, kind: AuthKind) -> Result<Secret, SecretError> {
        let suffix = kind_name(kind);
        let mut tried = Vec::new();
        match self
            .find(account, suffix, Order::CredentialFirst, &mut tried)
            .await?
        {
            Some(secret) => Ok(secret),
            None => Err(SecretError::Missing {
                account: account.to_owned(),
                kind: suffix,
                tried: tried.join(", "),
            }),
        }
    }

    /// A secret that may be absent (an OAuth2 client secret).
    pub async fn lookup_optional(
        &self,
        account: &str,
        suffix: &'static str,
    ) -> Result<Option<Secret>, SecretError> {
        self.find(account, suffix, Order::CredentialFirst, &mut Vec::new())
            .await
    }

    /// A refresh token: the places it is rotated into (the Secret Service,
    /// the private file) before the systemd credential that seeded it, so
    /// that a rotated token wins over the read-only first one.
    pub async fn lookup_rotating(
        &self,
        account: &str,
        suffix: &'static str,
    ) -> Result<Option<Secret>, SecretError> {
        self.find(account, suffix, Order::StoredFirst, &mut Vec::new())
            .await
    }

    async fn find(
        &self,
        account: &str,
        suffix: &str,
        order: Order,
        tried: &mut Vec<String>,
    ) -> Result<Option<Secret>, SecretError> {
        if order == Order::CredentialFirst
            && let Some(secret) = self.credential(account, suffix, tried).await
        {
            return Ok(Some(secret));
        }
        if self.secret_service {
            tried.push("the Secret Service".to_owned());
            match tokio::time::timeout(
                SECRET_SERVICE_TIMEOUT,
                secret_service_lookup(account, suffix),
            )
            .await
            {
                Ok(Ok(Some(secret))) => return Ok(Some(secret)),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::info!(account, error = %error, "the Secret Service cannot be asked")
                }
                Err(_) => tracing::info!(account, "the Secret Service did not answer in time"),
            }
        }
        let path = self.secrets_dir.join(format!("{account}.{suffix}"));
        tried.push(path.display().to_string());
        if let Some(secret) = read_private(&path).await? {
            return Ok(Some(secret));
        }
        if order == Order::StoredFirst {
            return Ok(self.credential(account, suffix, tried).await);
        }
        Ok(None)
    }

    async fn credential(
        &self,
        account: &str,
        suffix: &str,
        tried: &mut Vec<String>,
    ) -> Option<Secret> {
        let path = self
            .credentials_directory
            .as_ref()?
            .join(format!("{account}.{suffix}"));
        tried.push(path.display().to_string());
        // systemd made this file for us alone; its mode is systemd's.
        let value = tokio::fs::read_to_string(&path).await.ok()?;
        Some(Secret(trim_line_end(value)))
    }

    /// Stores a secret: in the Secret Service when there is one, else in
    /// a private file (mode 0600, written to a temporary file and renamed).
    /// Returns where it went.
    pub async fn store(
        &self,
        account: &str,
        kind: AuthKind,
        secret: &Secret,
    ) -> Result<String, SecretError> {
        self.store_named(account, kind_name(kind), secret).await
    }

    /// [`store`](Self::store) under any suffix (`client_secret`).
    pub async fn store_named(
        &self,
        account: &str,
        suffix: &str,
        secret: &Secret,
    ) -> Result<String, SecretError> {
        if self.secret_service {
            match tokio::time::timeout(
                SECRET_SERVICE_TIMEOUT,
                secret_service_store(account, suffix, secret),
            )
            .await
            {
                Ok(Ok(())) => return Ok("the Secret Service".to_owned()),
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "the Secret Service refused the secret; writing a private file")
                }
                Err(_) => {
                    tracing::warn!("the Secret Service did not answer; writing a private file")
                }
            }
        }
        let path = self.secrets_dir.join(format!("{account}.{suffix}"));
        write_private(&path, secret.expose()).map_err(|error| {
            SecretError::Store(format!("cannot write {}: {error}", path.display()))
        })?;
        Ok(path.display().to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    CredentialFirst,
    StoredFirst,
}

/// The OAuth2 refresh tokens, kept where the other secrets are.
#[derive(Clone, Debug)]
pub struct RefreshTokens(pub SecretSources);

impl crate::oauth::TokenStore for RefreshTokens {
    fn load<'a>(
        &'a self,
        account: &'a str,
    ) -> crate::oauth::BoxFuture<'a, Result<Option<crate::oauth::Secret>, crate::oauth::StoreError>>
    {
        Box::pin(async move {
            self.0
                .lookup_rotating(account, "oauth2")
                .await
                .map(|found| found.map(|secret| crate::oauth::Secret::new(secret.expose())))
                .map_err(|error| crate::oauth::StoreError(error.to_string()))
        })
    }

    fn store<'a>(
        &'a self,
        account: &'a str,
        refresh_token: &'a crate::oauth::Secret,
    ) -> crate::oauth::BoxFuture<'a, Result<(), crate::oauth::StoreError>> {
        Box::pin(async move {
            let secret = Secret::new(refresh_token.expose().to_owned());
            self.0
                .store_named(account, "oauth2", &secret)
                .await
                .map(|place| tracing::info!(account, place = %place, "stored a new OAuth2 refresh token"))
                .map_err(|error| crate::oauth::StoreError(error.to_string()))
        })
    }
}

fn trim_line_end(mut value: String) -> String {
    while value.ends_with('\n') || value.ends_with('\r') {
        value.pop();
    }
    value
}

async fn read_private(path: &Path) -> Result<Option<Secret>, SecretError> {
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(_) => return Ok(None),
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if metadata.permissions().mode() & 0o077 != 0 || (metadata.uid() != euid && euid != 0) {
        return Err(SecretError::Insecure {
            path: path.display().to_string(),
        });
    }
    match tokio::fs::read_to_string(path).await {
        Ok(value) => Ok(Some(Secret(trim_line_end(value)))),
        Err(_) => Ok(None),
    }
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))?;
    let temporary = directory.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("secret")
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(value.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

fn attributes<'a>(account: &'a str, kind: &'a str) -> HashMap<&'a str, &'a str> {
    HashMap::from([
        ("application", APPLICATION),
        ("account", account),
        ("kind", kind),
    ])
}

async fn secret_service_lookup(
    account: &str,
    kind: &str,
) -> Result<Option<Secret>, secret_service::Error> {
    let service = SecretService::connect(EncryptionType::Dh).await?;
    let found = service.search_items(attributes(account, kind)).await?;
    let item = match (found.unlocked.first(), found.locked.first()) {
        (Some(item), _) => item,
        (None, Some(item)) => {
            item.unlock().await?;
            item
        }
        (None, None) => return Ok(None),
    };
    let bytes = item.get_secret().await?;
    Ok(String::from_utf8(bytes)
        .ok()
        .map(|value| Secret(trim_line_end(value))))
}

async fn secret_service_store(
    account: &str,
    kind: &str,
    secret: &Secret,
) -> Result<(), secret_service::Error> {
    let service = SecretService::connect(EncryptionType::Dh).await?;
    let collection = match service.get_default_collection().await {
        Ok(collection) => collection,
        Err(_) => service.get_any_collection().await?,
    };
    collection.ensure_unlocked().await?;
    collection
        .create_item(
            &format!("llmbasedos-mail {kind} of {account}"),
            attributes(account, kind),
            secret.expose().as_bytes(),
            true,
            "text/plain",
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[tokio::test]
    async fn files_readable_by_others_are_refused_and_private_ones_used() {
        let directory = tempfile::tempdir().unwrap();
        let sources = SecretSources {
            credentials_directory: None,
            secret_service: false,
            secrets_dir: directory.path().join("secrets"),
        };
        let missing = sources
            .lookup("work", AuthKind::Password)
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), "secret_missing");
        let stored = Secret::new("s3cret".to_owned());
        sources
            .store("work", AuthKind::Password, &stored)
            .await
            .unwrap();
        assert_eq!(
            sources.lookup("work", AuthKind::Password).await.unwrap(),
            stored
        );
        let path = directory.path().join("secrets/work.password");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = sources
            .lookup("work", AuthKind::Password)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), "secret_insecure");
        assert!(!refused.to_string().contains("s3cret"));
        // A credential wins over the file.
        let credentials = directory.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        std::fs::write(credentials.join("work.password"), "from-systemd\n").unwrap();
        let sources = SecretSources {
            credentials_directory: Some(credentials),
            ..sources
        };
        assert_eq!(
            sources
                .lookup("work", AuthKind::Password)
                .await
                .unwrap()
                .expose(),
            "from-systemd"
        );
    }
}
