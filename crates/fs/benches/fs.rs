//! The file service on its backend socket, through the real gateway, and
//! beside the reference MCP filesystem server, in one run.
//!
//! `cargo bench -p fs --bench fs` lays out, in a temp dir, a generated root,
//! `llmbasedos-fs` (caps published in `<dir>/mcp`, as servers do), the real
//! `llmbasedos-gateway` (a bearer token per client, a free loopback port) and
//! the reference server (`@modelcontextprotocol/server-filesystem` on node,
//! over stdio), and prints:
//! - `mcp.fs.read` of a 4 KiB file on the backend socket: p50/p99 of
//!   sequential round trips on one connection, then with 16 concurrent
//!   clients (one connection each), with throughput;
//! - the same read through the gateway over WebSocket (the seed's
//!   vocabulary): sequential, then 16 clients with a token each (the gateway
//!   limits concurrent requests per token holder);
//! - the reference server's `read_text_file` of the same file: sequential,
//!   then 16 requests pipelined on its one stdio connection (how a host uses
//!   it), and the ratios against the target (≥ 3× at p50 and in throughput);
//! - `mcp.fs.list` of a 1,000-entry directory, `mcp.fs.grep` over a
//!   generated 100 MiB tree;
//! - our methods beside the reference server's tools (its `tools/list` and
//!   our `--print-caps`, read in this run, so the table stays true).
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs a short
//! smoke version on small data that still takes every path, so the
//! benchmark cannot rot. A missing gateway binary or reference server fails
//! the run with the command that provides it. Every child is killed by pid
//! when the run ends (even on panic) and dies with the benchmark
//! (`PR_SET_PDEATHSIG`); every read has a deadline. Options (environment):
//! `FS_BENCH_READS` (default 20000), `FS_BENCH_GREP_MIB` (default 100).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bench_support::{ChildProcess, PATIENCE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message as WsMessage, WebSocket};

const FS_BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-fs");
/// Where `scripts/install-test-deps` puts the reference server.
const REFERENCE_SERVER: &str = "target/test-node/node_modules/.bin/mcp-server-filesystem";
const CLIENTS: usize = 16;
/// Through our gateway, reading 4 KiB is at least this many times faster
/// than the reference server, at p50 and in throughput.
const TARGET_SPEEDUP: f64 = 3.0;
const FILE_SIZE: usize = 4096;

