//! A [`Connection`] over the gateway's WebSocket endpoint (`ws://…/ws`,
//! JSON-RPC in text frames), for clients on another account or machine
//! than the gateway's UNIX socket allows.
//!
//! The socket's frames are bridged onto an in-memory NUL-framed stream, so
//! that calls, progress and cancellation work exactly as on a UNIX socket:
//! one implementation of the JSON-RPC client, not two.

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use proto::{DelimitedCodec, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_util::codec::FramedRead;

use crate::connection::{ConnectOptions, Connection};

/// Bytes in flight between the socket and the connection, each way.
const BRIDGE_BUFFER: usize = 256 * 1024;

/// Why no WebSocket connection was made; the messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketError {
    #[error("{0} is not a WebSocket URL: give ws://HOST:PORT/ws")]
    BadUrl(String),
    #[error(
        "{0}: wss:// is not supported; the gateway serves plain ws:// on loopback (put a TLS proxy in front of it, or use its UNIX socket)"
    )]
    Tls(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: the gateway wants a bearer token (--token-file or LLMBASEDOS_TOKEN)")]
    NoToken { url: String },
    #[error(
        "{url}: the gateway refused the bearer token; check the one given (--token-file, LLMBASEDOS_TOKEN; under llmbasedos up it is in <runtime dir>/gateway.token)"
    )]
    BadToken { url: String },
    #[error("{url}: the gateway refused the connection ({status}); {hint}")]
    Refused {
        url: String,
        status: StatusCode,
        hint: &'static str,
    },
    #[error("{url}: the WebSocket handshake failed: {reason}")]
    Handshake { url: String, reason: String },
}

/// Connects to `url` (`ws://host:port/ws`), with `Authorization: Bearer
/// <token>` when a token is given.
pub async fn connect_websocket(
    url: &str,
    token: Option<&str>,
    options: ConnectOptions,
) -> Result<Connection, WebSocketError> {
    let mut request = url
        .into_client_request()
        .map_err(|_| WebSocketError::BadUrl(url.to_owned()))?;
    match request.uri().scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(WebSocketError::Tls(url.to_owned())),
        _ => return Err(WebSocketError::BadUrl(url.to_owned())),
    }
    let Some(host) = request.uri().host().map(str::to_owned) else {
        return Err(WebSocketError::BadUrl(url.to_owned()));
    };
    let port = request.uri().port_u16().unwrap_or(80);
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            WebSocketError::BadToken {
                url: url.to_owned(),
            }
        })?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream =
        TcpStream::connect((host, port))
            .await
            .map_err(|source| WebSocketError::Connect {
                url: url.to_owned(),
                source,
            })?;
    let _ = stream.set_nodelay(true);
    let max_message = options
        .max_message
        .unwrap_or(crate::connection::DEFAULT_ANSWER_BOUND);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|error| handshake_error(url, token.is_some(), error))?;

    let (ours, bridge) = tokio::io::duplex(BRIDGE_BUFFER);
    let codec = DelimitedCodec::nul(max_message);
    let (read_half, write_half) = tokio::io::split(ours);
    let connection = Connection::from_io(read_half, write_half, codec.clone(), options);
    tokio::spawn(run_bridge(socket, bridge, codec));
    Ok(connection)
}

fn handshake_error(url: &str, had_token: bool, error: WsError) -> WebSocketError {
    let url = url.to_owned();
    match error {
        WsError::Http(response) => match response.status() {
            StatusCode::UNAUTHORIZED if had_token => WebSocketError::BadToken { url },
            StatusCode::UNAUTHORIZED => WebSocketError::NoToken { url },
            StatusCode::FORBIDDEN => WebSocketError::Refused {
                url,
                status: StatusCode::FORBIDDEN,
                hint: "its Host/Origin checks refused this client (see allowed_hosts in gateway.yaml)",
            },
            status => WebSocketError::Refused {
                url,
                status,
                hint: "is this the gateway's /ws endpoint?",
            },
        },
        WsError::Io(source) => WebSocketError::Connect { url, source },
        other => WebSocketError::Handshake {
            url,
            reason: other.to_string(),
        },
    }
}

/// Moves messages between the WebSocket and the connection's stream until
/// either side ends; then ends the other.
async fn run_bridge<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    bridge: tokio::io::DuplexStream,
    codec: DelimitedCodec,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut socket_out, mut socket_in) = socket.split();
    let (bridge_in, mut bridge_out) = tokio::io::split(bridge);
    let mut requests = FramedRead::new(bridge_in, codec);
    let mut frame = BytesMut::new();
    loop {
        tokio::select! {
            outgoing = requests.next() => match outgoing {
                Some(Ok(Frame::Message(bytes))) => {
                    // No copy: the frame's bytes become the text message.
                    let Ok(text) = Utf8Bytes::try_from(bytes) else { continue };
                    if socket_out.send(WsMessage::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Frame::TooLarge { .. })) => {}
                Some(Err(_)) | None => {
                    let _ = socket_out.send(WsMessage::Close(None)).await;
                    break;
                }
            },
            incoming = socket_in.next() => {
                let payload = match incoming {
                    Some(Ok(WsMessage::Text(text))) => bytes::Bytes::from(text),
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
                    Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break,
                };
                // A NUL inside a JSON text would be escaped; one here is
                // not JSON and would split the frame: drop it.
                if payload.contains(&0) {
                    tracing::warn!("the gateway sent a frame with a NUL byte; dropped");
                    continue;
                }
                frame.clear();
                frame.extend_from_slice(&payload);
                frame.extend_from_slice(&[0]);
                if bridge_out.write_all(&frame).await.is_err() {
                    break;
                }
            }
        }
    }
    // The connection sees the end of its stream and fails what waits.
    let _ = bridge_out.shutdown().await;
}
