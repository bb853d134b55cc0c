//! Framing: one JSON-RPC message per frame, each frame ended by a delimiter
//! byte — `\0` on the backend wire, `\n` on stdio.
//!
//! Both codecs bound the size of a frame. A frame over the limit is not an
//! error of the stream: the decoder yields [`Frame::TooLarge`] once, skips the
//! rest of that frame, and goes on with the next one, so one bad message never
//! costs a connection.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

/// 16 MiB: the default bound on one message, in either direction.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A frame longer than this leaves its reader with a new, small buffer.
///
/// A frame is split off the read buffer without a copy, so the buffer
/// grows to hold the largest message and, once that message is dropped,
/// takes its whole allocation back for the next reads: a connection that
/// once received 8 MB kept 8-16 MB for as long as it lived (issue 12:
/// the gateway's backend connections after a burst of large reads). After
/// a frame over this size the rest of the buffer moves to a fresh one (see
/// `release`), and the large allocation goes away with the frame. Smaller
/// frames (every request and answer of the hot path) cost one flag test;
/// a buffer that only ever held frames up to this size stays within a few
/// times this size.
pub const LARGE_FRAME: usize = 64 * 1024;

/// The capacity a read buffer starts over with after a large frame.
const FRESH_BUFFER: usize = 16 * 1024;

/// What the decoder found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete message, without its delimiter.
    Message(Bytes),
    /// A message longer than the limit; its bytes are being discarded.
    TooLarge { limit: usize },
}

/// Errors of the codec itself (the stream, not a message in it).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("outgoing message of {len} bytes exceeds the limit of {limit} bytes")]
    OutgoingTooLarge { len: usize, limit: usize },
    #[error("could not serialize outgoing message: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A codec for delimiter-terminated frames with a size bound.
#[derive(Clone, Debug)]
pub struct DelimitedCodec {
    delimiter: u8,
    max_message: usize,
    /// How far the current (incomplete) frame has been searched already,
    /// so that a slowly arriving frame is not rescanned from its start.
    scanned: usize,
    /// Inside an over-long frame: drop bytes until the next delimiter.
    discarding: bool,
    /// The read buffer's allocation held a frame over [`LARGE_FRAME`]: it
    /// starts over once what is left in it is small.
    oversized: bool,
}

impl DelimitedCodec {
    /// NUL-delimited framing, the backend wire of DESIGN.md 4.1.
    pub fn nul(max_message: usize) -> DelimitedCodec {
        DelimitedCodec::new(b'\0', max_message)
    }

    /// Newline-delimited framing, MCP's stdio transport. A `\r` before the
    /// newline is dropped.
    pub fn newline(max_message: usize) -> DelimitedCodec {
        DelimitedCodec::new(b'\n', max_message)
    }

