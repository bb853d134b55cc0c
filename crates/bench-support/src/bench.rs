//! What the benchmarks drive: the backend wire with a prepared frame, the
//! gateway over WebSocket, Streamable HTTP and (through [`StdioPeer`]) its
//! stdio bridge, a raw ping-pong floor, and the gateway itself started on a
//! free loopback port with a bearer token per client.
//!
//! The clients are hand-made and allocate little per call, so that their
//! own cost stays out of the figures; each checks what it is answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message as WsMessage, Utf8Bytes, WebSocket};

use crate::{ChildProcess, PATIENCE};

/// A binary of another package, next to `beside` (cargo builds only the
/// bench's own package's binaries for it), or how to build it.
pub fn sibling_binary(beside: &Path, name: &str) -> Result<PathBuf, String> {
    let binary = beside.with_file_name(name);
    if binary.is_file() {
        return Ok(binary);
    }
    let profile = if binary.parent().is_some_and(|dir| dir.ends_with("debug")) {
        ""
    } else {
        " --release"
    };
    Err(format!(
        "{} is missing: this benchmark runs it, and cargo builds only the benchmark's own \
         package's binaries. Build it first: `cargo build{profile} --workspace --bins`",
        binary.display()
    ))
}

/// NUL-delimited JSON-RPC, as backends speak it: a prepared frame out, one
/// answer in.
#[derive(Debug)]
pub struct NulClient<S: Read + Write> {
    stream: BufReader<S>,
    answer: Vec<u8>,
}

impl<S: Read + Write> NulClient<S> {
    pub fn new(stream: S) -> NulClient<S> {
        NulClient {
            stream: BufReader::with_capacity(64 * 1024, stream),
            answer: Vec::with_capacity(8 * 1024),
        }
    }

    /// One round trip of `frame` (its NUL included): the answer, without
    /// its NUL.
    pub fn round_trip(&mut self, frame: &[u8]) -> &[u8] {
        self.stream.get_mut().write_all(frame).expect("write");
        self.answer.clear();
        self.stream
            .read_until(0, &mut self.answer)
            .expect("read an answer");
        assert_eq!(
            self.answer.pop(),
            Some(0),
            "the server closed the connection instead of answering"
        );
        &self.answer
    }
}

/// A frame of a request with id 1, NUL included.
pub fn nul_frame(method: &str, params: Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 1, "method": method, "params": params,
    }))
    .expect("serialize");
    bytes.push(0);
    bytes
}

pub fn connect_unix(path: &Path) -> std::os::unix::net::UnixStream {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|error| panic!("connect to {}: {error}", path.display()));
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

