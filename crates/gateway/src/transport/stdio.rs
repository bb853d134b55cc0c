//! `llmbasedos-gateway stdio`: the bridge desktop hosts launch as a command.
//! It relays newline-delimited JSON-RPC on stdin/stdout to the gateway's
//! UNIX socket (NUL-delimited) and back; logs go to stderr. One bridge
//! process is one gateway session.

use std::path::Path;

use bytes::BytesMut;
use futures::StreamExt;
use proto::{DelimitedCodec, ErrorObject, Frame, Response};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

/// Relays until stdin ends (the host closed it) or the gateway goes away.
pub async fn bridge(socket: &Path, max_message: usize) -> anyhow::Result<()> {
    // Who serves the socket is checked before the host's first byte goes
    // out: a socket in a directory others can write to, or served by
    // another user, could be an impostor collecting what the host sends.
    let stream = client::cli::connect_gateway(socket)
        .await
        .map_err(|error| match error {
            client::cli::GatewayError::Connect { error, .. } => anyhow::anyhow!(
                "cannot reach the llmbasedos gateway at {}: {error}; start it (systemctl start llmbasedos-gateway.socket, or `llmbasedos up`) and check that you may use its socket",
                socket.display()
            ),
            untrusted => anyhow::Error::new(untrusted),
        })?;
    let (gateway_read, mut gateway_write) = stream.into_split();
    let to_gateway = async move {
        let mut lines = FramedRead::new(tokio::io::stdin(), DelimitedCodec::newline(max_message));
        let nul = DelimitedCodec::nul(max_message);
        let mut stdout_errors = tokio::io::stdout();
        while let Some(frame) = lines.next().await {
            match frame? {
                // One line is one message: a NUL inside it would frame
                // a second message on the socket (`garbage\0{…}` ran
                // the second half). The line is answered as what it is,
                // not JSON.
                Frame::Message(bytes) if bytes.contains(&0) => {
                    let error = ErrorObject::new(
                        proto::code::PARSE_ERROR,
                        "parse error: a NUL byte inside a line; send one JSON-RPC message per line",
                    );
                    let mut line = BytesMut::new();
                    DelimitedCodec::newline(max_message)
                        .encode_json(&Response::error(None, error), &mut line)?;
                    stdout_errors.write_all(&line).await?;
                    stdout_errors.flush().await?;
                }
                Frame::Message(bytes) => {
                    let mut framed = BytesMut::with_capacity(bytes.len() + 1);
                    tokio_util::codec::Encoder::encode(&mut nul.clone(), &bytes[..], &mut framed)?;
                    gateway_write.write_all(&framed).await?;
                }
                Frame::TooLarge { limit } => {
                    let error = ErrorObject::invalid_request(format!(
                        "message exceeds the limit of {limit} bytes and was discarded"
                    ));
                    let mut line = BytesMut::new();
                    DelimitedCodec::newline(max_message)
                        .encode_json(&Response::error(None, error), &mut line)?;
                    stdout_errors.write_all(&line).await?;
                    stdout_errors.flush().await?;
                }
            }
        }
        // The host closed stdin: let the gateway answer what is in flight.
        gateway_write.shutdown().await?;
        anyhow::Ok(())
    };
    let from_gateway = async move {
        let mut frames = FramedRead::new(gateway_read, DelimitedCodec::nul(max_message));
        let mut stdout = tokio::io::stdout();
        while let Some(frame) = frames.next().await {
            if let Frame::Message(bytes) = frame? {
                stdout.write_all(&bytes).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await?;
            }
        }
        anyhow::Ok(())
    };
    tokio::pin!(to_gateway);
    tokio::pin!(from_gateway);
    tokio::select! {
        result = &mut from_gateway => {
            result?;
            anyhow::bail!("the gateway closed the connection");
        }
        result = &mut to_gateway => {
            result?;
            // Answers to what the host sent last are still on their way.
            from_gateway.await
        }
    }
}
