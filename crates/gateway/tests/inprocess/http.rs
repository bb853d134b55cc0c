//! The router ([`gateway::transport::http::router`]) over Streamable HTTP,
//! called with `oneshot`: the table again, then what only HTTP has
//! (sessions, the protocol header, framing errors, the guard, event
//! streams, cancellation by a later POST).

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::cases;
use super::support::{
    Era, HttpAnswer, HttpClient, Stack, caps_without_server, http_request, jsonrpc, send,
};

#[tokio::test]
async fn every_case_through_the_router() {
    let stack = Stack::new();
    let router = stack.router();
    let cases = cases::all();
    let mut failures = Vec::new();
    for case in &cases {
        let mut client = HttpClient::open(&router, case.era).await;
        let (status, response) = client.request(case.method, case.params.clone()).await;
        // A JSON-RPC answer, error or not, is a 200.
        let outcome = if status == StatusCode::OK {
            case.check(&response)
        } else {
            Err(format!("HTTP status {status}"))
        };
        if let Err(why) = outcome {
            failures.push(format!(
                "{} [{} {}]: {why}\n  answer: {response}",
                case.name, case.era, case.method
            ));
        }
        client.close().await;
    }
    super::report("router", cases.len(), &failures);
}

/// `initialize` opens a session named by `Mcp-Session-Id`; a session id the
/// gateway does not know is 404, and DELETE ends a session.
#[tokio::test]
async fn sessions_are_opened_used_and_ended() {
    let stack = Stack::new();
    let router = stack.router();
    let client = HttpClient::open(&router, Era::LATEST_LEGACY).await;
    let session = client.session.clone().expect("a session");
    assert_eq!(session.len(), 32, "{session}");
    assert!(
        session.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{session}"
    );
    let other = HttpClient::open(&router, Era::LATEST_LEGACY).await;
    assert_ne!(
        other.session, client.session,
        "each initialize opens its own"
    );

    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let answer = client.post(initialized.to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    assert!(answer.body.is_empty());
    let answer = client.post(jsonrpc(2, "tools/list", None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["result"]["tools"][0]["name"], "test_big");

    let unknown = [("mcp-session-id", "00000000000000000000000000000000")];
    for method in ["POST", "GET", "DELETE"] {
        let answer = send(&router, http_request(method, "/mcp", &unknown, ping())).await;
        expect_refusal(
            &answer,
            StatusCode::NOT_FOUND,
            "unknown or expired session: send initialize again",
        );
    }

    let answer = send(&router, http_request("GET", "/mcp", &[], Body::empty())).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header("allow"), Some("POST, DELETE"));
    let answer = send(&router, http_request("DELETE", "/mcp", &[], Body::empty())).await;
    expect_refusal(&answer, StatusCode::BAD_REQUEST, "no Mcp-Session-Id given");

    let own = [("mcp-session-id", session.as_str())];
    let answer = send(&router, http_request("DELETE", "/mcp", &own, Body::empty())).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    for method in ["POST", "DELETE"] {
        let answer = send(&router, http_request(method, "/mcp", &own, ping())).await;
        expect_refusal(&answer, StatusCode::NOT_FOUND, "send initialize again");
    }
    // The other session is untouched.
    let answer = other.post(jsonrpc(3, "ping", None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["result"], json!({}));
}

fn ping() -> String {
    jsonrpc(1, "ping", None)
}

/// A refusal of the HTTP layer: its status and a JSON-RPC error saying why.
fn expect_refusal(answer: &HttpAnswer, status: StatusCode, says: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let json = answer.json();
    let message = json["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "expected {says:?} in {json}");
}

/// Every revision we speak is accepted in `MCP-Protocol-Version` on a
/// session, whichever it negotiated; any other is 400 on every method.
#[tokio::test]
async fn the_protocol_header_names_a_revision_we_speak() {
    let stack = Stack::new();
    let router = stack.router();
    let client = HttpClient::open(
        &router,
        Era::Legacy(proto::mcp::ProtocolVersion::V2025_06_18),
    )
    .await;
    let session = client.session.clone().expect("a session");
    for version in proto::mcp::SUPPORTED_PROTOCOL_VERSIONS {
        let headers = [
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", version),
        ];
        let answer = send(&router, http_request("POST", "/mcp", &headers, ping())).await;
        assert_eq!(answer.status, StatusCode::OK, "{version}: {answer:?}");
    }
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "1999-01-01"),
    ];
    for method in ["POST", "GET", "DELETE"] {
        let answer = send(&router, http_request(method, "/mcp", &headers, ping())).await;
        expect_refusal(
            &answer,
            StatusCode::BAD_REQUEST,
            "unsupported MCP-Protocol-Version \"1999-01-01\"",
        );
        assert!(
            answer.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26")
        );
    }
    client.close().await;
}

/// Bodies that are not one JSON-RPC message (nor a batch a session may
/// send): 400, with JSON-RPC's code and the request's id when it could be
/// read.
#[tokio::test]
async fn malformed_messages_are_refused_with_their_code() {
    let stack = Stack::new();
    let router = stack.router();
    let cases: [(&str, i32, Value, &str); 8] = [
        ("{not json", -32700, Value::Null, "parse error"),
        ("", -32700, Value::Null, "parse error"),
        ("[]", -32600, Value::Null, "an empty batch"),
        // Batches are MCP 2025-03-26's, and this caller negotiated nothing.
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            -32600,
            Value::Null,
            "JSON-RPC batches belong to MCP 2025-03-26",
        ),
        ("5", -32600, Value::Null, "must be an object"),
        (
            r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#,
            -32600,
            json!(3),
            "\"jsonrpc\" must be \"2.0\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"ping","params":5}"#,
            -32600,
            json!(4),
            "\"params\" must be an object or an array",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            -32600,
            Value::Null,
            "\"id\" must be a string or an integer",
        ),
    ];
    let mut failures = Vec::new();
    for (body, code, id, says) in &cases {
        let answer = send(&router, http_request("POST", "/mcp", &[], *body)).await;
        let json = answer.json();
        let message = json["error"]["message"].as_str().unwrap_or("");
        if answer.status != StatusCode::BAD_REQUEST
            || json["error"]["code"] != *code
            || json["id"] != *id
            || !message.contains(says)
        {
            failures.push(format!("{body:?}: {} {json}", answer.status));
        }
    }
    super::report("router (malformed messages)", cases.len(), &failures);
}

