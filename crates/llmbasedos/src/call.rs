//! `llmbasedos call`: one request to one service, straight to its socket.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use proto::{Message, Request, RequestId};
use serde_json::Value;

use crate::stack::Layout;

#[derive(clap::Args, Debug)]
pub(crate) struct CallArgs {
    /// The method: a service's (`mcp.fs.list`), the gateway's
    /// (`mcp.hello`, `mcp.listCapabilities`) or MCP's (`tools/list`).
    method: String,
    /// Params as `key=value` pairs or plain values in the method's
    /// positional order (a value that parses as JSON is taken as JSON,
    /// anything else as a string), or one JSON object or array.
    params: Vec<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

pub(crate) fn run(runtime_dir: &Path, args: &CallArgs) -> anyhow::Result<ExitCode> {
    let params = client::cli::parse_params(&args.params)
        .and_then(client::cli::Params::into_value)
        .map_err(anyhow::Error::msg)?;
    match request(runtime_dir, &args.method, params, args.timeout)? {
        Ok(result) => {
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error {}: {}", error.code, error.message);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// One request through the gateway's socket: its result or its error.
pub(crate) fn request(
    runtime_dir: &Path,
    method: &str,
    params: Option<Value>,
    timeout: u64,
) -> anyhow::Result<Result<Value, proto::ErrorObject>> {
    let args = Timeout { timeout };
    let socket = Layout::new(runtime_dir).gateway_socket();
    // Nothing is sent before the socket's directory and the process
    // serving it are known to be this user's (or root's).
    let mut stream = match client::cli::connect_gateway_blocking(&socket) {
        Ok(stream) => stream,
        Err(error @ client::cli::GatewayError::Connect { .. }) => {
            bail!("{error} (is `llmbasedos up` running?)")
        }
        Err(error) => bail!("{error}"),
    };
    stream.set_read_timeout(Some(Duration::from_secs(args.timeout)))?;
    let request = Message::Request(Request {
        id: RequestId::Number(1),
        method: method.to_owned(),
        params,
    });
    let mut frame = request.to_vec();
    frame.push(0);
    stream.write_all(&frame)?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut answer = Vec::new();
        if let Err(error) = reader.read_until(0, &mut answer) {
            // A read timeout shows as EAGAIN (WouldBlock) on a UNIX socket.
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                bail!(
                    "no answer arrived within {} s (--timeout {}); the request may still be running: give it longer with --timeout SECONDS",
                    args.timeout,
                    args.timeout
                );
            }
            bail!("no answer: the connection to the gateway failed: {error}");
        }
        if answer.pop() != Some(0) {
            bail!("the server closed the connection without answering");
        }
        match Message::from_slice(&answer) {
            Ok(Message::Response(response)) => return Ok(response.outcome),
            Ok(Message::Notification(notification)) => {
                eprintln!(
                    "{}: {}",
                    notification.method,
                    notification.params.unwrap_or(Value::Null)
                );
            }
            Ok(Message::Request(_)) => bail!("the server sent a request; this client answers none"),
            Err(invalid) => bail!("the server sent an unreadable message: {invalid}"),
        }
    }
}

struct Timeout {
    timeout: u64,
}
