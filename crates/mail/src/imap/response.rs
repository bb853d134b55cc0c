//! A tagged `NO`/`BAD` as data: its status, its response code and the
//! server's words, parsed once from the line the server sent, so that
//! what an error means is decided on the code (RFC 3501 7.1, RFC 5530),
//! never on the server's prose.
//!
//! **Why the line is kept here.** async-imap turns a tagged `NO`/`BAD`
//! into `Error::No(String)` holding the `Debug` form of what it parsed,
//! and imap-proto knows none of RFC 5530's codes. So the connection's
//! byte stream goes through a [`Tap`] that keeps the last line the server
//! sent (the tagged completion is always the last line of a command's
//! answer), and [`Tap::refusal`] parses that line when async-imap reports
//! a refusal. Keeping it costs a backward search for two newlines per
//! read, not a scan of the bytes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A response code: the bracketed atom at the start of a status
/// response's text (`NO [TRYCREATE] Mailbox doesn't exist`), its
/// arguments left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    // RFC 3501 7.1.
    Alert,
    BadCharset,
    Capability,
    Parse,
    PermanentFlags,
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext,
    UidValidity,
    Unseen,
    // RFC 5530.
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    NonExistent,
    /// Any other code (an extension's), upper-cased.
    Other(String),
}

/// The codes by their atoms.
const CODES: &[(&str, ResponseCode)] = &[
    ("ALERT", ResponseCode::Alert),
    ("BADCHARSET", ResponseCode::BadCharset),
    ("CAPABILITY", ResponseCode::Capability),
    ("PARSE", ResponseCode::Parse),
    ("PERMANENTFLAGS", ResponseCode::PermanentFlags),
    ("READ-ONLY", ResponseCode::ReadOnly),
    ("READ-WRITE", ResponseCode::ReadWrite),
    ("TRYCREATE", ResponseCode::TryCreate),
    ("UIDNEXT", ResponseCode::UidNext),
    ("UIDVALIDITY", ResponseCode::UidValidity),
    ("UNSEEN", ResponseCode::Unseen),
    ("UNAVAILABLE", ResponseCode::Unavailable),
    ("AUTHENTICATIONFAILED", ResponseCode::AuthenticationFailed),
    ("AUTHORIZATIONFAILED", ResponseCode::AuthorizationFailed),
    ("EXPIRED", ResponseCode::Expired),
    ("PRIVACYREQUIRED", ResponseCode::PrivacyRequired),
    ("CONTACTADMIN", ResponseCode::ContactAdmin),
    ("NOPERM", ResponseCode::NoPerm),
    ("INUSE", ResponseCode::InUse),
    ("EXPUNGEISSUED", ResponseCode::ExpungeIssued),
    ("CORRUPTION", ResponseCode::Corruption),
    ("SERVERBUG", ResponseCode::ServerBug),
    ("CLIENTBUG", ResponseCode::ClientBug),
    ("CANNOT", ResponseCode::Cannot),
    ("LIMIT", ResponseCode::Limit),
    ("OVERQUOTA", ResponseCode::OverQuota),
    ("ALREADYEXISTS", ResponseCode::AlreadyExists),
    ("NONEXISTENT", ResponseCode::NonExistent),
];

impl ResponseCode {
    /// The code named by `atom` (case-insensitive, RFC 3501 9 note 5).
    pub fn from_atom(atom: &str) -> ResponseCode {
        CODES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(atom))
            .map_or_else(
                || ResponseCode::Other(atom.to_ascii_uppercase()),
                |(_, code)| code.clone(),
            )
    }

    /// The atom as the server sends it.
    pub fn atom(&self) -> &str {
        match self {
            ResponseCode::Other(atom) => atom,
            known => CODES
                .iter()
                .find(|(_, code)| code == known)
                .map(|(name, _)| *name)
                .expect("every named code is in CODES"),
        }
    }
}

/// `NO` (the command failed) or `BAD` (the server did not accept it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    No,
    Bad,
}

/// A tagged completion that is not `OK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub code: Option<ResponseCode>,
    /// The server's words after the code (untrusted; echo them bounded).
    pub text: String,
}

