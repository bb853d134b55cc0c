//! HTTP: Streamable HTTP at `/mcp` (MCP 2025-03-26 to 2025-11-25, and 2026-07-28) and
//! WebSocket at `/ws` (the classic vocabulary's transport, MCP too), behind one guard that checks
//! `Host` and `Origin` (DNS-rebinding protection), then the path (404 for
//! any other, before any token is asked for), then the bearer token.
//!
//! [`serve`] is the accept loop (hyper's HTTP/1 connections, not
//! `axum::serve`, which has neither a header timeout nor a connection
//! cap): a client has `http_header_timeout_secs` to send each request's
//! headers, which also closes idle keep-alive connections and slowloris
//! ones; connections are capped ([`crate::front::Budget`]), and at the cap
//! the oldest connection that has not yet sent a request is closed to make
//! room: a flood of idle connections churns itself out while a client that
//! sends its request at once gets through. When every connection is
//! serving requests, new ones wait in the kernel's backlog. A refused
//! request closes its connection (`Connection: close`), so only admitted
//! clients keep connections past their first request.
//!
//! By concern: `accept` (the loop above), `guard` (Host, Origin, path,
//! token), `sessions` (`Mcp-Session-Id`, the GET stream, DELETE), `post`
//! (POST `/mcp`), `websocket` (`/ws`); this file holds the router and what
//! they share.

mod accept;
mod guard;
mod post;
mod sessions;
mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use proto::{ErrorObject, RequestId, Response};

use crate::dispatch::Gateway;

pub use accept::serve;
use sessions::HttpSession;

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// Who is calling, as the guard established it.
#[derive(Clone, Debug)]
struct Identity(String);

/// The TCP peer of a request (for the logs of refusals).
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

#[derive(Clone)]
struct HttpState {
    gateway: Arc<Gateway>,
    sessions: Arc<Mutex<HashMap<String, Arc<HttpSession>>>>,
}

impl HttpState {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HttpSession>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The paths the gateway serves; the guard answers 404 for any other.
const ROUTES: [&str; 2] = ["/mcp", "/ws"];

/// The HTTP application: `/mcp` and `/ws`, guarded.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let max_message = gateway.config.max_message;
    let state = HttpState {
        gateway,
        sessions: Arc::new(Mutex::new(HashMap::new())),
    };
    Router::new()
        .route(
            "/mcp",
            get(sessions::open_stream)
                .post(post::post_message)
                .delete(sessions::end_session),
        )
        .route("/ws", get(websocket::websocket))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(DefaultBodyLimit::max(max_message))
        .with_state(state)
}

fn json_error(status: StatusCode, id: Option<RequestId>, error: ErrorObject) -> HttpResponse {
    let body = serde_json::to_vec(&Response::error(id, error)).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
