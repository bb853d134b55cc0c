//! What the gateway costs: a no-op backend method called through the real
//! `llmbasedos-gateway` over WebSocket and Streamable HTTP, next to the same
//! call made directly on the backend's socket and the raw socket floor of
//! the same run.
//!
//! `cargo bench -p gateway --bench gateway` starts, in a temp dir, the real
//! `llmbasedos-test-server` (caps published in `<dir>/mcp`, as servers do)
//! and the real gateway (a config with a bearer token, listening on a free
//! loopback port), and prints, unpinned and then with every process pinned
//! to CPU 0:
//! - sequential round trip p50/p99: WebSocket (`mcp.test.noop`, the seed's
//!   vocabulary), Streamable HTTP (a 2026-07-28 stateless `tools/call` of
//!   `test_noop`, JSON answer, one keep-alive connection — what hosts send),
//!   the backend socket directly, and the raw floors (UNIX socket and TCP
//!   loopback ping-pong of the direct call's bytes with an echo process);
//! - throughput with 64 WebSocket clients, each calling sequentially with
//!   a bearer token of its own (the gateway limits requests per client);
//! - 64 Streamable HTTP clients sharing one token, as under `llmbasedos
//!   up` (one keep-alive connection each, sequential calls): calls/s, p99,
//!   and how many calls were refused with -32005 (the budget of one token
//!   is shared: requests past it wait their turn, none is refused);
//! - the gateway's RSS idle (just started) and loaded (right after the
//!   64-client run, its connections still open).
//!
//! The echo process is this binary re-executed in child mode. Every child
//! inherits the pinning (it is spawned after it), is killed by pid when the
//! run ends (even on panic) and dies with the benchmark (`PR_SET_PDEATHSIG`).
//! Options (environment): `GATEWAY_BENCH_ITERATIONS` (sequential round
//! trips per figure, default 20000), `GATEWAY_BENCH_CLIENT_CALLS` (calls per
//! client in the 64-client run, default 2000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bench_support::{ChildProcess, PATIENCE, pin_to_cpu0};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message as WsMessage, WebSocket};

