//! Tool calls started from the pages: each runs as a task with a random id;
//! its progress and outcome are followed over server-sent events
//! (`/api/calls/<id>/events`) and it can be cancelled (which drops the
//! call, and so cancels it at the gateway). Results are rendered here, on
//! the server, with every text escaped; images are served from this
//! origin (`/api/calls/<id>/image/<n>`), never as inline data.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use maud::{Markup, html};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Most calls remembered; the oldest finished ones are forgotten first.
const MAX_CALLS: usize = 32;
/// Largest text shown in a result block; the rest is cut, saying so.
const MAX_TEXT: usize = 256 * 1024;
/// Image types shown (no SVG: it is a document that may hold script).
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Where a call is.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// progress, total, message of the last notification.
    pub progress: Option<(f64, Option<f64>, Option<String>)>,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Result(Arc<Value>),
    Failed(String),
    Cancelled,
}

#[derive(Debug)]
struct Call {
    id: String,
    state: watch::Receiver<Snapshot>,
    cancel: CancellationToken,
}

/// The calls in flight and recently finished.
#[derive(Debug, Default)]
pub struct Calls {
    calls: Mutex<VecDeque<Call>>,
}

impl Calls {
    fn calls(&self) -> std::sync::MutexGuard<'_, VecDeque<Call>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts `tool` with `arguments`; the id to follow it by.
    pub fn start(&self, gateway: Arc<Gateway>, tool: String, arguments: Value) -> String {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the kernel's random source");
        let id = hex::encode(bytes);
        let (sender, receiver) = watch::channel(Snapshot::default());
        let cancel = CancellationToken::new();
        {
            let mut calls = self.calls();
            while calls.len() >= MAX_CALLS {
                let finished = calls
                    .iter()
                    .position(|call| call.state.borrow().outcome.is_some());
                match finished {
                    Some(index) => drop(calls.remove(index)),
                    None => {
                        if let Some(oldest) = calls.pop_front() {
                            oldest.cancel.cancel();
                        }
                    }
                }
            }
            calls.push_back(Call {
                id: id.clone(),
                state: receiver,
                cancel: cancel.clone(),
            });
        }
        tokio::spawn(run(gateway, tool, arguments, sender, cancel));
        id
    }

    /// The state of call `id`, to follow.
    pub fn follow(&self, id: &str) -> Option<watch::Receiver<Snapshot>> {
        self.calls()
            .iter()
            .find(|call| call.id == id)
            .map(|call| call.state.clone())
    }

    /// Cancels call `id`; whether it was there.
    pub fn cancel(&self, id: &str) -> bool {
        match self.calls().iter().find(|call| call.id == id) {
            Some(call) => {
                call.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Image `index` of call `id`'s result: its type and bytes.
    pub fn image(&self, id: &str, index: usize) -> Option<(&'static str, Vec<u8>)> {
        let result = match &self.follow(id)?.borrow().outcome {
            Some(Outcome::Result(result)) => result.clone(),
            _ => return None,
        };
        let block = result.get("content")?.as_array()?.get(index)?;
        let mime = block.get("mimeType")?.as_str()?;
        let mime = IMAGE_TYPES.iter().find(|known| **known == mime)?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(block.get("data")?.as_str()?)
            .ok()?;
        Some((mime, bytes))
    }
}

async fn run(
    gateway: Arc<Gateway>,
    tool: String,
    arguments: Value,
    state: watch::Sender<Snapshot>,
    cancel: CancellationToken,
) {
    let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let call = gateway.call_tool(&tool, arguments, Some(progress));
    tokio::pin!(call);
    let record = |update: Value| {
        let number = |key: &str| update.get(key).and_then(Value::as_f64);
        let message = update
            .get("message")
            .and_then(Value::as_str)
            .map(|text| proto::text::bounded(text, 500).into_owned());
        if let Some(progress) = number("progress") {
            state.send_modify(|snapshot| {
                snapshot.progress = Some((progress, number("total"), message));
            });
        }
    };
    let outcome = loop {
        tokio::select! {
            outcome = &mut call => break match outcome {
                Ok(result) => Outcome::Result(Arc::new(result)),
                Err(error) => Outcome::Failed(proto::text::bounded(&error.to_string(), 2000).into_owned()),
            },
            () = cancel.cancelled() => break Outcome::Cancelled,
            Some(update) = updates.recv() => record(update),
        }
    };
    // Progress that arrived just before the answer still counts.
    while let Ok(update) = updates.try_recv() {
        record(update);
    }
    state.send_modify(|snapshot| snapshot.outcome = Some(outcome));
}

/// A tool result as HTML: text blocks as preformatted text, JSON
/// (structured content, or text that parses) pretty-printed, images from
/// this origin, links and resources by name. All of it escaped.
pub fn render_result(call: &str, result: &Value) -> Markup {
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
    let empty = Vec::new();
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    html! {
        div.result.error[is_error] {
            @if is_error { p.status { "The tool reported an error:" } }
            @for (index, block) in blocks.iter().enumerate() {
                @match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        @let text = block.get("text").and_then(Value::as_str).unwrap_or_default();
                        @if let Ok(json @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(text) {
                            pre.json { (cut(&serde_json::to_string_pretty(&json).unwrap_or_default())) }
                        } @else {
                            pre.text { (cut(text)) }
                        }
                    }
                    Some("image") => {
                        @let mime = block.get("mimeType").and_then(Value::as_str).unwrap_or_default();
                        @if IMAGE_TYPES.contains(&mime) {
                            img src=(format!("/api/calls/{call}/image/{index}")) alt=(format!("image {index} of the result ({mime})"));
                        } @else {
                            p { "An image of type " code { (mime) } " (not shown)." }
                        }
                    }
                    Some("resource_link") => {
                        p { "Resource: " code { (block.get("uri").and_then(Value::as_str).unwrap_or_default()) } }
                    }
                    Some("resource") => {
                        @let resource = block.get("resource");
                        p { "Resource " code { (resource.and_then(|r| r.get("uri")).and_then(Value::as_str).unwrap_or_default()) } }
                        @if let Some(text) = resource.and_then(|r| r.get("text")).and_then(Value::as_str) {
                            pre.text { (cut(text)) }
                        }
                    }
                    _ => { pre.json { (cut(&serde_json::to_string_pretty(block).unwrap_or_default())) } }
                }
            }
            @if let Some(structured) = result.get("structuredContent") {
                details {
                    summary { "Structured content" }
                    pre.json { (cut(&serde_json::to_string_pretty(structured).unwrap_or_default())) }
                }
            }
        }
    }
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n… ({} more bytes not shown)",
        &text[..end],
        text.len() - end
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_escaped() {
        let result = json!({"content": [
            {"type": "text", "text": "<img src=x onerror=alert(1)>"},
            {"type": "text", "text": "{\"a\": \"<b>\"}"},
            {"type": "image", "mimeType": "image/svg+xml", "data": ""},
        ]});
        let html = render_result("abc", &result).into_string();
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;img src=x"));
        assert!(html.contains("not shown"));
    }
}