/// The guard: Host and Origin first (a foreign page learns nothing, not
/// even which paths exist), then the path, then the token.
#[tokio::test]
async fn the_guard_refuses_before_anything_is_served() {
    let stack = Stack::new();
    let router = stack.router();
    let wrong_token = "Bearer not-the-token";
    // (what, path, headers added or removed, status, what the error says)
    type Refusal<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
    );
    let cases: [Refusal<'_>; 8] = [
        (
            "no token",
            "/mcp",
            vec![("authorization", "")],
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ),
        (
            "a wrong token",
            "/mcp",
            vec![("authorization", wrong_token)],
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid",
        ),
        (
            "a foreign Origin",
            "/mcp",
            vec![("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
            "Origin",
        ),
        (
            "a foreign Host",
            "/mcp",
            vec![("host", "evil.example")],
            StatusCode::FORBIDDEN,
            "Host",
        ),
        (
            "a rebinding Host with a local port",
            "/mcp",
            vec![("host", "attacker.test:8000")],
            StatusCode::FORBIDDEN,
            "Host",
        ),
        (
            "a foreign page probing paths",
            "/.well-known/oauth-protected-resource",
            vec![("origin", "http://evil.example"), ("authorization", "")],
            StatusCode::FORBIDDEN,
            "Origin",
        ),
        (
            "an unknown path, before the token",
            "/.well-known/oauth-protected-resource",
            vec![("authorization", "")],
            StatusCode::NOT_FOUND,
            "no such path: this gateway serves /mcp and /ws",
        ),
        (
            "an absolute request target",
            "http://127.0.0.1:8000/mcp",
            vec![],
            StatusCode::BAD_REQUEST,
            "must be a path",
        ),
    ];
    let mut failures = Vec::new();
    for (what, path, headers, status, says) in &cases {
        let answer = send(
            &router,
            http_request("POST", path, headers, jsonrpc(1, "tools/list", None)),
        )
        .await;
        let json = answer.json();
        let message = json["error"]["message"].as_str().unwrap_or("");
        let challenge = answer.header("www-authenticate").unwrap_or("");
        let challenged = *status != StatusCode::UNAUTHORIZED
            || challenge.starts_with("Bearer realm=\"llmbasedos\"");
        if answer.status != *status || !message.contains(says) || !challenged {
            failures.push(format!(
                "{what}: {} {json} (www-authenticate: {challenge:?})",
                answer.status
            ));
        }
    }
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1",
        "https://[::1]:8443",
    ] {
        let answer = send(
            &router,
            http_request(
                "POST",
                "/mcp",
                &[("origin", origin)],
                jsonrpc(1, "tools/list", None),
            ),
        )
        .await;
        if answer.status != StatusCode::OK || answer.json()["result"]["tools"].as_array().is_none()
        {
            failures.push(format!("the local Origin {origin}: {answer:?}"));
        }
    }
    super::report("router (guard)", cases.len() + 3, &failures);
}

