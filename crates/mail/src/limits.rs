//! The service's bounds, in one place. The gateway refuses any answer over
//! 16 MiB (`proto::DEFAULT_MAX_MESSAGE`) and an MCP tool result carries its
//! JSON twice (structured and as text), so anything big travels in
//! windows (`max_body_chars`/`body_offset`) or one attachment at a time
//! under [`MAX_ATTACHMENT_BYTES`].

/// A message fetched whole (getMessage, getAttachment, parseIcalendar).
pub const MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;
/// One attachment's decoded bytes in an answer (base64 grows it by 4/3,
/// and a tool result holds it twice: 5 MiB stays under 16 MiB).
pub const MAX_ATTACHMENT_BYTES: usize = 5 * 1024 * 1024;
/// Uids per setFlags/moveMessages call.
pub const MAX_UIDS: usize = 500;
/// Recipients of one message (to + cc + bcc).
pub const MAX_RECIPIENTS: usize = 50;
/// A sent message's text body.
pub const MAX_SEND_BODY_BYTES: usize = 1024 * 1024;
/// Attachments of one sent message.
pub const MAX_SEND_ATTACHMENTS: usize = 10;
/// Their decoded bytes together.
pub const MAX_SEND_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;
/// Characters of a list preview.
pub const PREVIEW_CHARS: usize = 200;
