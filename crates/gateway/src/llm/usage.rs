//! Counting a prompt's tokens before the call, so the client's quota can
//! reserve them: the provider's tokenizer when it has one, else an
//! estimate that never counts fewer.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ChatMessage, LlmProxy};

impl LlmProxy {
    /// The prompt's tokens: by the provider's tokenizer (llama.cpp's
    /// `/tokenize`) when configured and reachable, else
    /// [`estimate_prompt`], which never counts fewer.
    pub async fn count_prompt(&self, messages: &[ChatMessage], model: &str) -> u64 {
        let Some(url) = self.route(model).tokenize else {
            return estimate_prompt(messages);
        };
        let mut total = 3;
        for message in messages {
            let asked = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json!({ "content": message.content }).to_string())
                .send();
            let counted = async {
                let response = tokio::time::timeout(Duration::from_secs(10), asked)
                    .await
                    .ok()?
                    .ok()?;
                let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
                Some(body.get("tokens")?.as_array()?.len() as u64)
            };
            match counted.await {
                Some(tokens) => total += tokens + 4 + message.role.len() as u64,
                None => return estimate_prompt(messages),
            }
        }
        total
    }
}

/// A prompt's tokens, never fewer than a byte-level tokenizer makes:
/// one per byte of every role and content, plus each message's framing.
pub fn estimate_prompt(messages: &[ChatMessage]) -> u64 {
    3 + messages
        .iter()
        .map(|message| (message.role.len() + message.content.len()) as u64 + 4)
        .sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_never_counts_fewer_than_bytes() {
        let messages = [ChatMessage {
            role: "user".to_owned(),
            content: "héllo wörld".to_owned(),
        }];
        assert!(estimate_prompt(&messages) >= "héllo wörld".len() as u64);
    }
}