/// `text` split into its response code and the words after it:
/// `[CODE args] words` (RFC 3501 `resp-text`). Text without a well-formed
/// leading code is all words.
pub(super) fn split_resp_text(text: &str) -> (Option<ResponseCode>, &str) {
    let Some(rest) = text.strip_prefix('[') else {
        return (None, text);
    };
    let Some(end) = rest.find(']') else {
        return (None, text);
    };
    let inside = &rest[..end];
    let atom = inside.split(' ').next().unwrap_or_default();
    let is_atom = !atom.is_empty()
        && atom
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !b"(){%*\"\\]".contains(&byte));
    if !is_atom {
        return (None, text);
    }
    let words = rest[end + 1..]
        .strip_prefix(' ')
        .unwrap_or(&rest[end + 1..]);
    (Some(ResponseCode::from_atom(atom)), words)
}

/// The refusal in a tagged status line (`tag SP ("NO" / "BAD") SP
/// resp-text`, with or without its CRLF); `None` for an untagged or
/// continuation line and for `OK`.
pub(super) fn parse_tagged(line: &[u8]) -> Option<Refusal> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches(['\r', '\n']);
    let (tag, rest) = line.split_once(' ')?;
    if tag.is_empty() || tag == "*" || tag == "+" {
        return None;
    }
    let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = if status.eq_ignore_ascii_case("NO") {
        Status::No
    } else if status.eq_ignore_ascii_case("BAD") {
        Status::Bad
    } else {
        return None;
    };
    let (code, words) = split_resp_text(text);
    Some(Refusal {
        status,
        code,
        text: words.to_owned(),
    })
}

/// The longest line kept: a status line's code and first words fit.
const MAX_LINE: usize = 1024;

#[derive(Debug, Default)]
struct Lines {
    /// The last complete line received.
    last: Vec<u8>,
    /// What came after it (bounded: only a status line's start matters).
    partial: Vec<u8>,
}

impl Lines {
    fn received(&mut self, bytes: &[u8]) {
        let Some(end) = bytes.iter().rposition(|&byte| byte == b'\n') else {
            keep(&mut self.partial, bytes);
            return;
        };
        self.last.clear();
        match bytes[..end].iter().rposition(|&byte| byte == b'\n') {
            Some(start) => keep(&mut self.last, &bytes[start + 1..end]),
            None => {
                std::mem::swap(&mut self.last, &mut self.partial);
                keep(&mut self.last, &bytes[..end]);
            }
        }
        self.partial.clear();
        keep(&mut self.partial, &bytes[end + 1..]);
    }
}

