//! OAuth2 for IMAP and SMTP: access tokens from a stored refresh token
//! (RFC 6749 §6), the first refresh token from the device authorization
//! grant (RFC 8628), and the SASL initial responses that carry a token
//! (XOAUTH2, OAUTHBEARER per RFC 7628).
//!
//! The refresh token lives in a [`TokenStore`] (the server implements it
//! over its secrets: systemd credentials, the Secret Service, a 0600 file).
//! [`OAuth2Client`] keeps the access token in memory, refreshes it a margin
//! before it expires, and once more when the mail server refuses it
//! ([`OAuth2Client::invalidate`]); a refresh token the provider rotates is
//! written back to the store at once. Concurrent callers share one refresh.
//!
//! Every token is a [`Secret`], whose `Debug` and `Display` print
//! `[redacted]`: no error, log line or result can show one by accident.
//! Error texts never include a token; the provider's own `error` code and
//! description (bounded) are kept, since they say what went wrong.
//!
//! Time comes from a [`Clock`], so tests move it instead of sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A future a trait object can return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long before its expiry an access token is replaced.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(120);
/// How long an access token is kept when the provider does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// RFC 8628 §3.2: the poll interval when the provider does not give one.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: `slow_down` adds five seconds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Longest answer read from a token endpoint.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest provider error description kept in an error.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// A token or client secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into().into_boxed_str())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A store failure, in words that name no secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where an account's refresh token is kept.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The account's refresh token, if it has one.
    fn load<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Option<Secret>, StoreError>>;
    /// Replaces the account's refresh token (atomically: a crash leaves the
    /// old one or the new one).
    fn store<'a>(
        &'a self,
        account: &'a str,
        refresh_token: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The time source: real time in the server, a moved clock in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()>;
}

/// Real time, tokio's sleep.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// An OAuth2 provider's endpoints and the scopes mail needs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub token_endpoint: String,
    /// RFC 8628 device authorization endpoint, for `authorize`.
    pub device_authorization_endpoint: Option<String>,
    pub scopes: Vec<String>,
}

impl Provider {
    /// Google (Gmail): IMAP and SMTP both take the `https://mail.google.com/` scope.
    pub fn google() -> Provider {
        Provider {
            token_endpoint: "https://oauth2.googleapis.com/token".into(),
            device_authorization_endpoint: Some("https://oauth2.googleapis.com/device/code".into()),
            scopes: vec!["https://mail.google.com/".into()],
        }
    }

    /// Microsoft 365 / Outlook.com for a tenant (`common`, `organizations`,
    /// `consumers` or a tenant id): `offline_access` gives a refresh token.
    pub fn microsoft(tenant: &str) -> Provider {
        let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
        Provider {
            token_endpoint: format!("{base}/token"),
            device_authorization_endpoint: Some(format!("{base}/devicecode")),
            scopes: vec![
                "offline_access".into(),
                "https://outlook.office.com/IMAP.AccessAsUser.All".into(),
                "https://outlook.office.com/SMTP.Send".into(),
            ],
        }
    }

    /// Any other provider.
    pub fn custom(
        token_endpoint: &str,
        device_authorization_endpoint: Option<&str>,
        scopes: &[&str],
    ) -> Provider {
        Provider {
            token_endpoint: token_endpoint.to_owned(),
            device_authorization_endpoint: device_authorization_endpoint.map(str::to_owned),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        }
    }
}

/// One account's OAuth2 client registration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The account name, for the store and for error texts.
    pub account: String,
    pub provider: Provider,
    pub client_id: String,
    pub client_secret: Option<Secret>,
}

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OAuthError {
    #[error(
        "account {account} has no OAuth2 refresh token yet: run `llmbasedos-mail authorize {account}`"
    )]
    NotAuthorized { account: String },
    #[error(
        "the provider refused the refresh token of account {account} (revoked or expired: {code}): run `llmbasedos-mail authorize {account}`"
    )]
    Revoked { account: String, code: String },
    #[error(
        "the provider refused the client id or secret of account {account} (invalid_client): check its oauth2 client settings"
    )]
    InvalidClient { account: String },
    #[error("the provider refused the request for account {account}: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        account: String,
        code: String,
        description: Option<String>,
    },
    #[error("the token endpoint {endpoint} answered HTTP {status} without a usable OAuth2 answer")]
    BadAnswer { endpoint: String, status: u16 },
    #[error("the token endpoint {endpoint} could not be reached: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("endpoint {endpoint} must be https (plain http only on loopback)")]
    InsecureEndpoint { endpoint: String },
    #[error("the provider has no device authorization endpoint configured for account {account}")]
    NoDeviceEndpoint { account: String },
    #[error(
        "the device code expired before the user approved it: run `llmbasedos-mail authorize {account}` again"
    )]
    DeviceCodeExpired { account: String },
    #[error("the user declined the authorization of account {account}")]
    AccessDenied { account: String },
    #[error(
        "the provider gave no refresh token for account {account}: the scopes must allow offline access (Microsoft: offline_access)"
    )]
    NoRefreshToken { account: String },
    #[error("the token store failed for account {account}: {reason}")]
    Store { account: String, reason: String },
    #[error("the {field} for SASL contains a control character or comma")]
    InvalidSaslField { field: &'static str },
}

