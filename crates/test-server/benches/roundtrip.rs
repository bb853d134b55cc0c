//! Round trip of a no-op method over one UNIX-socket connection between two
//! processes, next to the floor measured in the same run: a raw ping-pong of
//! the same bytes between the same two processes.
//!
//! `cargo bench -p test-server --bench roundtrip` prints, for the unpinned
//! placement and then with both processes pinned to CPU 0:
//! - sequential round trip p50/p99 (framework and raw floor, and the
//!   framework's cost over the floor);
//! - pipelined throughput (framework and raw floor).
//!
//! The server process is this binary re-executed in child mode: it serves
//! the test server with server-kit on the same runtime `server_kit::run`
//! builds, and a raw ping-pong on a second socket from a plain thread.
//! Options (environment): `ROUNDTRIP_ITERATIONS` (default 20000),
//! `ROUNDTRIP_PIPELINED` (default 200000), `ROUNDTRIP_WORKERS` (runtime
//! worker threads, default as shipped).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bench_support::bench::{NulClient, connect_unix, ping_pong};
use bench_support::measure::{Figures, env_number, micros, sequential, smoke};
use bench_support::{ChildProcess, pin_to_cpu0};

const CHILD_ENV: &str = "ROUNDTRIP_CHILD_DIR";
const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"mcp.test.noop","params":{}}"#;
const RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    // A short smoke version under `cargo test --benches`, so the bench
    // cannot rot.
    let smoke = smoke();
    let iterations = if smoke {
        200
    } else {
        env_number("ROUNDTRIP_ITERATIONS", 20_000)
    };
    let pipelined = if smoke {
        2_000
    } else {
        env_number("ROUNDTRIP_PIPELINED", 200_000)
    };
    println!("roundtrip: no-op method, one UNIX-socket connection, two processes");
    println!("sequential: {iterations} round trips; pipelined: {pipelined} requests\n");
    let unpinned = measure("unpinned", iterations, pipelined);
    pin_to_cpu0();
    let pinned = measure("pinned to CPU 0 (both processes)", iterations, pipelined);
    if smoke {
        println!("smoke run (cargo test): the benchmark works; `cargo bench` gives the figures");
        return;
    }
    println!("summary");
    for report in [&unpinned, &pinned] {
        println!(
            "  {:<34} overhead p50 {:>6.1} µs (target ≤ 10)   pipelined {:>9.0} req/s (target ≥ 150000)",
            report.placement,
            report.overhead_p50_us(),
            report.framework_throughput
        );
    }
}

struct Report {
    placement: &'static str,
    framework: Figures,
    floor: Figures,
    framework_throughput: f64,
}

impl Report {
    fn overhead_p50_us(&self) -> f64 {
        (self.framework.p50 - self.floor.p50).as_secs_f64() * 1e6
    }
}

fn measure(placement: &'static str, iterations: usize, pipelined: usize) -> Report {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ChildServer::start(dir.path());
    let framework = round_trips(&server.framework_socket, iterations);
    let floor = round_trips(&server.raw_socket, iterations);
    let framework_throughput = throughput(&server.framework_socket, pipelined);
    let floor_throughput = throughput(&server.raw_socket, pipelined);
    println!("{placement}");
    println!("  sequential round trip      p50        p99");
    println!(
        "    framework          {:>8.1} µs {:>8.1} µs",
        micros(framework.p50),
        micros(framework.p99)
    );
    println!(
        "    raw floor          {:>8.1} µs {:>8.1} µs",
        micros(floor.p50),
        micros(floor.p99)
    );
    println!(
        "    framework cost     {:>8.1} µs {:>8.1} µs",
        micros(framework.p50) - micros(floor.p50),
        micros(framework.p99) - micros(floor.p99)
    );
    println!("  pipelined throughput");
    println!("    framework          {framework_throughput:>10.0} req/s");
    println!(
        "    raw floor          {floor_throughput:>10.0} req/s  (framework at {:.0}% of the floor)\n",
        100.0 * framework_throughput / floor_throughput
    );
    drop(server);
    Report {
        placement,
        framework,
        floor,
        framework_throughput,
    }
}

/// Sequential round trips: one request, wait for its answer, repeat.
fn round_trips(socket: &Path, iterations: usize) -> Figures {
    let mut client = NulClient::new(connect_unix(socket));
    let mut frame = REQUEST.to_vec();
    frame.push(0);
    sequential(iterations / 10, iterations, || {
        assert_eq!(client.round_trip(&frame), RESPONSE, "unexpected answer");
    })
}

/// Pipelined: a writer thread sends every request (each with its own id)
/// without waiting while this thread reads the answers.
fn throughput(socket: &Path, count: usize) -> f64 {
    let stream = UnixStream::connect(socket).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut batch = Vec::with_capacity(64 * 1024);
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < count {
            batch.clear();
            while sent < count && batch.len() < 60 * 1024 {
                sent += 1;
                let _ = write!(
                    batch,
                    r#"{{"jsonrpc":"2.0","id":{sent},"method":"mcp.test.noop","params":{{}}}}"#
                );
                batch.push(0);
            }
            writer.write_all(&batch).expect("write");
        }
    });
    let mut reader = stream;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut answered = 0;
    while answered < count {
        let read = reader.read(&mut buffer).expect("read");
        assert!(
            read > 0,
            "server closed the connection after {answered} answers"
        );
        answered += buffer[..read].iter().filter(|byte| **byte == 0).count();
    }
    let elapsed = start.elapsed();
    sender.join().expect("sender");
    count as f64 / elapsed.as_secs_f64()
}

/// The server process, killed by pid when dropped.
struct ChildServer {
    _process: ChildProcess,
    framework_socket: PathBuf,
    raw_socket: PathBuf,
}

impl ChildServer {
    fn start(dir: &Path) -> ChildServer {
        let framework_socket = dir.join("framework.sock");
        let raw_socket = dir.join("raw.sock");
        let mut process = ChildProcess::spawn(
            "server process",
            Command::new(std::env::current_exe().expect("own path"))
                .env(CHILD_ENV, dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.join("server.log"),
        );
        process.wait_until("its two sockets", || {
            UnixStream::connect(&framework_socket).is_ok()
                && UnixStream::connect(&raw_socket).is_ok()
        });
        ChildServer {
            _process: process,
            framework_socket,
            raw_socket,
        }
    }
}

/// The server process: the framework on one socket, the raw floor on another.
fn child(dir: &Path) {
    let raw = UnixListener::bind(dir.join("raw.sock")).expect("bind raw");
    std::thread::spawn(move || {
        for stream in raw.incoming() {
            let stream = stream.expect("accept");
            // The same bytes the framework sends.
            std::thread::spawn(move || ping_pong(stream, RESPONSE));
        }
    });
    let workers = std::env::var("ROUNDTRIP_WORKERS")
        .ok()
        .and_then(|value| value.parse().ok());
    let runtime = server_kit::runtime("roundtrip", workers).expect("runtime");
    let server = Arc::new(test_server::server().expect("test server"));
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(dir.join("framework.sock")).expect("bind");
        server
            .serve(
                listener,
                std::future::pending(),
                server_kit::ServeOptions::default(),
            )
            .await;
    });
}
