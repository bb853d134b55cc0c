//! Reading files: text or base64, byte ranges, head/tail lines, a size
//! bound, a MIME type.

use std::io::{Read, Seek, SeekFrom};

use base64::Engine;
use serde::Serialize;

use super::{FsError, Root};
use crate::vpath::VirtualPath;

/// Files up to this size are small enough to read on an async worker
/// without handing the worker's other tasks to another thread first (see
/// `Context::blocking_in_place`): the hand-off costs more than the read.
pub const INLINE_READ_BYTES: u64 = 256 * 1024;

/// How a read returns the bytes (the `encoding` param; its default is in
/// fs.cap.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Text,
    Base64,
    /// Text when the bytes are UTF-8 without NUL, base64 otherwise.
    Auto,
}

/// What part of the file to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    Whole,
    Range {
        offset: u64,
        length: Option<u64>,
    },
    Head(usize),
    Tail(usize),
}

/// A read's answer. The fields are in the order of their names, the order
/// a result had when it went through a `Value` first (server-kit now writes
/// a result as it serializes): a host that shows the text block sees the
/// same text as before.
#[derive(Clone, Debug, Serialize)]
pub struct ReadResult {
    /// How many bytes of the file the content holds.
    pub bytes: u64,
    /// Possibly megabytes: escaped a word at a time.
    #[serde(serialize_with = "proto::json::fast_str")]
    pub content: String,
    /// `text` or `base64`.
    pub encoding: &'static str,
    pub mime_type: String,
    /// Where in the file the returned bytes start.
    pub offset: u64,
    pub path: String,
    /// The file's whole size.
    pub size: u64,
    /// Whether the selection held more than the read limit allowed.
    pub truncated: bool,
}

/// Reads `path` as selected, returning at most the policy's limit.
pub fn read(
    root: &Root,
    path: &VirtualPath,
    encoding: Encoding,
    selection: Selection,
) -> Result<ReadResult, FsError> {
    open(root, path)?.read(root, encoding, selection)
}

/// A regular file opened beneath the root, not read yet: its size tells
/// the caller where to read it ([`INLINE_READ_BYTES`]).
#[derive(Debug)]
pub struct OpenFile<'a> {
    path: &'a VirtualPath,
    file: cap_std::fs::File,
    size: u64,
}

/// Opens `path` for [`OpenFile::read`] (an `openat2` and a `statx`).
pub fn open<'a>(root: &Root, path: &'a VirtualPath) -> Result<OpenFile<'a>, FsError> {
    let (file, metadata) = root.open_read(path)?;
    Ok(OpenFile {
        path,
        file,
        size: metadata.len(),
    })
}

impl OpenFile<'_> {
    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads the file as selected, returning at most the policy's limit.
    pub fn read(
        self,
        root: &Root,
        encoding: Encoding,
        selection: Selection,
    ) -> Result<ReadResult, FsError> {
        let OpenFile {
            path,
            mut file,
            size,
        } = self;
        let limit = root.policy().max_read_bytes;
        let io = |error| FsError::io(path, "read", error);
        let (offset, data, truncated) = match selection {
            Selection::Whole => {
                if size > limit {
                    return Err(FsError::TooLarge {
                    path: path.to_string(),
                    size,
                    limit,
                    hint: "read part of it with offset/length or head/tail, or search it for a pattern",
                }
                .with_hint(super::error::hint(
                    "read its start",
                    "mcp.fs.read",
                    &[("path", path.to_string().into()), ("length", limit.into())],
                )));
                }
                let (data, more) = read_bounded(&mut file, limit, size).map_err(io)?;
                (0, data, more)
            }
            Selection::Range { offset, length } => {
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                let wanted = length.unwrap_or(u64::MAX);
                let expected = size.saturating_sub(offset).min(wanted);
                let (data, more) =
                    read_bounded(&mut (&mut file).take(wanted), limit, expected).map_err(io)?;
                (offset.min(size), data, more)
            }
            Selection::Head(lines) => {
                let (data, more) = read_bounded(&mut file, limit, size).map_err(io)?;
                let end = nth_line_end(&data, lines);
                let truncated = more && end == data.len();
                (0, data[..end].to_vec(), truncated)
            }
            Selection::Tail(lines) => {
                let start = size.saturating_sub(limit);
                file.seek(SeekFrom::Start(start)).map_err(io)?;
                let (data, _) = read_bounded(&mut file, limit, size - start).map_err(io)?;
                let begin = nth_line_start_from_end(&data, lines);
                let truncated = start > 0 && begin == 0;
                (start + begin as u64, data[begin..].to_vec(), truncated)
            }
        };
        let mime_type = mime_guess::from_path(path.name().unwrap_or(""))
            .first()
            .map(|mime| mime.essence_str().to_owned());
        let is_text = std::str::from_utf8(&data).is_ok() && !data.contains(&0);
        let bytes = data.len() as u64;
        let budget = json_budget(limit);
        let fits_as_text = || escaped_len(&data) <= budget;
        let (encoding, content) = match encoding {
            Encoding::Text => {
                let escaped = escaped_len(&data);
                if escaped > budget {
                    return Err(FsError::InvalidValue(format!(
                        "{path} as JSON text takes {escaped} bytes (its control characters, quotes and backslashes are escaped), more than the {budget} bytes one read may return; read it with encoding \"auto\" or \"base64\", or part of it with offset/length"
                    )));
                }
                match String::from_utf8(data) {
                    Ok(text) => ("text", text),
                    Err(_) => {
                        return Err(FsError::InvalidValue(format!(
                            "{path} is not UTF-8 text; read it with encoding \"base64\" or \"auto\""
                        )));
                    }
                }
            }
            Encoding::Auto if is_text && fits_as_text() => (
                "text",
                String::from_utf8(data).expect("checked to be UTF-8"),
            ),
            Encoding::Auto | Encoding::Base64 => (
                "base64",
                base64::engine::general_purpose::STANDARD.encode(&data),
            ),
        };
        let mime_type = mime_type.unwrap_or_else(|| {
            if is_text {
                "text/plain".to_owned()
            } else {
                "application/octet-stream".to_owned()
            }
        });
        Ok(ReadResult {
            path: path.to_string(),
            encoding,
            content,
            mime_type,
            size,
            offset,
            bytes,
            truncated,
        })
    }
}