/// What to show the user so they approve the device (RFC 8628 §3.3).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
    /// When it was issued, by the client's clock.
    issued_at: Instant,
}

#[derive(Debug)]
struct Cached {
    access_token: Secret,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    /// A rotated refresh token, kept here too in case storing it failed.
    refresh_token: Option<Secret>,
}

/// Access tokens for one account.
#[derive(Debug)]
pub struct OAuth2Client {
    config: ClientConfig,
    http: reqwest::Client,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    refresh_margin: Duration,
    state: tokio::sync::Mutex<State>,
}

/// An HTTP client for token endpoints: rustls (ring) with the system's
/// roots, 10 s to connect, 30 s per request, no redirects (a redirect
/// would resend the refresh token elsewhere).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The token endpoint's answer, success or error (RFC 6749 §5.1, §5.2).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The device authorization answer (RFC 8628 §3.2; Google says
/// `verification_url`).
#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

impl OAuth2Client {
    /// A client with real time; endpoints are checked here (https, or
    /// http on loopback).
    pub fn new(
        config: ClientConfig,
        store: Arc<dyn TokenStore>,
        http: reqwest::Client,
    ) -> Result<OAuth2Client, OAuthError> {
        check_endpoint(&config.provider.token_endpoint)?;
        if let Some(endpoint) = &config.provider.device_authorization_endpoint {
            check_endpoint(endpoint)?;
        }
        Ok(OAuth2Client {
            config,
            http,
            store,
            clock: Arc::new(SystemClock),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> OAuth2Client {
        self.clock = clock;
        self
    }

    pub fn with_refresh_margin(mut self, margin: Duration) -> OAuth2Client {
        self.refresh_margin = margin;
        self
    }

    pub fn account(&self) -> &str {
        &self.config.account
    }

    /// A valid access token: the cached one while it has more than the
    /// margin left, else a new one from the refresh token.
    pub async fn access_token(&self) -> Result<Secret, OAuthError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.cached
            && self.clock.now() + self.refresh_margin < cached.expires_at
        {
            return Ok(cached.access_token.clone());
        }
        self.refresh_locked(&mut state).await
    }

    /// Forgets `rejected` (the token a mail server refused), so that the
    /// next [`access_token`](Self::access_token) refreshes. A token already
    /// replaced by another caller is left alone.
    pub async fn invalidate(&self, rejected: &Secret) {
        let mut state = self.state.lock().await;
        if state
            .cached
            .as_ref()
            .is_some_and(|cached| &cached.access_token == rejected)
        {
            state.cached = None;
        }
    }

    async fn refresh_locked(&self, state: &mut State) -> Result<Secret, OAuthError> {
        let account = &self.config.account;
        let refresh_token = match &state.refresh_token {
            Some(token) => token.clone(),
            None => self
                .store
                .load(account)
                .await
                .map_err(|error| self.store_error(error))?
                .ok_or_else(|| OAuthError::NotAuthorized {
                    account: account.clone(),
                })?,
        };
        // The serializer is not Send: it must not live across the await.
        let body = {
            let mut form = self.form("refresh_token");
            form.append_pair("refresh_token", refresh_token.expose());
            if !self.config.provider.scopes.is_empty() {
                form.append_pair("scope", &self.config.provider.scopes.join(" "));
            }
            form.finish()
        };
        let answer = self
            .post(&self.config.provider.token_endpoint, body)
            .await?;
        let (status, answer) = answer;
        if let Some(code) = answer.error {
            state.cached = None;
            let error = self.refusal(code, answer.error_description, true);
            if matches!(error, OAuthError::Revoked { .. }) {
                // Read the store again next time: `authorize` may have put a new one there.
                state.refresh_token = None;
            }
            return Err(error);
        }
        let Some(access_token) = answer.access_token.filter(|token| !token.is_empty()) else {
            return Err(OAuthError::BadAnswer {
                endpoint: self.config.provider.token_endpoint.clone(),
                status,
            });
        };
        let access_token = Secret::new(access_token);
        state.cached = Some(Cached {
            access_token: access_token.clone(),
            expires_at: self.expiry(answer.expires_in),
        });
        if let Some(rotated) = answer
            .refresh_token
            .filter(|token| !token.is_empty() && *token != *refresh_token.expose())
        {
            let rotated = Secret::new(rotated);
            state.refresh_token = Some(rotated.clone());
            self.store
                .store(account, &rotated)
                .await
                .map_err(|error| self.store_error(error))?;
        }
        Ok(access_token)
    }

    /// Step one of `authorize`: asks for a device code (RFC 8628 §3.1).
    pub async fn start_device_authorization(&self) -> Result<DeviceAuthorization, OAuthError> {
        let account = &self.config.account;
        let endpoint = self
            .config
            .provider
            .device_authorization_endpoint
            .as_ref()
            .ok_or_else(|| OAuthError::NoDeviceEndpoint {
                account: account.clone(),
            })?;
        let request = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("client_id", &self.config.client_id);
            if !self.config.provider.scopes.is_empty() {
                form.append_pair("scope", &self.config.provider.scopes.join(" "));
            }
            form.finish()
        };
        let (status, body) = self.post_raw(endpoint, request).await?;
        let bad_answer = || OAuthError::BadAnswer {
            endpoint: endpoint.clone(),
            status,
        };
        if status != 200 {
            let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| bad_answer())?;
            let code = answer.error.ok_or_else(bad_answer)?;
            return Err(self.refusal(code, answer.error_description, false));
        }
        let answer: DeviceAnswer = serde_json::from_slice(&body).map_err(|_| bad_answer())?;
        Ok(DeviceAuthorization {
            device_code: Secret::new(answer.device_code),
            user_code: answer.user_code,
            verification_uri: answer.verification_uri,
            verification_uri_complete: answer.verification_uri_complete,
            expires_in: Duration::from_secs(answer.expires_in),
            interval: answer
                .interval
                .map_or(DEFAULT_POLL_INTERVAL, Duration::from_secs),
            issued_at: self.clock.now(),
        })
    }

