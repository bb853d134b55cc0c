//! The guard in front of every route: `Host` and `Origin` (DNS-rebinding
//! protection), then the path (404 for any other, before any token is asked
//! for), then the bearer token, which becomes the caller's [`Identity`].

use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response as HttpResponse;
use proto::ErrorObject;

use super::{HttpState, Identity, Peer, ROUTES, json_error};

/// A refusal of the guard: logged (rate-limited, with the peer, never a
/// token), answered with the reason, and the connection closed after it,
/// so that a refused client keeps no connection open.
pub(super) fn refuse(
    state: &HttpState,
    request: &HttpRequest,
    status: StatusCode,
    message: String,
) -> HttpResponse {
    let peer = request
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "unknown".to_owned(), |peer| peer.0.to_string());
    state
        .gateway
        .refusals
        .refused("http", &peer, &proto::text::escaped(&message));
    let mut response = json_error(status, None, ErrorObject::invalid_request(message));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

pub(super) const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `host[:port]` → host (keeping IPv6 brackets).
pub(super) fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

pub(super) async fn guard(
    State(state): State<HttpState>,
    mut request: HttpRequest,
    next: Next,
) -> HttpResponse {
    let config = &state.gateway.config;
    // A request target in absolute form names its own host, which the
    // Host check below would not see; only proxies get those.
    if request.uri().authority().is_some() {
        let message = "the request target must be a path (/mcp), not an absolute URL".to_owned();
        return refuse(&state, &request, StatusCode::BAD_REQUEST, message);
    }
    let headers = request.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        let message = "more than one Host header: send exactly one".to_owned();
        return refuse(&state, &request, StatusCode::BAD_REQUEST, message);
    }
    let host = host.and_then(|value| value.to_str().ok()).unwrap_or("");
    let host_allowed = LOOPBACK_HOSTS.contains(&host_without_port(host))
        || config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == host || allowed == host_without_port(host));
    if !host_allowed {
        let message = format!(
            "Host {:?} is not allowed (add it to auth.allowed_hosts to serve it)",
            proto::text::echo(host)
        );
        return refuse(&state, &request, StatusCode::FORBIDDEN, message);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        let loopback = (origin.starts_with("http://") || origin.starts_with("https://"))
            && LOOPBACK_HOSTS.contains(&host_without_port(authority));
        if !loopback
            && !config
                .allowed_origins
                .iter()
                .any(|allowed| allowed == origin)
        {
            let message = format!(
                "Origin {:?} is not allowed (add it to auth.allowed_origins to serve it)",
                proto::text::echo(origin)
            );
            return refuse(&state, &request, StatusCode::FORBIDDEN, message);
        }
    }
    // Only now, past the Host and Origin checks (a foreign page learns
    // nothing), are unknown paths told apart: 404, not 401, so that a host
    // following the MCP authorization specification, which probes
    // `/.well-known/oauth-protected-resource`, finds no OAuth to start.
    if !ROUTES.contains(&request.uri().path()) {
        let message = format!("no such path: this gateway serves {}", ROUTES.join(" and "));
        let mut response = json_error(
            StatusCode::NOT_FOUND,
            None,
            ErrorObject::invalid_request(message),
        );
        // Not admitted: the connection ends, as after a refusal.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let identity = if config.no_auth {
        "local (no auth)".to_owned()
    } else {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match presented.and_then(|token| config.token_holder(token.trim())) {
            Some(holder) => format!("token:{holder}"),
            None => {
                // No `resource_metadata`: the gateway offers no OAuth; the
                // challenge says, as the body does, how to pass the token.
                let (error, message) = match presented {
                    None => ("", "a bearer token is required"),
                    Some(_) => (
                        r#", error="invalid_token""#,
                        "the bearer token is not valid",
                    ),
                };
                let how = format!("send Authorization: Bearer <token>; {}", config.token_hint);
                let challenge = format!(
                    r#"Bearer realm="llmbasedos"{error}, error_description="{}""#,
                    how.replace(['"', '\\'], "'")
                );
                let mut response = refuse(
                    &state,
                    &request,
                    StatusCode::UNAUTHORIZED,
                    format!("{message}: {how}"),
                );
                if let Ok(challenge) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge);
                } else {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Bearer realm="llmbasedos""#),
                    );
                }
                return response;
            }
        }
    };
    request.extensions_mut().insert(Identity(identity));
    next.run(request).await
}
