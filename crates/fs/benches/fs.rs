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
//! - the same read through the gateway over WebSocket (the classic
//!   vocabulary): sequential, then 16 clients with a token each (the gateway
//!   limits concurrent requests per token holder);
//! - the reference server's `read_text_file` of the same file: sequential,
//!   then 16 requests pipelined on its one stdio connection (how a host uses
//!   it), and the ratios against the target (≥ 3× at p50 and in throughput);
//! - the path hosts actually use: MCP `tools/call` of `fs_read` on the same
//!   file through the stdio bridge (`llmbasedos-gateway stdio --unix-socket
//!   …`, as Claude Desktop launches it: bridge → gateway → fs, 3 hops) and
//!   over Streamable HTTP (a 2026-07-28 stateless call on one keep-alive
//!   connection), sequential and (bridge) 16 pipelined, printed beside the
//!   reference over stdio with reference/ours at p50 and p99;
//! - the floor of the bridge's path ([`floor`]): the same request and
//!   answer bytes through three minimal relay hops laid out like ours, and
//!   reference/floor at p50 beside the target: what any three-hop path
//!   could reach against the reference on this machine, in this run;
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

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use bench_support::bench::{
    Gateway, HttpClient, NulClient, StdioPeer, WsClient, answer_id, connect_unix, nul_frame,
    publish, sibling_binary,
};
use bench_support::measure::{Figures, concurrent, env_number, micros, sequential, smoke};
use bench_support::{ChildProcess, PATIENCE};
use serde_json::{Value, json};

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

/// What a 2026-07-28 host sends over Streamable HTTP: a stateless call.
const HTTP_READ: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fs_read","#,
    r#""arguments":{"path":"/4k.txt"},"#,
    r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientCapabilities":{},"#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"fs-bench","version":"1"}}}}"#
);
const HTTP_PROTOCOL_VERSION: &str = "2026-07-28";

#[path = "fs/floor.rs"]
mod floor;
#[path = "fs/server.rs"]
mod server;

