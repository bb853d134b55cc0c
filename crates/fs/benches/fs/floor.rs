//! The physical floor of the stdio bridge's path, measured in the same run:
//! the same request and answer bytes through three minimal hops, laid out
//! like ours (host pipe → relay process → UNIX socket → relay process →
//! UNIX socket → a process that answers), each hop a plain read/write loop
//! on the runtime flavour the binary it stands for uses (the bridge:
//! tokio's current-thread scheduler on the host's pipes; the gateway and
//! the server: the multi-threaded one). The answering process writes a
//! canned copy of the bridge's own answer to the read (its id put in), so
//! every hop carries the bytes ours carry to the host; nothing is parsed
//! but the id.
//!
//! The benchmark is its own hop binary: started with [`HOP`] in its
//! environment it runs that hop instead of measuring.

use std::path::Path;
use std::process::{Command, ExitCode};

use bench_support::ChildProcess;
use bench_support::bench::StdioPeer;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// The variable naming the hop this process runs (`bridge`, `gateway`,
/// `server`); its arguments follow on the command line.
pub(crate) const HOP: &str = "FS_BENCH_FLOOR_HOP";

/// Runs the hop [`HOP`] names, if it names one.
pub(crate) fn hop_if_asked() -> Option<ExitCode> {
    let role = std::env::var(HOP).ok()?;
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match (role.as_str(), arguments.as_slice()) {
        ("bridge", [upstream]) => current_thread().block_on(bridge(upstream)),
        ("gateway", [listen, upstream]) => multi_thread().block_on(gateway(listen, upstream)),
        ("server", [listen, answer]) => multi_thread().block_on(server(listen, answer)),
        _ => Err(std::io::Error::other(format!(
            "unknown hop {role} {arguments:?}"
        ))),
    };
    Some(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floor hop {role}: {error}");
            ExitCode::FAILURE
        }
    })
}

/// The hops behind the first, which a [`StdioPeer`] drives; killed by pid
/// when dropped.
pub(crate) struct Floor {
    _gateway: ChildProcess,
    _server: ChildProcess,
}

impl Floor {
    /// Starts the three hops and initializes a session on the first, as
    /// hosts do. `result` is the bridge's result of the read, answered as
    /// it is.
    pub(crate) fn start(dir: &Path, result: &Value) -> (StdioPeer, Floor) {
        let exe = std::env::current_exe().expect("the benchmark's own path");
        // The answer after its id, which the answering hop writes first.
        let answer = format!(
            r#","jsonrpc":"2.0","result":{}}}"#,
            serde_json::to_string(result).expect("serialize")
        );
        let answer_file = dir.join("floor-answer.json");
        std::fs::write(&answer_file, answer).expect("write the canned answer");
        let server_socket = dir.join("floor-server.sock");
        let gateway_socket = dir.join("floor-gateway.sock");
        let mut server = ChildProcess::spawn(
            "floor server hop",
            Command::new(&exe)
                .env(HOP, "server")
                .arg(&server_socket)
                .arg(&answer_file),
            dir.join("floor-server.log"),
        );
        server.wait_until("its socket accepts", || {
            std::os::unix::net::UnixStream::connect(&server_socket).is_ok()
        });
        let mut gateway = ChildProcess::spawn(
            "floor gateway hop",
            Command::new(&exe)
                .env(HOP, "gateway")
                .arg(&gateway_socket)
                .arg(&server_socket),
            dir.join("floor-gateway.log"),
        );
        gateway.wait_until("its socket accepts", || {
            std::os::unix::net::UnixStream::connect(&gateway_socket).is_ok()
        });
        let peer = StdioPeer::start(
            "floor bridge hop",
            Command::new(&exe).env(HOP, "bridge").arg(&gateway_socket),
            dir.join("floor-bridge.log"),
        );
        (
            peer,
            Floor {
                _gateway: gateway,
                _server: server,
            },
        )
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Bytes from `from` to `to` as they come, until `from` ends.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..read]).await?;
    }
}

/// The host's pipes to a UNIX socket and back, on one thread.
async fn bridge(upstream: &str) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stdin = tokio::net::unix::pipe::Receiver::from_owned_fd(stdin)?;
    let stdout = tokio::net::unix::pipe::Sender::from_owned_fd(stdout)?;
    let (read, write) = UnixStream::connect(upstream).await?.into_split();
    tokio::select! {
        outcome = copy(stdin, write) => outcome,
        outcome = copy(read, stdout) => outcome,
    }
}

/// Each connection relayed to a connection of its own upstream.
async fn gateway(listen: &str, upstream: &str) -> std::io::Result<()> {
    let listener = UnixListener::bind(listen)?;
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            let Ok(server) = UnixStream::connect(&upstream).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(copy(client_read, server_write));
            let _ = copy(server_read, client_write).await;
        });
    }
}

/// Answers every request line with the canned answer (`initialize` with a
/// minimal result); notifications get nothing.
async fn server(listen: &str, answer: &str) -> std::io::Result<()> {
    let answer = std::sync::Arc::new(std::fs::read(answer)?);
    let listener = UnixListener::bind(listen)?;
    loop {
        let (mut connection, _) = listener.accept().await?;
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::with_capacity(64 * 1024);
            let mut out = Vec::with_capacity(answer.len() + 64);
            loop {
                let start = buffer.len();
                buffer.resize(start + 64 * 1024, 0);
                let Ok(read) = connection.read(&mut buffer[start..]).await else {
                    return;
                };
                buffer.truncate(start + read);
                if read == 0 {
                    return;
                }
                out.clear();
                let mut consumed = 0;
                while let Some(end) = buffer[consumed..].iter().position(|byte| *byte == b'\n') {
                    let line = &buffer[consumed..consumed + end];
                    consumed += end + 1;
                    let Some(id) = id_of(line) else {
                        continue;
                    };
                    if contains(line, br#""method":"initialize""#) {
                        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
                        out.extend_from_slice(id);
                        out.extend_from_slice(br#","result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"floor","version":"1"}}}"#);
                    } else {
                        out.extend_from_slice(br#"{"id":"#);
                        out.extend_from_slice(id);
                        out.extend_from_slice(&answer);
                    }
                    out.push(b'\n');
                }
                buffer.drain(..consumed);
                if !out.is_empty() && connection.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The digits of a request's `"id":`; `None` for a notification.
fn id_of(line: &[u8]) -> Option<&[u8]> {
    let key = br#""id":"#;
    let at = line.windows(key.len()).position(|window| window == key)? + key.len();
    let digits = line[at..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    (digits > 0).then(|| &line[at..at + digits])
}

fn contains(line: &[u8], needle: &[u8]) -> bool {
    line.windows(needle.len()).any(|window| window == needle)
}
