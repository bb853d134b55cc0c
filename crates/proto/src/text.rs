//! Text that came from a peer, made safe to repeat: bounded before it is
//! echoed in an error message, escaped before it reaches a text log.
//!
//! Every error text that quotes a value the client sent (a path, a tool
//! name, a schema violation) goes through [`bounded`], so a 12 MiB argument
//! is never sent back; every client-chosen string written to a log
//! (`clientInfo.name`, a method name, a peer's user agent) goes through
//! [`escaped`], so a newline cannot forge a log line and an ESC sequence
//! never reaches the operator's terminal.

use std::borrow::Cow;
use std::fmt;

/// The most bytes of a client's value that an error message quotes.
pub const ECHO_LIMIT: usize = 200;

/// `text` cut to at most `limit` bytes (at a character boundary), followed
/// by `… (N bytes)` naming the whole length when something was cut.
pub fn bounded(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len()))
}

/// [`bounded`] at [`ECHO_LIMIT`]: what an error message may quote.
pub fn echo(text: &str) -> Cow<'_, str> {
    bounded(text, ECHO_LIMIT)
}

/// A JSON value as an error message may quote it: its compact text,
/// bounded. Large arrays and objects are summarised by their size instead
/// of being serialised whole only to be cut.
pub fn echo_value(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Array(items) if items.len() > 16 => format!("an array of {} items", items.len()),
        Value::Object(map) if map.len() > 16 => format!("an object of {} members", map.len()),
        Value::String(text) if text.len() > ECHO_LIMIT => {
            format!("\"{}\"", bounded(text, ECHO_LIMIT))
        }
        other => {
            let text = other.to_string();
            bounded(&text, ECHO_LIMIT).into_owned()
        }
    }
}

/// Displays `text` with every control character (newline, carriage return,
/// ESC, DEL, C1 controls) written as a Rust-style escape, so a client's
/// string stays on one log line and sends nothing to a terminal. Bounded at
/// [`ECHO_LIMIT`] as well.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`escaped`].
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        let text = bounded(self.0, ECHO_LIMIT);
        for c in text.chars() {
            if c.is_control() {
                for escaped in c.escape_default() {
                    f.write_char(escaped)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_borrowed_whole() {
        assert!(matches!(bounded("abc", 3), Cow::Borrowed("abc")));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_its_length() {
        let text = "é".repeat(300); // 600 bytes
        let cut = bounded(&text, 201);
        assert_eq!(cut, format!("{}… (600 bytes)", "é".repeat(100)));
        let huge = "x".repeat(12 << 20);
        assert!(echo(&huge).len() < ECHO_LIMIT + 32);
    }

    #[test]
    fn values_are_summarised_or_bounded() {
        let paths = serde_json::Value::Array(vec![serde_json::json!("/a"); 100_000]);
        assert_eq!(echo_value(&paths), "an array of 100000 items");
        let content = serde_json::Value::String("y".repeat(1 << 20));
        assert!(echo_value(&content).len() < ECHO_LIMIT + 32);
        assert_eq!(echo_value(&serde_json::json!(5)), "5");
    }

    #[test]
    fn control_characters_are_escaped() {
        let forged = "host\n2026-12-01T00:00:00Z INFO admin logged in\x1b[2J\u{9b}";
        let shown = escaped(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.starts_with("host\\n2026"), "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    }
}