pub fn connect_tcp(address: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Answers every NUL-terminated frame with `response` (and its NUL): the
/// raw floor of a round trip, with no parsing at all.
pub fn ping_pong(mut stream: impl Read + Write, response: &[u8]) {
    let mut response = response.to_vec();
    response.push(0);
    let mut input = vec![0u8; 256 * 1024];
    let mut output = Vec::with_capacity(256 * 1024);
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

/// A WebSocket client of the gateway's `/ws`, JSON-RPC in text frames.
#[derive(Debug)]
pub struct WsClient {
    socket: WebSocket<TcpStream>,
}

impl WsClient {
    pub fn connect(port: u16, token: &str) -> WsClient {
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
        // of the gateway's figures (8 KiB: a 4 KiB read's answer in one).
        let config = WebSocketConfig::default().read_buffer_size(8192);
        let (socket, _) = tungstenite::client::client_with_config(request, stream, Some(config))
            .unwrap_or_else(|error| panic!("WebSocket handshake with the gateway: {error}"));
        WsClient { socket }
    }

    /// One request out, its answer in.
    pub fn exchange(&mut self, request: &str) -> Utf8Bytes {
        self.socket
            .send(WsMessage::text(request))
            .expect("send a frame");
        // The gateway sends nothing but the answer here; a ping or two
        // (answered by tungstenite) is tolerated, an endless stream is not.
        for _ in 0..8 {
            match self.socket.read().expect("read a frame") {
                WsMessage::Text(text) => return text,
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("unexpected WebSocket frame: {other:?}"),
            }
        }
        panic!("no answer among the gateway's frames");
    }
}

/// Streamable HTTP by hand: one keep-alive connection, one prepared POST
/// of `/mcp`, JSON answers with a Content-Length (anything else fails the
/// run). The first answer is checked in full; every later one must equal
/// it, or be a refusal (-32005).
#[derive(Debug)]
pub struct HttpClient {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
    check: fn(&[u8]),
    expected: Option<Vec<u8>>,
}

impl HttpClient {
    /// `body` is the JSON-RPC request; `protocol_version` goes in
    /// `MCP-Protocol-Version`; `check` judges the first answer's body.
    pub fn connect(
        port: u16,
        token: &str,
        protocol_version: &str,
        body: &str,
        check: fn(&[u8]),
    ) -> HttpClient {
        let stream = connect_tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-Protocol-Version: {protocol_version}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        HttpClient {
            stream: BufReader::new(stream),
            request: request.into_bytes(),
            line: String::new(),
            body: Vec::with_capacity(8 * 1024),
            check,
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
    pub fn call(&mut self) -> bool {
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
                (self.check)(&self.body);
                self.expected = Some(self.body.clone());
            }
        }
        true
    }
}

/// Newline-delimited lines from a pipe, each waited for at most
/// [`PATIENCE`] (`poll` before every read: a pipe has no read timeout).
#[derive(Debug)]
pub struct LineReader {
    pipe: ChildStdout,
    what: &'static str,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Where the search for the next newline resumes.
    scanned: usize,
}

impl LineReader {
    /// `what` names the peer in failures ("the reference server").
    pub fn new(pipe: ChildStdout, what: &'static str) -> LineReader {
        LineReader {
            pipe,
            what,
            buffer: vec![0; 1 << 20],
            start: 0,
            end: 0,
            scanned: 0,
        }
    }

    pub fn read_line(&mut self) -> &[u8] {
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
            assert!(
                self.start > 0,
                "a line longer than 1 MiB from {}",
                self.what
            );
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
        assert!(ready > 0, "{} sent nothing for {PATIENCE:?}", self.what);
        let read = self
            .pipe
            .read(&mut self.buffer[self.end..])
            .unwrap_or_else(|error| panic!("read from {}: {error}", self.what));
        assert!(read > 0, "{} closed its stdout", self.what);
        self.end += read;
    }
}

/// An MCP server on stdio, as desktop hosts launch one: a child with piped
/// stdin and stdout, newline-delimited JSON-RPC, initialized in the
/// 2025-11-25 era.
#[derive(Debug)]
pub struct StdioPeer {
    stdin: ChildStdin,
    stdout: LineReader,
    pub server_name: String,
    pub server_version: String,
    next_id: u64,
    /// Killed last, after its pipes are closed.
    _process: ChildProcess,
}

impl StdioPeer {
    /// Starts `command` (its stderr in `log`) and initializes a session.
    pub fn start(what: &'static str, command: &mut Command, log: PathBuf) -> StdioPeer {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut process = ChildProcess::spawn(what, command, log);
        let stdin = process.process().stdin.take().expect("its stdin");
        let stdout = process.process().stdout.take().expect("its stdout");
        let mut peer = StdioPeer {
            stdin,
            stdout: LineReader::new(stdout, what),
            server_name: String::new(),
            server_version: String::new(),
            next_id: 1,
            _process: process,
        };
        let initialized = peer.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "llmbasedos-bench", "version": "1"},
            }),
        );
        let info = &initialized["serverInfo"];
        peer.server_name = info["name"].as_str().unwrap_or("?").to_owned();
        peer.server_version = info["version"].as_str().unwrap_or("?").to_owned();
        peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        peer
    }

    /// One line out (its newline added).
    pub fn send(&mut self, line: &str) {
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.write_all(b"\n"))
            .expect("write to the stdio server");
    }

    /// The next line in.
    pub fn read_line(&mut self) -> &[u8] {
        self.stdout.read_line()
    }

    /// The id the next request takes; [`StdioPeer::take_id`] takes it.
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A request outside the measurements: its result, parsed; an error
    /// fails the run.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.take_id();
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        for _ in 0..64 {
            let answer: Value = serde_json::from_slice(self.read_line()).expect("a JSON line");
            if answer["id"] == id {
                assert!(
                    answer.get("error").is_none(),
                    "{method} failed on the stdio server: {answer}"
                );
                return answer["result"].clone();
            }
        }
        panic!("no answer to {method} among the stdio server's messages");
    }
}