fn main() -> ExitCode {
    if let Some(code) = floor::hop_if_asked() {
        return code;
    }
    let smoke = smoke();
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
    let read = nul_frame("mcp.fs.read", json!({"path": "/4k.txt"}));
    let mut client = NulClient::new(connect_unix(&stack.fs_socket));
    let backend = sequential(warmup, reads, || backend_call(&mut client, &read));
    print_figures("sequential, 1 connection", &backend);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| NulClient::new(connect_unix(&stack.fs_socket)))
        .collect();
    let (backend_concurrent, _) = concurrent(clients, reads / CLIENTS, |client| {
        backend_call(client, &read);
    });
    print_figures(
        &format!("{CLIENTS} concurrent clients"),
        &backend_concurrent,
    );

    println!(
        "\nthrough llmbasedos-gateway over WebSocket (ws://127.0.0.1:{}/ws, bearer token, classic method mcp.fs.read)",
        stack.gateway.port
    );
    let ws_read = serde_json::to_string(&json!({
        "jsonrpc": "2.0", "id": 1, "method": "mcp.fs.read", "params": {"path": "/4k.txt"},
    }))
    .expect("serialize");
    let mut ws_client = WsClient::connect(stack.gateway.port, &stack.gateway.tokens[0]);
    wait_for_service(&mut ws_client, &ws_read);
    let gateway = sequential(warmup, reads, || {
        assert_read(ws_client.exchange(&ws_read).as_bytes());
    });
    drop(ws_client);
    print_figures("sequential, 1 client", &gateway);
    let clients: Vec<WsClient> = stack
        .gateway
        .tokens
        .iter()
        .map(|token| WsClient::connect(stack.gateway.port, token))
        .collect();
    let (gateway_concurrent, _) = concurrent(clients, reads / CLIENTS, |client| {
        assert_read(client.exchange(&ws_read).as_bytes());
    });
    print_figures(
        &format!("{CLIENTS} concurrent clients, a token each"),
        &gateway_concurrent,
    );

    println!("\nMCP tools/call of fs_read through llmbasedos-gateway, as hosts call it");
    let mut bridge = StdioReads::new(
        StdioPeer::start(
            "stdio bridge",
            Command::new(&binaries.gateway)
                .arg("stdio")
                .arg("--unix-socket")
                .arg(&stack.gateway.unix_socket),
            dir.path().join("bridge.log"),
        ),
        "fs_read",
        "/4k.txt",
    );
    bridge.check_first_read(|result| &result["structuredContent"]["content"]);
    let bridge_sequential = sequential(warmup, reads, || bridge.read());
    print_figures("stdio bridge (3 hops), sequential", &bridge_sequential);
    let bridge_pipelined = bridge.pipelined(reads, CLIENTS);
    print_figures(
        &format!("stdio bridge, {CLIENTS} pipelined on 1 session"),
        &bridge_pipelined,
    );
    // What the floor's last hop answers: this very answer.
    let bridge_result = bridge.peer.request(
        "tools/call",
        json!({"name": "fs_read", "arguments": {"path": "/4k.txt"}}),
    );
    drop(bridge);
    let mut http_client = HttpClient::connect(
        stack.gateway.port,
        &stack.gateway.tokens[0],
        HTTP_PROTOCOL_VERSION,
        HTTP_READ,
        check_http_read,
    );
    let http_sequential = sequential(warmup, reads, || {
        assert!(http_client.call(), "a sequential call was refused");
    });
    drop(http_client);
    print_figures("Streamable HTTP (2026-07-28), sequential", &http_sequential);

    let absolute = root.join("4k.txt").display().to_string();
    let mut reference = StdioReads::new(
        StdioPeer::start(
            "reference server",
            Command::new(&binaries.reference).arg(&root),
            dir.path().join("reference.log"),
        ),
        "read_text_file",
        &absolute,
    );
    println!(
        "\nreference: {} {} (npm @modelcontextprotocol/server-filesystem on node), read_text_file over stdio",
        reference.peer.server_name, reference.peer.server_version
    );
    reference.check_first_read(|result| &result["content"][0]["text"]);
    let reference_sequential = sequential(warmup, reads, || reference.read());
    print_figures("sequential, 1 connection", &reference_sequential);
    let reference_pipelined = reference.pipelined(reads, CLIENTS);
    print_figures(
        &format!("{CLIENTS} requests pipelined on 1 connection"),
        &reference_pipelined,
    );
    let reference_tools = reference.tools();
    drop(reference);

    let (floor_peer, floor_hops) = floor::Floor::start(dir.path(), &bridge_result);
    let mut floor_reads = StdioReads::new(floor_peer, "fs_read", "/4k.txt");
    println!(
        "\nthe floor of the bridge's path: the same bytes through 3 minimal hops (pipe → relay → UNIX socket → relay → UNIX socket → canned answer)"
    );
    floor_reads.check_first_read(|result| &result["structuredContent"]["content"]);
    let floor_sequential = sequential(warmup, reads, || floor_reads.read());
    print_figures("3 minimal hops, sequential", &floor_sequential);
    drop(floor_reads);
    drop(floor_hops);

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
    println!(
        "\nMCP tools/call of a 4 KiB file, reference over stdio against ours (reference/ours; target: ≥ {TARGET_SPEEDUP}× at p50)"
    );
    println!(
        "  {:<40} {:>9} {:>9}   {:>7} {:>7}",
        "", "p50 µs", "p99 µs", "p50 ×", "p99 ×"
    );
    let rows = [
        (
            "reference, stdio, sequential",
            &reference_sequential,
            &reference_sequential,
        ),
        (
            "ours, stdio bridge, sequential",
            &bridge_sequential,
            &reference_sequential,
        ),
        (
            "ours, Streamable HTTP, sequential",
            &http_sequential,
            &reference_sequential,
        ),
        (
            "floor, 3 minimal hops, sequential",
            &floor_sequential,
            &reference_sequential,
        ),
        (
            "reference, stdio, 16 pipelined",
            &reference_pipelined,
            &reference_pipelined,
        ),
        (
            "ours, stdio bridge, 16 pipelined",
            &bridge_pipelined,
            &reference_pipelined,
        ),
    ];
    for (name, ours, reference) in rows {
        let p50 = reference.p50.as_secs_f64() / ours.p50.as_secs_f64();
        let p99 = reference.p99.as_secs_f64() / ours.p99.as_secs_f64();
        let mark = if std::ptr::eq(ours, reference) {
            ""
        } else {
            verdict(p50)
        };
        let line = format!(
            "  {name:<40} {:>9.1} {:>9.1}   {p50:>6.2}× {p99:>6.2}×  {mark}",
            micros(ours.p50),
            micros(ours.p99),
        );
        println!("{}", line.trim_end());
    }

    let reach = reference_sequential.p50.as_secs_f64() / floor_sequential.p50.as_secs_f64();
    let above = bridge_sequential.p50.as_secs_f64() / floor_sequential.p50.as_secs_f64();
    println!("\nthe stdio bridge against its floor (3 minimal hops, same bytes, same run)");
    println!(
        "  floor p50 {:.1} µs; bridge p50 {:.1} µs = {above:.2}× the floor ({:.1} µs above it)",
        micros(floor_sequential.p50),
        micros(bridge_sequential.p50),
        micros(bridge_sequential.p50) - micros(floor_sequential.p50),
    );
    println!(
        "  reference p50 / floor p50 = {:.1} / {:.1} µs = {reach:.2}×: the most any 3-hop path can reach against the reference here",
        micros(reference_sequential.p50),
        micros(floor_sequential.p50),
    );
    if reach < TARGET_SPEEDUP {
        println!(
            "  the target (≥ {TARGET_SPEEDUP}× at p50) is beyond what three hops on this machine can do: reference/floor is {reach:.2}×"
        );
    } else {
        println!(
            "  the target (≥ {TARGET_SPEEDUP}× at p50) is within what three hops can do: reference/floor is {reach:.2}×"
        );
    }

    println!("\nllmbasedos-fs on its backend socket, other methods");
    let list = nul_frame("mcp.fs.list", json!({"path": "/many", "limit": 1000}));
    let iterations = if smoke { 5 } else { 200 };
    let lists = sequential(0, iterations, || backend_call(&mut client, &list));
    println!(
        "  mcp.fs.list of 1,000 entries: {iterations} calls, p50 {:.2} ms, p99 {:.2} ms",
        micros(lists.p50) / 1000.0,
        micros(lists.p99) / 1000.0
    );
    let grep = nul_frame(
        "mcp.fs.grep",
        json!({"pattern": "needle number [0-9]+", "path": "/tree", "max_results": 10000}),
    );
    let runs = 3;
    let greps = sequential(0, runs, || backend_call(&mut client, &grep));
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
        let gateway = sibling_binary(Path::new(FS_BINARY), "llmbasedos-gateway")?;
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

