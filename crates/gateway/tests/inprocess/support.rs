//! The fixtures: one real `llmbasedos-test-server` per test binary run,
//! a gateway per test over a caps directory of its own, and clients that
//! speak to the dispatcher directly or to the router with `oneshot`.
//!
//! Why a caps directory per test: a test may add or remove caps files (list
//! changes, a service that is down, many tools for pagination) without the
//! others seeing it. Each directory holds the test server's caps file and a
//! `test.sock` symlink to the one shared server's socket, so the gateway
//! finds the service exactly as it finds a real one.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request as HttpRequest, StatusCode};
use bench_support::ChildProcess;
use gateway::config::{Config, RawAuth, RawConfig, RawLimits, RawToken};
use gateway::dispatch::{Gateway, Session};
use gateway::registry::Registry;
use proto::mcp::ProtocolVersion;
use proto::{Message, Notification, Request, RequestId};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The bearer token the gateway under test accepts.
pub(crate) const TOKEN: &str = "in-process-tests";
/// A Host the guard admits (loopback).
pub(crate) const HOST: &str = "127.0.0.1:8000";
/// The largest body a test reads from the router.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The shared test server: its socket, and its caps as it prints them.
struct TestServer {
    socket: PathBuf,
    caps: String,
}

/// The test server's binary: cargo builds only this package's binaries for
/// its tests, so the test server (another package's) is found next to the
/// gateway's, where a workspace build puts it.
fn test_server_binary() -> PathBuf {
    let gateway = Path::new(env!("CARGO_BIN_EXE_llmbasedos-gateway"));
    let binary = gateway.with_file_name("llmbasedos-test-server");
    assert!(
        binary.is_file(),
        "{} is missing: these tests run the real test server; build it first with \
         `cargo build -p test-server` (or `cargo build --workspace --bins`)",
        binary.display()
    );
    binary
}

/// The shared server's directory (its socket and log), removed at exit.
static SERVER_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_server_dir() {
    if let Some(dir) = SERVER_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts the test server once per test binary run. It is started from a
/// thread that lives as long as the process: the server dies with that
/// thread (`PR_SET_PDEATHSIG`), so with the process, whatever ends it.
fn test_server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let binary = test_server_binary();
        let printed = Command::new(&binary)
            .arg("--print-caps")
            .output()
            .expect("run llmbasedos-test-server --print-caps");
        assert!(printed.status.success(), "--print-caps failed: {printed:?}");
        let caps = String::from_utf8(printed.stdout).expect("caps are UTF-8");
        let dir = tempfile::Builder::new()
            .prefix("gateway-inprocess-")
            .tempdir()
            .expect("a temp dir for the test server")
            .keep();
        SERVER_DIR.set(dir.clone()).expect("set once");
        // SAFETY: registers a function without arguments that only removes
        // a directory; it runs once, when the process exits.
        unsafe { libc::atexit(remove_server_dir) };
        let socket = dir.join("test.sock");
        let (started, ready) = std::sync::mpsc::channel();
        let thread_socket = socket.clone();
        std::thread::Builder::new()
            .name("test-server-owner".to_owned())
            .spawn(move || {
                let mut command = Command::new(&binary);
                command
                    .arg("--socket")
                    .arg(&thread_socket)
                    .arg("--idle-timeout")
                    .arg("0")
                    .env_remove("LLMBASEDOS_LOG")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null());
                let mut child =
                    ChildProcess::spawn("test server", &mut command, dir.join("test.log"));
                child.wait_until("its socket accepts connections", || {
                    UnixStream::connect(&thread_socket).is_ok()
                });
                started.send(()).expect("the test waits for the server");
                // Holding the child keeps it running until the process ends.
                loop {
                    std::thread::park();
                }
            })
            .expect("start the test server's owner thread");
        // The owner thread's panic, printed above, says why (with the log).
        ready.recv().expect("the test server did not start");
        TestServer { socket, caps }
    })
}

/// A gateway over its own caps directory, in which the test service is
/// published.
pub(crate) struct Stack {
    pub(crate) dir: TempDir,
    pub(crate) registry: Arc<Registry>,
    pub(crate) gateway: Arc<Gateway>,
}

