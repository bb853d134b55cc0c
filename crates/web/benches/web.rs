//! What the web console costs, under `llmbasedos up` (issue 18's
//! benchmark): the server time of each page with 100+ tools behind the
//! gateway and 1,000+ log lines in the log source, the live log tail
//! following 1,000 lines/s without losing any, and the console's idle RSS.
//!
//! `cargo bench -p web --bench web` lays out, in a temp dir, a bin dir with
//! the real `llmbasedos-gateway` and `llmbasedos-web` and the real
//! `llmbasedos-test-server` behind a two-line wrapper that adds
//! `--extra-tools 100` (the wrapper `exec`s it, so `up` sees its own child
//! serve the socket), and runs the real `llmbasedos up --with-test-server`
//! on it: `up` publishes the caps, supervises the three, captures their
//! log lines and serves its control socket, which the console reads. The
//! log lines are written by the test server's extra tools, called through
//! the gateway's UNIX socket: a backend's lines captured by `up`, as in
//! real use. Then, signed in with the one-time URL `up` prints (the
//! bootstrap token redeemed for a session cookie, as the page's script
//! does), it prints:
//!
//! - each page's time, p50 and p99, over sequential requests on one
//!   keep-alive connection (loopback: what is measured is the console's
//!   work and its calls to the gateway and to `up`), beside the 20 ms
//!   target;
//! - the log tail (`/api/logs/stream`, server-sent events) following lines
//!   written at 1,000/s for a bounded time: lines written, received, and
//!   lost (written − received, duplicates counted apart);
//! - the console's RSS (VmRSS) just started and idle after the run, beside
//!   the 15 MiB target.
//!
//! Under `cargo test --all-targets` it runs as a smoke test: a few requests
//! per page and 200 tailed lines, asserting what must hold (every page
//! answers 200, the tools page lists 100+ tools, the logs page its full
//! 200 rows, no tailed line is lost) and never a time.
//!
//! Options (environment): `WEB_BENCH_REQUESTS` (requests per page, default
//! 200), `WEB_BENCH_TAIL_SECS` (seconds of the 1,000 lines/s tail, default
//! 5).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bench_support::bench::{free_port, sibling_binary};
use bench_support::measure::{Figures, env_number, smoke};
use bench_support::{ChildProcess, Client, Memory, PATIENCE, wait_until};
use serde_json::{Value, json};

