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
//! - sequential round trip p50/p99: WebSocket (`mcp.test.noop`, the classic
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
//! Then, pinned, the rights and rate checks' cost: the same sequential
//! calls through a gateway with a licence section (a tier whose patterns
//! are matched and whose per-client bucket is taken on every call, with a
//! rate no run reaches), next to a fresh gateway without, alternately,
//! `GATEWAY_BENCH_LICENCE_ROUNDS` times (default 3), best p50 of each.
//!
//! Options (environment): `GATEWAY_BENCH_ITERATIONS` (sequential round
//! trips per figure, default 20000), `GATEWAY_BENCH_CLIENT_CALLS` (calls per
//! client in the 64-client run, default 2000).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bench_support::bench::{
    Gateway, HttpClient, NulClient, WsClient, connect_tcp, connect_unix, ping_pong, publish,
    sibling_binary,
};
use bench_support::measure::{Figures, concurrent, env_number, micros, sequential, smoke};
use bench_support::{ChildProcess, pin_to_cpu0};
use serde_json::Value;

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

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var(ECHO_CHILD_ENV) {
        echo_child(Path::new(&dir));
        return ExitCode::SUCCESS;
    }
    // A short smoke version under `cargo test --benches`, so the bench
    // cannot rot.
    let smoke = smoke();
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
    let rounds = if smoke {
        1
    } else {
        env_number("GATEWAY_BENCH_LICENCE_ROUNDS", 3)
    };
    let licence = licence_cost(&binaries, settings.iterations, rounds);
    if smoke {
        println!("smoke run (cargo test): the benchmark works; `cargo bench` gives the figures");
        return ExitCode::SUCCESS;
    }
    summary(&unpinned, &pinned);
    licence.summary();
    ExitCode::SUCCESS
}

/// Sequential p50s with the rights and rate checks off and on.
struct LicenceCost {
    off: (f64, f64),
    on: (f64, f64),
}

const TARGET_CHECKS_US: f64 = 2.0;

impl LicenceCost {
    fn summary(&self) {
        let added = (self.on.0 - self.off.0, self.on.1 - self.off.1);
        let verdict = |added: f64| {
            if added <= TARGET_CHECKS_US {
                "met"
            } else {
                "MISSED"
            }
        };
        println!(
            "  rights+rate checks, pinned p50 (target ≤ {TARGET_CHECKS_US} µs added): WebSocket {:+.2} µs {}, HTTP {:+.2} µs {}",
            added.0,
            verdict(added.0),
            added.1,
            verdict(added.1)
        );
    }
}

/// Fresh gateways without and with a licence, alternately; the best
/// sequential p50 of each (WebSocket classic call, HTTP tools/call).
fn licence_cost(binaries: &Binaries, iterations: usize, rounds: usize) -> LicenceCost {
    let mut off = (f64::MAX, f64::MAX);
    let mut on = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        for licensed in [false, true] {
            let stack = Stack::start(binaries, licensed);
            let warmup = iterations / 10;
            let mut websocket_client =
                WsClient::connect(stack.gateway.port, &stack.gateway.tokens[0]);
            let websocket = sequential(warmup, iterations, || {
                noop_over_websocket(&mut websocket_client)
            });
            drop(websocket_client);
            let mut client = http_client(&stack, 0);
            let http = sequential(warmup, iterations, || {
                assert!(client.call(), "a sequential call was refused");
            });
            let best = if licensed { &mut on } else { &mut off };
            best.0 = best.0.min(micros(websocket.p50));
            best.1 = best.1.min(micros(http.p50));
        }
    }
    println!("rights and rate checks, pinned, best sequential p50 of {rounds} fresh gateways each");
    println!(
        "    without a licence section            WebSocket {:>8.1} µs   HTTP {:>8.1} µs",
        off.0, off.1
    );
    println!(
        "    with rights and rate checks          WebSocket {:>8.1} µs   HTTP {:>8.1} µs\n",
        on.0, on.1
    );
    LicenceCost { off, on }
}

/// The licence section of a licensed bench gateway: an unsigned licence
/// (allowed) for a tier whose patterns match the calls and whose rate no
/// run reaches, so every call takes the checks and none is refused.
fn licence_config(dir: &Path) -> String {
    std::fs::write(
        dir.join("tiers.yaml"),
        "tiers:\n  BENCH:\n    allow: [\"mcp.test.*\", \"test_*\"]\n    requests: 1000000000\n    window_secs: 1\n",
    )
    .expect("write the tiers");
    std::fs::write(dir.join("lic.key"), "tier: BENCH\nuser_id: bench\n")
        .expect("write the licence");
    format!(
        "licence:\n  key: {0}/lic.key\n  keys_dir: {0}/keys\n  tiers: {0}/tiers.yaml\n  allow_unsigned: true\n  state_dir: {0}/state\n",
        dir.display()
    )
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
        let test_server = sibling_binary(&gateway, "llmbasedos-test-server")?;
        Ok(Binaries {
            gateway,
            test_server,
        })
    }
}