const ECHO_CHILD_ENV: &str = "GATEWAY_BENCH_ECHO_DIR";
/// The direct call's bytes, also sent over WebSocket.
const NOOP_REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"mcp.test.noop","params":{}}"#;
const NOOP_RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
/// What a 2026-07-28 host sends for the same method: a stateless tool call.
const TOOL_CALL: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_noop","arguments":{},"#,
    r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientCapabilities":{},"#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"gateway-bench","version":"1"}}}}"#
);
const PROTOCOL_VERSION: &str = "2026-07-28";
const CLIENTS: usize = 64;
const TARGET_COST_US: f64 = 25.0;
const TARGET_CALLS_PER_SECOND: f64 = 30_000.0;
const TARGET_IDLE_RSS_MIB: f64 = 20.0;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var(ECHO_CHILD_ENV) {
        echo_child(Path::new(&dir));
        return ExitCode::SUCCESS;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful: run a short smoke version then, so the bench cannot rot.
    let smoke = !std::env::args().any(|argument| argument == "--bench");
    let binaries = match Binaries::locate() {
        Ok(binaries) => binaries,
        Err(message) => {
            eprintln!("gateway bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    let settings = if smoke {
        Settings {
            iterations: 200,
            calls_per_client: 10,
        }
    } else {
        Settings {
            iterations: env_number("GATEWAY_BENCH_ITERATIONS", 20_000),
            calls_per_client: env_number("GATEWAY_BENCH_CLIENT_CALLS", 2_000),
        }
    };
    println!("gateway: no-op backend method through the real gateway, bearer token on");
    println!(
        "sequential: {} round trips per figure; throughput: {CLIENTS} WebSocket clients × {} calls\n",
        settings.iterations, settings.calls_per_client
    );
    let unpinned = measure("unpinned", &binaries, &settings);
    pin_to_cpu0();
    let pinned = measure("pinned to CPU 0 (every process)", &binaries, &settings);
    if smoke {
        println!("smoke run (cargo test): the benchmark works; `cargo bench` gives the figures");
        return ExitCode::SUCCESS;
    }
    summary(&unpinned, &pinned);
    ExitCode::SUCCESS
}

struct Settings {
    iterations: usize,
    calls_per_client: usize,
}

struct Binaries {
    gateway: PathBuf,
    test_server: PathBuf,
}

impl Binaries {
    /// The gateway is built by cargo for this bench; the test server belongs
    /// to another package, so it is only there if something built it.
    fn locate() -> Result<Binaries, String> {
        let gateway = PathBuf::from(env!("CARGO_BIN_EXE_llmbasedos-gateway"));
        let test_server = gateway.with_file_name("llmbasedos-test-server");
        if !test_server.is_file() {
            let profile = if gateway.parent().is_some_and(|dir| dir.ends_with("debug")) {
                ""
            } else {
                " --release"
            };
            return Err(format!(
                "{} is missing: this benchmark runs the real test server, and cargo builds only \
                 the gateway's binaries for it. Build it first: `cargo build{profile} -p test-server \
                 --bins` (or the whole workspace: `cargo build --workspace{profile}`)",
                test_server.display()
            ));
        }
        Ok(Binaries {
            gateway,
            test_server,
        })
    }
}

struct Report {
    placement: &'static str,
    websocket: Percentiles,
    http: Percentiles,
    direct: Percentiles,
    throughput: f64,
    idle_rss_kib: u64,
}

impl Report {
    fn websocket_cost_p50_us(&self) -> f64 {
        micros(self.websocket.p50) - micros(self.direct.p50)
    }

    fn http_cost_p50_us(&self) -> f64 {
        micros(self.http.p50) - micros(self.direct.p50)
    }
}

#[derive(Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort_unstable();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn measure(placement: &'static str, binaries: &Binaries, settings: &Settings) -> Report {
    let stack = Stack::start(binaries);
    let idle_rss_kib = stack.gateway.memory().rss_kib;
    let iterations = settings.iterations;

    let mut websocket_client = WsClient::connect(stack.port, &stack.tokens[0]);
    let websocket = sequential(iterations, || websocket_client.call());
    drop(websocket_client);
    let mut http_client = HttpClient::connect(stack.port, &stack.tokens[0]);
    let http = sequential(iterations, || {
        assert!(http_client.call(), "a sequential call was refused");
    });
    drop(http_client);
    let mut direct_client = NulClient::new(connect_unix(&stack.backend_socket));
    let direct = sequential(iterations, || direct_client.call());
    let mut unix_floor_client = NulClient::new(connect_unix(&stack.echo_socket));
    let unix_floor = sequential(iterations, || unix_floor_client.call());
    let mut tcp_floor_client = NulClient::new(connect_tcp(stack.echo_address));
    let tcp_floor = sequential(iterations, || tcp_floor_client.call());

    let (throughput, clients) = throughput(&stack, settings.calls_per_client);
    let loaded = stack.gateway.memory();
    drop(clients);
    let shared = shared_token_http(&stack, settings.calls_per_client / 4);

    println!("{placement}");
    println!("  sequential round trip                      p50        p99");
    let rows = [
        ("gateway, WebSocket (mcp.test.noop)", websocket),
        ("gateway, HTTP (tools/call test_noop)", http),
        ("backend socket, direct", direct),
        ("raw floor, UNIX socket", unix_floor),
        ("raw floor, TCP loopback", tcp_floor),
    ];
    for (name, figures) in rows {
        println!(
            "    {name:<36} {:>8.1} µs {:>8.1} µs",
            micros(figures.p50),
            micros(figures.p99)
        );
    }
    for (name, through) in [("WebSocket", websocket), ("HTTP", http)] {
        println!(
            "    {:<36} {:>8.1} µs {:>8.1} µs",
            format!("gateway cost over direct, {name}"),
            micros(through.p50) - micros(direct.p50),
            micros(through.p99) - micros(direct.p99)
        );
    }
    // Through the gateway, the client's hop is TCP and the gateway's is a
    // UNIX socket: what is left after the TCP floor is the gateway's own work.
    println!(
        "    {:<36} {:>8.1} µs {:>8.1} µs",
        "WebSocket cost beyond the TCP floor",
        micros(websocket.p50) - micros(direct.p50) - micros(tcp_floor.p50),
        micros(websocket.p99) - micros(direct.p99) - micros(tcp_floor.p99)
    );
    println!(
        "    {:<36} {:>8.1} µs {:>8.1} µs",
        "direct cost over raw UNIX floor",
        micros(direct.p50) - micros(unix_floor.p50),
        micros(direct.p99) - micros(unix_floor.p99)
    );
    println!("  throughput, {CLIENTS} WebSocket clients          {throughput:>10.0} calls/s");
    println!(
        "  {CLIENTS} HTTP clients, one token       {:>10.0} calls/s   p99 {:>8.1} µs   refused {} of {}",
        shared.calls_per_second,
        micros(shared.p99),
        shared.refused,
        shared.calls
    );
    println!(
        "  gateway RSS      idle {:>6.1} MiB   loaded {:>6.1} MiB   peak {:>6.1} MiB\n",
        mib(idle_rss_kib),
        mib(loaded.rss_kib),
        mib(loaded.peak_kib)
    );
    Report {
        placement,
        websocket,
        http,
        direct,
        throughput,
        idle_rss_kib,
    }
}

fn summary(unpinned: &Report, pinned: &Report) {
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "summary (targets: gateway cost ≤ {TARGET_COST_US} µs at p50 pinned, ≥ {TARGET_CALLS_PER_SECOND} calls/s with {CLIENTS} clients, idle RSS ≤ {TARGET_IDLE_RSS_MIB} MiB)"
    );
    for report in [unpinned, pinned] {
        println!(
            "  {:<32} cost p50: WebSocket {:>6.1} µs, HTTP {:>6.1} µs   {CLIENTS} clients {:>8.0} calls/s   idle RSS {:>5.1} MiB",
            report.placement,
            report.websocket_cost_p50_us(),
            report.http_cost_p50_us(),
            report.throughput,
            mib(report.idle_rss_kib)
        );
    }
    println!(
        "  cost over direct, pinned, p50:   WebSocket {} (seed call, same bytes as direct); HTTP {} (tools/call: MCP wrapping included)",
        verdict(pinned.websocket_cost_p50_us() <= TARGET_COST_US),
        verdict(pinned.http_cost_p50_us() <= TARGET_COST_US)
    );
    println!(
        "  {CLIENTS}-client throughput:           unpinned {}, pinned {}",
        verdict(unpinned.throughput >= TARGET_CALLS_PER_SECOND),
        verdict(pinned.throughput >= TARGET_CALLS_PER_SECOND)
    );
    println!(
        "  idle RSS:                        unpinned {}, pinned {}",
        verdict(mib(unpinned.idle_rss_kib) <= TARGET_IDLE_RSS_MIB),
        verdict(mib(pinned.idle_rss_kib) <= TARGET_IDLE_RSS_MIB)
    );
}