fn print_figures(name: &str, figures: &Figures) {
    println!(
        "  {name:<42} {:>6} calls  p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} calls/s",
        figures.calls,
        micros(figures.p50),
        micros(figures.p99),
        figures.per_second
    );
}

/// A successful read of the whole file: a result, and room for the content.
fn assert_read(answer: &[u8]) {
    assert!(
        answer.len() > FILE_SIZE && answer.windows(9).any(|window| window == b"\"result\":"),
        "not a successful read of the file: {}",
        String::from_utf8_lossy(answer)
    );
}

/// One backend round trip, which must succeed.
fn backend_call(client: &mut NulClient<UnixStream>, frame: &[u8]) {
    let answer = client.round_trip(frame);
    assert!(
        answer.windows(9).any(|window| window == b"\"result\":"),
        "the server answered with an error: {}",
        String::from_utf8_lossy(answer)
    );
}

/// The gateway listens before it has read the caps directory: wait until
/// it routes the method, then check one answer in full.
fn wait_for_service(client: &mut WsClient, request: &str) {
    let deadline = Instant::now() + PATIENCE;
    let answer: Value = loop {
        let answer: Value =
            serde_json::from_str(client.exchange(request).as_str()).expect("a JSON answer");
        if answer["error"]["code"] != -32601 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway does not route mcp.fs.read: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_file(&answer["result"]["content"], &answer);
}

/// The 4 KiB file's text, whole.
fn assert_file(text: &Value, answer: &Value) {
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.len() == FILE_SIZE && text.bytes().all(|byte| byte == b'x'),
        "unexpected answer: {answer}"
    );
}