    fn new(delimiter: u8, max_message: usize) -> DelimitedCodec {
        DelimitedCodec {
            delimiter,
            max_message,
            scanned: 0,
            discarding: false,
            oversized: false,
        }
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Serializes `item` as JSON straight into `dst` and ends the frame.
    pub fn encode_json<T: Serialize + ?Sized>(
        &self,
        item: &T,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let start = dst.len();
        let mut writer = dst.writer();
        let result = serde_json::to_writer(&mut writer, item);
        let dst = writer.into_inner();
        if let Err(error) = result {
            dst.truncate(start);
            return Err(error.into());
        }
        let len = dst.len() - start;
        if len > self.max_message {
            dst.truncate(start);
            return Err(CodecError::OutgoingTooLarge {
                len,
                limit: self.max_message,
            });
        }
        dst.put_u8(self.delimiter);
        Ok(())
    }

    /// Gives up a read buffer's large allocation once little is left in it:
    /// the rest moves to a fresh buffer, and the large one is freed when
    /// the frames split off it are dropped. (After a split, `capacity`
    /// shows only what is left past the frame, not the allocation the
    /// buffer takes back on its next reserve, hence the flag.) What is left
    /// is copied only when it is small, so a burst of large frames read
    /// together is not copied over and over.
    fn release(&mut self, src: &mut BytesMut) {
        if self.oversized && src.len() <= LARGE_FRAME {
            self.oversized = false;
            let mut fresh = BytesMut::with_capacity(FRESH_BUFFER.max(src.len()));
            fresh.extend_from_slice(src);
            *src = fresh;
        }
    }

    fn trim(&self, mut frame: BytesMut) -> BytesMut {
        frame.truncate(frame.len() - 1); // the delimiter
        if self.delimiter == b'\n' && frame.last() == Some(&b'\r') {
            frame.truncate(frame.len() - 1);
        }
        frame
    }
}

impl Decoder for DelimitedCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            if self.discarding {
                match memchr::memchr(self.delimiter, src) {
                    Some(end) => {
                        src.advance(end + 1);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        src.clear();
                        return Ok(None);
                    }
                }
            }
            match memchr::memchr(self.delimiter, &src[self.scanned..]) {
                Some(offset) => {
                    let end = self.scanned + offset;
                    self.scanned = 0;
                    let frame = self.trim(src.split_to(end + 1));
                    self.oversized |= frame.len() > LARGE_FRAME;
                    self.release(src);
                    if frame.len() > self.max_message {
                        return Ok(Some(Frame::TooLarge {
                            limit: self.max_message,
                        }));
                    }
                    if frame.iter().all(u8::is_ascii_whitespace) {
                        continue; // a stray delimiter or a blank line
                    }
                    return Ok(Some(Frame::Message(frame.freeze())));
                }
                // A newline frame may still lose a `\r`, so it gets one byte of grace.
                None if src.len() > self.max_message + usize::from(self.delimiter == b'\n') => {
                    src.clear();
                    self.oversized = true;
                    self.release(src);
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(Frame::TooLarge {
                        limit: self.max_message,
                    }));
                }
                None => {
                    self.release(src);
                    self.scanned = src.len();
                    return Ok(None);
                }
            }
        }
    }

    /// At end of stream a last frame without its delimiter is still a frame:
    /// a peer that half-closes right after writing is understood.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if self.discarding || src.iter().all(u8::is_ascii_whitespace) {
            src.clear();
            self.discarding = false;
            self.scanned = 0;
            return Ok(None);
        }
        src.put_u8(self.delimiter);
        self.decode(src)
    }
}

impl Encoder<&[u8]> for DelimitedCodec {
    type Error = CodecError;