impl Stack {
    pub(crate) fn new() -> Stack {
        Stack::with_services(&[])
    }

    /// A stack whose caps directory also holds `extra` (service, caps
    /// text): services without a running server.
    pub(crate) fn with_services(extra: &[(&str, String)]) -> Stack {
        Stack::configured(extra, |_| {})
    }

    /// A stack with `extra` services and its configuration changed by
    /// `configure`.
    pub(crate) fn configured(
        extra: &[(&str, String)],
        configure: impl FnOnce(&mut RawConfig),
    ) -> Stack {
        let server = test_server();
        let dir = tempfile::tempdir().expect("a caps dir");
        std::fs::write(dir.path().join("test.cap.json"), &server.caps).expect("publish caps");
        std::os::unix::fs::symlink(&server.socket, dir.path().join("test.sock"))
            .expect("link the test server's socket");
        for (service, caps) in extra {
            std::fs::write(dir.path().join(format!("{service}.cap.json")), caps)
                .expect("publish extra caps");
        }
        let mut raw = RawConfig {
            caps_dir: Some(dir.path().to_owned()),
            auth: RawAuth {
                tokens: vec![RawToken {
                    name: "tests".to_owned(),
                    sha256: hex::encode(gateway::config::hash_token(TOKEN)),
                    tier: None,
                }],
                ..RawAuth::default()
            },
            limits: RawLimits {
                backend_timeout_secs: Some(10),
                ..RawLimits::default()
            },
            ..RawConfig::default()
        };
        configure(&mut raw);
        let config: Config = raw.resolve("the in-process tests").expect("valid config");
        let config = Arc::new(config);
        let registry = Arc::new(Registry::new(
            &config.caps_dir,
            config.backend_connections,
            config.max_message,
        ));
        // A licence section: its files are read as the binary reads them.
        let licensing = config.licence.as_ref().map(|licence| {
            Arc::new(gateway::licensing::Licensing::load(licence).expect("licensing loads"))
        });
        let gateway = Gateway::licensed(config, registry.clone(), None, licensing);
        Stack {
            dir,
            registry,
            gateway,
        }
    }

    pub(crate) fn router(&self) -> Router {
        gateway::transport::http::router(self.gateway.clone())
    }

    /// Publishes a service's caps as servers do: written aside, renamed in.
    pub(crate) fn publish(&self, service: &str, caps: &str) {
        let temporary = self.dir.path().join(format!("{service}.tmp"));
        std::fs::write(&temporary, caps).expect("write caps");
        std::fs::rename(
            &temporary,
            self.dir.path().join(format!("{service}.cap.json")),
        )
        .expect("rename caps");
    }
}

/// The caps of a service that has no server running: `methods` tools
/// named `<service>_m000` ….
pub(crate) fn caps_without_server(service: &str, methods: usize) -> String {
    let methods: Vec<Value> = (0..methods)
        .map(|index| {
            json!({
                "name": format!("mcp.{service}.m{index:03}"),
                "description": format!("Method {index} of a service that is not running."),
                "params_schema": { "type": "object", "properties": {} },
            })
        })
        .collect();
    json!({
        "service": service,
        "version": "0.1.0",
        "description": "A service whose server is not running.",
        "error_base": -32080,
        "methods": methods,
    })
    .to_string()
}

/// Who a request comes from, and so how it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Era {
    /// No `initialize` and no `_meta`: the classic vocabulary's callers
    /// (and a legacy request outside a session).
    Plain,
    /// `initialize` with this revision first, then requests in its session.
    Legacy(ProtocolVersion),
    /// 2026-07-28: no session, `_meta` on every request.
    Modern,
}

impl Era {
    pub(crate) const LATEST_LEGACY: Era = Era::Legacy(ProtocolVersion::V2025_11_25);
    pub(crate) const OLDEST_LEGACY: Era = Era::Legacy(ProtocolVersion::V2025_03_26);