/// Sequential round trips: warm up, then time each call.
fn sequential(iterations: usize, mut round_trip: impl FnMut()) -> Percentiles {
    for _ in 0..iterations / 10 {
        round_trip();
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        round_trip();
        samples.push(start.elapsed());
    }
    percentiles(samples)
}

/// 64 WebSocket clients, connected up front, each calling sequentially on
/// its own thread; returns calls per second and the still-open clients.
fn throughput(stack: &Stack, calls_per_client: usize) -> (f64, Vec<WsClient>) {
    let clients: Vec<WsClient> = stack
        .tokens
        .iter()
        .map(|token| WsClient::connect(stack.port, token))
        .collect();
    let start_line = Arc::new(Barrier::new(CLIENTS + 1));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                start_line.wait();
                for _ in 0..calls_per_client {
                    client.call();
                }
                client
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    let clients: Vec<WsClient> = threads
        .into_iter()
        .map(|thread| thread.join().expect("a client thread failed"))
        .collect();
    let elapsed = start.elapsed();
    let calls = (CLIENTS * calls_per_client) as f64;
    (calls / elapsed.as_secs_f64(), clients)
}

struct SharedToken {
    calls_per_second: f64,
    p99: Duration,
    refused: usize,
    calls: usize,
}

/// 64 Streamable HTTP clients with the same token, each on its own
/// keep-alive connection and thread, calling sequentially.
fn shared_token_http(stack: &Stack, calls_per_client: usize) -> SharedToken {
    let start_line = Arc::new(Barrier::new(CLIENTS + 1));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut client = HttpClient::connect(stack.port, &stack.tokens[0]);
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                start_line.wait();
                let mut samples = Vec::with_capacity(calls_per_client);
                let mut refused = 0;
                for _ in 0..calls_per_client {
                    let start = Instant::now();
                    refused += usize::from(!client.call());
                    samples.push(start.elapsed());
                }
                (samples, refused)
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    let mut samples = Vec::with_capacity(CLIENTS * calls_per_client);
    let mut refused = 0;
    for thread in threads {
        let (own, own_refused) = thread.join().expect("a client thread failed");
        samples.extend(own);
        refused += own_refused;
    }
    let elapsed = start.elapsed();
    let calls = samples.len();
    SharedToken {
        calls_per_second: calls as f64 / elapsed.as_secs_f64(),
        p99: percentiles(samples).p99,
        refused,
        calls,
    }
}