    /// Step two of `authorize`: polls the token endpoint every `interval`
    /// (longer after `slow_down`) until the user approves, declines or the
    /// code expires (RFC 8628 §3.4, §3.5); stores the refresh token and
    /// caches the access token.
    pub async fn finish_device_authorization(
        &self,
        device: &DeviceAuthorization,
    ) -> Result<(), OAuthError> {
        let account = &self.config.account;
        let deadline = device.issued_at + device.expires_in;
        let mut interval = device.interval;
        loop {
            if self.clock.now() + interval > deadline {
                return Err(OAuthError::DeviceCodeExpired {
                    account: account.clone(),
                });
            }
            self.clock.sleep(interval).await;
            let body = {
                let mut form = self.form("urn:ietf:params:oauth:grant-type:device_code");
                form.append_pair("device_code", device.device_code.expose());
                form.finish()
            };
            let (status, answer) = self
                .post(&self.config.provider.token_endpoint, body)
                .await?;
            match answer.error.as_deref() {
                Some("authorization_pending") => continue,
                Some("slow_down") => {
                    interval += SLOW_DOWN_STEP;
                    continue;
                }
                Some("expired_token") => {
                    return Err(OAuthError::DeviceCodeExpired {
                        account: account.clone(),
                    });
                }
                Some("access_denied") => {
                    return Err(OAuthError::AccessDenied {
                        account: account.clone(),
                    });
                }
                Some(_) => {
                    let code = answer.error.unwrap_or_default();
                    return Err(self.refusal(code, answer.error_description, false));
                }
                None => {}
            }
            let Some(access_token) = answer.access_token.filter(|token| !token.is_empty()) else {
                return Err(OAuthError::BadAnswer {
                    endpoint: self.config.provider.token_endpoint.clone(),
                    status,
                });
            };
            let refresh_token = answer
                .refresh_token
                .filter(|token| !token.is_empty())
                .map(Secret::new)
                .ok_or_else(|| OAuthError::NoRefreshToken {
                    account: account.clone(),
                })?;
            let mut state = self.state.lock().await;
            self.store
                .store(account, &refresh_token)
                .await
                .map_err(|error| self.store_error(error))?;
            state.refresh_token = Some(refresh_token);
            state.cached = Some(Cached {
                access_token: Secret::new(access_token),
                expires_at: self.expiry(answer.expires_in),
            });
            return Ok(());
        }
    }

    fn expiry(&self, expires_in: Option<u64>) -> Instant {
        let lifetime = expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
        self.clock.now() + lifetime
    }