const TARGET_PAGE_MS: f64 = 20.0;
const TARGET_IDLE_RSS_MIB: f64 = 15.0;
const EXTRA_TOOLS: usize = 100;
/// Log lines written before the pages are timed.
const SEED_LINES: u64 = 1000;
/// The tail's rate: a batch of 10 lines every 10 ms.
const LINES_PER_SECOND: u64 = 1000;
const BATCH_EVERY: Duration = Duration::from_millis(10);
const LINES_PER_BATCH: u64 = 10;
/// Rows the console's logs page shows (`pages::LOG_PAGE`).
const LOG_PAGE_ROWS: usize = 200;
/// How long the tail may stay silent before the lines still missing count
/// as lost.
const STREAM_SILENCE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let smoke = smoke();
    let binaries = match Binaries::locate() {
        Ok(binaries) => binaries,
        Err(message) => {
            eprintln!("web bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (requests, tail_lines) = if smoke {
        (5, 200)
    } else {
        let seconds = u64::try_from(env_number("WEB_BENCH_TAIL_SECS", 5)).unwrap_or(5);
        (
            env_number("WEB_BENCH_REQUESTS", 200),
            seconds.clamp(1, 600) * LINES_PER_SECOND,
        )
    };
    let stack = Stack::start(&binaries);
    let started_rss = stack.console_memory();
    let mut console = Http::connect(stack.web_port);
    console.sign_in(&stack.token);

    // The log source gets its lines first: the logs page shows 200 of them.
    let mut gateway = Client::connect(&stack.gateway_socket());
    let mut written = 0;
    while written < SEED_LINES {
        write_lines(&mut gateway, "seed-line", 100);
        written += 100;
    }
    wait_until(PATIENCE, "up has the seeded lines", || {
        count_rows(&console.get("/logs?service=test&text=seed-line").1) == LOG_PAGE_ROWS
    });

    let tools = console.get("/tools").1.matches("<li data-search=").count();
    assert!(
        tools >= EXTRA_TOOLS,
        "the tools page lists {tools} tools, expected at least {EXTRA_TOOLS}"
    );
    let pages = [
        "/",
        "/tools",
        "/tools?q=extra_05",
        "/tools/test_extra_042",
        "/logs",
        "/logs?service=test&text=seed-line",
        "/licence",
    ];
    println!(
        "web console under `llmbasedos up`: {tools} tools behind the gateway, {SEED_LINES}+ log lines in up's capture"
    );
    println!("page times, {requests} sequential requests each, one keep-alive connection");
    println!("  {:<36} {:>9} {:>9}", "page", "p50", "p99");
    let mut worst_p50 = 0.0_f64;
    for path in pages {
        let figures = time_page(&mut console, path, requests);
        let p50 = millis(figures.p50);
        worst_p50 = worst_p50.max(p50);
        println!("  {path:<36} {p50:>6.2} ms {:>6.2} ms", millis(figures.p99));
    }
    let rows = count_rows(&console.get("/logs").1);
    assert_eq!(rows, LOG_PAGE_ROWS, "the logs page shows a full page");

    let tail = tail(stack.web_port, &console.cookie, &mut gateway, tail_lines);
    println!(
        "log tail at {LINES_PER_SECOND} lines/s for {:.1} s: written {}, received {}, lost = {}, duplicates {}, last line {:.0} ms after the last write",
        tail.writing.as_secs_f64(),
        tail.written,
        tail.received,
        tail.written - tail.received,
        tail.duplicates,
        millis(tail.drained)
    );
    assert_eq!(
        (tail.received, tail.duplicates),
        (tail.written, 0),
        "the tail lost or repeated lines"
    );

    drop(console);
    // Idle: no request and no stream for a moment.
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = stack.console_memory();
    if smoke {
        println!("smoke run (cargo test): the benchmark works; `cargo bench` gives the figures");
        return ExitCode::SUCCESS;
    }
    println!(
        "console RSS: just started {:.1} MiB, idle after the run {:.1} MiB (peak {:.1} MiB)",
        mib(started_rss.rss_kib),
        mib(idle_rss.rss_kib),
        mib(idle_rss.peak_kib)
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "\ntargets: slowest page p50 {worst_p50:.2} ms (≤ {TARGET_PAGE_MS} ms) {}; lost lines {} (0) {}; idle RSS {:.1} MiB (≤ {TARGET_IDLE_RSS_MIB} MiB) {}",
        verdict(worst_p50 <= TARGET_PAGE_MS),
        tail.written - tail.received,
        verdict(tail.written == tail.received),
        mib(idle_rss.rss_kib),
        verdict(mib(idle_rss.rss_kib) <= TARGET_IDLE_RSS_MIB),
    );
    ExitCode::SUCCESS
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Rows of the logs page's table.
fn count_rows(page: &str) -> usize {
    page.matches("<tr class=\"priority-").count()
}

fn time_page(console: &mut Http, path: &str, requests: usize) -> Figures {
    // One untimed request: the first list of tools, a new connection to up.
    console.get(path);
    let mut samples = Vec::with_capacity(requests);
    let started = Instant::now();
    for _ in 0..requests {
        let start = Instant::now();
        let (status, body) = console.get(path);
        samples.push(start.elapsed());
        assert_eq!(status, 200, "{path}: {body}");
    }
    Figures::of(samples, started.elapsed())
}

/// `lines` lines saying `text <n>`, written by the test server (an extra
/// tool called through the gateway) and captured by `up`.
fn write_lines(gateway: &mut Client, text: &str, lines: u64) {
    // The first of the test server's extra tools (`--extra-tools`).
    let answer = gateway.ok(
        "mcp.test.extra_001",
        json!({ "text": text, "lines": lines }),
    );
    assert_eq!(answer["written"], lines, "{answer}");
}

struct Tail {
    written: usize,
    received: usize,
    duplicates: usize,
    /// How long the writing took.
    writing: Duration,
    /// From the last write to the last line received.
    drained: Duration,
}

/// Follows the test server's lines over the console's SSE stream while
/// `total` lines are written at [`LINES_PER_SECOND`].
fn tail(port: u16, cookie: &str, gateway: &mut Client, total: u64) -> Tail {
    let marker = format!("tail-{}", std::process::id());
    let mut stream = Http::connect(port);
    cookie.clone_into(&mut stream.cookie);
    let path = format!("/api/logs/stream?service=test&text={marker}");
    let mut events = stream.open_stream(&path);
    let expected = usize::try_from(total).expect("a line count");
    let wanted = marker.clone();
    let reader = std::thread::spawn(move || {
        let mut seen = HashSet::new();
        let mut duplicates = 0;
        let mut last = Instant::now();
        while seen.len() < expected {
            let Some(data) = events.next_entry() else {
                break;
            };
            let entry: Value = serde_json::from_str(&data).expect("an entry is JSON");
            let message = entry["message"].as_str().unwrap_or_default();
            let Some(at) = message.find(&wanted) else {
                continue;
            };
            last = Instant::now();
            if !seen.insert(message[at..].to_owned()) {
                duplicates += 1;
            }
        }
        (seen.len(), duplicates, last)
    });
    // The stream is open at up before the first line is written: the
    // console answers the stream's headers once up said it follows.
    let started = Instant::now();
    let mut written = 0;
    let mut batch = 0u32;
    while written < total {
        let next = started + BATCH_EVERY * batch;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let lines = LINES_PER_BATCH.min(total - written);
        write_lines(gateway, &format!("{marker} batch {batch} line"), lines);
        written += lines;
        batch += 1;
    }
    let finished = Instant::now();
    let (received, duplicates, last) = reader.join().expect("the tail reader");
    Tail {
        written: expected,
        received,
        duplicates,
        writing: finished - started,
        drained: last.saturating_duration_since(finished),
    }
}

struct Binaries {
    web: PathBuf,
    llmbasedos: PathBuf,
    gateway: PathBuf,
    test_server: PathBuf,
}

impl Binaries {
    /// The console is built by cargo for this bench; the others belong to
    /// other packages, so they are there only if something built them.
    fn locate() -> Result<Binaries, String> {
        let web = PathBuf::from(env!("CARGO_BIN_EXE_llmbasedos-web"));
        Ok(Binaries {
            llmbasedos: sibling_binary(&web, "llmbasedos")?,
            gateway: sibling_binary(&web, "llmbasedos-gateway")?,
            test_server: sibling_binary(&web, "llmbasedos-test-server")?,
            web,
        })
    }
}

/// `llmbasedos up` over a bin dir of the gateway, the console and the test
/// server with its extra tools, in a temp dir.
struct Stack {
    /// Killed (by pid) when the bench ends; its children die with it.
    _up: ChildProcess,
    runtime: PathBuf,
    web_port: u16,
    /// The one-time token up printed.
    token: String,
    /// Removed last, after `up` (and with it its children) is gone.
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(binaries: &Binaries) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("create the bin dir");
        for (binary, name) in [
            (&binaries.gateway, "llmbasedos-gateway"),
            (&binaries.web, "llmbasedos-web"),
        ] {
            std::os::unix::fs::symlink(binary, bin.join(name)).expect("link a binary");
        }
        let wrapper = bin.join("llmbasedos-test-server");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' --extra-tools {EXTRA_TOOLS} \"$@\"\n",
                binaries.test_server.display()
            ),
        )
        .expect("write the test server's wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("make the wrapper executable");
        let home = dir.path().join("home");
        let files = dir.path().join("files");
        for made in [&home, &files] {
            std::fs::create_dir(made).expect("create a dir");
        }
        let runtime = dir.path().join("run");
        let web_port = free_port();
        let out = dir.path().join("up.out");
        let mut command = Command::new(&binaries.llmbasedos);
        command
            .arg("--runtime-dir")
            .arg(&runtime)
            .arg("up")
            .arg("--with-test-server")
            .arg("--root")
            .arg(&files)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--web-listen", &format!("127.0.0.1:{web_port}")])
            .arg("--bin-dir")
            .arg(&bin)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("LLMBASEDOS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create up's output file"));
        let mut up = ChildProcess::spawn("llmbasedos up", &mut command, dir.path().join("up.log"));
        let prefix = format!("http://127.0.0.1:{web_port}/#t=");
        let mut token = String::new();
        up.wait_until("the console's one-time URL", || {
            let printed = std::fs::read_to_string(&out).unwrap_or_default();
            match printed.find(&prefix) {
                Some(at) => {
                    let rest = &printed[at + prefix.len()..];
                    token = rest.chars().take_while(char::is_ascii_hexdigit).collect();
                    token.len() == 64
                }
                None => false,
            }
        });
        Stack {
            _up: up,
            runtime,
            web_port,
            token,
            _dir: dir,
        }
    }

    fn gateway_socket(&self) -> PathBuf {
        client::cli::gateway_socket(&self.runtime)
    }

    /// The console's memory, its pid from up's control socket (the same
    /// interface the console's overview reads).
    fn console_memory(&self) -> Memory {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let manager = services::Manager::up(services::up_socket(&self.runtime));
        let services = runtime
            .block_on(manager.list())
            .unwrap_or_else(|error| panic!("up's control socket: {error}"));
        let pid = services
            .iter()
            .find(|service| service.name == "web")
            .and_then(|service| service.pid)
            .unwrap_or_else(|| panic!("up does not run the console: {services:?}"));
        Memory::of(pid)
    }
}

