//! Reading a message from the pieces of it that were fetched, not the
//! whole: the header and the first bytes of its one text part (a window
//! into a long text), or one part alone, its MIME header and its body
//! (an attachment). The same parser reads them as reads whole messages, so
//! a piece decodes exactly as it would inside the message.
//!
//! **A text's start.** A window of `n` characters needs only the first
//! bytes of the text, but the window is in characters of *decoded* text:
//! the fetched bytes are cut where decoding can stop cleanly (a line end;
//! for base64 a line end after a whole number of 4-character groups) and
//! only charsets in which a prefix of the bytes is a prefix of the text
//! (ASCII-compatible, without shift states) are read this way. When the
//! start holds fewer characters than the window and one more (so that it
//! is known whether more follow), `None` says to read the message whole.

use super::{
    Body, BodySource, BodyWindow, Limits, MessageView, MimeError, Part, PartType, ViewOptions,
    parse, part_content, view_of,
};

/// A text part's content transfer encoding, for reading its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// `7bit`, `8bit`, `binary`.
    Identity,
    QuotedPrintable,
    Base64,
}

/// Bytes a decoded character takes at most in a charset
/// [`prefix_safe_charset`] accepts (UTF-8).
const BYTES_PER_CHAR: usize = 4;
/// Past the worst case, for the cut at a line end.
const CUT_SLACK: usize = 8 * 1024;

/// Whether the first bytes of a text in `charset` (lower case; `None`:
/// US-ASCII, RFC 2045 §5.2), cut at a line end, decode to the first
/// characters of the text.
pub fn prefix_safe_charset(charset: Option<&str>) -> bool {
    let Some(charset) = charset else {
        return true;
    };
    matches!(
        charset,
        "us-ascii" | "ascii" | "utf-8" | "utf8" | "latin1" | "koi8-r" | "koi8-u"
    ) || charset.starts_with("iso-8859-")
        || charset.starts_with("windows-125")
}

/// How many stored bytes of a text part hold its first `chars` characters,
/// in the worst case of the encoding (every character 4 bytes, quoted-
/// printable writing each byte as `=XX` on lines of 76), and the slack
/// the cut needs.
pub fn start_bytes(chars: usize, encoding: TransferEncoding) -> usize {
    let decoded = chars.saturating_mul(BYTES_PER_CHAR);
    let stored = match encoding {
        TransferEncoding::Identity => decoded,
        // `=XX` per byte, and a soft line break (`=` CRLF) per 73 of them.
        TransferEncoding::QuotedPrintable => decoded.saturating_mul(3).saturating_mul(79) / 76,
        // 4 characters per 3 bytes, CRLF after every 76 of them.
        TransferEncoding::Base64 => decoded.div_ceil(3).saturating_mul(4).saturating_mul(78) / 76,
    };
    stored.saturating_add(CUT_SLACK)
}

/// The most stored bytes a part of `decoded` bytes takes in `encoding`,
/// with lines of 60 characters or more (every encoder writes 64 or 76):
/// a part stored larger is over `decoded` and is refused before it is
/// fetched.
pub fn max_stored_bytes(decoded: usize, encoding: TransferEncoding) -> usize {
    match encoding {
        TransferEncoding::Identity => decoded,
        // `=XX` per byte, a soft line break (`=` CRLF) per line.
        TransferEncoding::QuotedPrintable => decoded.saturating_mul(3).saturating_mul(63) / 60,
        TransferEncoding::Base64 => decoded.div_ceil(3).saturating_mul(4).saturating_mul(62) / 60,
    }
    .saturating_add(CUT_SLACK)
}

/// Where `start` (the first bytes of a body in `encoding`) can be cut so
/// that what is kept decodes cleanly: after its last line end (for base64,
/// the last one after a whole number of 4-character groups). `None` when
/// there is no such place.
fn cut(start: &[u8], encoding: TransferEncoding) -> Option<usize> {
    match encoding {
        TransferEncoding::Identity | TransferEncoding::QuotedPrintable => start
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map(|at| at + 1),
        TransferEncoding::Base64 => {
            let mut characters = 0usize;
            let mut best = None;
            for (at, &byte) in start.iter().enumerate() {
                if byte == b'\n' {
                    if characters.is_multiple_of(4) {
                        best = Some(at + 1);
                    }
                } else if !byte.is_ascii_whitespace() {
                    characters += 1;
                }
            }
            best
        }
    }
}