    fn form(&self, grant_type: &str) -> form_urlencoded::Serializer<'static, String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", grant_type);
        form.append_pair("client_id", &self.config.client_id);
        if let Some(secret) = &self.config.client_secret {
            form.append_pair("client_secret", secret.expose());
        }
        form
    }

    fn store_error(&self, error: StoreError) -> OAuthError {
        OAuthError::Store {
            account: self.config.account.clone(),
            reason: error.0,
        }
    }

    fn refusal(&self, code: String, description: Option<String>, refreshing: bool) -> OAuthError {
        let account = self.config.account.clone();
        let code = bounded(&code, 64);
        match code.as_str() {
            "invalid_grant" if refreshing => OAuthError::Revoked { account, code },
            "invalid_client" | "unauthorized_client" => OAuthError::InvalidClient { account },
            _ => OAuthError::Refused {
                account,
                code,
                description: description.map(|d| bounded(&d, MAX_DESCRIPTION_CHARS)),
            },
        }
    }

    /// POSTs a form and reads an RFC 6749 §5 answer (JSON on success and on error).
    async fn post(&self, endpoint: &str, form: String) -> Result<(u16, TokenAnswer), OAuthError> {
        let (status, body) = self.post_raw(endpoint, form).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| OAuthError::BadAnswer {
                endpoint: endpoint.to_owned(),
                status,
            })?;
        if status != 200 && answer.error.is_none() {
            return Err(OAuthError::BadAnswer {
                endpoint: endpoint.to_owned(),
                status,
            });
        }
        Ok((status, answer))
    }

    async fn post_raw(&self, endpoint: &str, form: String) -> Result<(u16, Vec<u8>), OAuthError> {
        let unreachable = |error: reqwest::Error| OAuthError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason: if error.is_timeout() {
                "timed out".to_owned()
            } else if error.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            },
        };
        let mut response = self
            .http
            .post(endpoint)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(OAuthError::BadAnswer {
                    endpoint: endpoint.to_owned(),
                    status,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), OAuthError> {
    let insecure = || OAuthError::InsecureEndpoint {
        endpoint: bounded(endpoint, 200),
    };
    let url = reqwest::Url::parse(endpoint).map_err(|_| insecure())?;
    let host = url.host_str().unwrap_or("");
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(insecure()),
    }
}