/// The first Streamable HTTP answer: a successful tool result with the file.
fn check_http_read(body: &[u8]) {
    let answer: Value = serde_json::from_slice(body).expect("a JSON answer");
    assert!(
        answer["result"]["isError"] != true,
        "fs_read failed over HTTP: {answer}"
    );
    assert_file(&answer["result"]["structuredContent"]["content"], &answer);
}

/// Reads of one file through an MCP server on stdio with one tool call, as
/// a host makes them: the reference server, or our stdio bridge.
struct StdioReads {
    peer: StdioPeer,
    tool: &'static str,
    path: String,
    request: String,
}

impl StdioReads {
    fn new(peer: StdioPeer, tool: &'static str, path: &str) -> StdioReads {
        // The path is a temp dir's: nothing to escape.
        assert!(!path.contains(['"', '\\']), "a path to escape: {path}");
        StdioReads {
            peer,
            tool,
            path: path.to_owned(),
            request: String::new(),
        }
    }

    fn tools(&mut self) -> Vec<String> {
        let listed = self.peer.request("tools/list", json!({}));
        listed["tools"]
            .as_array()
            .expect("a tool list")
            .iter()
            .map(|tool| tool["name"].as_str().expect("a tool name").to_owned())
            .collect()
    }

    /// One read outside the measurements, checked in full; `text` picks
    /// the file's text out of the result.
    fn check_first_read(&mut self, text: impl Fn(&Value) -> &Value) {
        let result = self.peer.request(
            "tools/call",
            json!({"name": self.tool, "arguments": {"path": self.path}}),
        );
        assert!(result["isError"] != true, "{} failed: {result}", self.tool);
        assert_file(text(&result), &result);
    }

    fn send_read(&mut self) -> u64 {
        let id = self.peer.take_id();
        self.request.clear();
        self.request.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{"path":"{}"}}}}}}"#,
            self.tool, self.path
        ));
        let request = std::mem::take(&mut self.request);
        self.peer.send(&request);
        self.request = request;
        id
    }

    /// Reads one answer to a read: its id, after checking it succeeded.
    /// Notifications in between are skipped, a few at most.
    fn receive_read(&mut self) -> u64 {
        for _ in 0..8 {
            let line = self.peer.read_line();
            if let Some(id) = answer_id(line) {
                // An error result is short; a successful one holds the file.
                assert_read(line);
                return id;
            }
        }
        panic!("no answer among the stdio server's messages");
    }

    fn read(&mut self) {
        let id = self.send_read();
        assert_eq!(self.receive_read(), id, "an answer to another request");
    }

    /// `total` reads with `depth` in flight on the one connection: a new
    /// request goes out as each answer comes in.
    fn pipelined(&mut self, total: usize, depth: usize) -> Figures {
        let mut sent_at: Vec<Option<Instant>> = vec![None; total];
        let mut samples = Vec::with_capacity(total);
        let started = Instant::now();
        let mut first_id = None;
        let mut sent = 0;
        while sent < depth.min(total) {
            sent_at[sent] = Some(Instant::now());
            first_id.get_or_insert(self.send_read());
            sent += 1;
        }
        let first_id = first_id.expect("at least one read");
        while samples.len() < total {
            let id = self.receive_read();
            let index = usize::try_from(id - first_id).expect("an index");
            let at = sent_at[index]
                .take()
                .expect("an answer to a request in flight");
            samples.push(at.elapsed());
            if sent < total {
                sent_at[sent] = Some(Instant::now());
                self.send_read();
                sent += 1;
            }
        }
        Figures::of(samples, started.elapsed())
    }
}

/// The file service and the gateway, laid out as `llmbasedos up` does
/// (caps file and socket in `<dir>/mcp`).
struct Stack {
    gateway: Gateway,
    _fs: ChildProcess,
    fs_socket: PathBuf,
    /// Our caps, as published for the gateway.
    caps: Value,
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
        let fs = server::start(FS_BINARY, &fs_socket, &config, root, dir.join("fs.log"));
        let gateway = Gateway::start(&binaries.gateway, dir, &caps_dir, CLIENTS);
        Stack {
            gateway,
            _fs: fs,
            fs_socket,
            caps,
        }
    }
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
