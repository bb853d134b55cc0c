//! Reading one message: getMessage (the mime view, windowed), getAttachment
//! (one part's bytes) and parseIcalendar (an invite from text or from a
//! message's part), never marking anything seen (`BODY.PEEK`). getMessage
//! reads a message under [`limits::MAX_MESSAGE_BYTES`] whole, or, when its
//! one part is a long plain text, its header and the first bytes the
//! window needs; getAttachment and parseIcalendar fetch only their part,
//! found in the message's BODYSTRUCTURE and refused by its size before it
//! is fetched. [`crate::mime`] reads what was fetched; part ids are IMAP
//! section numbers.

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use proto::ErrorHint;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use server_kit::{Context, HandlerError, ServerBuilder, State};

use super::{Mail, NOTICE, handler_error, hinted_error};
use crate::calendar::{self, CalendarError};
use crate::error::MailError;
use crate::imap::{Raw, Read, Wanted};
use crate::limits;
use crate::mime::{self, MimeError};

pub(super) fn register(builder: ServerBuilder<Mail>) -> ServerBuilder<Mail> {
    builder
        .method("mcp.mail.getMessage", get_message)
        .method("mcp.mail.getAttachment", get_attachment)
        .method("mcp.mail.parseIcalendar", parse_icalendar)
}

fn mime_limits() -> mime::Limits {
    mime::Limits {
        max_message_bytes: limits::MAX_MESSAGE_BYTES as usize,
    }
}

fn mime_error(error: MimeError, uid: u32, part: Option<&str>) -> MailError {
    match error {
        MimeError::TooLarge { size, limit } => MailError::TooLarge {
            what: format!("message {uid}"),
            size: size as u64,
            limit: limit as u64,
            fix: "list it with listMessages instead",
        },
        MimeError::NoSuchPart => MailError::PartNotFound {
            uid,
            part: proto::text::echo(part.unwrap_or("")).into_owned(),
        },
        MimeError::InvalidPartId => MailError::Invalid(format!("part: {error}")),
        MimeError::NotContent => MailError::Invalid(format!("part: {error}")),
        MimeError::Unparseable => MailError::Malformed(format!("message {uid}: {error}")),
        MimeError::Undecodable { encoding } => MailError::Undecodable {
            uid,
            part: proto::text::echo(part.unwrap_or("")).into_owned(),
            encoding,
        },
    }
}

fn calendar_error(error: CalendarError) -> MailError {
    match error {
        CalendarError::TooLarge { size, limit } => MailError::TooLarge {
            what: "the calendar".to_owned(),
            size: size as u64,
            limit: limit as u64,
            fix: "pass a smaller iCalendar text",
        },
        CalendarError::InvalidWindow => MailError::Invalid(format!("from/to: {error}")),
        other => MailError::Malformed(format!("the iCalendar text cannot be read: {other}")),
    }
}