/// Reads the events of an SSE body, each a JSON-RPC message; keep-alive
/// comments are skipped. Every read is bounded.
struct Events {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl Events {
    fn new(body: Body) -> Events {
        Events {
            body: body.into_data_stream(),
            buffer: String::new(),
        }
    }

    /// The next event's message; `None` when the stream ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("an event is JSON"));
            }
            let chunk = tokio::time::timeout(super::PATIENCE, self.body.next())
                .await
                .expect("the stream sent nothing in time")?
                .expect("read the stream");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

/// A session's GET stream gets `notifications/tools/list_changed` when a
/// caps file comes or goes, and the new list has the new tools.
#[tokio::test]
async fn a_caps_change_is_announced_on_the_session_stream() {
    let stack = Stack::new();
    let router = stack.router();
    let mut client = HttpClient::open(&router, Era::LATEST_LEGACY).await;
    let session = client.session.clone().expect("a session");
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("accept", "text/event-stream"),
    ];
    let stream = router
        .clone()
        .oneshot(http_request("GET", "/mcp", &headers, Body::empty()))
        .await
        .expect("infallible");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("text/event-stream")
    );
    // One stream per session.
    let second = send(
        &router,
        http_request("GET", "/mcp", &headers, Body::empty()),
    )
    .await;
    expect_refusal(
        &second,
        StatusCode::CONFLICT,
        "already has an open notification stream",
    );
    let mut events = Events::new(stream.into_body());

    stack.publish("other", &caps_without_server("other", 1));
    assert!(stack.registry.reload(), "the tool list changed");
    let event = events.next().await.expect("an event");
    assert_eq!(
        event,
        json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" })
    );
    let (_, answer) = client.request("tools/list", None).await;
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"other_m000") && names.contains(&"test_echo"),
        "{names:?}"
    );

    std::fs::remove_file(stack.dir.path().join("other.cap.json")).expect("remove caps");
    assert!(stack.registry.reload(), "the tool list changed back");
    let event = events.next().await.expect("an event");
    assert_eq!(event["method"], "notifications/tools/list_changed");
    let (_, answer) = client.request("tools/list", None).await;
    assert_eq!(
        answer["result"]["tools"].as_array().unwrap().len(),
        cases::TEST_TOOLS.len()
    );
    // A reload that changes nothing announces nothing.
    assert!(!stack.registry.reload());
    client.close().await;
}

