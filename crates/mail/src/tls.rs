//! TLS client configurations (rustls with the `ring` provider): the
//! system's trust anchors plus an account's own `ca_file`, built once at
//! start. A certificate that does not verify is refused, with no way to
//! turn verification off.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::accounts::{Account, Accounts};
use crate::error::MailError;

/// One client configuration per account.
#[derive(Debug)]
pub struct Configs {
    by_account: HashMap<String, Arc<ClientConfig>>,
}

impl Configs {
    pub fn new(accounts: &Accounts) -> Result<Configs, String> {
        let system = system_roots();
        let mut by_account = HashMap::new();
        for account in accounts.accounts.values() {
            by_account.insert(
                account.name.clone(),
                Arc::new(client_config(account, &system)?),
            );
        }
        Ok(Configs { by_account })
    }

    pub fn config(&self, account: &str) -> Arc<ClientConfig> {
        self.by_account[account].clone()
    }

    /// The TLS handshake with `host` on `tcp`.
    pub async fn connect<S>(
        &self,
        account: &Account,
        host: &str,
        tcp: S,
    ) -> Result<TlsStream<S>, MailError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let server = || format!("{host}:{}", account.imap.port);
        let name = ServerName::try_from(host.to_owned()).map_err(|_| MailError::Tls {
            account: account.name.clone(),
            server: server(),
            reason: "the host is not a valid TLS server name".to_owned(),
        })?;
        TlsConnector::from(self.config(&account.name))
            .connect(name, tcp)
            .await
            .map_err(|error| MailError::Tls {
                account: account.name.clone(),
                server: server(),
                reason: tls_reason(&error.to_string()),
            })
    }
}

/// Keeps `TcpStream` named: the stream every connection starts from.
pub type Tcp = TcpStream;

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for certificate in loaded.certs {
        let _ = roots.add(certificate);
    }
    roots
}

fn client_config(
    account: &Account,
    system: &rustls::RootCertStore,
) -> Result<ClientConfig, String> {
    let mut roots = system.clone();
    if let Some(ca_file) = &account.ca_file {
        let certificates =
            rustls::pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|error| {
                format!(
                    "account {}: cannot read ca_file {}: {error}",
                    account.name,
                    ca_file.display()
                )
            })?;
        let mut added = 0;
        for certificate in certificates {
            let certificate = certificate.map_err(|error| {
                format!(
                    "account {}: ca_file {}: {error}",
                    account.name,
                    ca_file.display()
                )
            })?;
            roots.add(certificate).map_err(|error| {
                format!(
                    "account {}: ca_file {}: {error}",
                    account.name,
                    ca_file.display()
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "account {}: ca_file {} holds no PEM certificate",
                account.name,
                ca_file.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// rustls's reason without the structure dump that follows it
/// (`invalid peer certificate: UnknownIssuer`).
pub fn tls_reason(text: &str) -> String {
    let short = text.split(['{', '(']).next().unwrap_or(text).trim();
    proto::text::echo(short).into_owned()
}