async fn fetch(mail: &Mail, account: &str, folder: &str, uid: u32) -> Result<Raw, HandlerError> {
    let account = mail.account(account)?;
    mail.imap
        .fetch_message(account, folder, uid, limits::MAX_MESSAGE_BYTES)
        .await
        .map_err(handler_error)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageParams {
    account: String,
    folder: String,
    uid: u32,
    body: bool,
    max_body_chars: usize,
    body_offset: usize,
}

#[derive(Debug, Serialize)]
struct MessageResult {
    account: String,
    folder: String,
    uid: u32,
    flags: Vec<String>,
    seen: bool,
    #[serde(flatten)]
    view: mime::MessageView,
    notice: &'static str,
}

async fn get_message(
    _context: Context,
    mail: State<Mail>,
    params: MessageParams,
) -> Result<MessageResult, HandlerError> {
    let account = mail.account(&params.account)?;
    let window = mime::BodyWindow {
        offset: params.body_offset,
        max_chars: if params.body {
            params.max_body_chars
        } else {
            0
        },
    };
    let options = mime::ViewOptions {
        window,
        trusted_authserv_id: None,
    };
    let uid = params.uid;
    let whole = |raw: Raw| {
        mime::parse_message(raw.bytes(), &mime_limits(), &options)
            .map(|view| (raw.flags, view))
            .map_err(|error| handler_error(mime_error(error, uid, None)))
    };
    // The window's characters and one more, to know whether more follow.
    let chars = window
        .offset
        .saturating_add(window.max_chars)
        .saturating_add(1);
    let read = mail
        .imap
        .read_message(
            account,
            &params.folder,
            uid,
            limits::MAX_MESSAGE_BYTES,
            chars,
        )
        .await
        .map_err(handler_error)?;
    let (flags, view) = match read {
        Read::Whole(raw) => whole(raw)?,
        Read::Start(start) => {
            let view = mime::parse_message_start(
                start.header(),
                start.body_start(),
                start.encoding,
                usize::try_from(start.size).unwrap_or(usize::MAX),
                &mime_limits(),
                &options,
            )
            .map_err(|error| handler_error(mime_error(error, uid, None)))?;
            match view {
                Some(view) => (start.flags, view),
                // The start did not show the window: read it whole.
                None => {
                    drop(start);
                    whole(fetch(&mail, &params.account, &params.folder, uid).await?)?
                }
            }
        }
    };
    Ok(MessageResult {
        account: params.account,
        folder: params.folder,
        uid,
        seen: flags.iter().any(|flag| flag == "\\Seen"),
        flags,
        view,
        notice: NOTICE,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentParams {
    account: String,
    folder: String,
    uid: u32,
    part: String,
}

const TOO_BIG_FOR_THE_GATEWAY: &str =
    "it is too big to pass through the gateway; open it in a mail client";

async fn get_attachment(
    context: Context,
    mail: State<Mail>,
    params: AttachmentParams,
) -> Result<Value, HandlerError> {
    let account = mail.account(&params.account)?;
    let uid = params.uid;
    let id = mime::parse_part_id(&params.part)
        .map_err(|error| handler_error(mime_error(error, uid, Some(&params.part))))?;
    let fetched = mail
        .imap
        .fetch_part(
            account,
            &params.folder,
            uid,
            Wanted::Id(&id),
            limits::MAX_ATTACHMENT_BYTES,
            TOO_BIG_FOR_THE_GATEWAY,
        )
        .await
        .map_err(handler_error)?;
    let decoded = mime::decode_part(
        fetched.header(),
        fetched.body(),
        &fetched.content_type,
        &mime_limits(),
    );
    drop(fetched);
    let part = decoded.map_err(|error| {
        let hint = matches!(error, MimeError::Undecodable { .. }).then(|| ErrorHint {
            action: "read the message, whose attachment list marks the part undecodable".to_owned(),
            method: "mcp.mail.getMessage".to_owned(),
            arguments: serde_json::Map::from_iter([
                ("account".to_owned(), json!(params.account)),
                ("folder".to_owned(), json!(params.folder)),
                ("uid".to_owned(), json!(uid)),
            ]),
        });
        hinted_error(mime_error(error, uid, Some(&params.part)), hint)
    })?;
    if part.bytes.len() > limits::MAX_ATTACHMENT_BYTES {
        return Err(handler_error(MailError::TooLarge {
            what: format!("part {} of message {uid}", proto::text::echo(&params.part)),
            size: part.bytes.len() as u64,
            limit: limits::MAX_ATTACHMENT_BYTES as u64,
            fix: TOO_BIG_FOR_THE_GATEWAY,
        }));
    }
    let data = base64::engine::general_purpose::STANDARD.encode(&part.bytes);
    let mut result = json!({
        "account": params.account,
        "folder": params.folder,
        "uid": uid,
        "part": params.part,
        "content_type": part.content_type,
        "size": part.bytes.len(),
        "encoding": "base64",
    });
    if let Some(name) = &part.name {
        result["name"] = json!(name);
    }
    let blocks = context
        .meta()
        .is_some_and(|meta| meta.contains_key(proto::mcp::meta_key::CONTENT_BLOCKS));
    // An image reaches an MCP host as image content (the gateway hands
    // `_content` over as content blocks), not as base64 shown as text.
    if blocks && part.content_type.starts_with("image/") {
        result["_content"] =
            json!([{ "type": "image", "data": data, "mimeType": part.content_type }]);
    } else {
        result["data"] = json!(data);
    }
    Ok(result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IcalendarParams {
    ical: Option<String>,
    account: Option<String>,
    folder: String,
    uid: Option<u32>,
    part: Option<String>,
    from: Option<String>,
    to: Option<String>,
    max_occurrences: usize,
}

#[derive(Debug, Serialize)]
struct IcalendarResult {
    #[serde(flatten)]
    calendar: calendar::Calendar,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expansion: Option<calendar::Expansion>,
    notice: &'static str,
}

fn instant(value: &str, name: &str) -> Result<DateTime<Utc>, HandlerError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
        .ok_or_else(|| {
            HandlerError::InvalidValue(format!(
                "{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, not {}",
                proto::text::echo(value)
            ))
        })
}

async fn parse_icalendar(
    _context: Context,
    mail: State<Mail>,
    params: IcalendarParams,
) -> Result<IcalendarResult, HandlerError> {
    let (text, part) = match (&params.ical, &params.account, params.uid) {
        (Some(ical), None, None) => (ical.clone(), None),
        (None, Some(account), Some(uid)) => {
            let account = mail.account(account)?;
            let id = match &params.part {
                Some(part) => Some(
                    mime::parse_part_id(part)
                        .map_err(|error| handler_error(mime_error(error, uid, Some(part))))?,
                ),
                None => None,
            };
            let wanted = match &id {
                Some(id) => Wanted::Id(id),
                None => Wanted::FirstOfType(&["text/calendar", "application/ics"]),
            };
            let fetched = mail
                .imap
                .fetch_part(
                    account,
                    &params.folder,
                    uid,
                    wanted,
                    calendar::Limits::default().max_bytes,
                    "pass a smaller iCalendar text",
                )
                .await
                .map_err(handler_error)?;
            let part_id = fetched.id.clone();
            let extracted = mime::decode_part(
                fetched.header(),
                fetched.body(),
                &fetched.content_type,
                &mime_limits(),
            )
            .map_err(|error| handler_error(mime_error(error, uid, Some(&part_id))))?;
            drop(fetched);
            let text = String::from_utf8(extracted.bytes).map_err(|_| {
                handler_error(MailError::Malformed(format!(
                    "part {part_id} of message {uid} is not UTF-8 text"
                )))
            })?;
            (text, Some(part_id))
        }
        _ => {
            return Err(HandlerError::InvalidValue(
                "give either ical (the text) or account, folder and uid (and optionally part) of a message carrying an invite".to_owned(),
            ));
        }
    };
    let parsed = calendar::parse_calendar(&text, &calendar::Limits::default())
        .map_err(|error| handler_error(calendar_error(error)))?;
    let expansion = match (&params.from, &params.to) {
        (Some(from), Some(to)) => {
            let window = calendar::Window {
                from: instant(from, "from")?,
                to: instant(to, "to")?,
                max_occurrences: params.max_occurrences,
            };
            Some(
                calendar::expand(&parsed, &window)
                    .map_err(|error| handler_error(calendar_error(error)))?,
            )
        }
        (None, None) => None,
        _ => {
            return Err(HandlerError::InvalidValue(
                "give both from and to to expand recurrences in that window, or neither".to_owned(),
            ));
        }
    };
    Ok(IcalendarResult {
        calendar: parsed,
        part,
        expansion,
        notice: NOTICE,
    })
}