fn bounded(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn check_sasl_field(value: &str, field: &'static str) -> Result<(), OAuthError> {
    if value.is_empty() || value.chars().any(|c| c.is_control()) {
        return Err(OAuthError::InvalidSaslField { field });
    }
    Ok(())
}

/// The XOAUTH2 initial response (Google's and Microsoft's SASL mechanism):
/// `user=USER\x01auth=Bearer TOKEN\x01\x01`, before base64.
pub fn xoauth2_initial_response(user: &str, access_token: &Secret) -> Result<Secret, OAuthError> {
    check_sasl_field(user, "user")?;
    check_sasl_field(access_token.expose(), "token")?;
    Ok(Secret::new(format!(
        "user={user}\x01auth=Bearer {}\x01\x01",
        access_token.expose()
    )))
}

/// The OAUTHBEARER initial response (RFC 7628 §3.1):
/// `n,a=USER,\x01host=HOST\x01port=PORT\x01auth=Bearer TOKEN\x01\x01`,
/// before base64; `,` and `=` in the user are escaped as RFC 5801 says.
pub fn oauthbearer_initial_response(
    user: &str,
    host: &str,
    port: u16,
    access_token: &Secret,
) -> Result<Secret, OAuthError> {
    check_sasl_field(user, "user")?;
    check_sasl_field(host, "host")?;
    check_sasl_field(access_token.expose(), "token")?;
    let user = user.replace('=', "=3D").replace(',', "=2C");
    Ok(Secret::new(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
        access_token.expose()
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, StatusCode};

    use super::*;

    const CLIENT_ID: &str = "client-1";
    const CLIENT_SECRET: &str = "client-secret-1";

    /// What the local provider does; the test changes it between calls.
    #[derive(Debug, Default)]
    struct ProviderState {
        valid_refresh_tokens: HashSet<String>,
        rotate: bool,
        expires_in: Option<u64>,
        issued: u32,
        /// Every request's form fields, in order, with the path.
        requests: Vec<(String, HashMap<String, String>)>,
        /// Answers to device-code polls before success ("ok").
        device_script: VecDeque<&'static str>,
        device_interval: Option<u64>,
        device_expires_in: u64,
        device_gives_refresh_token: bool,
    }

    type Shared = Arc<Mutex<ProviderState>>;

    fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json;charset=UTF-8")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    fn error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
        json(
            status,
            serde_json::json!({"error": code, "error_description": format!("{code} from the test provider")}),
        )
    }

    /// A token endpoint (RFC 6749 §6, §5.1, §5.2) and a device
    /// authorization endpoint (RFC 8628 §3.1, §3.4, §3.5).
    async fn handle(
        state: Shared,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = request.uri().path().to_owned();
        let form_encoded = request.headers().get("content-type").is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
        let post = request.method() == hyper::Method::POST;
        let body = request.into_body().collect().await.unwrap().to_bytes();
        if path == "/broken" {
            return Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::from("<html>bad gateway</html>")))
                .unwrap());
        }
        if !post || !form_encoded {
            return Ok(error(StatusCode::BAD_REQUEST, "invalid_request"));
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let mut state = state.lock().unwrap();
        state.requests.push((path.clone(), form.clone()));
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("client_id") != Some(CLIENT_ID) {
            return Ok(error(StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        if path == "/device" {
            let mut answer = serde_json::json!({
                "device_code": "device-code-1",
                "user_code": "WDJB-MJHT",
                "verification_url": "https://provider.test/device",
                "expires_in": state.device_expires_in,
            });
            if let Some(interval) = state.device_interval {
                answer["interval"] = interval.into();
            }
            return Ok(json(StatusCode::OK, answer));
        }
        if field("client_secret") != Some(CLIENT_SECRET) {
            return Ok(error(StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        match field("grant_type") {
            Some("refresh_token") => {
                let token = field("refresh_token").unwrap_or("");
                if !state.valid_refresh_tokens.contains(token) {
                    return Ok(error(StatusCode::BAD_REQUEST, "invalid_grant"));
                }
                state.issued += 1;
                let mut answer = serde_json::json!({
                    "access_token": format!("access-{}", state.issued),
                    "token_type": "Bearer",
                });
                if let Some(expires_in) = state.expires_in {
                    answer["expires_in"] = expires_in.into();
                }
                if state.rotate {
                    let rotated = format!("refresh-{}", state.issued);
                    state.valid_refresh_tokens.remove(token);
                    state.valid_refresh_tokens.insert(rotated.clone());
                    answer["refresh_token"] = rotated.into();
                }
                Ok(json(StatusCode::OK, answer))
            }
            Some("urn:ietf:params:oauth:grant-type:device_code") => {
                if field("device_code") != Some("device-code-1") {
                    return Ok(error(StatusCode::BAD_REQUEST, "invalid_grant"));
                }
                match state.device_script.pop_front().unwrap_or("ok") {
                    "ok" => {
                        state.issued += 1;
                        let mut answer = serde_json::json!({
                            "access_token": format!("access-{}", state.issued),
                            "token_type": "Bearer",
                            "expires_in": 3600,
                        });
                        if state.device_gives_refresh_token {
                            state.valid_refresh_tokens.insert("refresh-device".into());
                            answer["refresh_token"] = "refresh-device".into();
                        }
                        Ok(json(StatusCode::OK, answer))
                    }
                    code => Ok(error(StatusCode::BAD_REQUEST, code)),
                }
            }
            _ => Ok(error(StatusCode::BAD_REQUEST, "unsupported_grant_type")),
        }
    }

    async fn start_provider(state: Shared) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| handle(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        address
    }

    #[derive(Debug)]
    struct TestClock {
        start: Instant,
        elapsed: Mutex<Duration>,
        sleeps: Mutex<Vec<Duration>>,
    }

    impl TestClock {
        fn new() -> Arc<TestClock> {
            Arc::new(TestClock {
                start: Instant::now(),
                elapsed: Mutex::new(Duration::ZERO),
                sleeps: Mutex::new(Vec::new()),
            })
        }

        fn advance(&self, by: Duration) {
            *self.elapsed.lock().unwrap() += by;
        }

        fn sleeps(&self) -> Vec<u64> {
            self.sleeps
                .lock()
                .unwrap()
                .iter()
                .map(Duration::as_secs)
                .collect()
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            self.start + *self.elapsed.lock().unwrap()
        }

        /// Sleeping moves the clock at once.
        fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
            self.sleeps.lock().unwrap().push(duration);
            self.advance(duration);
            Box::pin(std::future::ready(()))
        }
    }

    #[derive(Debug, Default)]
    struct MemoryStore {
        tokens: Mutex<HashMap<String, Secret>>,
        fail_stores: AtomicBool,
    }

    impl MemoryStore {
        fn get(&self, account: &str) -> Option<String> {
            self.tokens
                .lock()
                .unwrap()
                .get(account)
                .map(|token| token.expose().to_owned())
        }
    }

    impl TokenStore for MemoryStore {
        fn load<'a>(
            &'a self,
            account: &'a str,
        ) -> BoxFuture<'a, Result<Option<Secret>, StoreError>> {
            Box::pin(async move { Ok(self.tokens.lock().unwrap().get(account).cloned()) })
        }

        fn store<'a>(
            &'a self,
            account: &'a str,
            refresh_token: &'a Secret,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                if self.fail_stores.load(Ordering::SeqCst) {
                    return Err(StoreError("the keyring is locked".into()));
                }
                self.tokens
                    .lock()
                    .unwrap()
                    .insert(account.to_owned(), refresh_token.clone());
                Ok(())
            })
        }
    }

    struct Fixture {
        provider: Shared,
        store: Arc<MemoryStore>,
        clock: Arc<TestClock>,
        client: OAuth2Client,
    }

    async fn fixture(refresh_token: Option<&str>) -> Fixture {
        let provider: Shared = Arc::new(Mutex::new(ProviderState {
            expires_in: Some(3600),
            device_expires_in: 1800,
            device_gives_refresh_token: true,
            ..ProviderState::default()
        }));
        let address = start_provider(provider.clone()).await;
        let store = Arc::new(MemoryStore::default());
        if let Some(token) = refresh_token {
            provider
                .lock()
                .unwrap()
                .valid_refresh_tokens
                .insert(token.to_owned());
            store
                .tokens
                .lock()
                .unwrap()
                .insert("work".into(), Secret::new(token));
        }
        let clock = TestClock::new();
        let config = ClientConfig {
            account: "work".into(),
            provider: Provider::custom(
                &format!("http://{address}/token"),
                Some(&format!("http://{address}/device")),
                &[
                    "offline_access",
                    "https://outlook.office.com/IMAP.AccessAsUser.All",
                ],
            ),
            client_id: CLIENT_ID.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
        };
        let client = OAuth2Client::new(config, store.clone(), http_client().unwrap())
            .unwrap()
            .with_clock(clock.clone());
        Fixture {
            provider,
            store,
            clock,
            client,
        }
    }

    fn token_requests(provider: &Shared) -> Vec<HashMap<String, String>> {
        let state = provider.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|(path, _)| path == "/token")
            .map(|(_, form)| form.clone())
            .collect()
    }

    #[tokio::test]
    async fn refreshes_per_rfc6749_and_caches_until_the_margin() {
        let f = fixture(Some("refresh-0")).await;
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-1");
        let requests = token_requests(&f.provider);
        assert_eq!(requests.len(), 1);
        let expected: HashMap<String, String> = [
            ("grant_type", "refresh_token"),
            ("refresh_token", "refresh-0"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            (
                "scope",
                "offline_access https://outlook.office.com/IMAP.AccessAsUser.All",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(requests[0], expected);

        // Cached while more than the margin (120 s) is left of its hour.
        f.clock.advance(Duration::from_secs(3400));
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-1");
        assert_eq!(token_requests(&f.provider).len(), 1);
        // Then replaced before it expires, without the caller noticing.
        f.clock.advance(Duration::from_secs(100));
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-2");
        assert_eq!(token_requests(&f.provider).len(), 2);
        // No expires_in: an hour is assumed.
        f.provider.lock().unwrap().expires_in = None;
        f.clock.advance(Duration::from_secs(4000));
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-3");
        f.clock.advance(Duration::from_secs(3000));
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-3");
    }

    #[tokio::test]
    async fn a_rejected_token_is_refreshed_once_on_demand() {
        let f = fixture(Some("refresh-0")).await;
        let first = f.client.access_token().await.unwrap();
        f.client.invalidate(&first).await;
        let second = f.client.access_token().await.unwrap();
        assert_eq!(second.expose(), "access-2");
        // A stale rejection (another session already replaced it) changes nothing.
        f.client.invalidate(&first).await;
        assert_eq!(f.client.access_token().await.unwrap(), second);
        assert_eq!(token_requests(&f.provider).len(), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let f = fixture(Some("refresh-0")).await;
        let (a, b, c) = tokio::join!(
            f.client.access_token(),
            f.client.access_token(),
            f.client.access_token()
        );
        assert_eq!(
            [a.unwrap(), b.unwrap(), c.unwrap()].map(|t| t.expose().to_owned()),
            ["access-1"; 3]
        );
        assert_eq!(token_requests(&f.provider).len(), 1);
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_is_stored_and_used_next() {
        let f = fixture(Some("refresh-0")).await;
        f.provider.lock().unwrap().rotate = true;
        let first = f.client.access_token().await.unwrap();
        assert_eq!(f.store.get("work").as_deref(), Some("refresh-1"));
        f.client.invalidate(&first).await;
        f.client.access_token().await.unwrap();
        let requests = token_requests(&f.provider);
        assert_eq!(requests[1]["refresh_token"], "refresh-1");
        assert_eq!(f.store.get("work").as_deref(), Some("refresh-2"));

        // A new client (the server restarted) reads the rotated one from the store.
        let config = f.client.config.clone();
        let restarted = OAuth2Client::new(config, f.store.clone(), http_client().unwrap()).unwrap();
        assert_eq!(restarted.access_token().await.unwrap().expose(), "access-3");
        assert_eq!(token_requests(&f.provider)[2]["refresh_token"], "refresh-2");
    }

    #[tokio::test]
    async fn a_rotation_that_cannot_be_stored_is_reported_and_kept_in_memory() {
        let f = fixture(Some("refresh-0")).await;
        f.provider.lock().unwrap().rotate = true;
        f.store.fail_stores.store(true, Ordering::SeqCst);
        let error = f.client.access_token().await.unwrap_err();
        assert_eq!(
            error,
            OAuthError::Store {
                account: "work".into(),
                reason: "the keyring is locked".into()
            }
        );
        // The access token was cached and the rotated refresh token is used next.
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-1");
        f.clock.advance(Duration::from_secs(3600));
        f.store.fail_stores.store(false, Ordering::SeqCst);
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-2");
        assert_eq!(token_requests(&f.provider)[1]["refresh_token"], "refresh-1");
        assert_eq!(f.store.get("work").as_deref(), Some("refresh-2"));
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_says_to_run_authorize() {
        let f = fixture(Some("refresh-0")).await;
        f.provider.lock().unwrap().valid_refresh_tokens.clear();
        let error = f.client.access_token().await.unwrap_err();
        assert_eq!(
            error,
            OAuthError::Revoked {
                account: "work".into(),
                code: "invalid_grant".into()
            }
        );
        assert!(
            error
                .to_string()
                .contains("run `llmbasedos-mail authorize work`"),
            "{error}"
        );

        let none = fixture(None).await;
        let error = none.client.access_token().await.unwrap_err();
        assert_eq!(
            error,
            OAuthError::NotAuthorized {
                account: "work".into()
            }
        );
        assert!(error.to_string().contains("llmbasedos-mail authorize work"));
        assert!(token_requests(&none.provider).is_empty());
    }

    #[tokio::test]
    async fn refusals_and_faults_are_typed() {
        let f = fixture(Some("refresh-0")).await;
        let mut config = f.client.config.clone();
        config.client_secret = Some(Secret::new("wrong"));
        let wrong_secret =
            OAuth2Client::new(config.clone(), f.store.clone(), http_client().unwrap()).unwrap();
        assert_eq!(
            wrong_secret.access_token().await.unwrap_err(),
            OAuthError::InvalidClient {
                account: "work".into()
            }
        );

        let broken_endpoint = config.provider.token_endpoint.replace("/token", "/broken");
        config.provider.token_endpoint = broken_endpoint.clone();
        let broken =
            OAuth2Client::new(config.clone(), f.store.clone(), http_client().unwrap()).unwrap();
        assert_eq!(
            broken.access_token().await.unwrap_err(),
            OAuthError::BadAnswer {
                endpoint: broken_endpoint,
                status: 502
            }
        );

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/token", closed.local_addr().unwrap());
        drop(closed);
        config.provider.token_endpoint = endpoint.clone();
        let down = OAuth2Client::new(config, f.store.clone(), http_client().unwrap()).unwrap();
        assert_eq!(
            down.access_token().await.unwrap_err(),
            OAuthError::Unreachable {
                endpoint,
                reason: "connection failed".into()
            }
        );
    }

    #[tokio::test]
    async fn endpoints_must_be_https_off_loopback() {
        let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::default());
        let table = [
            ("https://oauth2.googleapis.com/token", true),
            ("http://127.0.0.1:8080/token", true),
            ("http://[::1]:8080/token", true),
            ("http://localhost/token", true),
            ("http://provider.example/token", false),
            ("ftp://provider.example/token", false),
            ("not a url", false),
        ];
        for (endpoint, accepted) in table {
            let config = ClientConfig {
                account: "a".into(),
                provider: Provider::custom(endpoint, None, &[]),
                client_id: "c".into(),
                client_secret: None,
            };
            let result = OAuth2Client::new(config, store.clone(), http_client().unwrap());
            assert_eq!(result.is_ok(), accepted, "{endpoint}");
        }
    }

    #[tokio::test]
    async fn the_device_grant_polls_as_rfc8628_says() {
        let f = fixture(None).await;
        {
            let mut provider = f.provider.lock().unwrap();
            provider.device_interval = Some(5);
            provider.device_script = [
                "authorization_pending",
                "slow_down",
                "authorization_pending",
            ]
            .into_iter()
            .collect();
        }
        let device = f.client.start_device_authorization().await.unwrap();
        assert_eq!(device.user_code, "WDJB-MJHT");
        assert_eq!(device.verification_uri, "https://provider.test/device");
        assert_eq!(device.interval, Duration::from_secs(5));
        f.client.finish_device_authorization(&device).await.unwrap();
        // Five seconds between polls, ten after slow_down.
        assert_eq!(f.clock.sleeps(), [5, 5, 10, 10]);
        assert_eq!(f.store.get("work").as_deref(), Some("refresh-device"));
        assert_eq!(f.client.access_token().await.unwrap().expose(), "access-1");

        let state = f.provider.lock().unwrap();
        let (path, device_request) = &state.requests[0];
        assert_eq!(path, "/device");
        assert_eq!(
            device_request["scope"],
            "offline_access https://outlook.office.com/IMAP.AccessAsUser.All"
        );
        assert!(!device_request.contains_key("client_secret"));
        let poll = &state.requests[1].1;
        assert_eq!(
            poll["grant_type"],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert_eq!(poll["device_code"], "device-code-1");
        assert_eq!(state.requests.len(), 5);
    }

    #[tokio::test]
    async fn the_device_grant_ends_on_denial_expiry_and_missing_refresh_tokens() {
        let cases: [(&[&'static str], u64, bool, OAuthError); 4] = [
            (
                &["access_denied"],
                1800,
                true,
                OAuthError::AccessDenied {
                    account: "work".into(),
                },
            ),
            (
                &["expired_token"],
                1800,
                true,
                OAuthError::DeviceCodeExpired {
                    account: "work".into(),
                },
            ),
            // Never approved: the client stops at the code's expiry by itself.
            (
                &["authorization_pending"; 100],
                22,
                true,
                OAuthError::DeviceCodeExpired {
                    account: "work".into(),
                },
            ),
            (
                &[],
                1800,
                false,
                OAuthError::NoRefreshToken {
                    account: "work".into(),
                },
            ),
        ];
        for (script, expires_in, gives_refresh, expected) in cases {
            let f = fixture(None).await;
            {
                let mut provider = f.provider.lock().unwrap();
                provider.device_script = script.iter().copied().collect();
                provider.device_expires_in = expires_in;
                provider.device_gives_refresh_token = gives_refresh;
            }
            let device = f.client.start_device_authorization().await.unwrap();
            // No interval in the answer: RFC 8628's five seconds.
            assert_eq!(device.interval, DEFAULT_POLL_INTERVAL);
            assert_eq!(
                f.client.finish_device_authorization(&device).await,
                Err(expected.clone())
            );
            if expires_in == 22 {
                assert_eq!(f.clock.sleeps(), [5, 5, 5, 5]);
            }
            assert_eq!(f.store.get("work"), None);
        }
    }

    #[test]
    fn presets() {
        let google = Provider::google();
        assert_eq!(google.scopes, ["https://mail.google.com/"]);
        assert_eq!(google.token_endpoint, "https://oauth2.googleapis.com/token");
        let microsoft = Provider::microsoft("common");
        assert_eq!(
            microsoft.token_endpoint,
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(
            microsoft.device_authorization_endpoint.as_deref(),
            Some("https://login.microsoftonline.com/common/oauth2/v2.0/devicecode")
        );
        assert!(microsoft.scopes.iter().any(|s| s == "offline_access"));
        assert!(
            microsoft
                .scopes
                .iter()
                .any(|s| s == "https://outlook.office.com/SMTP.Send")
        );
    }

    #[test]
    fn sasl_initial_responses() {
        let token = Secret::new("ya29.token");
        assert_eq!(
            xoauth2_initial_response("ann@example.org", &token)
                .unwrap()
                .expose(),
            "user=ann@example.org\x01auth=Bearer ya29.token\x01\x01"
        );
        assert_eq!(
            oauthbearer_initial_response("ann@example.org", "imap.example.org", 993, &token)
                .unwrap()
                .expose(),
            "n,a=ann@example.org,\x01host=imap.example.org\x01port=993\x01auth=Bearer ya29.token\x01\x01"
        );
        assert_eq!(
            oauthbearer_initial_response("a,b=c", "h", 143, &token)
                .unwrap()
                .expose(),
            "n,a=a=2Cb=3Dc,\x01host=h\x01port=143\x01auth=Bearer ya29.token\x01\x01"
        );
        for user in ["", "ann\x01@example.org", "ann\r\n"] {
            assert_eq!(
                xoauth2_initial_response(user, &token),
                Err(OAuthError::InvalidSaslField { field: "user" })
            );
        }
        assert_eq!(
            xoauth2_initial_response("a", &Secret::new("t\x01")),
            Err(OAuthError::InvalidSaslField { field: "token" })
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("refresh-very-secret");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        let config = ClientConfig {
            account: "a".into(),
            provider: Provider::google(),
            client_id: "c".into(),
            client_secret: Some(Secret::new("client-very-secret")),
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        let device = DeviceAuthorization {
            device_code: Secret::new("device-very-secret"),
            user_code: "U".into(),
            verification_uri: "https://x".into(),
            verification_uri_complete: None,
            expires_in: Duration::ZERO,
            interval: Duration::ZERO,
            issued_at: Instant::now(),
        };
        assert!(!format!("{device:?}").contains("very-secret"));
    }
}