    /// Frames bytes that already hold one serialized message.
    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        if item.len() > self.max_message {
            return Err(CodecError::OutgoingTooLarge {
                len: item.len(),
                limit: self.max_message,
            });
        }
        dst.reserve(item.len() + 1);
        dst.put_slice(item);
        dst.put_u8(self.delimiter);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(codec: &mut DelimitedCodec, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buffer).expect("decode") {
                frames.push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buffer).expect("decode_eof") {
            frames.push(frame);
        }
        frames
    }

    fn message(text: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn nul_frames() {
        let cases: &[(&[&[u8]], Vec<Frame>)] = &[
            (&[b"{\"a\":1}\0"], vec![message("{\"a\":1}")]),
            (
                &[b"{\"a\"", b":1}\0{", b"}\0"],
                vec![message("{\"a\":1}"), message("{}")],
            ),
            (&[b"x\0\0\0y\0"], vec![message("x"), message("y")]),
            (&[b"a\0tail"], vec![message("a"), message("tail")]),
            (
                &[b"12345678901\0ok\0"],
                vec![Frame::TooLarge { limit: 10 }, message("ok")],
            ),
            (
                &[b"123456", b"78901234", b"56\0ok\0"],
                vec![Frame::TooLarge { limit: 10 }, message("ok")],
            ),
            (&[b"1234567890\0"], vec![message("1234567890")]),
            (&[b"123456789012345"], vec![Frame::TooLarge { limit: 10 }]),
        ];
        for (chunks, expected) in cases {
            let frames = decode_all(&mut DelimitedCodec::nul(10), chunks);
            assert_eq!(&frames, expected, "chunks: {chunks:?}");
        }
    }

    #[test]
    fn newline_frames_drop_carriage_returns_and_blank_lines() {
        let frames = decode_all(&mut DelimitedCodec::newline(100), &[b"{}\r\n\n  \r\n[1]\n"]);
        assert_eq!(frames, vec![message("{}"), message("[1]")]);
    }

    /// What a reader's buffer can hold after `frames` were decoded from it
    /// and dropped: its allocation, as the next read's reserve sees it.
    fn capacity_after(codec: &mut DelimitedCodec, chunks: &[&[u8]]) -> usize {
        let mut buffer = BytesMut::with_capacity(FRESH_BUFFER);
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buffer).expect("decode") {
                drop(frame);
            }
        }
        buffer.reserve(1);
        buffer.capacity()
    }

    /// Issue 12: a connection kept its largest message's allocation for
    /// good. (sizes of the chunks read, what the buffer may keep)
    #[test]
    fn a_large_frame_does_not_leave_its_allocation_to_the_buffer() {
        let large = [vec![b'x'; 1 << 20], vec![0]].concat();
        let many_large = [large.clone(), large.clone(), large.clone()].concat();
        let over_the_limit = vec![b'y'; 3 << 20];
        let cases: &[(&str, Vec<&[u8]>)] = &[
            ("one large frame", vec![&large]),
            ("one large frame and a partial one", vec![&large, b"{\"a\""]),
            ("large frames read together", vec![&many_large, b"{}\0"]),
            ("a frame over the limit", vec![&over_the_limit, b"\0{}\0"]),
        ];
        for (what, chunks) in cases {
            let mut codec = DelimitedCodec::nul(2 << 20);
            let capacity = capacity_after(&mut codec, chunks);
            assert!(
                capacity <= 4 * FRESH_BUFFER,
                "{what}: the buffer keeps {capacity} bytes"
            );
        }
    }

    #[test]
    fn encoder_refuses_oversized_output() {
        let codec = DelimitedCodec::nul(8);
        let mut buffer = BytesMut::from(&b"kept"[..]);
        let error = codec
            .encode_json(&"a long string", &mut buffer)
            .expect_err("too large");
        assert!(matches!(
            error,
            CodecError::OutgoingTooLarge { limit: 8, .. }
        ));
        assert_eq!(&buffer[..], b"kept");
        codec.encode_json(&[1, 2], &mut buffer).expect("fits");
        assert_eq!(&buffer[..], b"kept[1,2]\0");
    }

    fn split_points(len: usize) -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0..=len, 0..12).prop_map(|mut points| {
            points.sort_unstable();
            points
        })
    }

    fn check_any_split(delimiter: u8, messages: &[Vec<u8>], limit: usize, points: &[usize]) {
        let mut stream = Vec::new();
        for body in messages {
            stream.extend_from_slice(body);
            stream.push(delimiter);
        }
        let make = || match delimiter {
            b'\0' => DelimitedCodec::nul(limit),
            _ => DelimitedCodec::newline(limit),
        };
        let whole = decode_all(&mut make(), &[&stream]);
        let mut chunks = Vec::new();
        let mut start = 0;
        for &point in points {
            let point = point.min(stream.len());
            chunks.push(&stream[start..point]);
            start = point;
        }
        chunks.push(&stream[start..]);
        let split = decode_all(&mut make(), &chunks);
        assert_eq!(split, whole);
        let expected: Vec<Frame> = messages
            .iter()
            .filter(|body| !body.iter().all(u8::is_ascii_whitespace))
            .map(|body| {
                if body.len() > limit {
                    Frame::TooLarge { limit }
                } else {
                    Frame::Message(Bytes::copy_from_slice(body))
                }
            })
            .collect();
        assert_eq!(whole, expected);
    }

    proptest! {
        #[test]
        fn nul_codec_is_split_invariant(
            messages in proptest::collection::vec(
                proptest::collection::vec(1u8..=255, 0..40), 0..8),
            points in split_points(400),
        ) {
            check_any_split(b'\0', &messages, 24, &points);
        }

        #[test]
        fn newline_codec_is_split_invariant(
            messages in proptest::collection::vec("[a-z{}\":, ]{0,40}", 0..8),
            points in split_points(400),
        ) {
            let messages: Vec<Vec<u8>> = messages.into_iter().map(String::into_bytes).collect();
            check_any_split(b'\n', &messages, 24, &points);
        }
    }
}