/// The view of a message of `size` bytes from its `header` (as
/// `BODY[HEADER]` gives it, the blank line included) and the first bytes
/// of its body (`start`, cut anywhere), whose one part is plain text in
/// `encoding`. `None` when that does not show the window: the header does
/// not describe one plain text part, the start does not decode cleanly,
/// or it holds no more characters than the window needs. Then the message
/// is read whole. The body's `total_chars` is not known (`None`); it has
/// more.
pub fn parse_message_start(
    header: &[u8],
    start: &[u8],
    encoding: TransferEncoding,
    size: usize,
    limits: &Limits,
    options: &ViewOptions<'_>,
) -> Result<Option<MessageView>, MimeError> {
    let Some(cut) = cut(start, encoding) else {
        return Ok(None);
    };
    let mut raw = Vec::with_capacity(header.len() + cut);
    raw.extend_from_slice(header);
    raw.extend_from_slice(&start[..cut]);
    let message = parse(&raw, limits)?;
    let [part] = message.parts.as_slice() else {
        return Ok(None);
    };
    if part.is_encoding_problem || message.text_body.as_slice() != [0] {
        return Ok(None);
    }
    let PartType::Text(text) = &part.body else {
        return Ok(None);
    };
    let BodyWindow { offset, max_chars } = options.window;
    let end = offset.saturating_add(max_chars);
    // The character after the window must be there: then more follow.
    let Some((end_byte, _)) = text.char_indices().nth(end) else {
        return Ok(None);
    };
    let start_byte = text
        .char_indices()
        .nth(offset)
        .map_or(end_byte, |(at, _)| at);
    let body = Body {
        text: text[start_byte..end_byte].to_owned(),
        source: BodySource::Plain,
        offset,
        total_chars: None,
        has_more: true,
    };
    Ok(Some(view_of(&message, body, size, options)))
}

