//! Reading one message: getMessage (the mime view, windowed), getAttachment
//! (one part's bytes) and parseIcalendar (an invite from text or from a
//! message's part). Messages are fetched whole with `BODY.PEEK[]` (never
//! marking them seen) under [`limits::MAX_MESSAGE_BYTES`], then read by
//! [`crate::mime`]; part ids are IMAP section numbers.

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use proto::ErrorHint;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use server_kit::{Context, HandlerError, ServerBuilder, State};

use super::{Mail, NOTICE, handler_error, hinted_error};
use crate::calendar::{self, CalendarError};
use crate::error::MailError;
use crate::imap::Raw;
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
    let raw = fetch(&mail, &params.account, &params.folder, params.uid).await?;
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
    let view = mime::parse_message(raw.bytes(), &mime_limits(), &options)
        .map_err(|error| handler_error(mime_error(error, uid, None)))?;
    Ok(MessageResult {
        account: params.account,
        folder: params.folder,
        uid,
        seen: raw.flags.iter().any(|flag| flag == "\\Seen"),
        flags: raw.flags,
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

async fn get_attachment(
    context: Context,
    mail: State<Mail>,
    params: AttachmentParams,
) -> Result<Value, HandlerError> {
    let raw = fetch(&mail, &params.account, &params.folder, params.uid).await?;
    let uid = params.uid;
    let part = mime::extract_part(raw.bytes(), &mime_limits(), &params.part).map_err(|error| {
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
            fix: "it is too big to pass through the gateway; open it in a mail client",
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
            let raw = fetch(&mail, account, &params.folder, uid).await?;
            let part_id = match &params.part {
                Some(part) => part.clone(),
                None => {
                    let options = mime::ViewOptions {
                        window: mime::BodyWindow {
                            offset: 0,
                            max_chars: 0,
                        },
                        trusted_authserv_id: None,
                    };
                    let view = mime::parse_message(raw.bytes(), &mime_limits(), &options)
                        .map_err(|error| handler_error(mime_error(error, uid, None)))?;
                    view.attachments
                        .iter()
                        .find(|attachment| {
                            attachment.content_type == "text/calendar"
                                || attachment.content_type == "application/ics"
                        })
                        .map(|attachment| attachment.part_id.clone())
                        .ok_or_else(|| {
                            handler_error(MailError::PartNotFound {
                                uid,
                                part: "text/calendar".to_owned(),
                            })
                        })?
                }
            };
            let extracted = mime::extract_part(raw.bytes(), &mime_limits(), &part_id)
                .map_err(|error| handler_error(mime_error(error, uid, Some(&part_id))))?;
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