/// The numeric id of an answer line, `None` for a notification. Only JSON
/// structure has `"id":` unescaped, and the results read here have no `id`
/// member: the envelope's key is near the start when the peer writes it
/// second (serde: `{"jsonrpc":"2.0","id":7,…`) and last when it writes it
/// last (node: `…,"id":7}`), so both ends are looked at, not the content.
pub fn answer_id(line: &[u8]) -> Option<u64> {
    let key = b"\"id\":";
    let head = &line[..line.len().min(64)];
    let at = match head.windows(key.len()).position(|window| window == key) {
        Some(at) => at,
        None => line.windows(key.len()).rposition(|window| window == key)?,
    } + key.len();
    let digits = line[at..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// A fresh bearer token: 24 random bytes in hex.
pub fn random_token() -> String {
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).expect("random bytes");
    hex::encode(random)
}

/// Writes a file whole or not at all (the gateway watches the directory).
pub fn publish(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

pub fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address").port()
}

/// The real gateway, started in `dir` on a free loopback port with one
/// bearer token per client (its request limit is per token holder, so N
/// clients are N holders, as in real use), reading caps from `caps_dir`.
#[derive(Debug)]
pub struct Gateway {
    pub process: ChildProcess,
    pub port: u16,
    /// Its UNIX socket (the stdio bridge's way in).
    pub unix_socket: PathBuf,
    pub tokens: Vec<String>,
}

impl Gateway {
    pub fn start(binary: &Path, dir: &Path, caps_dir: &Path, clients: usize) -> Gateway {
        Gateway::start_configured(binary, dir, caps_dir, clients, "")
    }

    /// [`Gateway::start`] with `extra` appended to its gateway.yaml (top-level
    /// sections, e.g. `licence:`).
    pub fn start_configured(
        binary: &Path,
        dir: &Path,
        caps_dir: &Path,
        clients: usize,
        extra: &str,
    ) -> Gateway {
        let tokens: Vec<String> = (0..clients).map(|_| random_token()).collect();
        let port = free_port();
        let unix_socket = dir.join("gateway.sock");
        let mut config_text = format!(
            "listen: 127.0.0.1:{port}\nunix_socket: {}\ncaps_dir: {}\nauth:\n  tokens:\n",
            unix_socket.display(),
            caps_dir.display(),
        );
        for (index, token) in tokens.iter().enumerate() {
            let digest = hex::encode(Sha256::digest(token.as_bytes()));
            config_text.push_str(&format!(
                "    - name: client-{index}\n      sha256: {digest}\n"
            ));
        }
        config_text.push_str(extra);
        let config = dir.join("gateway.yaml");
        std::fs::write(&config, config_text).expect("write the gateway config");
        let mut process = ChildProcess::spawn(
            "gateway",
            Command::new(binary)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            dir.join("gateway.log"),
        );
        process.wait_until("its TCP listener and UNIX socket", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && std::os::unix::net::UnixStream::connect(&unix_socket).is_ok()
        });
        Gateway {
            process,
            port,
            unix_socket,
            tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_ids_are_the_envelopes() {
        let cases: [(&[u8], Option<u64>); 4] = [
            (br#"{"jsonrpc":"2.0","id":7,"result":{"content":"x"}}"#, Some(7)),
            (br#"{"result":{"content":[{"type":"text","text":"x"}]},"jsonrpc":"2.0","id":12}"#, Some(12)),
            (br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}"#, None),
            (br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#, None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                answer_id(line),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