/// The decoded content of one part fetched alone: its MIME `header` (as
/// `BODY[n.MIME]`, `BODY[n.HEADER]` or `BODY[HEADER]` give it) and its
/// stored `body` (`BODY[n]`). A part without header lines has the type
/// its context gives it, `default_type` (text/plain; message/rfc822 in a
/// digest; RFC 2046 §5.1).
pub fn decode_part(
    header: &[u8],
    body: &[u8],
    default_type: &str,
    limits: &Limits,
) -> Result<Part, MimeError> {
    let mut raw = Vec::with_capacity(header.len() + body.len() + 64);
    if header.iter().all(u8::is_ascii_whitespace) {
        raw.extend_from_slice(format!("Content-Type: {default_type}\r\n\r\n").as_bytes());
    } else {
        raw.extend_from_slice(header);
        // The blank line that ends it, if the server left it out.
        if !(header.ends_with(b"\n\n") || header.ends_with(b"\r\n\r\n")) {
            if !header.ends_with(b"\n") {
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
        }
    }
    raw.extend_from_slice(body);
    let message = parse(&raw, limits)?;
    part_content(message.parts.first().ok_or(MimeError::Unparseable)?)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::super::{extract_part, parse_message};
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_bytes: 4 * 1024 * 1024,
    };

    fn options(offset: usize, max_chars: usize) -> ViewOptions<'static> {
        ViewOptions {
            window: BodyWindow { offset, max_chars },
            trusted_authserv_id: None,
        }
    }

    /// Lines of mixed scripts, CRLF-terminated, 1 to 4 bytes a character.
    fn text(lines: usize) -> String {
        (0..lines)
            .map(|line| format!("Zeile {line}: Grüße — 東京 ✓ 𝄞 caf\u{e9} = end\r\n"))
            .collect()
    }

    fn quoted_printable(text: &str) -> String {
        let mut out = String::new();
        for line in text.split_inclusive("\r\n") {
            let line = line.trim_end_matches("\r\n");
            let mut width = 0;
            for byte in line.bytes() {
                let piece = if (b'!'..=b'~').contains(&byte) && byte != b'=' {
                    (byte as char).to_string()
                } else {
                    format!("={byte:02X}")
                };
                if width + piece.len() > 75 {
                    out.push_str("=\r\n");
                    width = 0;
                }
                width += piece.len();
                out.push_str(&piece);
            }
            out.push_str("\r\n");
        }
        out
    }

    fn base64_lines(text: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        encoded
            .as_bytes()
            .chunks(76)
            .map(|line| format!("{}\r\n", std::str::from_utf8(line).unwrap()))
            .collect()
    }

    /// `text` as the body of each transfer encoding a start can be read in.
    fn encoded_bodies(text: &str) -> [(&'static str, TransferEncoding, String); 3] {
        [
            ("8bit", TransferEncoding::Identity, text.to_owned()),
            (
                "quoted-printable",
                TransferEncoding::QuotedPrintable,
                quoted_printable(text),
            ),
            ("base64", TransferEncoding::Base64, base64_lines(text)),
        ]
    }

    fn header(encoding: &str) -> String {
        format!(
            "From: Ann <ann@example.org>\r\nSubject: long\r\nMessage-ID: <long@example.org>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: {encoding}\r\n\r\n"
        )
    }

    #[test]
    fn a_start_shows_the_same_window_as_the_whole_message_in_every_encoding() {
        let text = text(60);
        let bodies = encoded_bodies(&text);
        for (name, encoding, body) in bodies {
            let header = header(name);
            let whole_raw = format!("{header}{body}");
            for (offset, max_chars) in [(0, 40), (7, 100), (333, 250), (0, 0), (1000, 1)] {
                let options = options(offset, max_chars);
                let whole = parse_message(whole_raw.as_bytes(), &LIMITS, &options).unwrap();
                assert_eq!(whole.body.total_chars, Some(text.chars().count()));
                let mut shown = 0;
                // Every cut of the body: the start either shows the very
                // window the whole message shows, or asks to read it whole.
                for length in (0..body.len()).step_by(3) {
                    let Some(view) = parse_message_start(
                        header.as_bytes(),
                        &body.as_bytes()[..length],
                        encoding,
                        whole_raw.len(),
                        &LIMITS,
                        &options,
                    )
                    .unwrap() else {
                        continue;
                    };
                    shown += 1;
                    assert_eq!(view.body.text, whole.body.text, "{name} cut at {length}");
                    assert_eq!(view.body.offset, whole.body.offset);
                    assert!(view.body.has_more && whole.body.has_more);
                    assert_eq!(view.body.total_chars, None);
                    assert_eq!(view.subject, whole.subject);
                    assert_eq!(view.message_id, whole.message_id);
                    assert_eq!(view.size, whole_raw.len());
                    assert!(view.attachments.is_empty());
                }
                assert!(
                    shown > 0,
                    "{name}: no start showed the window {offset}+{max_chars}"
                );
            }
        }
    }

    #[test]
    fn the_start_the_bound_gives_is_enough_for_the_window() {
        let text = text(3000);
        let bodies = encoded_bodies(&text);
        for (name, encoding, body) in bodies {
            let header = header(name);
            for (offset, max_chars) in [(0, 20_000), (5_000, 100)] {
                let bound = start_bytes(offset + max_chars + 1, encoding);
                assert!(bound < body.len(), "{name}: the test's text is too short");
                let view = parse_message_start(
                    header.as_bytes(),
                    &body.as_bytes()[..bound],
                    encoding,
                    header.len() + body.len(),
                    &LIMITS,
                    &options(offset, max_chars),
                )
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: the bound's start is too short"));
                let whole = format!("{header}{body}");
                let expected =
                    parse_message(whole.as_bytes(), &LIMITS, &options(offset, max_chars))
                        .unwrap()
                        .body;
                assert_eq!(view.body.text, expected.text, "{name}");
                assert!(expected.has_more);
            }
        }
    }

    #[test]
    fn a_start_that_cannot_show_the_window_asks_for_the_whole_message() {
        let text = text(20);
        let header = header("8bit");
        let start = |bytes: &[u8], options: &ViewOptions<'_>| {
            parse_message_start(
                header.as_bytes(),
                bytes,
                TransferEncoding::Identity,
                9999,
                &LIMITS,
                options,
            )
            .unwrap()
        };
        // Too few characters for the window and one more.
        let all = text.chars().count();
        assert!(start(text.as_bytes(), &options(0, all)).is_none());
        assert!(start(text.as_bytes(), &options(0, all - 3)).is_some());
        // No line end to cut at.
        assert!(start(b"one long line without its end", &options(0, 3)).is_none());
        // A header that is not one plain text part.
        let html = header.replace("text/plain", "text/html");
        let view = parse_message_start(
            html.as_bytes(),
            text.as_bytes(),
            TransferEncoding::Identity,
            9999,
            &LIMITS,
            &options(0, 5),
        )
        .unwrap();
        assert!(view.is_none());
        let multipart = header.replace(
            "text/plain; charset=utf-8",
            "multipart/mixed; boundary=\"b\"",
        );
        let body = format!("--b\r\nContent-Type: text/plain\r\n\r\n{text}--b--\r\n");
        let view = parse_message_start(
            multipart.as_bytes(),
            body.as_bytes(),
            TransferEncoding::Identity,
            9999,
            &LIMITS,
            &options(0, 5),
        )
        .unwrap();
        assert!(view.is_none());
        // Base64 that does not decode is never shown as text.
        let broken = parse_message_start(
            self::header("base64").as_bytes(),
            b"SGVsbG8g*%$ d29ybGQ=\r\nSGVsbG8gd29ybGQ=\r\n",
            TransferEncoding::Base64,
            9999,
            &LIMITS,
            &options(0, 2),
        )
        .unwrap();
        assert!(broken.is_none());
    }

    #[test]
    fn only_charsets_whose_prefix_is_a_prefix_of_the_text_are_read_by_their_start() {
        for charset in [
            None,
            Some("utf-8"),
            Some("us-ascii"),
            Some("iso-8859-15"),
            Some("windows-1252"),
        ] {
            assert!(prefix_safe_charset(charset), "{charset:?}");
        }
        for charset in ["utf-16", "utf-16le", "iso-2022-jp", "utf-7", "x-unknown"] {
            assert!(!prefix_safe_charset(Some(charset)), "{charset}");
        }
    }

    #[test]
    fn the_stored_size_bound_admits_what_fits_and_nothing_far_over() {
        let decoded = vec![0xa5u8; 300_000];
        let encoded = base64_lines(&String::from_utf8_lossy(&decoded));
        let limit = String::from_utf8_lossy(&decoded).len();
        assert!(encoded.len() <= max_stored_bytes(limit, TransferEncoding::Base64));
        assert!(encoded.len() > max_stored_bytes(limit / 2, TransferEncoding::Base64));
        let qp = quoted_printable(&String::from_utf8_lossy(&decoded));
        assert!(qp.len() <= max_stored_bytes(limit, TransferEncoding::QuotedPrintable));
        assert_eq!(
            max_stored_bytes(1000, TransferEncoding::Identity),
            1000 + CUT_SLACK
        );
    }

    /// mixed[ alternative[ plain(qp), related[ html, image(base64, cid) ] ],
    /// pdf(base64, RFC 2231 name), text(qp, RFC 2047 name),
    /// message[ mixed[ plain, zip(base64) ] ] ]: each part, fetched alone
    /// as a server gives it (its MIME header, its body), decodes to the
    /// bytes it has inside the whole message.
    #[test]
    fn a_part_fetched_alone_decodes_as_it_does_inside_its_message() {
        let pdf = b"%PDF-1.4 \x00\x01\x02\xff binary".to_vec();
        let zip = b"PK\x03\x04 zipped \x00\xfe".to_vec();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let parts: Vec<(&str, String, String)> = vec![
            (
                "1.1",
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_owned(),
                "Bonjour =C3=A0 tous=\r\n, suite".to_owned(),
            ),
            (
                "1.2.1",
                "Content-Type: text/html; charset=utf-8\r\n\r\n".to_owned(),
                "<p>Voir <img src=\"cid:logo\"></p>".to_owned(),
            ),
            (
                "1.2.2",
                "Content-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_owned(),
                b64(b"\x89PNG\r\n\x1a\n"),
            ),
            (
                "2",
                "Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*=utf-8''R%C3%A9sum%C3%A9%20%E2%80%93%20M%C3%A4rz.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_owned(),
                b64(&pdf),
            ),
            (
                "3",
                "Content-Type: text/plain; charset=iso-8859-1; name=\"=?UTF-8?Q?Notizen_=C3=BCber_K=C3=B6ln.txt?=\"\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_owned(),
                "Gr=FC=DFe aus K=F6ln".to_owned(),
            ),
        ];
        let inner = format!(
            "From: b@example.org\r\nSubject: inner\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"in\"\r\n\r\n\
             --in\r\nContent-Type: text/plain\r\n\r\ninner text\r\n\
             --in\r\nContent-Type: application/zip; name=\"a.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--in--",
            b64(&zip)
        );
        let (p11, p121, p122, p2, p3) = (&parts[0], &parts[1], &parts[2], &parts[3], &parts[4]);
        let whole = format!(
            "From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n\
             --out\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
             --alt\r\n{}{}\r\n\
             --alt\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n\
             --rel\r\n{}{}\r\n\
             --rel\r\n{}{}\r\n\
             --rel--\r\n--alt--\r\n\
             --out\r\n{}{}\r\n\
             --out\r\n{}{}\r\n\
             --out\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n\
             --out--\r\n",
            p11.1, p11.2, p121.1, p121.2, p122.1, p122.2, p2.1, p2.2, p3.1, p3.2
        );
        for (id, header, body) in &parts {
            let inside = extract_part(whole.as_bytes(), &LIMITS, id).unwrap();
            let alone =
                decode_part(header.as_bytes(), body.as_bytes(), "text/plain", &LIMITS).unwrap();
            assert_eq!(alone, inside, "part {id}");
        }
        let alone = decode_part(b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*=utf-8''R%C3%A9sum%C3%A9%20%E2%80%93%20M%C3%A4rz.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n", b64(&pdf).as_bytes(), "text/plain", &LIMITS).unwrap();
        assert_eq!(alone.bytes, pdf);
        assert_eq!(alone.name.as_deref(), Some("Résumé – März.pdf"));
        let notes = decode_part(p3.1.as_bytes(), p3.2.as_bytes(), "text/plain", &LIMITS).unwrap();
        assert_eq!(notes.name.as_deref(), Some("Notizen über Köln.txt"));
        assert_eq!(notes.bytes, "Grüße aus Köln".as_bytes());
        // The embedded message (3 here is 4 in the whole: parts[4] is 3).
        let message = decode_part(
            b"Content-Type: message/rfc822\r\n\r\n",
            inner.as_bytes(),
            "text/plain",
            &LIMITS,
        )
        .unwrap();
        assert_eq!(
            message,
            extract_part(whole.as_bytes(), &LIMITS, "4").unwrap()
        );
        // Its zip, fetched as 4.2 with its MIME header.
        let zipped = decode_part(
            b"Content-Type: application/zip; name=\"a.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            b64(&zip).as_bytes(),
            "text/plain",
            &LIMITS,
        )
        .unwrap();
        assert_eq!(
            zipped,
            extract_part(whole.as_bytes(), &LIMITS, "4.2").unwrap()
        );
        assert_eq!(zipped.bytes, zip);
        // A part without header lines has its context's type; a header
        // the server gave without its blank line still ends.
        let bare = decode_part(b"\r\n", b"plain words\r\n", "text/plain", &LIMITS).unwrap();
        assert_eq!(
            (bare.content_type.as_str(), bare.bytes.as_slice()),
            ("text/plain", &b"plain words\r\n"[..])
        );
        let unended = decode_part(
            b"Content-Type: application/octet-stream",
            b"raw",
            "text/plain",
            &LIMITS,
        )
        .unwrap();
        assert_eq!(unended.bytes, b"raw");
        // Invalid base64 is refused, never handed out as the bytes.
        let broken = decode_part(
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            b"JVBERi0xLjQK*%$AAAA\r\n",
            "text/plain",
            &LIMITS,
        );
        assert_eq!(broken, Err(MimeError::Undecodable { encoding: "base64" }));
    }
}
