//! JSON strings written eight bytes at a time.
//!
//! serde_json escapes a string one byte at a time through a lookup table:
//! about nine instructions per byte, which for a file read or a tool
//! result of a few KiB is most of what the fs server and the gateway spend
//! on a call (callgrind: 38k of the fs server's 140k instructions for a
//! 4 KiB `mcp.fs.read`, 39k of the gateway's 110k for the text block of
//! the same `fs_read` tool call). Here the bytes that need no escaping —
//! nearly all of them in text — are skipped a machine word at a time, and
//! the runs between escapes copied whole.
//!
//! The output is byte for byte what serde_json writes (the same short
//! escapes, `\u00XX` in lowercase hex for the other control characters,
//! nothing else escaped), so a result written either way is the same text;
//! the tests check it against serde_json over every byte value.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in the lowest byte of `word` that JSON must
/// escape (a control character, `"` or `\`); bits above the lowest one may
/// be false positives (borrows), so only the lowest is meaningful.
const fn escape_mask(word: u64) -> u64 {
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let controls = word.wrapping_sub(ONES * 0x20) & !word;
    let quotes = (word ^ QUOTES).wrapping_sub(ONES) & !(word ^ QUOTES);
    let backslashes = (word ^ BACKSLASHES).wrapping_sub(ONES) & !(word ^ BACKSLASHES);
    (controls | quotes | backslashes) & HIGHS
}

const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The index of the first byte of `bytes` that JSON must escape.
fn next_escape(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let mask = escape_mask(word);
        if mask != 0 {
            return Some(offset + (mask.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&byte| needs_escape(byte))
        .map(|position| offset + position)
}

/// The bytes `byte` takes escaped inside a JSON string.
const fn escaped_width(byte: u8) -> usize {
    match byte {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0x00..=0x1f => 6,
        _ => 1,
    }
}

/// How many bytes `bytes` takes between the quotes of a JSON string, as
/// [`write_str`] (and serde_json) write it.
pub fn escaped_len(bytes: &[u8]) -> usize {
    let mut length = bytes.len();
    let mut rest = bytes;
    while let Some(at) = next_escape(rest) {
        length += escaped_width(rest[at]) - 1;
        rest = &rest[at + 1..];
    }
    length
}

/// Appends `text` to `out` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut rest = text.as_bytes();
    while let Some(at) = next_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        let byte = rest[at];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// A string that serializes through [`write_str`]: for large text in a
/// result (a file's content, a tool result's text block). Into JSON text
/// it goes as a raw fragment; into anything else (a `Value`) as the string.
#[derive(Clone, Copy, Debug)]
pub struct FastStr<'a>(pub &'a str);

impl Serialize for FastStr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Short strings gain nothing from the detour.
        if self.0.len() < 256 {
            return serializer.serialize_str(self.0);
        }
        let mut out = Vec::with_capacity(self.0.len() + 2);
        write_str(&mut out, self.0);
        // SAFETY: `write_str` copies `text` in runs cut at ASCII bytes and
        // inserts ASCII escapes: the bytes stay UTF-8, whole characters
        // untouched. (Checking it again, and parsing the string as
        // `RawValue::from_string` does, was two more passes over the text:
        // about 12,000 instructions per 4 KiB text, in the fs server and
        // in the gateway, on every call.)
        let text = unsafe { std::str::from_utf8_unchecked(&out) };
        debug_assert!(serde_json::from_str::<&RawValue>(text).is_ok());
        serialize_raw(serializer, text)
    }
}

/// The name under which serde_json's serializers take a fragment of JSON
/// text as it is: what [`RawValue`] serializes as (its `Serialize` is a
/// one-field struct of this name). The tests check that serde_json still
/// reads it so (text written whole, and a tree built from it).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Serializes `json`, JSON text the caller made and vouches for, as
/// [`RawValue`] does, without `RawValue::from_string`'s parse of it.
fn serialize_raw<S: Serializer>(serializer: S, json: &str) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut fragment = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
    fragment.serialize_field(RAW_VALUE_TOKEN, json)?;
    fragment.end()
}

/// `#[serde(serialize_with = "proto::json::fast_str")]` for a `String`
/// field that may be large.
pub fn fast_str<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    FastStr(text).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_json_text(text: &str) -> Vec<u8> {
        serde_json::to_vec(text).expect("a string serializes")
    }

    #[test]
    fn every_byte_value_is_written_as_serde_json_writes_it() {
        // Each ASCII byte alone, at every position within a word, and
        // between runs that the word-at-a-time scan skips.
        for byte in 0u8..0x80 {
            for position in 0..17 {
                let mut text = "a".repeat(position);
                text.push(char::from(byte));
                text.push_str(&"b".repeat(20 - position));
                let mut ours = Vec::new();
                write_str(&mut ours, &text);
                assert_eq!(
                    ours,
                    serde_json_text(&text),
                    "byte {byte:#04x} at {position}"
                );
                assert_eq!(escaped_len(text.as_bytes()) + 2, ours.len());
            }
        }
    }

    #[test]
    fn mixed_text_matches_serde_json() {
        let cases = [
            String::new(),
            "plain".to_owned(),
            "é ü 日本語 🎉 \u{7f} \u{80}".repeat(40),
            "\"quoted\"\\back\\slash\n\r\t\u{8}\u{c}\u{0}\u{1f}".repeat(30),
            "{\"path\":\"/4k.txt\",\"content\":\"".to_owned() + &"x".repeat(4096) + "\"}",
            "\u{ff}\u{1ff}\u{fffd}".repeat(100),
        ];
        for text in &cases {
            let mut ours = Vec::new();
            write_str(&mut ours, text);
            assert_eq!(
                String::from_utf8(ours.clone()).unwrap(),
                String::from_utf8(serde_json_text(text)).unwrap()
            );
            assert_eq!(escaped_len(text.as_bytes()) + 2, ours.len());
            let serialized = serde_json::to_vec(&FastStr(text)).unwrap();
            assert_eq!(serialized, serde_json_text(text));
            let value = serde_json::to_value(FastStr(text)).unwrap();
            assert_eq!(value, serde_json::Value::String(text.clone()));
        }
    }
}