/// NUL-delimited JSON-RPC, as backends speak it.
struct NulClient<S: Read + Write> {
    stream: BufReader<S>,
    frame: Vec<u8>,
    answer: Vec<u8>,
}

impl<S: Read + Write> NulClient<S> {
    fn new(stream: S) -> NulClient<S> {
        let mut frame = NOOP_REQUEST.to_vec();
        frame.push(0);
        NulClient {
            stream: BufReader::new(stream),
            frame,
            answer: Vec::with_capacity(128),
        }
    }

    fn call(&mut self) {
        self.stream.get_mut().write_all(&self.frame).expect("write");
        self.answer.clear();
        self.stream
            .read_until(0, &mut self.answer)
            .expect("read an answer");
        assert_eq!(
            self.answer.strip_suffix(&[0]),
            Some(NOOP_RESPONSE),
            "unexpected answer: {}",
            String::from_utf8_lossy(&self.answer)
        );
    }
}

fn connect_unix(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path)
        .unwrap_or_else(|error| panic!("connect to {}: {error}", path.display()));
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

fn connect_tcp(address: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// A WebSocket client of `/ws`, JSON-RPC in text frames.
struct WsClient {
    socket: WebSocket<TcpStream>,
}

impl WsClient {
    fn connect(port: u16, token: &str) -> WsClient {
        let mut request = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .expect("a valid WebSocket request");
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        let stream = connect_tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        // tungstenite zeroes its whole read buffer (128 KiB by default)
        // before every read; a small one keeps that client-side cost out
        // of the gateway's figures.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (socket, _) = tungstenite::client::client_with_config(request, stream, Some(config))
            .unwrap_or_else(|error| panic!("WebSocket handshake with the gateway: {error}"));
        WsClient { socket }
    }

    fn call(&mut self) {
        let request = std::str::from_utf8(NOOP_REQUEST).expect("UTF-8");
        self.socket
            .send(WsMessage::text(request))
            .expect("send a frame");
        // The gateway sends nothing but the answer here; a ping or two
        // (answered by tungstenite) is tolerated, an endless stream is not.
        for _ in 0..8 {
            match self.socket.read().expect("read a frame") {
                WsMessage::Text(text) => {
                    assert_eq!(text.as_bytes(), NOOP_RESPONSE, "unexpected answer: {text}");
                    return;
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("unexpected WebSocket frame: {other:?}"),
            }
        }
        panic!("no answer among the gateway's frames");
    }
}

/// Streamable HTTP by hand: one keep-alive connection, JSON answers with a
/// Content-Length (anything else fails the run).
struct HttpClient {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
    /// The first answer, checked in full; every later one must equal it.
    expected: Option<Vec<u8>>,
}

impl HttpClient {
    fn connect(port: u16, token: &str) -> HttpClient {
        let stream = connect_tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-Protocol-Version: {PROTOCOL_VERSION}\r\nContent-Length: {}\r\n\r\n{TOOL_CALL}",
            TOOL_CALL.len()
        );
        HttpClient {
            stream: BufReader::new(stream),
            request: request.into_bytes(),
            line: String::new(),
            body: Vec::with_capacity(1024),
            expected: None,
        }
    }

    fn read_line(&mut self) -> &str {
        self.line.clear();
        let read = self.stream.read_line(&mut self.line).expect("read a line");
        assert!(read > 0, "the gateway closed the keep-alive connection");
        self.line.trim_end()
    }

    /// One call; `false` if the gateway refused it (-32005).
    fn call(&mut self) -> bool {
        self.stream
            .get_mut()
            .write_all(&self.request)
            .expect("write");
        let status = self.read_line().to_owned();
        assert!(
            status.starts_with("HTTP/1.1 200 "),
            "unexpected status: {status}"
        );
        let mut length = None;
        let mut json = false;
        for _ in 0..64 {
            let line = self.read_line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line");
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().expect("a Content-Length"));
            } else if name.eq_ignore_ascii_case("content-type") {
                json = value.starts_with("application/json");
            } else if name.eq_ignore_ascii_case("connection") {
                assert!(
                    !value.eq_ignore_ascii_case("close"),
                    "the gateway closes the connection"
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                panic!("expected a Content-Length body, got Transfer-Encoding: {value}");
            }
        }
        assert!(json, "the answer is not application/json");
        let length = length.expect("the answer has no Content-Length");
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).expect("read a body");
        if self.expected.as_ref() != Some(&self.body) {
            let answer: Value = serde_json::from_slice(&self.body).expect("a JSON answer");
            if answer["error"]["code"] == -32005 {
                return false;
            }
        }
        match &self.expected {
            Some(expected) => assert_eq!(
                &self.body,
                expected,
                "unexpected answer: {}",
                String::from_utf8_lossy(&self.body)
            ),
            None => {
                check_tool_result(&self.body);
                self.expected = Some(self.body.clone());
            }
        }
        true
    }
}