    /// `params` as this era sends them: a modern request gains its `_meta`.
    pub(crate) fn params(self, params: Option<Value>) -> Option<Value> {
        if self != Era::Modern {
            return params;
        }
        let mut params = params.unwrap_or_else(|| json!({}));
        if let Value::Object(object) = &mut params {
            let meta = object.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(meta) = meta {
                meta.entry(proto::mcp::meta_key::PROTOCOL_VERSION)
                    .or_insert_with(|| json!(ProtocolVersion::LATEST.as_str()));
                meta.entry(proto::mcp::meta_key::CLIENT_CAPABILITIES)
                    .or_insert_with(|| json!({}));
                meta.entry(proto::mcp::meta_key::CLIENT_INFO)
                    .or_insert_with(|| json!({ "name": "in-process", "version": "1" }));
            }
        }
        Some(params)
    }

    /// The `MCP-Protocol-Version` header a host of this era sends over
    /// Streamable HTTP (2025-03-26 defines none).
    fn header(self) -> Option<&'static str> {
        match self {
            Era::Plain | Era::Legacy(ProtocolVersion::V2025_03_26) => None,
            Era::Legacy(version) => Some(version.as_str()),
            Era::Modern => Some(ProtocolVersion::LATEST.as_str()),
        }
    }
}

impl std::fmt::Display for Era {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Era::Plain => f.write_str("plain"),
            Era::Legacy(version) => write!(f, "legacy {version}"),
            Era::Modern => write!(f, "modern {}", ProtocolVersion::LATEST),
        }
    }
}

/// `initialize` params proposing `version`.
pub(crate) fn initialize_params(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": { "name": "in-process", "version": "1" },
    })
}

/// A client of the dispatcher itself ([`Gateway::handle`]), with the
/// receiver of its session's notifications.
pub(crate) struct DispatcherClient {
    gateway: Arc<Gateway>,
    pub(crate) session: Arc<Session>,
    pub(crate) notifications: mpsc::Receiver<Message>,
    era: Era,
    next_id: i64,
}

impl DispatcherClient {
    /// A session of this era (initialized, for a legacy one).
    pub(crate) async fn open(gateway: &Arc<Gateway>, era: Era) -> DispatcherClient {
        DispatcherClient::open_as(gateway, era, "tests").await
    }

    /// A session of the client `identity` (`token:<name>`, `uid:<n>`).
    pub(crate) async fn open_as(
        gateway: &Arc<Gateway>,
        era: Era,
        identity: &str,
    ) -> DispatcherClient {
        let (outgoing, notifications) = mpsc::channel(256);
        let session = gateway.session(identity.to_owned(), outgoing);
        let mut client = DispatcherClient {
            gateway: gateway.clone(),
            session,
            notifications,
            era,
            next_id: 1,
        };
        if let Era::Legacy(version) = era {
            let answer = client
                .send("initialize", Some(initialize_params(version.as_str())))
                .await;
            assert_eq!(
                answer["result"]["protocolVersion"],
                version.as_str(),
                "initialize: {answer}"
            );
        }
        client
    }

    /// Sends a request as its era does; the response as it goes on the wire.
    pub(crate) async fn request(&mut self, method: &str, params: Option<Value>) -> Value {
        let params = self.era.params(params);
        self.send(method, params).await
    }

    async fn send(&mut self, method: &str, params: Option<Value>) -> Value {
        let id = RequestId::Number(self.next_id);
        self.next_id += 1;
        let request = Request {
            id: id.clone(),
            method: method.to_owned(),
            params,
        };
        let response = self
            .gateway
            .handle(&self.session, Message::Request(request))
            .await
            .expect("a request is answered");
        assert_eq!(response.id, Some(id), "the answer names its request");
        serde_json::to_value(&response).expect("a response serializes")
    }

    /// Sends a notification; the dispatcher answers none.
    pub(crate) async fn notify(&self, method: &str, params: Option<Value>) -> Option<Value> {
        let notification = Notification {
            method: method.to_owned(),
            params,
        };
        self.gateway
            .handle(&self.session, Message::Notification(notification))
            .await
            .map(|response| serde_json::to_value(&response).expect("serializes"))
    }

