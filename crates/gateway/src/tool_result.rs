//! The fast path of an MCP `tools/call` of a backend tool: the backend's
//! result text goes into the tool result as it came, never parsed into a
//! tree nor serialized again.
//!
//! The slow way, which the gateway took for every tool call before, turned
//! an `fs_read` answer from the fs server's text into a `Value`, a
//! `CallToolResult` (its text block one serialization), a `Value` again,
//! that `Value` shaped for the revision, a `Response`, and bytes (a second
//! serialization, escaping the text block): seven shapes of a payload that
//! may be megabytes. Here a [`RawToolResult`] holds the backend's text and
//! the revision's [`Shape`], and its `Serialize` writes the MCP result
//! straight into the transport's buffer: the text verbatim as
//! `structuredContent`, and the same text escaped as the text block's
//! string — the one pass over the payload the wire needs.
//!
//! The shape is exactly the slow way's (the end-to-end tests check every
//! revision): `content` with one text block holding the result's JSON,
//! `structuredContent` from 2025-06-18 on, and for 2026-07-28 `resultType`
//! and the server's info in `_meta`. Only a result that needs nothing but
//! wrapping takes this path: a JSON object without `_content` (media blocks
//! a backend hands the host, which become the result's content); anything
//! else goes the slow way ([`RawToolResult::wrap`] gives it back).

use std::fmt;

use proto::mcp::{Era, Implementation, JsonObject, ProtocolVersion, ResultType};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The key of a backend result's media content blocks (see the module docs).
pub const CONTENT_BLOCKS_KEY: &str = "_content";

/// What a revision puts around a tool's structured result.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// `structuredContent` (2025-06-18 and later).
    structured_content: bool,
    /// 2026-07-28: `resultType` and this `_meta` (the server's info).
    modern_meta: Option<JsonObject>,
}

impl Shape {
    /// The shape for a request of `era`, from a session that negotiated
    /// `version` (legacy), answered by `server`.
    pub fn new(era: Era, version: ProtocolVersion, server: &Implementation) -> Shape {
        match era {
            Era::Modern => Shape {
                structured_content: true,
                modern_meta: Some(proto::mcp::server_info_meta(server)),
            },
            Era::Legacy => Shape {
                structured_content: version.has_structured_content(),
                modern_meta: None,
            },
        }
    }
}

/// A backend's successful tool result as the backend wrote it, with the
/// shape it is sent in.
#[derive(Debug)]
pub struct RawToolResult {
    result: Box<RawValue>,
    shape: Shape,
}

impl RawToolResult {
    /// The tool result for `result` if it needs no more than wrapping (a
    /// JSON object without [`CONTENT_BLOCKS_KEY`]); otherwise `result` back,
    /// for the slow way. Finding out reads the text once, building nothing
    /// but the top-level keys.
    pub fn wrap(result: Box<RawValue>, shape: Shape) -> Result<RawToolResult, Box<RawValue>> {
        if is_plain_object(result.get()) {
            Ok(RawToolResult { result, shape })
        } else {
            Err(result)
        }
    }

    /// The result as a JSON tree, for the callers that need one.
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self)
    }
}

/// The one text block of a structured tool result: the result's JSON.
#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "proto::json::fast_str")]
    text: &'a str,
}

impl Serialize for RawToolResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let modern = self.shape.modern_meta.as_ref();
        let fields =
            1 + usize::from(self.shape.structured_content) + 2 * usize::from(modern.is_some());
        let mut map = serializer.serialize_map(Some(fields))?;
        let block = TextBlock {
            kind: "text",
            text: self.result.get(),
        };
        map.serialize_entry("content", &[block])?;
        if self.shape.structured_content {
            map.serialize_entry("structuredContent", &self.result)?;
        }
        if let Some(meta) = modern {
            map.serialize_entry("resultType", &ResultType::Complete)?;
            map.serialize_entry("_meta", meta)?;
        }
        map.end()
    }
}