/// The reference server's tools and what does the same here. Checked at run
/// time against both tool lists: a method that is gone fails the run, a new
/// reference tool shows up unmapped.
const EQUIVALENTS: &[(&str, Option<&str>, &str)] = &[
    ("read_file", Some("mcp.fs.read"), "deprecated there"),
    ("read_text_file", Some("mcp.fs.read"), ""),
    (
        "read_media_file",
        Some("mcp.fs.read"),
        "encoding auto: images and audio as MCP content",
    ),
    ("read_multiple_files", Some("mcp.fs.read_many"), ""),
    ("write_file", Some("mcp.fs.write"), "atomic overwrite"),
    ("edit_file", Some("mcp.fs.edit"), ""),
    ("create_directory", Some("mcp.fs.mkdir"), ""),
    ("list_directory", Some("mcp.fs.list"), ""),
    ("list_directory_with_sizes", Some("mcp.fs.list"), ""),
    ("directory_tree", Some("mcp.fs.tree"), ""),
    ("move_file", Some("mcp.fs.move"), ""),
    ("search_files", Some("mcp.fs.glob"), ""),
    ("get_file_info", Some("mcp.fs.stat"), ""),
    (
        "list_allowed_directories",
        None,
        "none needed: one virtual root",
    ),
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let smoke = !std::env::args().any(|argument| argument == "--bench");
    let binaries = match Binaries::locate() {
        Ok(binaries) => binaries,
        Err(message) => {
            eprintln!("fs bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (reads, warmup) = if smoke {
        (160, 16)
    } else {
        (env_number("FS_BENCH_READS", 20_000), 1000)
    };
    let grep_mib = if smoke {
        2
    } else {
        env_number("FS_BENCH_GREP_MIB", 100)
    };
    let dir = tempfile::tempdir().expect("create a temp dir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("create the root");
    // The reference server compares real paths: give it one.
    let root = root.canonicalize().expect("canonicalize the root");
    std::fs::write(root.join("4k.txt"), "x".repeat(FILE_SIZE)).expect("write the 4 KiB file");
    std::fs::create_dir(root.join("many")).expect("create the listing dir");
    for index in 0..1000 {
        std::fs::write(root.join(format!("many/entry-{index:04}.txt")), "e").expect("write");
    }
    generate_tree(&root, grep_mib);
    let stack = Stack::start(&binaries, dir.path(), &root);

    println!("mcp.fs.read of a 4 KiB file, {reads} calls per figure after {warmup} to warm up\n");
    println!("llmbasedos-fs on its backend socket (NUL-delimited JSON-RPC over a UNIX socket)");
    let read = nul_request("mcp.fs.read", json!({"path": "/4k.txt"}));
    let mut client = NulClient::connect(&stack.fs_socket);
    let backend = sequential(warmup, reads, || client.call(&read));
    print_figures("sequential, 1 connection", &backend);
    let clients: Vec<NulClient> = (0..CLIENTS)
        .map(|_| NulClient::connect(&stack.fs_socket))
        .collect();
    let backend_concurrent = concurrent(clients, reads / CLIENTS, |client| client.call(&read));
    print_figures(
        &format!("{CLIENTS} concurrent clients"),
        &backend_concurrent,
    );

    println!(
        "\nthrough llmbasedos-gateway over WebSocket (ws://127.0.0.1:{}/ws, bearer token, seed method mcp.fs.read)",
        stack.port
    );
    let ws_read = serde_json::to_string(&json!({
        "jsonrpc": "2.0", "id": 1, "method": "mcp.fs.read", "params": {"path": "/4k.txt"},
    }))
    .expect("serialize");
    let mut ws_client = WsClient::connect(stack.port, &stack.tokens[0]);
    ws_client.wait_for_service(&ws_read);
    let gateway = sequential(warmup, reads, || ws_client.call(&ws_read));
    drop(ws_client);
    print_figures("sequential, 1 client", &gateway);
    let clients: Vec<WsClient> = stack
        .tokens
        .iter()
        .map(|token| WsClient::connect(stack.port, token))
        .collect();
    let gateway_concurrent = concurrent(clients, reads / CLIENTS, |client| client.call(&ws_read));
    print_figures(
        &format!("{CLIENTS} concurrent clients, a token each"),
        &gateway_concurrent,
    );

    let mut reference = ReferenceServer::start(&binaries.reference, &root, dir.path());
    println!(
        "\nreference: {} {} (npm @modelcontextprotocol/server-filesystem on node), read_text_file over stdio",
        reference.server_name, reference.server_version
    );
    let absolute = root.join("4k.txt").display().to_string();
    reference.check_first_read(&absolute);
    let reference_sequential = sequential(warmup, reads, || reference.read(&absolute));
    print_figures("sequential, 1 connection", &reference_sequential);
    let reference_pipelined = reference.pipelined(&absolute, reads, CLIENTS);
    print_figures(
        &format!("{CLIENTS} requests pipelined on 1 connection"),
        &reference_pipelined,
    );
    let reference_tools = reference.tools();
    drop(reference);

    let latency_ratio = reference_sequential.p50.as_secs_f64() / gateway.p50.as_secs_f64();
    let throughput_ratio = gateway_concurrent.per_second / reference_pipelined.per_second;
    let verdict = |ratio: f64| {
        if ratio >= TARGET_SPEEDUP {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "\nours through the gateway against the reference (target: ≥ {TARGET_SPEEDUP}× at p50 and in throughput)"
    );
    println!(
        "  p50, sequential:   reference {:.1} µs / gateway {:.1} µs = {latency_ratio:.2}×  {}",
        micros(reference_sequential.p50),
        micros(gateway.p50),
        verdict(latency_ratio)
    );
    println!(
        "  throughput:        gateway {:.0} calls/s ({CLIENTS} clients) / reference {:.0} calls/s ({CLIENTS} pipelined) = {throughput_ratio:.2}×  {}",
        gateway_concurrent.per_second,
        reference_pipelined.per_second,
        verdict(throughput_ratio)
    );

    println!("\nllmbasedos-fs on its backend socket, other methods");
    let list = nul_request("mcp.fs.list", json!({"path": "/many", "limit": 1000}));
    let iterations = if smoke { 5 } else { 200 };
    let lists = sequential(0, iterations, || client.call(&list));
    println!(
        "  mcp.fs.list of 1,000 entries: {iterations} calls, p50 {:.2} ms, p99 {:.2} ms",
        micros(lists.p50) / 1000.0,
        micros(lists.p99) / 1000.0
    );
    let grep = nul_request(
        "mcp.fs.grep",
        json!({"pattern": "needle number [0-9]+", "path": "/tree", "max_results": 10000}),
    );
    let runs = 3;
    let greps = sequential(0, runs, || client.call(&grep));
    println!(
        "  mcp.fs.grep over {grep_mib} MiB in {grep_mib} files: median of {runs} {:.1} ms, {:.0} MiB/s",
        micros(greps.p50) / 1000.0,
        grep_mib as f64 / greps.p50.as_secs_f64()
    );

    print_method_table(&reference_tools, &stack.caps);
    if smoke {
        println!(
            "\nsmoke run (cargo test): the benchmark works; `cargo bench -p fs --bench fs` gives the figures"
        );
    }
    ExitCode::SUCCESS
}

struct Binaries {
    gateway: PathBuf,
    reference: PathBuf,
}

impl Binaries {
    /// Cargo builds only this package's binaries for its benches; the
    /// gateway is a sibling if something built it, and the reference server
    /// comes from npm.
    fn locate() -> Result<Binaries, String> {
        let gateway = Path::new(FS_BINARY).with_file_name("llmbasedos-gateway");
        if !gateway.is_file() {
            let profile = if gateway.parent().is_some_and(|dir| dir.ends_with("debug")) {
                ""
            } else {
                " --release"
            };
            return Err(format!(
                "{} is missing: this benchmark runs the real gateway, and cargo builds only the fs \
                 package's binaries for it. Build it first: `cargo build{profile} --workspace --bins`",
                gateway.display()
            ));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("the workspace root");
        let reference = workspace.join(REFERENCE_SERVER);
        if !reference.is_file() {
            return Err(format!(
                "{} is missing: this benchmark compares with the reference MCP filesystem server \
                 (npm, pinned in tests/node-packages.txt). Install it from {}: `scripts/install-test-deps`",
                reference.display(),
                workspace.display()
            ));
        }
        Ok(Binaries { gateway, reference })
    }
}

struct Figures {
    p50: Duration,
    p99: Duration,
    calls: usize,
    per_second: f64,
}

fn figures(mut samples: Vec<Duration>, elapsed: Duration) -> Figures {
    samples.sort_unstable();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    Figures {
        p50: at(0.50),
        p99: at(0.99),
        calls: samples.len(),
        per_second: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn print_figures(name: &str, figures: &Figures) {
    println!(
        "  {name:<42} {:>6} calls  p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} calls/s",
        figures.calls,
        micros(figures.p50),
        micros(figures.p99),
        figures.per_second
    );
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Sequential round trips: warm up, then time each call.
fn sequential(warmup: usize, calls: usize, mut round_trip: impl FnMut()) -> Figures {
    for _ in 0..warmup {
        round_trip();
    }
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let start = Instant::now();
        round_trip();
        samples.push(start.elapsed());
    }
    figures(samples, started.elapsed())
}

/// Clients connected up front, each calling sequentially on its own thread
/// from a common start line.
fn concurrent<C: Send>(
    clients: Vec<C>,
    calls_per_client: usize,
    round_trip: impl Fn(&mut C) + Sync,
) -> Figures {
    let start_line = Barrier::new(clients.len() + 1);
    let (samples, elapsed) = std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let (start_line, round_trip) = (&start_line, &round_trip);
                scope.spawn(move || {
                    start_line.wait();
                    (0..calls_per_client)
                        .map(|_| {
                            let start = Instant::now();
                            round_trip(&mut client);
                            start.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        let samples: Vec<Duration> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("a client thread failed"))
            .collect();
        (samples, started.elapsed())
    });
    figures(samples, elapsed)
}

/// A successful read of the whole file: a result, and room for the content.
fn assert_read(answer: &[u8]) {
    assert!(
        answer.len() > FILE_SIZE && answer.windows(9).any(|window| window == b"\"result\":"),
        "not a successful read of the file: {}",
        String::from_utf8_lossy(answer)
    );
}

fn nul_request(method: &str, params: Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 1, "method": method, "params": params,
    }))
    .expect("serialize");
    bytes.push(0);
    bytes
}

/// NUL-delimited JSON-RPC, as backends speak it.
struct NulClient {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    frame: Vec<u8>,
}

impl NulClient {
    fn connect(socket: &Path) -> NulClient {
        let stream = UnixStream::connect(socket).expect("connect to llmbasedos-fs");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        NulClient {
            writer: stream.try_clone().expect("clone the stream"),
            reader: BufReader::with_capacity(1 << 20, stream),
            frame: Vec::new(),
        }
    }

    /// One round trip of a prepared request frame (NUL included).
    fn call(&mut self, request: &[u8]) {
        self.writer.write_all(request).expect("send");
        self.frame.clear();
        self.reader.read_until(0, &mut self.frame).expect("receive");
        assert!(
            self.frame.windows(9).any(|window| window == b"\"result\":"),
            "the server answered with an error: {}",
            String::from_utf8_lossy(&self.frame)
        );
    }
}

/// A WebSocket client of the gateway's `/ws`, JSON-RPC in text frames.
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
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        // tungstenite zeroes its whole read buffer before every read; a
        // small one keeps that client-side cost out of the figures.
        let config = WebSocketConfig::default().read_buffer_size(8192);
        let (socket, _) = tungstenite::client::client_with_config(request, stream, Some(config))
            .unwrap_or_else(|error| panic!("WebSocket handshake with the gateway: {error}"));
        WsClient { socket }
    }

    fn exchange(&mut self, request: &str) -> String {
        self.socket
            .send(WsMessage::text(request))
            .expect("send a frame");
        // The gateway sends nothing but the answer here; a ping or two
        // (answered by tungstenite) is tolerated, an endless stream is not.
        for _ in 0..8 {
            match self.socket.read().expect("read a frame") {
                WsMessage::Text(text) => return text.to_string(),
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("unexpected WebSocket frame: {other:?}"),
            }
        }
        panic!("no answer among the gateway's frames");
    }

    fn call(&mut self, request: &str) {
        assert_read(self.exchange(request).as_bytes());
    }

    /// The gateway listens before it has read the caps directory: wait
    /// until it routes the method, then check one answer in full.
    fn wait_for_service(&mut self, request: &str) {
        let deadline = Instant::now() + PATIENCE;
        let answer: Value = loop {
            let answer: Value =
                serde_json::from_str(&self.exchange(request)).expect("a JSON answer");
            if answer["error"]["code"] != -32601 {
                break answer;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway does not route mcp.fs.read: {answer}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let content = answer["result"]["content"].as_str().unwrap_or_default();
        assert!(
            content.len() == FILE_SIZE && content.bytes().all(|byte| byte == b'x'),
            "unexpected answer through the gateway: {answer}"
        );
    }
}

/// The reference server, one stdio connection, newline-delimited JSON-RPC.
struct ReferenceServer {
    stdin: ChildStdin,
    stdout: LineReader,
    server_name: String,
    server_version: String,
    next_id: u64,
    request: String,
    /// Killed last, after its pipes are closed.
    _process: ChildProcess,
}

impl ReferenceServer {
    fn start(program: &Path, root: &Path, dir: &Path) -> ReferenceServer {
        let mut command = Command::new(program);
        command
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut process =
            ChildProcess::spawn("reference server", &mut command, dir.join("reference.log"));
        let stdin = process.process().stdin.take().expect("its stdin");
        let stdout = process.process().stdout.take().expect("its stdout");
        let mut server = ReferenceServer {
            stdin,
            stdout: LineReader::new(stdout),
            server_name: String::new(),
            server_version: String::new(),
            next_id: 1,
            request: String::new(),
            _process: process,
        };
        let initialized = server.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fs-bench", "version": "1"},
            }),
        );
        let info = &initialized["serverInfo"];
        server.server_name = info["name"].as_str().unwrap_or("?").to_owned();
        server.server_version = info["version"].as_str().unwrap_or("?").to_owned();
        server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        server
    }

    fn send(&mut self, line: &str) {
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.write_all(b"\n"))
            .expect("write to the reference server");
    }

    /// A request outside the measurements: its result, parsed.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        for _ in 0..64 {
            let answer: Value =
                serde_json::from_slice(self.stdout.read_line()).expect("a JSON line");
            if answer["id"] == id {
                assert!(
                    answer.get("error").is_none(),
                    "{method} failed on the reference server: {answer}"
                );
                return answer["result"].clone();
            }
        }
        panic!("no answer to {method} among the reference server's messages");
    }

    fn tools(&mut self) -> Vec<String> {
        let listed = self.request("tools/list", json!({}));
        listed["tools"]
            .as_array()
            .expect("a tool list")
            .iter()
            .map(|tool| tool["name"].as_str().expect("a tool name").to_owned())
            .collect()
    }

    fn check_first_read(&mut self, path: &str) {
        let result = self.request(
            "tools/call",
            json!({"name": "read_text_file", "arguments": {"path": path}}),
        );
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            result["isError"] != true
                && text.len() == FILE_SIZE
                && text.bytes().all(|byte| byte == b'x'),
            "unexpected read_text_file result: {result}"
        );
    }

    fn send_read(&mut self, path: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.request.clear();
        // The path is a temp dir's: nothing to escape, as checked below.
        self.request.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{path}"}}}}}}"#
        ));
        debug_assert!(!path.contains(['"', '\\']));
        let request = std::mem::take(&mut self.request);
        self.send(&request);
        self.request = request;
        id
    }

    /// Reads one answer to a read: its id, after checking it succeeded.
    /// Notifications in between are skipped, a few at most.
    fn receive_read(&mut self) -> u64 {
        for _ in 0..8 {
            let line = self.stdout.read_line();
            if let Some(id) = answer_id(line) {
                // An error result is short; a successful one holds the file.
                assert_read(line);
                return id;
            }
        }
        panic!("no answer among the reference server's messages");
    }

    fn read(&mut self, path: &str) {
        let id = self.send_read(path);
        assert_eq!(self.receive_read(), id, "an answer to another request");
    }

    /// `total` reads with `depth` in flight on the one connection: a new
    /// request goes out as each answer comes in.
    fn pipelined(&mut self, path: &str, total: usize, depth: usize) -> Figures {
        let first_id = self.next_id;
        let mut sent_at: Vec<Option<Instant>> = vec![None; total];
        let mut samples = Vec::with_capacity(total);
        let started = Instant::now();
        let mut sent = 0;
        while sent < depth.min(total) {
            sent_at[sent] = Some(Instant::now());
            self.send_read(path);
            sent += 1;
        }
        while samples.len() < total {
            let id = self.receive_read();
            let index = usize::try_from(id - first_id).expect("an index");
            let at = sent_at[index]
                .take()
                .expect("an answer to a request in flight");
            samples.push(at.elapsed());
            if sent < total {
                sent_at[sent] = Some(Instant::now());
                self.send_read(path);
                sent += 1;
            }
        }
        figures(samples, started.elapsed())
    }
}