    /// The notifications queued so far, as JSON.
    pub(crate) fn queued(&mut self) -> Vec<Value> {
        let mut queued = Vec::new();
        while let Ok(message) = self.notifications.try_recv() {
            queued.push(serde_json::from_slice(&message.to_vec()).expect("JSON"));
        }
        queued
    }
}

/// What the router answered.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl HttpAnswer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "the body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// An HTTP request as a local host sends it: loopback Host, the token,
/// JSON accepted and an event stream too. `headers` adds or replaces
/// (an empty value removes the header).
pub(crate) fn http_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> HttpRequest<Body> {
    let authorization = format!("Bearer {TOKEN}");
    let mut all: Vec<(&str, &str)> = vec![
        ("host", HOST),
        ("authorization", &authorization),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    for (name, value) in headers {
        all.retain(|(known, _)| !known.eq_ignore_ascii_case(name));
        if !value.is_empty() {
            all.push((name, value));
        }
    }
    let mut builder = HttpRequest::builder().method(method).uri(path);
    for (name, value) in all {
        builder = builder.header(name, value);
    }
    builder.body(body.into()).expect("a valid HTTP request")
}

/// Sends one request through the router and reads the whole answer.
pub(crate) async fn send(router: &Router, request: HttpRequest<Body>) -> HttpAnswer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .expect("read the body")
        .to_vec();
    HttpAnswer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A JSON-RPC request's text.
pub(crate) fn jsonrpc(id: i64, method: &str, params: Option<Value>) -> String {
    let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
    if let Some(params) = params {
        message["params"] = params;
    }
    message.to_string()
}

/// A client of the router over Streamable HTTP: for a legacy era, a session
/// (ended with DELETE when the client is closed).
pub(crate) struct HttpClient {
    router: Router,
    era: Era,
    pub(crate) session: Option<String>,
    next_id: i64,
}

impl HttpClient {
    pub(crate) async fn open(router: &Router, era: Era) -> HttpClient {
        let mut client = HttpClient {
            router: router.clone(),
            era,
            session: None,
            next_id: 1,
        };
        if let Era::Legacy(version) = era {
            let body = jsonrpc(0, "initialize", Some(initialize_params(version.as_str())));
            let answer = send(router, http_request("POST", "/mcp", &[], body)).await;
            assert_eq!(answer.status, StatusCode::OK, "initialize: {answer:?}");
            assert_eq!(answer.json()["result"]["protocolVersion"], version.as_str());
            let session = answer
                .header("mcp-session-id")
                .expect("initialize opens a session")
                .to_owned();
            client.session = Some(session);
        }
        client
    }

    /// The headers of every request of this client.
    pub(crate) fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = Vec::new();
        if let Some(session) = &self.session {
            headers.push(("mcp-session-id", session.as_str()));
        }
        if let Some(version) = self.era.header() {
            headers.push(("mcp-protocol-version", version));
        }
        headers
    }

    /// POSTs a request as its era does; the JSON-RPC response (whatever
    /// the status: a JSON-RPC error may come with 200 or 4xx).
    pub(crate) async fn request(
        &mut self,
        method: &str,
        params: Option<Value>,
    ) -> (StatusCode, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let body = jsonrpc(id, method, self.era.params(params));
        let answer = self.post(body).await;
        let json = answer.json();
        assert_eq!(json["id"], id, "the answer names its request: {json}");
        (answer.status, json)
    }

    pub(crate) async fn post(&self, body: impl Into<Body>) -> HttpAnswer {
        send(
            &self.router,
            http_request("POST", "/mcp", &self.headers(), body),
        )
        .await
    }

    /// Ends the session, as a host does when it is done.
    pub(crate) async fn close(self) {
        if self.session.is_some() {
            let answer = send(
                &self.router,
                http_request("DELETE", "/mcp", &self.headers(), Body::empty()),
            )
            .await;
            assert_eq!(answer.status, StatusCode::NO_CONTENT, "DELETE: {answer:?}");
        }
    }
}