/// Whether a valid JSON text is an object without [`CONTENT_BLOCKS_KEY`].
///
/// Most results never spell the key: an object whose text holds neither
/// the key nor a `\u` escape (the only escape that can write one of its
/// letters, as in `"\u005fcontent"`) cannot have it, and a byte search
/// (SIMD, `memchr::memmem`) tells that without a pass of the JSON parser
/// over a payload the client connection has just validated. A text that
/// holds either (a file about `_content`, say) is read key by key
/// ([`PlainObject`]). Measured on a 4 KiB `fs_read` (callgrind): the
/// parser's pass was about 11,000 instructions per call; the searches are
/// a few hundred.
fn is_plain_object(text: &str) -> bool {
    if !text.trim_start().starts_with('{') {
        return false;
    }
    let bytes = text.as_bytes();
    if memchr::memmem::find(bytes, CONTENT_BLOCKS_KEY.as_bytes()).is_none()
        && memchr::memmem::find(bytes, br"\u").is_none()
    {
        return true;
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    matches!(deserializer.deserialize_any(PlainObject), Ok(true))
}

/// Whether a JSON text is an object without [`CONTENT_BLOCKS_KEY`], read
/// without building it: values are skipped ([`IgnoredAny`]), keys compared
/// where they lie.
struct PlainObject;

impl<'de> Visitor<'de> for PlainObject {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut plain = true;
        while let Some(is_blocks) = map.next_key_seed(IsContentBlocksKey)? {
            plain &= !is_blocks;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(plain)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Reads one object key: whether it is [`CONTENT_BLOCKS_KEY`].
struct IsContentBlocksKey;

impl<'de> DeserializeSeed<'de> for IsContentBlocksKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsContentBlocksKey {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == CONTENT_BLOCKS_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::mcp::CallToolResult;
    use serde_json::json;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    /// The slow way, as the dispatcher takes it: parse, build, shape.
    fn slow(text: &str, era: Era, version: ProtocolVersion, server: &Implementation) -> Value {
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        let mut result = serde_json::to_value(CallToolResult::structured(value)).expect("encodes");
        let object = result.as_object_mut().expect("an object");
        match era {
            Era::Legacy if !version.has_structured_content() => {
                object.remove("structuredContent");
            }
            Era::Legacy => {}
            Era::Modern => {
                object.insert("resultType".to_owned(), json!("complete"));
                object.insert(
                    "_meta".to_owned(),
                    Value::Object(proto::mcp::server_info_meta(server)),
                );
            }
        }
        result
    }

    /// A tool result with its text block's JSON parsed.
    fn with_text_parsed(mut result: Value) -> Value {
        let text = result["content"][0]["text"].as_str().expect("a text block");
        result["content"][0]["text"] = serde_json::from_str(text).expect("JSON text");
        result
    }

    /// Every revision gets from the fast path what the slow way gave it,
    /// for results that escape badly too.
    #[test]
    fn the_fast_path_shapes_results_as_the_slow_way_does() {
        let server = Implementation::new("llmbasedos", "1.2.3");
        let results = [
            r#"{"text":"hi"}"#,
            r#"{}"#,
            r#"{"path":"/a \"b\"\\c","content":"\u0001\n\t\u001f é ☃ \ud83d\ude00","size":3,"nested":{"_content":[1]},"list":[1.5,null,true]}"#,
            r#" {"text":"a file that mentions _content and \\u0041","size":2}"#,
        ];
        let revisions = [
            (Era::Legacy, ProtocolVersion::V2025_03_26),
            (Era::Legacy, ProtocolVersion::V2025_06_18),
            (Era::Legacy, ProtocolVersion::V2025_11_25),
            (Era::Modern, ProtocolVersion::LATEST_LEGACY),
        ];
        for text in results {
            for (era, version) in revisions {
                let shape = Shape::new(era, version, &server);
                let fast = RawToolResult::wrap(raw(text), shape).expect("a plain object");
                let written = serde_json::to_string(&fast).expect("serializes");
                let fast_value: Value = serde_json::from_str(&written).expect("valid JSON");
                assert_eq!(fast.into_value().expect("a tree"), fast_value);
                // The text blocks hold the same JSON (the slow way's is a
                // re-serialization: keys sorted, escapes written anew).
                assert_eq!(
                    with_text_parsed(fast_value),
                    with_text_parsed(slow(text, era, version, &server)),
                    "{text} {version:?}"
                );
            }
        }
    }

    /// The text block holds the backend's own text, not a re-serialization.
    #[test]
    fn the_text_block_is_the_backends_text() {
        let text = r#"{"z":1,"a":"\u0001"}"#;
        let shape = Shape::new(
            Era::Legacy,
            ProtocolVersion::LATEST_LEGACY,
            &Implementation::new("s", "1"),
        );
        let fast = RawToolResult::wrap(raw(text), shape).expect("a plain object");
        let written: Value =
            serde_json::from_str(&serde_json::to_string(&fast).expect("serializes"))
                .expect("valid JSON");
        assert_eq!(written["content"][0]["text"], json!(text));
    }

    /// What needs more than wrapping goes the slow way, untouched.
    #[test]
    fn results_that_need_more_than_wrapping_are_given_back() {
        let shape = Shape::new(
            Era::Legacy,
            ProtocolVersion::LATEST_LEGACY,
            &Implementation::new("s", "1"),
        );
        for text in [
            r#"{"size":1,"_content":[{"type":"image","data":"AA==","mimeType":"image/png"}]}"#,
            r#"{"_content":null}"#,
            r#"{"size":1,"\u005fcontent":[]}"#,
            r#"{"size":1,"_conten\u0074":[]}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"3"#,
            r#"null"#,
            r#"true"#,
        ] {
            let back = RawToolResult::wrap(raw(text), shape.clone()).expect_err(text);
            assert_eq!(back.get(), text);
        }
    }
}