struct Report {
    placement: &'static str,
    websocket: Figures,
    http: Figures,
    direct: Figures,
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn measure(placement: &'static str, binaries: &Binaries, settings: &Settings) -> Report {
    let stack = Stack::start(binaries, false);
    let idle_rss_kib = stack.gateway.process.memory().rss_kib;
    let iterations = settings.iterations;
    let warmup = iterations / 10;

    let mut websocket_client = WsClient::connect(stack.gateway.port, &stack.gateway.tokens[0]);
    let websocket = sequential(warmup, iterations, || {
        noop_over_websocket(&mut websocket_client)
    });
    drop(websocket_client);
    let mut http_client = http_client(&stack, 0);
    let http = sequential(warmup, iterations, || {
        assert!(http_client.call(), "a sequential call was refused");
    });
    drop(http_client);
    let mut noop = NOOP_REQUEST.to_vec();
    noop.push(0);
    let mut direct_client = NulClient::new(connect_unix(&stack.backend_socket));
    let direct = sequential(warmup, iterations, || {
        noop_answered(direct_client.round_trip(&noop));
    });
    let mut unix_floor_client = NulClient::new(connect_unix(&stack.echo_socket));
    let unix_floor = sequential(warmup, iterations, || {
        noop_answered(unix_floor_client.round_trip(&noop));
    });
    let mut tcp_floor_client = NulClient::new(connect_tcp(stack.echo_address));
    let tcp_floor = sequential(warmup, iterations, || {
        noop_answered(tcp_floor_client.round_trip(&noop));
    });

    let (throughput, clients) = throughput(&stack, settings.calls_per_client);
    let loaded = stack.gateway.process.memory();
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
        "  cost over direct, pinned, p50:   WebSocket {} (classic call, same bytes as direct); HTTP {} (tools/call: MCP wrapping included)",
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

/// The no-op's answer, byte for byte.
fn noop_answered(answer: &[u8]) {
    assert_eq!(
        answer,
        NOOP_RESPONSE,
        "unexpected answer: {}",
        String::from_utf8_lossy(answer)
    );
}

fn noop_over_websocket(client: &mut WsClient) {
    let request = std::str::from_utf8(NOOP_REQUEST).expect("UTF-8");
    noop_answered(client.exchange(request).as_bytes());
}

/// A Streamable HTTP client of the no-op tool with the `token`th token.
fn http_client(stack: &Stack, token: usize) -> HttpClient {
    HttpClient::connect(
        stack.gateway.port,
        &stack.gateway.tokens[token],
        PROTOCOL_VERSION,
        TOOL_CALL,
        check_tool_result,
    )
}

/// 64 WebSocket clients, connected up front, each calling sequentially on
/// its own thread; returns calls per second and the still-open clients.
fn throughput(stack: &Stack, calls_per_client: usize) -> (f64, Vec<WsClient>) {
    let clients: Vec<WsClient> = stack
        .gateway
        .tokens
        .iter()
        .map(|token| WsClient::connect(stack.gateway.port, token))
        .collect();
    let (figures, clients) = concurrent(clients, calls_per_client, noop_over_websocket);
    (figures.per_second, clients)
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
    let clients: Vec<HttpClient> = (0..CLIENTS).map(|_| http_client(stack, 0)).collect();
    let refused = AtomicUsize::new(0);
    let (figures, _) = concurrent(clients, calls_per_client, |client| {
        if !client.call() {
            refused.fetch_add(1, Ordering::Relaxed);
        }
    });
    SharedToken {
        calls_per_second: figures.per_second,
        p99: figures.p99,
        refused: refused.into_inner(),
        calls: figures.calls,
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

/// The echo process, the test server and the gateway in one temp dir, laid
/// out as `llmbasedos up` does (caps files and sockets in `mcp/`).
struct Stack {
    gateway: Gateway,
    _backend: ChildProcess,
    _echo: ChildProcess,
    backend_socket: PathBuf,
    echo_socket: PathBuf,
    echo_address: SocketAddr,
    /// Removed last, after the processes using it are gone.
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(binaries: &Binaries, licensed: bool) -> Stack {
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
        let extra = if licensed {
            licence_config(dir.path())
        } else {
            String::new()
        };
        let gateway =
            Gateway::start_configured(&binaries.gateway, dir.path(), &caps_dir, CLIENTS, &extra);
        Stack {
            gateway,
            _backend: backend,
            _echo: echo,
            backend_socket,
            echo_socket,
            echo_address: SocketAddr::from(([127, 0, 0, 1], echo_port)),
            _dir: dir,
        }
    }
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
            std::thread::spawn(move || ping_pong(stream, NOOP_RESPONSE));
        }
    });
    publish(&dir.join("echo.port"), port.to_string().as_bytes());
    for stream in unix.incoming() {
        let stream = stream.expect("accept");
        std::thread::spawn(move || ping_pong(stream, NOOP_RESPONSE));
    }
}
