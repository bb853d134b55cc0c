//! The console's HTTP side: the router, the security checks every request
//! passes, sign-in, and the idle exit.
//!
//! Every request: its `Host` must be one of the console's own names (DNS
//! rebinding); every response carries the CSP, `Cache-Control: no-store`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//! Every request that is not a GET or HEAD must carry an `Origin` equal
//! to `http://<its Host>`; all of them but `/session` also need a live
//! session cookie and that session's CSRF token in `X-CSRF-Token`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::calls::Calls;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::session::{self, Sessions};
use crate::system::System;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub sessions: Sessions,
    pub gateway: Arc<Gateway>,
    pub calls: Calls,
    pub system: System,
    pub activity: Arc<Activity>,
    /// The Host values accepted.
    pub hosts: Vec<String>,
    /// Cancelled when the console stops: live streams end.
    pub shutdown: CancellationToken,
}

/// When the console was last used, and how many streams are open.
#[derive(Debug)]
pub struct Activity {
    last: std::sync::Mutex<Instant>,
    streams: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            last: std::sync::Mutex::new(Instant::now()),
            streams: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Counts a live stream until the guard is dropped.
    pub fn stream(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }
}

/// A live server-sent event stream (the console does not exit under it).
#[derive(Debug)]
pub struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// The Host values of a console on `port`.
pub fn hosts_for(port: u16, extra: &[String]) -> Vec<String> {
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if port == 80 {
        hosts.extend(["127.0.0.1", "localhost", "[::1]"].map(str::to_owned));
    }
    hosts.extend(extra.iter().cloned());
    hosts
}

/// The console's router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(crate::pages::overview))
        .route("/tools", get(crate::pages::tools))
        .route("/tools/{name}", get(crate::pages::tool))
        .route("/logs", get(crate::pages::logs))
        .route("/licence", get(crate::pages::licence))
        .route("/workflows", get(crate::pages::service_page))
        .route("/sync", get(crate::pages::service_page))
        .route("/semantic", get(crate::pages::service_page))
        .route("/assets/app.js", get(crate::assets::script))
        .route("/assets/app.css", get(crate::assets::style))
        .route("/favicon.ico", get(no_icon))
        .route("/session", post(open_session))
        .route("/logout", post(close_session))
        .route("/api/tools/call", post(crate::pages::call_tool))
        .route("/api/calls/{id}/events", get(crate::pages::call_events))
        .route("/api/calls/{id}/cancel", post(crate::pages::cancel_call))
        .route(
            "/api/calls/{id}/image/{index}",
            get(crate::pages::call_image),
        )
        .route("/api/logs/stream", get(crate::pages::log_stream))
        .route(
            "/api/services/{name}/{action}",
            post(crate::pages::control_service),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Browsers ask for an icon; there is none (and no error for it).
async fn no_icon() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "no such page")
}

/// A short plain-text answer.
pub fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        proto::text::bounded(text, 2000).into_owned(),
    )
        .into_response()
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// The checks of every request (see the module's documentation).
async fn guard(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let mut response = match check(&app, &mut request) {
        Ok(()) => {
            app.activity.touch();
            next.run(request).await
        }
        Err((status, text)) => plain(status, text),
    };
    secure_headers(response.headers_mut());
    response
}

/// `Ok` to go on, else the refusal.
fn check(app: &App, request: &mut Request) -> Result<(), (StatusCode, &'static str)> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !app
        .hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&host))
    {
        return Err((
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to its own address (open the URL `llmbasedos web` prints)",
        ));
    }
    let session = headers
        .get(header::COOKIE)
        .and_then(|cookie| cookie.to_str().ok())
        .and_then(session::cookie_value)
        .and_then(|id| app.sessions.find(id));
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|origin| origin.to_str().ok());
        if origin != Some(format!("http://{host}").as_str()) {
            return Err((
                StatusCode::FORBIDDEN,
                "refused: a request that changes something must come from the console's own pages (Origin)",
            ));
        }
        if request.uri().path() != "/session" {
            let Some(session) = &session else {
                return Err((
                    StatusCode::UNAUTHORIZED,
                    "not signed in: open the one-time URL `llmbasedos web` prints",
                ));
            };
            let presented = headers
                .get(session::CSRF_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            if !session.csrf_matches(presented) {
                return Err((
                    StatusCode::FORBIDDEN,
                    "refused: the request lacks this session's CSRF token; reload the page",
                ));
            }
        }
    } else if session.is_none() && request.uri().path().starts_with("/api/") {
        return Err((
            StatusCode::UNAUTHORIZED,
            "not signed in: open the one-time URL `llmbasedos web` prints",
        ));
    }
    if let Some(session) = session {
        request.extensions_mut().insert(session);
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /session` `{"token": …}`: redeems a one-time token for a session
/// cookie. The token is never logged.
async fn open_session(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let Ok(sign_in) = serde_json::from_slice::<SignIn>(&body) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected {\"token\": \"…\"} from the sign-in page",
        );
    };
    let dir = app.config.bootstrap_dir.clone();
    let redeemed =
        tokio::task::spawn_blocking(move || crate::bootstrap::redeem(&dir, &sign_in.token)).await;
    match redeemed {
        Ok(Ok(())) => {
            let (id, _session) = app.sessions.open();
            tracing::info!("a one-time sign-in link was used; session opened");
            let cookie = format!(
                "{}={id}; HttpOnly; SameSite=Strict; Path=/",
                session::COOKIE
            );
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(Err(error)) => {
            tracing::warn!(kind = ?std::mem::discriminant(&error), "a sign-in link was refused");
            plain(StatusCode::FORBIDDEN, &error.to_string())
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sign-in failed; try again",
        ),
    }
}

async fn close_session(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|cookie| cookie.to_str().ok())
        .and_then(session::cookie_value)
    {
        app.sessions.close(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "llmbasedos_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    response
}

/// Ends the console when it has been idle for `idle` with no stream open.
pub async fn idle_exit(app: Arc<App>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = app.shutdown.cancelled() => return,
        }
        if app.activity.streams.load(Ordering::Acquire) == 0 && app.activity.idle_for() >= idle {
            tracing::info!(
                idle_secs = idle.as_secs(),
                "idle, with no session in use and no stream open; exiting"
            );
            server_kit::notify::status("idle: exiting");
            app.shutdown.cancel();
            return;
        }
    }
}