/// A successful 2026-07-28 tool result of the no-op method.
fn check_tool_result(body: &[u8]) {
    let answer: Value = serde_json::from_slice(body).expect("a JSON answer");
    let result = &answer["result"];
    assert!(
        answer["id"] == 1
            && result["structuredContent"] == serde_json::json!({})
            && result["isError"] != true
            && result["resultType"] == "complete",
        "unexpected tool result: {answer}"
    );
}

/// A child process, killed by pid when dropped.
/// The echo process, the test server and the gateway in one temp dir, laid
/// out as `llmbasedos up` does (caps files and sockets in `mcp/`).
struct Stack {
    gateway: ChildProcess,
    _backend: ChildProcess,
    _echo: ChildProcess,
    port: u16,
    /// A bearer token per client; the sequential figures use the first.
    tokens: Vec<String>,
    backend_socket: PathBuf,
    echo_socket: PathBuf,
    echo_address: SocketAddr,
    /// Removed last, after the processes using it are gone.
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(binaries: &Binaries) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let caps_dir = dir.path().join("mcp");
        std::fs::create_dir(&caps_dir).expect("create the caps dir");

        let mut echo = ChildProcess::spawn(
            "echo process",
            Command::new(std::env::current_exe().expect("own path"))
                .env(ECHO_CHILD_ENV, dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.path().join("echo.log"),
        );
        let echo_socket = dir.path().join("echo.sock");
        let port_file = dir.path().join("echo.port");
        echo.wait_until("its socket and port file", || {
            port_file.exists() && UnixStream::connect(&echo_socket).is_ok()
        });
        let echo_port: u16 = std::fs::read_to_string(&port_file)
            .expect("read the echo port")
            .parse()
            .expect("a port number");

        let caps = Command::new(&binaries.test_server)
            .arg("--print-caps")
            .output()
            .expect("run the test server with --print-caps");
        assert!(caps.status.success(), "--print-caps failed: {caps:?}");
        publish(&caps_dir.join("test.cap.json"), &caps.stdout);
        let backend_socket = caps_dir.join("test.sock");
        let mut backend = ChildProcess::spawn(
            "test server",
            Command::new(&binaries.test_server)
                .arg("--socket")
                .arg(&backend_socket)
                .args(["--idle-timeout", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.path().join("test.log"),
        );
        backend.wait_until("its socket", || {
            UnixStream::connect(&backend_socket).is_ok()
        });

        // One token per client: the gateway's request limit is per client
        // (token holder), so 64 clients are 64 holders, as in real use.
        let tokens: Vec<String> = (0..CLIENTS)
            .map(|_| {
                let mut random = [0u8; 24];
                getrandom::fill(&mut random).expect("random bytes");
                hex::encode(random)
            })
            .collect();
        let port = free_port();
        let config = dir.path().join("gateway.yaml");
        let mut config_text = format!(
            "listen: 127.0.0.1:{port}\nunix_socket: {}\ncaps_dir: {}\nauth:\n  tokens:\n",
            dir.path().join("gateway.sock").display(),
            caps_dir.display(),
        );
        for (index, token) in tokens.iter().enumerate() {
            let digest = hex::encode(gateway::config::hash_token(token));
            config_text.push_str(&format!(
                "    - name: client-{index}\n      sha256: {digest}\n"
            ));
        }
        std::fs::write(&config, config_text).expect("write the gateway config");
        let mut gateway = ChildProcess::spawn(
            "gateway",
            Command::new(&binaries.gateway)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.path().join("gateway.log"),
        );
        gateway.wait_until("its TCP listener", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Stack {
            gateway,
            _backend: backend,
            _echo: echo,
            port,
            tokens,
            backend_socket,
            echo_socket,
            echo_address: SocketAddr::from(([127, 0, 0, 1], echo_port)),
            _dir: dir,
        }
    }
}

/// Writes a file whole or not at all (readers watch the directory).
fn publish(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address").port()
}

/// The echo process: answers every NUL-terminated frame with the bytes the
/// backend sends, on a UNIX socket and on a loopback TCP port.
fn echo_child(dir: &Path) {
    let unix = UnixListener::bind(dir.join("echo.sock")).expect("bind the echo socket");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind the echo port");
    let port = tcp.local_addr().expect("echo address").port();
    std::thread::spawn(move || {
        for stream in tcp.incoming() {
            let stream = stream.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            std::thread::spawn(move || ping_pong(stream));
        }
    });
    publish(&dir.join("echo.port"), port.to_string().as_bytes());
    for stream in unix.incoming() {
        let stream = stream.expect("accept");
        std::thread::spawn(move || ping_pong(stream));
    }
}

fn ping_pong(mut stream: impl Read + Write) {
    let mut response = NOOP_RESPONSE.to_vec();
    response.push(0);
    let mut input = vec![0u8; 64 * 1024];
    let mut output = Vec::with_capacity(64 * 1024);
    loop {
        let read = match stream.read(&mut input) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        output.clear();
        for _ in input[..read].iter().filter(|byte| **byte == 0) {
            output.extend_from_slice(&response);
        }
        if stream.write_all(&output).is_err() {
            return;
        }
    }
}