/// A hand-made HTTP/1.1 client of the console: one keep-alive connection,
/// the session cookie, the Host and Origin a browser sends.
struct Http {
    stream: BufReader<TcpStream>,
    port: u16,
    cookie: String,
}

impl Http {
    fn connect(port: u16) -> Http {
        let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap_or_else(|error| panic!("connect to the console: {error}"));
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Http {
            stream: BufReader::with_capacity(64 * 1024, stream),
            port,
            cookie: String::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, extra: &str, body: &str) {
        let cookie = if self.cookie.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", self.cookie)
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}{extra}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            port = self.port,
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .expect("write a request");
    }

    fn line(&mut self) -> String {
        self.try_line().expect("read a line from the console")
    }

    fn try_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the console closed the connection",
            ));
        }
        line.truncate(line.trim_end().len());
        Ok(line)
    }

    /// The status and headers (names lower-cased) of an answer.
    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let status = self.line();
        let code = status
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status}"));
        let mut headers = Vec::new();
        for _ in 0..64 {
            let line = self.line();
            if line.is_empty() {
                return (code, headers);
            }
            let (name, value) = line.split_once(':').expect("a header line");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        panic!("more than 64 header lines");
    }

    /// One whole answer: its status and body.
    fn answer(&mut self) -> (u16, String, Vec<(String, String)>) {
        let (status, headers) = self.head();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let mut body = Vec::new();
        if header("transfer-encoding") == Some("chunked") {
            let mut chunks = Chunks { http: self };
            while let Some(chunk) = chunks.next_chunk().expect("read a chunk") {
                body.extend_from_slice(&chunk);
            }
        } else {
            let length: usize = header("content-length")
                .map_or(0, |length| length.parse().expect("a Content-Length"));
            body.resize(length, 0);
            self.stream.read_exact(&mut body).expect("read a body");
        }
        (
            status,
            String::from_utf8(body).expect("a UTF-8 body"),
            headers,
        )
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        self.send("GET", path, "", "");
        let (status, body, _) = self.answer();
        (status, body)
    }

    /// Redeems the one-time token for a session cookie, as the sign-in
    /// page's script does.
    fn sign_in(&mut self, token: &str) {
        let origin = format!(
            "Origin: http://127.0.0.1:{}\r\nContent-Type: application/json\r\n",
            self.port
        );
        self.send(
            "POST",
            "/session",
            &origin,
            &json!({ "token": token }).to_string(),
        );
        let (status, body, headers) = self.answer();
        assert_eq!(status, 204, "sign-in refused: {body}");
        let cookie = headers
            .iter()
            .find(|(name, _)| name == "set-cookie")
            .map(|(_, value)| value.split(';').next().unwrap_or_default().to_owned())
            .expect("a session cookie");
        self.cookie = cookie;
        let (status, page) = self.get("/");
        assert!(
            status == 200 && page.contains("name=\"csrf-token\""),
            "signed in, the overview is shown: {status}"
        );
    }

    /// Opens a server-sent event stream.
    fn open_stream(mut self, path: &str) -> Events {
        self.send("GET", path, "Accept: text/event-stream\r\n", "");
        let (status, headers) = self.head();
        assert_eq!(status, 200, "{path}");
        assert!(
            headers
                .iter()
                .any(|(name, value)| name == "transfer-encoding" && value == "chunked"),
            "an event stream is chunked: {headers:?}"
        );
        self.stream
            .get_ref()
            .set_read_timeout(Some(STREAM_SILENCE))
            .expect("timeout");
        Events {
            http: self,
            pending: Vec::new(),
        }
    }
}