fn keep(into: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LINE.saturating_sub(into.len());
    into.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The last line a connection received, shared between its stream (which
/// writes it) and the connection's owner (which reads it after a refusal).
#[derive(Clone, Debug, Default)]
pub(super) struct Tap(Arc<Mutex<Lines>>);

impl Tap {
    /// `stream` with its received lines kept in this tap.
    pub(super) fn wrap<S>(&self, stream: S) -> Tapped<S> {
        Tapped {
            inner: stream,
            tap: self.clone(),
        }
    }

    /// The refusal the server sent last, if its last line is one.
    pub(super) fn refusal(&self) -> Option<Refusal> {
        let lines = self.0.lock().ok()?;
        parse_tagged(&lines.last)
    }
}

/// A stream whose received lines go to a [`Tap`].
#[derive(Debug)]
pub(super) struct Tapped<S> {
    inner: S,
    tap: Tap,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(context, buffer);
        if let Poll::Ready(Ok(())) = polled {
            let received = &buffer.filled()[before..];
            if !received.is_empty()
                && let Ok(mut lines) = self.tap.0.lock()
            {
                lines.received(received);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines_give_their_status_code_and_words() {
        use ResponseCode::*;
        let no = |code: Option<ResponseCode>, text: &str| {
            Some(Refusal {
                status: Status::No,
                code,
                text: text.to_owned(),
            })
        };
        let cases: &[(&str, Option<Refusal>)] = &[
            // What dovecot sends for a missing folder.
            (
                "A0007 NO [TRYCREATE] Mailbox doesn't exist: Nope\r\n",
                no(Some(TryCreate), "Mailbox doesn't exist: Nope"),
            ),
            (
                "A0003 NO [NONEXISTENT] Mailbox doesn't exist: Nope",
                no(Some(NonExistent), "Mailbox doesn't exist: Nope"),
            ),
            (
                "a1 NO [UNAVAILABLE] Temporary authentication failure.",
                no(Some(Unavailable), "Temporary authentication failure."),
            ),
            (
                "a1 NO [AUTHENTICATIONFAILED] Authentication failed.",
                no(Some(AuthenticationFailed), "Authentication failed."),
            ),
            ("x no [noperm] Denied", no(Some(NoPerm), "Denied")),
            ("A2 NO [INUSE] Locked", no(Some(InUse), "Locked")),
            (
                "A2 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)",
                no(Some(OverQuota), "Quota exceeded (mailbox for user is full)"),
            ),
            ("A2 NO [LIMIT] Too many", no(Some(Limit), "Too many")),
            (
                "A2 NO [ALREADYEXISTS] Mailbox already exists",
                no(Some(AlreadyExists), "Mailbox already exists"),
            ),
            // A code with arguments; an extension's code.
            (
                "A2 NO [BADCHARSET (UTF-8)] Unsupported",
                no(Some(BadCharset), "Unsupported"),
            ),
            (
                "A2 NO [X-GM-FULL 3] Full",
                no(Some(Other("X-GM-FULL".to_owned())), "Full"),
            ),
            // No code, or something that only looks like one.
            (
                "A9 NO Mailbox doesn't exist",
                no(None, "Mailbox doesn't exist"),
            ),
            ("A9 NO [unclosed text", no(None, "[unclosed text")),
            ("A9 NO [] empty", no(None, "[] empty")),
            ("A9 NO", no(None, "")),
            (
                "A4 BAD [CLIENTBUG] Command unknown",
                Some(Refusal {
                    status: Status::Bad,
                    code: Some(ClientBug),
                    text: "Command unknown".to_owned(),
                }),
            ),
            // Not refusals.
            ("A1 OK [READ-WRITE] Select completed.", None),
            ("* NO [ALERT] Disk almost full", None),
            ("+ continue", None),
            ("", None),
        ];
        for (line, expected) in cases {
            assert_eq!(&parse_tagged(line.as_bytes()), expected, "{line}");
        }
    }

    #[test]
    fn every_code_has_one_atom_and_comes_back_from_it() {
        for (atom, code) in CODES {
            assert_eq!(&ResponseCode::from_atom(atom), code);
            assert_eq!(code.atom(), *atom);
            assert_eq!(&ResponseCode::from_atom(&atom.to_ascii_lowercase()), code);
        }
        assert_eq!(ResponseCode::from_atom("x-new").atom(), "X-NEW");
    }

    #[test]
    fn the_last_line_is_kept_across_reads_of_any_size() {
        let answer: &[u8] = b"* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* 1 FETCH (BODY[] {12}\r\nline\r\nline\r\n)\r\nA0005 NO [TRYCREATE] Mailbox doesn't exist: X\r\n";
        for chunk in [1, 2, 3, 7, 16, answer.len()] {
            let mut lines = Lines::default();
            for piece in answer.chunks(chunk) {
                lines.received(piece);
            }
            let refusal = parse_tagged(&lines.last).expect("the last line is the refusal");
            assert_eq!(
                refusal.code,
                Some(ResponseCode::TryCreate),
                "chunks of {chunk}"
            );
            assert_eq!(
                refusal.text, "Mailbox doesn't exist: X",
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_long_line_is_kept_bounded() {
        let mut lines = Lines::default();
        let long = vec![b'x'; 10 * MAX_LINE];
        for piece in long.chunks(100) {
            lines.received(piece);
        }
        lines.received(b"\r\n");
        assert_eq!(lines.last.len(), MAX_LINE);
    }
}