/// The most bytes a read's content may take as JSON text when the read
/// limit is `limit`: the base64 of `limit` bytes. Text whose escaping
/// takes it past this (control characters take six bytes each, quotes and
/// backslashes two) goes as base64 under `auto`, and is refused as
/// `text`, so that every read's answer fits the message bound the limit
/// was chosen for (`config::MAX_MAX_READ_BYTES`).
pub const fn json_budget(limit: u64) -> u64 {
    limit.div_ceil(3).saturating_mul(4)
}

/// The bytes `data` takes inside a JSON string, as serde_json writes it.
fn escaped_len(data: &[u8]) -> u64 {
    proto::json::escaped_len(data) as u64
}

/// Reads at most `limit` bytes; says whether more were there. `expected`
/// sizes the buffer, so that a small file costs one read, not a series of
/// growing ones.
fn read_bounded(
    reader: &mut impl Read,
    limit: u64,
    expected: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    let capacity = usize::try_from(expected.min(limit).saturating_add(1)).unwrap_or(0);
    let mut data = Vec::with_capacity(capacity);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)?;
    let more = data.len() as u64 > limit;
    if more {
        data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok((data, more))
}

/// The index just past the `lines`-th newline (or the end).
fn nth_line_end(data: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return 0;
    }
    let mut seen = 0;
    for (index, byte) in data.iter().enumerate() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    data.len()
}

/// The index where the last `lines` lines start (a final newline does not
/// begin an empty line).
fn nth_line_start_from_end(data: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return data.len();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (index, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_boundaries() {
        let data = b"a\nb\nc\n";
        assert_eq!(&data[..nth_line_end(data, 2)], b"a\nb\n");
        assert_eq!(&data[..nth_line_end(data, 9)], data);
        assert_eq!(&data[nth_line_start_from_end(data, 2)..], b"b\nc\n");
        assert_eq!(&data[nth_line_start_from_end(data, 9)..], data);
        assert_eq!(&b"a\nb"[nth_line_start_from_end(b"a\nb", 1)..], b"b");
        assert_eq!(nth_line_start_from_end(data, 0), data.len());
    }

    /// The escaping counted is serde_json's, byte for byte.
    #[test]
    fn escaped_length_is_what_json_writes() {
        for byte in 0..=0x7f_u8 {
            let text = String::from(char::from(byte)).repeat(3);
            let written = serde_json::to_string(&text).expect("serializes").len() as u64 - 2;
            assert_eq!(escaped_len(text.as_bytes()), written, "byte {byte:#04x}");
        }
        assert_eq!(escaped_len("é☃".as_bytes()), "é☃".len() as u64);
        assert_eq!(json_budget(3), 4);
        assert_eq!(json_budget(4), 8);
    }

    /// Issue 20: text that escapes past the read's JSON budget goes as
    /// base64 under `auto` and is refused as `text`, so no read's answer
    /// is over the bound its limit was chosen for; text that fits stays
    /// text, escapes and all.
    #[test]
    fn text_that_escapes_past_the_budget_goes_as_base64() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limit = 3000;
        let budget = json_budget(limit) as usize;
        let files: [(&str, Vec<u8>); 3] = [
            ("controls.txt", vec![1; limit as usize]),
            ("quotes.txt", vec![b'"'; budget / 2]),
            ("more-quotes.txt", vec![b'"'; budget / 2 + 1]),
        ];
        for (name, data) in &files {
            std::fs::write(dir.path().join(name), data).expect("write");
        }
        let policy = super::super::Policy {
            max_read_bytes: limit,
            ..super::super::Policy::default()
        };
        let root = Root::open(dir.path(), policy).expect("root");
        let path = |name: &str| VirtualPath::parse(&format!("/{name}")).expect("path");
        let read_as = |name, encoding| read(&root, &path(name), encoding, Selection::Whole);
        let expected = [
            ("controls.txt", "base64"),
            ("quotes.txt", "text"),
            ("more-quotes.txt", "base64"),
        ];
        for (name, encoding) in expected {
            let result = read_as(name, Encoding::Auto).expect(name);
            assert_eq!(result.encoding, encoding, "{name}");
            let json = serde_json::to_string(&result.content).expect("serializes");
            assert!(json.len() - 2 <= budget, "{name}: {} bytes", json.len());
        }
        assert_eq!(
            read_as("quotes.txt", Encoding::Text)
                .expect("fits")
                .encoding,
            "text"
        );
        for name in ["controls.txt", "more-quotes.txt"] {
            let refused = read_as(name, Encoding::Text).expect_err(name).to_string();
            assert!(
                refused.contains("encoding \"auto\" or \"base64\""),
                "{refused}"
            );
        }
    }
}