/// The chunks of a chunked body.
struct Chunks<'a> {
    http: &'a mut Http,
}

impl Chunks<'_> {
    /// The next chunk, `None` after the last one.
    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let size = self.http.try_line()?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default(), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {size}"));
        let mut chunk = vec![0; size];
        self.http.stream.read_exact(&mut chunk)?;
        let end = self.http.try_line()?;
        assert!(end.is_empty(), "a chunk ends with CRLF");
        Ok((size > 0).then_some(chunk))
    }
}

/// Server-sent events: the data of each `entry` event.
struct Events {
    http: Http,
    pending: Vec<u8>,
}

impl Events {
    /// The next `entry` event's data; `None` when the stream ends or
    /// stays silent for [`STREAM_SILENCE`] (lines stopped coming).
    fn next_entry(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|pair| pair == b"\n\n") {
                let event: Vec<u8> = self.pending.drain(..end + 2).collect();
                let event = String::from_utf8(event).expect("a UTF-8 event");
                let mut kind = "";
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if kind == "entry" {
                    return Some(data);
                }
                continue;
            }
            let chunk = Chunks {
                http: &mut self.http,
            }
            .next_chunk();
            match chunk {
                Ok(Some(chunk)) => self.pending.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(error) => panic!("read the event stream: {error}"),
            }
        }
    }
}