/// The numeric id of an answer line (`…,"id":7}`), `None` for a
/// notification. Node writes the id last; only JSON structure has `"id":`
/// unescaped.
fn answer_id(line: &[u8]) -> Option<u64> {
    let key = b"\"id\":";
    let at = line.windows(key.len()).rposition(|window| window == key)? + key.len();
    let digits = line[at..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Newline-delimited lines from a pipe, each waited for at most `PATIENCE`
/// (`poll` before every read: a pipe has no read timeout).
struct LineReader {
    pipe: ChildStdout,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Where the search for the next newline resumes.
    scanned: usize,
}

impl LineReader {
    fn new(pipe: ChildStdout) -> LineReader {
        LineReader {
            pipe,
            buffer: vec![0; 1 << 20],
            start: 0,
            end: 0,
            scanned: 0,
        }
    }

    fn read_line(&mut self) -> &[u8] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(offset) = self.buffer[self.scanned..self.end]
                .iter()
                .position(|byte| *byte == b'\n')
            {
                let line = self.start..self.scanned + offset;
                self.start = line.end + 1;
                self.scanned = self.start;
                return &self.buffer[line];
            }
            self.scanned = self.end;
            self.fill(deadline);
        }
    }

    fn fill(&mut self, deadline: Instant) {
        if self.end == self.buffer.len() {
            assert!(self.start > 0, "a line longer than 1 MiB");
            self.buffer.copy_within(self.start..self.end, 0);
            (self.end, self.scanned) = (self.end - self.start, self.scanned - self.start);
            self.start = 0;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut descriptor = libc::pollfd {
            fd: self.pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = i32::try_from(remaining.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, alive for the duration of the call.
        let ready = unsafe { libc::poll(&mut descriptor, 1, timeout) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            assert!(
                error.kind() == std::io::ErrorKind::Interrupted,
                "poll: {error}"
            );
            return;
        }
        assert!(
            ready > 0,
            "the reference server sent nothing for {PATIENCE:?}"
        );
        let read = self
            .pipe
            .read(&mut self.buffer[self.end..])
            .expect("read from the reference server");
        assert!(read > 0, "the reference server closed its stdout");
        self.end += read;
    }
}

/// A child process, killed by pid when dropped.
/// The file service and the gateway, laid out as `llmbasedos up` does
/// (caps file and socket in `<dir>/mcp`).
struct Stack {
    _gateway: ChildProcess,
    _fs: ChildProcess,
    fs_socket: PathBuf,
    /// Our caps, as published for the gateway.
    caps: Value,
    port: u16,
    /// A bearer token per client; the sequential figures use the first.
    tokens: Vec<String>,
}

impl Stack {
    fn start(binaries: &Binaries, dir: &Path, root: &Path) -> Stack {
        let caps_dir = dir.join("mcp");
        std::fs::create_dir(&caps_dir).expect("create the caps dir");
        let caps = Command::new(FS_BINARY)
            .arg("--print-caps")
            .output()
            .expect("run llmbasedos-fs --print-caps");
        assert!(caps.status.success(), "--print-caps failed: {caps:?}");
        publish(&caps_dir.join("fs.cap.json"), &caps.stdout);
        let caps = serde_json::from_slice(&caps.stdout).expect("caps JSON");

        let fs_socket = caps_dir.join("fs.sock");
        let config = dir.join("fs.yaml");
        std::fs::write(&config, "max_read_bytes: 11534336\n").expect("write the fs config");
        let mut fs = ChildProcess::spawn(
            "file service",
            Command::new(FS_BINARY)
                .arg("--socket")
                .arg(&fs_socket)
                .arg("--config")
                .arg(&config)
                .args(["--idle-timeout", "0"])
                .env("LLMBASEDOS_FS_ROOT", root)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.join("fs.log"),
        );
        fs.wait_until("its socket", || UnixStream::connect(&fs_socket).is_ok());

        // One token per client: the gateway's request limit is per token
        // holder, so 16 clients are 16 holders, as in real use.
        let tokens: Vec<String> = (0..CLIENTS).map(|_| random_token()).collect();
        let port = free_port();
        let mut config_text = format!(
            "listen: 127.0.0.1:{port}\nunix_socket: {}\ncaps_dir: {}\nauth:\n  tokens:\n",
            dir.join("gateway.sock").display(),
            caps_dir.display(),
        );
        for (index, token) in tokens.iter().enumerate() {
            let digest = hex::encode(Sha256::digest(token.as_bytes()));
            config_text.push_str(&format!(
                "    - name: client-{index}\n      sha256: {digest}\n"
            ));
        }
        let config = dir.join("gateway.yaml");
        std::fs::write(&config, config_text).expect("write the gateway config");
        let mut gateway = ChildProcess::spawn(
            "gateway",
            Command::new(&binaries.gateway)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.join("gateway.log"),
        );
        gateway.wait_until("its TCP listener", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Stack {
            _gateway: gateway,
            _fs: fs,
            fs_socket,
            caps,
            port,
            tokens,
        }
    }
}

fn random_token() -> String {
    let mut random = [0u8; 24];
    File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut random))
        .expect("random bytes");
    hex::encode(random)
}

/// Writes a file whole or not at all (the gateway watches the directory).
fn publish(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address").port()
}

/// Writes `mebibytes` of text in files of 1 MiB spread over 10 directories,
/// with one rare line per file for grep to find.
fn generate_tree(root: &Path, mebibytes: usize) {
    let line = "the quick brown fox jumps over the lazy dog 0123456789 lorem ipsum dolor\n";
    let mut block = String::with_capacity(1 << 20);
    while block.len() + line.len() < (1 << 20) - 64 {
        block.push_str(line);
    }
    for index in 0..mebibytes {
        let dir = root.join(format!("tree/d{}", index % 10));
        std::fs::create_dir_all(&dir).expect("create a tree dir");
        let mut content = block.clone();
        content.push_str(&format!("needle number {index}\n"));
        std::fs::write(dir.join(format!("f{index:04}.txt")), content).expect("write a tree file");
    }
}

/// The reference server's tools (from its `tools/list`) beside our methods
/// (from our caps), then what only we offer.
fn print_method_table(reference_tools: &[String], caps: &Value) {
    let methods: Vec<(&str, bool)> = caps["methods"]
        .as_array()
        .expect("caps methods")
        .iter()
        .map(|method| {
            (
                method["name"].as_str().expect("a method name"),
                method["tool"] != false,
            )
        })
        .collect();
    let ours = |name: &str| {
        let tool = proto::caps::tool_name(name).expect("an mcp.<service>.<method> name");
        assert!(
            methods.iter().any(|(method, _)| *method == name),
            "{name} is in this bench's EQUIVALENTS but not in llmbasedos-fs's caps: update the table"
        );
        format!("{name} ({tool})")
    };
    println!("\nmethods: the reference server's tools (its tools/list) beside ours (our caps)");
    println!("  {:<28} {:<40} note", "reference tool", "llmbasedos-fs");
    for tool in reference_tools {
        let (method, note) = match EQUIVALENTS.iter().find(|(name, _, _)| name == tool) {
            Some((_, Some(method), note)) => (ours(method), *note),
            Some((_, None, note)) => ("—".to_owned(), *note),
            None => (
                "?".to_owned(),
                "new there: map it in this bench's EQUIVALENTS",
            ),
        };
        println!("{}", format!("  {tool:<28} {method:<40} {note}").trim_end());
    }
    for (method, is_tool) in &methods {
        let mapped = EQUIVALENTS
            .iter()
            .any(|(_, equivalent, _)| *equivalent == Some(*method));
        if !mapped {
            let note = if *is_tool {
                "ours only"
            } else {
                "ours only: MCP resources (file:///), not a tool"
            };
            let name = if *is_tool {
                ours(method)
            } else {
                (*method).to_owned()
            };
            println!("  {:<28} {name:<40} {note}", "—");
        }
    }
}
