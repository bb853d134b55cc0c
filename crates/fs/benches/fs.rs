//! The file service on its backend socket, as the gateway will use it.
//!
//! `cargo bench -p fs --bench fs` starts `llmbasedos-fs` on a generated
//! root and prints:
//! - `mcp.fs.read` of a 4 KiB file: p50/p99 of sequential round trips on
//!   one connection, then with 16 concurrent clients (one connection
//!   each), with throughput;
//! - `mcp.fs.list` of a 1,000-entry directory;
//! - `mcp.fs.grep` over a generated 100 MiB tree.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs a short
//! smoke version on small data, so the benchmark cannot rot. Options
//! (environment): `FS_BENCH_READS` (default 20000), `FS_BENCH_GREP_MIB`
//! (default 100).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-fs");
const CLIENTS: usize = 16;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    frame: Vec<u8>,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).expect("connect to llmbasedos-fs");
        Client {
            writer: stream.try_clone().expect("clone the stream"),
            reader: BufReader::with_capacity(1 << 20, stream),
            frame: Vec::new(),
        }
    }

    /// One round trip of a prepared request frame (NUL included).
    fn call(&mut self, request: &[u8]) -> Duration {
        let started = Instant::now();
        self.writer.write_all(request).expect("send");
        self.frame.clear();
        self.reader.read_until(0, &mut self.frame).expect("receive");
        let elapsed = started.elapsed();
        assert!(
            self.frame.windows(9).any(|window| window == b"\"result\":"),
            "the server answered with an error: {}",
            String::from_utf8_lossy(&self.frame)
        );
        elapsed
    }
}

fn request(method: &str, params: serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": method, "params": params,
    }))
    .expect("serialize");
    bytes.push(0);
    bytes
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, root: &Path) -> (ServerProcess, std::path::PathBuf) {
    let socket = dir.join("fs.sock");
    let config = dir.join("fs.yaml");
    std::fs::write(&config, "max_read_bytes: 11534336\n").expect("write the config");
    let child = Command::new(BINARY)
        .arg("--socket")
        .arg(&socket)
        .arg("--config")
        .arg(&config)
        .env("LLMBASEDOS_FS_ROOT", root)
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn llmbasedos-fs");
    let server = ServerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "llmbasedos-fs does not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    (server, socket)
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

fn main() {
    let smoke = !std::env::args().any(|argument| argument == "--bench");
    let reads = if smoke {
        320
    } else {
        env_number("FS_BENCH_READS", 20_000)
    };
    let grep_mib = if smoke {
        2
    } else {
        env_number("FS_BENCH_GREP_MIB", 100)
    };
    let dir = tempfile::tempdir().expect("create a temp dir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("create the root");
    std::fs::write(root.join("4k.txt"), "x".repeat(4096)).expect("write the 4 KiB file");
    std::fs::create_dir(root.join("many")).expect("create the listing dir");
    for index in 0..1000 {
        std::fs::write(root.join(format!("many/entry-{index:04}.txt")), "e").expect("write");
    }
    generate_tree(&root, grep_mib);
    let (_server, socket) = start(dir.path(), &root);

    println!("llmbasedos-fs on its backend socket (NUL-delimited JSON-RPC over a UNIX socket)\n");
    let read = request("mcp.fs.read", serde_json::json!({"path": "/4k.txt"}));
    let mut client = Client::connect(&socket);
    for _ in 0..reads.min(500) {
        client.call(&read);
    }
    let started = Instant::now();
    let mut sequential: Vec<Duration> = (0..reads).map(|_| client.call(&read)).collect();
    let elapsed = started.elapsed();
    sequential.sort();
    println!(
        "mcp.fs.read 4 KiB, sequential, 1 connection: {reads} calls, p50 {:.1} µs, p99 {:.1} µs, {:.0} calls/s",
        micros(percentile(&sequential, 0.5)),
        micros(percentile(&sequential, 0.99)),
        reads as f64 / elapsed.as_secs_f64()
    );

    let per_client = reads / CLIENTS;
    let started = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let socket = socket.clone();
            let read = read.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket);
                (0..per_client)
                    .map(|_| client.call(&read))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut concurrent: Vec<Duration> = handles
        .into_iter()
        .flat_map(|handle| handle.join().expect("a client thread"))
        .collect();
    let elapsed = started.elapsed();
    concurrent.sort();
    println!(
        "mcp.fs.read 4 KiB, {CLIENTS} concurrent clients: {} calls, p50 {:.1} µs, p99 {:.1} µs, {:.0} calls/s",
        concurrent.len(),
        micros(percentile(&concurrent, 0.5)),
        micros(percentile(&concurrent, 0.99)),
        concurrent.len() as f64 / elapsed.as_secs_f64()
    );

    let list = request(
        "mcp.fs.list",
        serde_json::json!({"path": "/many", "limit": 1000}),
    );
    let iterations = if smoke { 5 } else { 200 };
    let mut lists: Vec<Duration> = (0..iterations).map(|_| client.call(&list)).collect();
    lists.sort();
    println!(
        "mcp.fs.list of 1,000 entries: {iterations} calls, p50 {:.2} ms, p99 {:.2} ms",
        micros(percentile(&lists, 0.5)) / 1000.0,
        micros(percentile(&lists, 0.99)) / 1000.0
    );

    let grep = request(
        "mcp.fs.grep",
        serde_json::json!({"pattern": "needle number [0-9]+", "path": "/tree", "max_results": 10000}),
    );
    let runs = 3;
    let mut greps: Vec<Duration> = (0..runs).map(|_| client.call(&grep)).collect();
    greps.sort();
    let median = greps[runs / 2];
    println!(
        "mcp.fs.grep over {grep_mib} MiB in {grep_mib} files: median of {runs} {:.1} ms, {:.0} MiB/s",
        micros(median) / 1000.0,
        grep_mib as f64 / median.as_secs_f64()
    );
    if smoke {
        println!(
            "\nsmoke run (cargo test): the benchmark works; `cargo bench -p fs --bench fs` gives the figures"
        );
    }
}