/// A POST with a progress token that accepts an event stream gets the
/// progress as events, then the answer, then the stream ends.
#[tokio::test]
async fn progress_comes_as_events_before_the_answer() {
    let stack = Stack::new();
    let router = stack.router();
    for era in [Era::LATEST_LEGACY, Era::Modern] {
        let client = HttpClient::open(&router, era).await;
        let params = era.params(Some(json!({
            "name": "test_progress",
            "arguments": { "steps": 3 },
            "_meta": { "progressToken": "p-1" },
        })));
        let response = router
            .clone()
            .oneshot(http_request(
                "POST",
                "/mcp",
                &client.headers(),
                jsonrpc(7, "tools/call", params),
            ))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK, "{era}");
        let mut events = Events::new(response.into_body());
        let mut seen = Vec::new();
        // Bounded: three progress events and the answer.
        for _ in 0..4 {
            seen.push(events.next().await.expect("an event"));
        }
        for (step, event) in seen[..3].iter().enumerate() {
            assert_eq!(event["method"], "notifications/progress", "{era}: {event}");
            assert_eq!(event["params"]["progressToken"], "p-1", "{era}");
            assert_eq!(
                event["params"]["progress"].as_f64(),
                Some(step as f64 + 1.0),
                "{era}"
            );
        }
        assert_eq!(seen[3]["id"], 7, "{era}: {}", seen[3]);
        assert_eq!(
            seen[3]["result"]["structuredContent"],
            json!({ "steps": 3 }),
            "{era}"
        );
        assert_eq!(
            events.next().await,
            None,
            "{era}: the stream ends after the answer"
        );
        client.close().await;
    }
}

/// The test server's counts of sleeps started and cancelled.
async fn sleeps(router: &Router) -> (u64, u64) {
    let answer = send(
        router,
        http_request("POST", "/mcp", &[], jsonrpc(1, "mcp.test.stats", None)),
    )
    .await;
    let stats = &answer.json()["result"];
    (
        stats["started"].as_u64().expect("started"),
        stats["cancelled"].as_u64().expect("cancelled"),
    )
}

/// `notifications/cancelled` in a later POST of the same session stops a
/// running request on the backend; the cancelled POST gets no JSON-RPC
/// answer. Meanwhile its id is taken: a second request with it is -32600.
#[tokio::test]
async fn a_request_is_cancelled_by_a_later_post_of_its_session() {
    let stack = Stack::new();
    let router = stack.router();
    let client = HttpClient::open(&router, Era::LATEST_LEGACY).await;
    let (started, cancelled) = sleeps(&router).await;
    let slow = tokio::spawn({
        let router = router.clone();
        let request = http_request(
            "POST",
            "/mcp",
            &client.headers(),
            jsonrpc(7, "mcp.test.sleep", Some(json!({ "ms": 60_000 }))),
        );
        async move { send(&router, request).await }
    });
    super::wait_for("the backend to start the sleep", || async {
        sleeps(&router).await.0 > started
    })
    .await;

    let answer = client.post(jsonrpc(7, "ping", None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["error"]["code"], -32600, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request id 7 is already in use"),
        "{json}"
    );

    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 7 } });
    assert_eq!(
        client.post(cancel.to_string()).await.status,
        StatusCode::ACCEPTED
    );
    let answer = tokio::time::timeout(super::PATIENCE, slow)
        .await
        .expect("the cancelled POST ends")
        .expect("the task ran");
    assert!(!answer.status.is_success(), "{answer:?}");
    assert!(answer.body.is_empty(), "no JSON-RPC answer: {answer:?}");
    super::wait_for("the backend to see the cancellation", || async {
        sleeps(&router).await.1 > cancelled
    })
    .await;
    client.close().await;
}

/// Outside a session an HTTP request has nowhere to send updates to:
/// subscribing is refused with what to do.
#[tokio::test]
async fn subscribing_outside_a_session_says_to_initialize() {
    let stack = Stack::new();
    let router = stack.router();
    let mut client = HttpClient::open(&router, Era::Plain).await;
    let (status, answer) = client
        .request(
            "resources/subscribe",
            Some(json!({ "uri": "test://greeting" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("send initialize first"), "{message}");
    // With a session, the same request reaches the service's caps.
    let mut client = HttpClient::open(&router, Era::LATEST_LEGACY).await;
    let (_, answer) = client
        .request(
            "resources/subscribe",
            Some(json!({ "uri": "test://greeting" })),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    client.close().await;
}
