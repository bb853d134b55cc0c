//! A streamed completion: server-sent `chat.completion.chunk`s read as
//! they arrive, each piece handed on, the answer cut where the client's
//! token quota ends.

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{LlmError, result, without_url};

/// The final piece of a stream cut at the client's token quota.
pub const CUT_NOTICE: &str =
    "\n[llmbasedos: answer cut here: this client's token quota is reached]";

/// Reads `data:` events (`chat.completion.chunk`s, then `[DONE]`); with
/// `cap`, stops after that many pieces of text (each at least one token).
pub(super) async fn read_stream(
    response: reqwest::Response,
    asked: &str,
    pieces: Option<mpsc::UnboundedSender<String>>,
    cap: Option<u64>,
) -> Result<Value, LlmError> {
    let mut counted: u64 = 0;
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut content = String::new();
    let mut model = asked.to_owned();
    let mut finish_reason = Value::Null;
    let mut usage = Value::Null;
    let mut done = false;
    while !done {
        let Some(bytes) = body.next().await else {
            break;
        };
        let bytes = bytes.map_err(|error| LlmError::Protocol(without_url(error)))?;
        buffer.extend_from_slice(&bytes);
        while let Some(data) = client::take_event(&mut buffer) {
            let data = data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|error| LlmError::Protocol(format!("an unreadable event: {error}")))?;
            if let Some(message) = chunk.pointer("/error/message").and_then(Value::as_str) {
                return Err(LlmError::Api {
                    status: 200,
                    message: message.to_owned(),
                });
            }
            if let Some(name) = chunk.get("model").and_then(Value::as_str) {
                name.clone_into(&mut model);
            }
            if let Some(choice) = chunk.pointer("/choices/0") {
                if let Some(piece) = choice.pointer("/delta/content").and_then(Value::as_str)
                    && !piece.is_empty()
                {
                    content.push_str(piece);
                    if let Some(pieces) = &pieces {
                        let _ = pieces.send(piece.to_owned());
                    }
                    counted += 1;
                    if cap.is_some_and(|cap| counted >= cap) {
                        // The quota ends here: nothing more is read.
                        if let Some(pieces) = &pieces {
                            let _ = pieces.send(CUT_NOTICE.to_owned());
                        }
                        let mut answer = result(
                            &model,
                            &content,
                            Value::String("quota".to_owned()),
                            json!({ "completion_tokens": counted }),
                        );
                        answer["cut"] = Value::String(format!(
                            "the answer was cut after {counted} tokens: this client's token quota is reached"
                        ));
                        return Ok(answer);
                    }
                }
                if let Some(reason) = choice
                    .get("finish_reason")
                    .filter(|reason| !reason.is_null())
                {
                    finish_reason = reason.clone();
                }
            }
            if let Some(reported) = chunk.get("usage").filter(|usage| !usage.is_null()) {
                usage = reported.clone();
            }
        }
    }
    if !done && finish_reason.is_null() {
        return Err(LlmError::Protocol(
            "the stream ended before the completion did".to_owned(),
        ));
    }
    Ok(result(&model, &content, finish_reason, usage))
}
