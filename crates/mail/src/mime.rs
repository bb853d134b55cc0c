//! A fetched message (RFC 5322 bytes) as a typed view: the headers a
//! reader needs, the text body (HTML converted to readable text) in a
//! window, the `Authentication-Results` verdicts, the attachment list, one
//! part's decoded bytes, a short preview for listings, and the threading
//! headers of a reply.
//!
//! Everything here is pure: bytes in, values out, no I/O. The bytes come
//! from strangers, so the size limit is checked before parsing, the parser
//! (`mail-parser`) never panics on garbage (a property test holds it to
//! that), and nothing in the message is evaluated: HTML is read by a real
//! HTML parser (`html2text` over html5ever) into text, scripts and styles
//! are dropped, images become at most their alt text and are never fetched.
//!
//! # Part ids
//!
//! Part ids are IMAP section numbers (RFC 3501 §6.4.5), so an id from
//! [`MessageView::attachments`] can also be fetched with `BODY.PEEK[id]`:
//! - a message whose body is not multipart has one part, `1`;
//! - the children of a multipart are numbered `1`, `2`, … under their
//!   parent's id (`2.1` is the first child of part `2`); the top-level
//!   multipart itself has no id;
//! - a `message/rfc822` part `n` is the embedded message (its bytes are the
//!   whole embedded message); its body's parts are numbered under it the
//!   same way (`n.1`, `n.2`, …; a non-multipart embedded body is `n.1`).

use std::borrow::Cow;

use html2text::render::{TaggedLine, TextDecorator};
use mail_parser::{
    Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use serde::Serialize;

mod partial;

pub use partial::{
    TransferEncoding, decode_part, max_stored_bytes, parse_message_start, prefix_safe_charset,
    start_bytes,
};

/// How deep a MIME tree is walked; deeper parts are not listed (mail-parser
/// bounds its own nesting too; this keeps our recursion bounded whatever it does).
const MAX_DEPTH: usize = 32;
/// Most attachments listed in a view: a message of 100,000 tiny parts
/// must not become an answer of 100,000 entries.
pub const MAX_LISTED_ATTACHMENTS: usize = 500;
/// How many References a reply carries at most (RFC 5322 §3.6.4 lets a
/// client trim them; the first and the most recent are kept).
const MAX_REFERENCES: usize = 20;
/// Line width for HTML converted to text: wide, so that the text is
/// rewrapped by whoever reads it rather than broken here.
const HTML_TEXT_WIDTH: usize = 200;

/// Limits checked before a message is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 25 * 1024 * 1024,
        }
    }
}

/// Which characters of the body a view carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyWindow {
    /// The first character (Unicode scalar values, not bytes) returned.
    pub offset: usize,
    /// At most this many characters are returned.
    pub max_chars: usize,
}

/// Why a message or part could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MimeError {
    #[error("the message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the message is empty or has no headers that could be read")]
    Unparseable,
    #[error("part id must be dot-separated numbers from 1 (like \"2\" or \"1.2\")")]
    InvalidPartId,
    #[error("the message has no part with that id; its attachments list the ids it has")]
    NoSuchPart,
    #[error("that part is a multipart container, not content; ask for one of its children")]
    NotContent,
    /// The part says it is `encoding` (base64, quoted-printable) but its
    /// text is not valid in it: its bytes are unknown, and the encoded
    /// text is never handed out as if it were them.
    #[error(
        "the part's {encoding} content transfer encoding is invalid (damaged or cut off in transit), so its bytes cannot be given; the sender has to send it again"
    )]
    Undecodable { encoding: &'static str },
}

/// One mailbox of an address header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address (`local@domain`); empty when the header had only a name.
    pub address: String,
}

/// What the receiving server concluded about the sender, from the
/// `Authentication-Results` header (RFC 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    Policy,
    TempError,
    PermError,
    /// A result word RFC 8601 does not define.
    Other,
}

impl Verdict {
    fn from_word(word: &str) -> Verdict {
        match word.to_ascii_lowercase().as_str() {
            "pass" => Verdict::Pass,
            "fail" | "hardfail" => Verdict::Fail,
            "softfail" => Verdict::SoftFail,
            "neutral" => Verdict::Neutral,
            "none" => Verdict::None,
            "policy" => Verdict::Policy,
            "temperror" => Verdict::TempError,
            "permerror" => Verdict::PermError,
            _ => Verdict::Other,
        }
    }
}

/// The SPF, DKIM and DMARC verdicts of one `Authentication-Results` header.
///
/// Only the topmost header is read (the one the receiving server added
/// last), or with [`ViewOptions::trusted_authserv_id`] the topmost one
/// with that id: headers further down may have been written by the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResults {
    /// Who made the verdicts (the header's authserv-id).
    pub authserv_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spf: Option<Verdict>,
    /// `pass` when any DKIM signature passed, else the first result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkim: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<Verdict>,
}

/// One part a reader may want apart from the text body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// IMAP section number (see the module docs).
    pub part_id: String,
    /// Decoded file name (RFC 2231 and RFC 2047 forms), if the part has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `type/subtype`, lower case.
    pub content_type: String,
    /// Bytes after transfer decoding.
    pub size: usize,
    /// `Content-Disposition: inline`, or a part with a Content-ID inside
    /// `multipart/related` (an image the HTML shows).
    pub inline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    /// Its transfer encoding is invalid: getAttachment refuses it, and
    /// `size` is that of its encoded text.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub undecodable: bool,
}

/// Where the text body came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodySource {
    Plain,
    /// Converted from text/html.
    Html,
    /// The message has no text body.
    None,
}

/// The text body, windowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Body {
    pub text: String,
    pub source: BodySource,
    /// Offset of `text` in the whole body, in characters.
    pub offset: usize,
    /// Length of the whole body, in characters; absent when only the start
    /// of a long text was read (`has_more` is then true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_chars: Option<usize>,
    /// Whether characters follow the window (ask again at `offset + chars of text`).
    pub has_more: bool,
}

/// A parsed message, as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    pub from: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    /// The Date header, RFC 3339, if it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Message-ID without its angle brackets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// In-Reply-To ids, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// References ids, oldest first, without angle brackets.
    pub references: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthResults>,
    pub body: Body,
    /// In part order, at most [`MAX_LISTED_ATTACHMENTS`].
    pub attachments: Vec<Attachment>,
    /// Whether the message has more attachments than were listed.
    pub attachments_truncated: bool,
    /// The bytes of the message as given.
    pub size: usize,
}

/// How a view is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewOptions<'a> {
    pub window: BodyWindow,
    /// Read the `Authentication-Results` header with this authserv-id
    /// (the account's own server), not merely the topmost one.
    pub trusted_authserv_id: Option<&'a str>,
}

/// One part's decoded content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: Option<String>,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The headers a reply to a message carries so that it threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyHeaders {
    /// `<id>` of the replied-to message; none if it had no Message-ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// `<a> <b> <id>`: its References then its Message-ID; none if empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// Its subject with one `Re: ` in front.
    pub subject: String,
}

/// Parses `raw` into a view with its body windowed as `options` says.
pub fn parse_message(
    raw: &[u8],
    limits: &Limits,
    options: &ViewOptions<'_>,
) -> Result<MessageView, MimeError> {
    let message = parse(raw, limits)?;
    let (full_body, source) = body_text(&message);
    let body = window(&full_body, source, options.window);
    Ok(view_of(&message, body, raw.len(), options))
}

/// The view of `message` (of `size` bytes) with `body`.
fn view_of(
    message: &Message<'_>,
    body: Body,
    size: usize,
    options: &ViewOptions<'_>,
) -> MessageView {
    // One past the bound tells whether there were more.
    let attachments = attachments(message, MAX_LISTED_ATTACHMENTS + 1);
    MessageView {
        from: mailboxes(message.from()),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        reply_to: mailboxes(message.reply_to()),
        date: message
            .date()
            .filter(|date| date.is_valid())
            .map(|date| date.to_rfc3339()),
        subject: message.subject().map(str::to_owned),
        message_id: message.message_id().map(str::to_owned),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        authentication: authentication_results(message, options.trusted_authserv_id),
        body,
        attachments_truncated: attachments.len() > MAX_LISTED_ATTACHMENTS,
        attachments: {
            let mut attachments = attachments;
            attachments.truncate(MAX_LISTED_ATTACHMENTS);
            attachments
        },
        size,
    }
}

/// The first `max_chars` characters of the text body with runs of white
/// space made one space: a line for a message listing. `raw` may be only
/// the start of a message (a partial fetch); what can be read is used.
pub fn preview(raw: &[u8], limits: &Limits, max_chars: usize) -> Result<String, MimeError> {
    let message = parse(raw, limits)?;
    let (text, _) = body_text(&message);
    let mut preview = String::new();
    let mut chars = 0;
    for word in text.split_whitespace() {
        if chars >= max_chars {
            break;
        }
        if !preview.is_empty() {
            preview.push(' ');
            chars += 1;
        }
        for character in word.chars() {
            if chars >= max_chars {
                break;
            }
            preview.push(character);
            chars += 1;
        }
    }
    Ok(preview)
}

/// The decoded content of part `part_id` (see the module docs for ids).
pub fn extract_part(raw: &[u8], limits: &Limits, part_id: &str) -> Result<Part, MimeError> {
    let wanted = parse_part_id(part_id)?;
    let message = parse(raw, limits)?;
    let mut found = None;
    walk(&message, &mut Vec::new(), 0, &mut |id, part, _| {
        if found.is_none() && id == wanted.as_slice() {
            found = Some(part_content(part));
        }
    });
    found.ok_or(MimeError::NoSuchPart)?
}

/// The threading headers of a reply to `view` (RFC 5322 §3.6.4).
pub fn reply_headers(view: &MessageView) -> ReplyHeaders {
    let mut references: Vec<&str> = view.references.iter().map(String::as_str).collect();
    if references.is_empty() {
        // A parent without References but with In-Reply-To (one id) still threads.
        if let [parent] = view.in_reply_to.as_slice() {
            references.push(parent);
        }
    }
    if let Some(id) = &view.message_id {
        references.push(id);
    }
    if references.len() > MAX_REFERENCES {
        let tail = references.len() - (MAX_REFERENCES - 1);
        references.drain(1..tail);
    }
    let references = references
        .iter()
        .map(|id| format!("<{id}>"))
        .collect::<Vec<_>>()
        .join(" ");
    let subject = view.subject.as_deref().unwrap_or("").trim();
    let has_re = subject
        .get(..3)
        .is_some_and(|start| start.eq_ignore_ascii_case("re:"));
    ReplyHeaders {
        in_reply_to: view.message_id.as_ref().map(|id| format!("<{id}>")),
        references: (!references.is_empty()).then_some(references),
        subject: if has_re {
            subject.to_owned()
        } else {
            format!("Re: {subject}")
        },
    }
}

fn parse<'x>(raw: &'x [u8], limits: &Limits) -> Result<Message<'x>, MimeError> {
    if raw.len() > limits.max_message_bytes {
        return Err(MimeError::TooLarge {
            size: raw.len(),
            limit: limits.max_message_bytes,
        });
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MimeError::Unparseable)?;
    if message.parts.is_empty() {
        return Err(MimeError::Unparseable);
    }
    Ok(message)
}

/// A part id (`2`, `1.2`) as its numbers.
pub fn parse_part_id(part_id: &str) -> Result<Vec<u32>, MimeError> {
    if part_id.is_empty() || part_id.len() > 64 {
        return Err(MimeError::InvalidPartId);
    }
    part_id
        .split('.')
        .map(|number| {
            // Digits only, no leading zero: "01", "+1" and " 1" are not ids.
            let digits = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
            match number.parse::<u32>() {
                Ok(value) if digits && value >= 1 && !number.starts_with('0') => Ok(value),
                _ => Err(MimeError::InvalidPartId),
            }
        })
        .collect()
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .map(|addr| Mailbox {
            name: addr.name.as_ref().map(|name| name.to_string()),
            address: addr.address.as_deref().unwrap_or("").to_owned(),
        })
        .collect()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// The text body: the text/plain body parts, else the HTML ones as text.
/// One plain part (most mail) is borrowed, not copied.
fn body_text<'m>(message: &'m Message<'_>) -> (Cow<'m, str>, BodySource) {
    let plain: Vec<&str> = message
        .text_body
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
        .filter_map(|part| match &part.body {
            PartType::Text(text) => Some(text.as_ref()),
            _ => None,
        })
        .collect();
    if let [one] = plain.as_slice() {
        return (Cow::Borrowed(one), BodySource::Plain);
    }
    if !plain.is_empty() {
        return (Cow::Owned(plain.join("\n")), BodySource::Plain);
    }
    let html: Vec<String> = message
        .html_body
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
        .filter_map(|part| match &part.body {
            PartType::Html(html) => Some(html_to_text(html)),
            _ => None,
        })
        .collect();
    if !html.is_empty() {
        return (Cow::Owned(html.join("\n")), BodySource::Html);
    }
    (Cow::Borrowed(""), BodySource::None)
}

/// HTML as readable text: links as `text (url)`, images as their alt text,
/// scripts and styles gone. Never fails: unreadable HTML gives less text.
///
/// Deep nesting is the one thing hostile HTML can use against this:
/// html5ever's tree builder and html2text's renderer both cost more than
/// linear time in the depth (measured, debug build: 5,000 nested
/// `<ul><li>` overflowed a 2 MiB stack, aborting the process; 20,000
/// `<blockquote>` took 25 s; 100,000 `<div>` did not finish in two
/// minutes). So a linear pass of html5ever's tokenizer first estimates the
/// nesting; HTML nested deeper than [`MAX_HTML_NESTING`] is read as its
/// text alone (scripts and styles still dropped), and elements deeper than
/// [`MAX_HTML_DEPTH`] in the parsed tree are flattened into their text
/// before rendering. Real mail, nested tables included, stays far below both.
pub fn html_to_text(html: &str) -> String {
    let scan = scan_html(html);
    let text = if scan.max_depth > MAX_HTML_NESTING {
        scan.text
    } else {
        let config = html2text::config::with_decorator(ReadableText::default()).no_table_borders();
        let Ok(dom) = config.parse_html(html.as_bytes()) else {
            return String::new();
        };
        flatten_deep_elements(&dom.document, MAX_HTML_DEPTH);
        config
            .dom_to_render_tree(&dom)
            .and_then(|tree| config.render_to_string(tree, HTML_TEXT_WIDTH))
            .unwrap_or_default()
    };
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim_end) {
        // Runs of blank lines become one.
        if !(line.is_empty() && lines.last().is_some_and(|last| last.is_empty())) {
            lines.push(line);
        }
    }
    lines.join("\n").trim().to_owned()
}

/// Nesting beyond which HTML is read as plain text.
pub const MAX_HTML_NESTING: usize = 512;

/// What one tokenizer pass learns: how deep elements nest (elements that
/// HTML closes implicitly, like `<p>` and `<li>`, are closed here too) and
/// the text outside scripts, styles and titles.
#[derive(Debug, Default)]
struct HtmlScan {
    open: Vec<html5ever::LocalName>,
    max_depth: usize,
    text: String,
    /// Inside a script, style or title: its text is not shown.
    hidden: bool,
}

struct HtmlScanner(std::cell::RefCell<HtmlScan>);

/// Elements that have no end tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];
/// The open elements a start tag closes when they are on top (HTML's
/// optional end tags, the common cases), so that unclosed `<p>`, `<li>` or
/// table cells do not count as nesting.
fn implicitly_closed(start: &str) -> &'static [&'static str] {
    match start {
        "li" => &["li", "p"],
        "dt" | "dd" => &["dt", "dd", "p"],
        "option" => &["option"],
        "td" | "th" => &["td", "th"],
        "tr" => &["td", "th", "tr"],
        "thead" | "tbody" | "tfoot" => &["td", "th", "tr", "thead", "tbody", "tfoot"],
        "p" | "div" | "ul" | "ol" | "dl" | "table" | "blockquote" | "pre" | "h1" | "h2" | "h3"
        | "h4" | "h5" | "h6" | "hr" | "section" | "article" | "header" | "footer" => &["p"],
        _ => &[],
    }
}
/// Elements whose start and end break the text.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "hr",
    "section",
    "article",
    "header",
    "footer",
];
/// How far from the top of the open elements an end tag is looked for:
/// keeps the pass linear; an end tag not found is ignored.
const END_TAG_REACH: usize = 16;

impl html5ever::tokenizer::TokenSink for HtmlScanner {
    type Handle = ();

    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        use html5ever::tokenizer::states::RawKind;
        use html5ever::tokenizer::{TagKind, Token, TokenSinkResult};
        let mut scan = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name: &str = &tag.name;
                if BLOCKS.contains(&name) {
                    scan.text.push('\n');
                }
                match tag.kind {
                    TagKind::StartTag if VOID.contains(&name) => {}
                    TagKind::StartTag => {
                        let closed = implicitly_closed(name);
                        while scan.open.last().is_some_and(|top| closed.contains(&&**top)) {
                            scan.open.pop();
                        }
                        scan.open.push(tag.name.clone());
                        scan.max_depth = scan.max_depth.max(scan.open.len());
                        let raw = match name {
                            "script" => Some(RawKind::ScriptData),
                            "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                                Some(RawKind::Rawtext)
                            }
                            "title" | "textarea" => Some(RawKind::Rcdata),
                            _ => None,
                        };
                        if let Some(raw) = raw {
                            scan.hidden = name != "textarea";
                            return TokenSinkResult::RawData(raw);
                        }
                        if name == "plaintext" {
                            return TokenSinkResult::Plaintext;
                        }
                    }
                    TagKind::EndTag => {
                        scan.hidden = false;
                        let reach = scan.open.len().saturating_sub(END_TAG_REACH);
                        if let Some(at) = scan.open[reach..]
                            .iter()
                            .rposition(|open| open == &tag.name)
                        {
                            scan.open.truncate(reach + at);
                        }
                    }
                }
            }
            Token::CharacterTokens(text) if !scan.hidden => scan.text.push_str(&text),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

fn scan_html(html: &str) -> HtmlScan {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};
    let tokenizer = Tokenizer::new(HtmlScanner(Default::default()), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.take()
}

/// How deep HTML elements may nest before their contents become plain text.
pub const MAX_HTML_DEPTH: usize = 64;

/// Replaces the children of every element at `max_depth` with the text
/// nodes found below it, in order. Iterative: the tree may be very deep.
fn flatten_deep_elements(root: &html2text::Handle, max_depth: usize) {
    let mut stack = vec![(root.clone(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth >= max_depth && matches!(node.data, html2text::Element { .. }) {
            let mut texts = Vec::new();
            let mut below: Vec<html2text::Handle> = node.children.take();
            below.reverse();
            while let Some(child) = below.pop() {
                match child.data {
                    html2text::Element { .. } => {
                        let mut grandchildren = child.children.take();
                        grandchildren.reverse();
                        below.extend(grandchildren);
                    }
                    html2text::Comment { .. } | html2text::Document => {}
                    // Text (the only other kind inside a body).
                    _ => texts.push(child),
                }
            }
            for text in &texts {
                text.parent.set(Some(std::rc::Rc::downgrade(&node)));
            }
            *node.children.borrow_mut() = texts;
            continue;
        }
        for child in node.children.borrow().iter() {
            stack.push((child.clone(), depth + 1));
        }
    }
}

/// The html2text decorator for [`html_to_text`]: no markup, the link
/// target after the link text, no footnotes.
#[derive(Debug, Clone, Default)]
struct ReadableText {
    links: Vec<String>,
}

impl TextDecorator for ReadableText {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.links.push(url.to_owned());
        (String::new(), ())
    }

    fn decorate_link_end(&mut self) -> String {
        match self.links.pop() {
            // Same-page anchors and javascript: say nothing a reader can use.
            Some(url) if url.starts_with("http") || url.starts_with("mailto:") => {
                format!(" ({url})")
            }
            _ => String::new(),
        }
    }

    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_em_end(&self) -> String {
        String::new()
    }

    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_strong_end(&self) -> String {
        String::new()
    }

    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }

    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_code_end(&self) -> String {
        String::new()
    }

    fn decorate_preformat_first(&self) {}

    fn decorate_preformat_cont(&self) {}

    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        // The source is never shown: a remote image is a tracking pixel as
        // often as a picture, and nothing here fetches it.
        let title = title.trim();
        if title.is_empty() {
            (String::new(), ())
        } else {
            (format!("[image: {title}]"), ())
        }
    }

    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }

    fn quote_prefix(&self) -> String {
        "> ".to_owned()
    }

    fn unordered_item_prefix(&self) -> String {
        "- ".to_owned()
    }

    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }

    fn make_subblock_decorator(&self) -> Self {
        ReadableText::default()
    }

    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<()>> {
        Vec::new()
    }
}

fn window(full: &str, source: BodySource, window: BodyWindow) -> Body {
    let total_chars = full.chars().count();
    let start = window.offset.min(total_chars);
    let text: String = full.chars().skip(start).take(window.max_chars).collect();
    let end = start + text.chars().count();
    Body {
        text,
        source,
        offset: start,
        total_chars: Some(total_chars),
        has_more: end < total_chars,
    }
}

fn authentication_results(message: &Message<'_>, trusted: Option<&str>) -> Option<AuthResults> {
    let raw = message.raw_message();
    message
        .root_part()
        .headers
        .iter()
        .filter(|header| {
            header
                .name
                .as_str()
                .eq_ignore_ascii_case("Authentication-Results")
        })
        .filter_map(|header| {
            let value = raw.get(header.offset_start as usize..header.offset_end as usize)?;
            parse_authentication_results(&String::from_utf8_lossy(value))
        })
        .find(|results| {
            trusted.is_none_or(|trusted| results.authserv_id.eq_ignore_ascii_case(trusted))
        })
}

/// Reads one `Authentication-Results` value loosely (RFC 8601 §2.2):
/// comments dropped, `;`-separated resinfos, each starting `method=result`.
/// Returns none when there is not even an authserv-id.
pub fn parse_authentication_results(value: &str) -> Option<AuthResults> {
    let value = strip_comments(value);
    let mut sections = value.split(';');
    let authserv_id = sections.next()?.split_whitespace().next()?.to_owned();
    if authserv_id.contains('=') {
        return None;
    }
    let mut results = AuthResults {
        authserv_id,
        spf: None,
        dkim: None,
        dmarc: None,
    };
    for section in sections {
        let Some(first) = section.split_whitespace().next() else {
            continue;
        };
        let Some((method, result)) = first.split_once('=') else {
            continue;
        };
        let method = method.split('/').next().unwrap_or("").to_ascii_lowercase();
        let verdict = Verdict::from_word(result.trim_matches('"'));
        let slot = match method.as_str() {
            "spf" => &mut results.spf,
            "dkim" => &mut results.dkim,
            "dmarc" => &mut results.dmarc,
            _ => continue,
        };
        if slot.is_none() || (method == "dkim" && verdict == Verdict::Pass) {
            *slot = Some(verdict);
        }
    }
    Some(results)
}

/// Removes RFC 5322 comments (nested parentheses, `\` escapes); quoted
/// strings are kept as they are, parentheses in them included.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for character in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(character);
            }
            continue;
        }
        match character {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(character);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(character);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(character),
            _ => {}
        }
    }
    out
}

/// Calls `visit(id, part, inside_related)` for every part that has an IMAP
/// section number, in order (see the module docs).
fn walk<'m>(
    message: &'m Message<'m>,
    prefix: &mut Vec<u32>,
    depth: usize,
    visit: &mut dyn FnMut(&[u32], &'m MessagePart<'m>, bool),
) {
    let Some(root) = message.parts.first() else {
        return;
    };
    match &root.body {
        PartType::Multipart(children) => {
            let related = is_related(root);
            walk_children(message, children, prefix, depth, related, visit);
        }
        _ => {
            prefix.push(1);
            visit_part(message, root, prefix, depth, false, visit);
            prefix.pop();
        }
    }
}

fn walk_children<'m>(
    message: &'m Message<'m>,
    children: &[u32],
    prefix: &mut Vec<u32>,
    depth: usize,
    related: bool,
    visit: &mut dyn FnMut(&[u32], &'m MessagePart<'m>, bool),
) {
    if depth >= MAX_DEPTH {
        return;
    }
    for (index, &child) in children.iter().enumerate() {
        let Some(part) = message.parts.get(child as usize) else {
            continue;
        };
        prefix.push(index as u32 + 1);
        visit_part(message, part, prefix, depth + 1, related, visit);
        prefix.pop();
    }
}

fn visit_part<'m>(
    message: &'m Message<'m>,
    part: &'m MessagePart<'m>,
    id: &mut Vec<u32>,
    depth: usize,
    related: bool,
    visit: &mut dyn FnMut(&[u32], &'m MessagePart<'m>, bool),
) {
    visit(id, part, related);
    match &part.body {
        PartType::Multipart(children) => {
            let related = related || is_related(part);
            walk_children(message, children, id, depth, related, visit);
        }
        PartType::Message(inner) if depth < MAX_DEPTH => walk(inner, id, depth + 1, visit),
        _ => {}
    }
}

fn is_related(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|content_type| {
        content_type.ctype().eq_ignore_ascii_case("multipart")
            && content_type
                .subtype()
                .is_some_and(|sub| sub.eq_ignore_ascii_case("related"))
    })
}

fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(content_type) => format!(
            "{}/{}",
            content_type.ctype(),
            content_type.subtype().unwrap_or("octet-stream")
        )
        .to_ascii_lowercase(),
        None => match part.body {
            PartType::Message(_) => "message/rfc822".to_owned(),
            // RFC 2045 §5.2: no Content-Type means text/plain.
            _ => "text/plain".to_owned(),
        },
    }
}

fn part_name(part: &MessagePart<'_>) -> Option<String> {
    let name = part.attachment_name()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn part_content(part: &MessagePart<'_>) -> Result<Part, MimeError> {
    if matches!(part.body, PartType::Multipart(_)) {
        return Err(MimeError::NotContent);
    }
    Ok(Part {
        name: part_name(part),
        content_type: content_type(part),
        bytes: decoded(part)?.into_owned(),
    })
}

/// A part's bytes after transfer decoding. mail-parser, when a part's
/// base64 or quoted-printable text does not decode (or its closing
/// boundary is missing), keeps the encoded text as the part's contents
/// and sets `is_encoding_problem`: base64 that is valid once the cut-off
/// boundary is set aside is decoded here strictly; anything else is
/// [`MimeError::Undecodable`], never the encoded text.
fn decoded<'p>(part: &'p MessagePart<'_>) -> Result<Cow<'p, [u8]>, MimeError> {
    if !part.is_encoding_problem {
        return Ok(Cow::Borrowed(part.contents()));
    }
    let declared = part
        .content_transfer_encoding()
        .map(|encoding| encoding.trim().to_ascii_lowercase());
    match declared.as_deref() {
        Some("base64") => strict_base64(part.contents())
            .map(Cow::Owned)
            .ok_or(MimeError::Undecodable { encoding: "base64" }),
        Some("quoted-printable") => Err(MimeError::Undecodable {
            encoding: "quoted-printable",
        }),
        // 7bit, 8bit, binary or none: the contents are the bytes (a
        // message/rfc822 part that does not parse is still its bytes).
        _ => Ok(Cow::Borrowed(part.contents())),
    }
}

/// Base64 (RFC 2045 §6.8) with line breaks and other white space between
/// the characters, padding optional; `None` at any other character.
fn strict_base64(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    ENGINE.decode(compact).ok()
}

fn attachments(message: &Message<'_>, most: usize) -> Vec<Attachment> {
    let mut list = Vec::new();
    walk(message, &mut Vec::new(), 0, &mut |id, part, related| {
        if list.len() >= most || matches!(part.body, PartType::Multipart(_)) {
            return;
        }
        let name = part_name(part);
        let disposition = part.content_disposition();
        let attachment_disposition = disposition.is_some_and(|d| d.is_attachment());
        // The body text a reader already gets is not listed again.
        let is_body_text = matches!(part.body, PartType::Text(_) | PartType::Html(_))
            && name.is_none()
            && !attachment_disposition
            && {
                let content_type = content_type(part);
                content_type == "text/plain" || content_type == "text/html"
            };
        // An embedded message's body text is not listed either (the
        // message/rfc822 part is); `extract_part` still reaches it.
        if is_body_text {
            return;
        }
        let content_id = part
            .content_id()
            .map(|id| id.trim_matches(['<', '>']).to_owned());
        let inline = disposition.is_some_and(|d| d.is_inline())
            || (related && content_id.is_some() && !attachment_disposition);
        let (size, undecodable) = match decoded(part) {
            Ok(bytes) => (bytes.len(), false),
            Err(_) => (part.contents().len(), true),
        };
        list.push(Attachment {
            part_id: id.iter().map(u32::to_string).collect::<Vec<_>>().join("."),
            name,
            content_type: content_type(part),
            size,
            inline,
            content_id,
            undecodable,
        });
    });
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_bytes: 1024 * 1024,
    };
    const WHOLE: ViewOptions<'static> = ViewOptions {
        window: BodyWindow {
            offset: 0,
            max_chars: usize::MAX,
        },
        trusted_authserv_id: None,
    };

    type Expected<'a> = Result<(&'a str, &'a [u8]), MimeError>;
    type Verdicts<'a> = (&'a str, Option<Verdict>, Option<Verdict>, Option<Verdict>);

    fn view(raw: &str) -> MessageView {
        parse_message(raw.as_bytes(), &LIMITS, &WHOLE).expect("parses")
    }

    /// mixed[ alternative[ plain, related[ html, image(cid) ] ], pdf ]
    const NESTED: &str = "From: Ann Example <ann@example.org>\n\
To: bob@example.net, \"Carol C.\" <carol@example.net>\n\
Cc: dave@example.net\n\
Date: Tue, 01 Dec 2026 10:30:00 +0100\n\
Subject: =?UTF-8?Q?R=C3=A9union?=\n\
Message-ID: <m2@example.org>\n\
In-Reply-To: <m1@example.org>\n\
References: <m0@example.org> <m1@example.org>\n\
Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=example.org;\n\
\x20dkim=fail (bad signature) header.d=example.org; dkim=pass header.d=example.org;\n\
\x20dmarc=pass (p=reject) header.from=example.org\n\
Authentication-Results: mx.attacker.test; spf=fail; dkim=fail; dmarc=fail\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"outer\"\n\
\n\
--outer\n\
Content-Type: multipart/alternative; boundary=\"alt\"\n\
\n\
--alt\n\
Content-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
Bonjour =C3=A0 tous\n\
--alt\n\
Content-Type: multipart/related; boundary=\"rel\"\n\
\n\
--rel\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<p>Bonjour <img src=\"cid:logo\"></p>\n\
--rel\n\
Content-Type: image/png\n\
Content-ID: <logo>\n\
Content-Transfer-Encoding: base64\n\
\n\
iVBORw0KGgo=\n\
--rel--\n\
--alt--\n\
--outer\n\
Content-Type: application/pdf; name=\"=?UTF-8?B?UmFwcG9ydCDDqXTDqS5wZGY=?=\"\n\
Content-Disposition: attachment\n\
Content-Transfer-Encoding: base64\n\
\n\
JVBERi0xLjQK\n\
--outer--\n";

    #[test]
    fn headers_are_typed() {
        let view = view(NESTED);
        assert_eq!(
            view.from,
            vec![Mailbox {
                name: Some("Ann Example".into()),
                address: "ann@example.org".into()
            }]
        );
        let to: Vec<_> = view.to.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(to, ["bob@example.net", "carol@example.net"]);
        assert_eq!(view.to[1].name.as_deref(), Some("Carol C."));
        assert_eq!(view.cc[0].address, "dave@example.net");
        assert_eq!(view.date.as_deref(), Some("2026-12-01T10:30:00+01:00"));
        assert_eq!(view.subject.as_deref(), Some("Réunion"));
        assert_eq!(view.message_id.as_deref(), Some("m2@example.org"));
        assert_eq!(view.in_reply_to, ["m1@example.org"]);
        assert_eq!(view.references, ["m0@example.org", "m1@example.org"]);
        assert_eq!(view.size, NESTED.len());
    }

    #[test]
    fn plain_text_is_preferred_and_part_ids_follow_imap() {
        let view = view(NESTED);
        assert_eq!(view.body.source, BodySource::Plain);
        assert_eq!(view.body.text.trim(), "Bonjour à tous");
        assert_eq!(
            view.attachments,
            vec![
                Attachment {
                    part_id: "1.2.2".into(),
                    name: None,
                    content_type: "image/png".into(),
                    size: 8,
                    inline: true,
                    content_id: Some("logo".into()),
                    undecodable: false,
                },
                Attachment {
                    part_id: "2".into(),
                    name: Some("Rapport été.pdf".into()),
                    content_type: "application/pdf".into(),
                    size: 9,
                    inline: false,
                    content_id: None,
                    undecodable: false,
                },
            ]
        );
    }

    #[test]
    fn invalid_base64_is_refused_never_handed_out_as_bytes() {
        let message = |tail: &str| {
            format!(
                "From: a@example.org\nSubject: x\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
Content-Type: text/plain\n\nhello\n--b\n\
Content-Type: application/octet-stream\n\
Content-Disposition: attachment; filename=\"x.bin\"\n\
Content-Transfer-Encoding: base64\n\n{tail}"
            )
        };
        // Invalid characters, closing boundary present or not.
        for raw in [message("AAEC*AwQF\n--b--\n"), message("AAECAwQFBgcI!!CQ\n")] {
            assert_eq!(
                extract_part(raw.as_bytes(), &LIMITS, "2"),
                Err(MimeError::Undecodable { encoding: "base64" }),
                "{raw}"
            );
            let listed = view(&raw).attachments;
            assert!(listed[0].undecodable, "{listed:?}");
        }
        // Valid base64 whose closing boundary was cut off: the real bytes.
        let cut = message("AAECAwQF\nBgc=\n");
        let part = extract_part(cut.as_bytes(), &LIMITS, "2").expect("decodes");
        assert_eq!(part.bytes, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(!view(&cut).attachments[0].undecodable);
        assert_eq!(view(&cut).attachments[0].size, 8);
    }

    #[test]
    fn extract_part_by_imap_section_number() {
        let raw = NESTED.as_bytes();
        let table: [(&str, Expected<'_>); 9] = [
            ("2", Ok(("application/pdf", b"%PDF-1.4\n"))),
            ("1.2.2", Ok(("image/png", b"\x89PNG\r\n\x1a\n"))),
            ("1.1", Ok(("text/plain", "Bonjour à tous".as_bytes()))),
            (
                "1.2.1",
                Ok(("text/html", b"<p>Bonjour <img src=\"cid:logo\"></p>")),
            ),
            ("1", Err(MimeError::NotContent)),
            ("3", Err(MimeError::NoSuchPart)),
            ("1.2.3", Err(MimeError::NoSuchPart)),
            ("01", Err(MimeError::InvalidPartId)),
            ("1..2", Err(MimeError::InvalidPartId)),
        ];
        for (id, expected) in table {
            let got = extract_part(raw, &LIMITS, id)
                .map(|part| (part.content_type, part.bytes.trim_ascii_end().to_vec()));
            let expected =
                expected.map(|(ty, bytes)| (ty.to_owned(), bytes.trim_ascii_end().to_vec()));
            assert_eq!(got, expected, "part {id}");
        }
        assert_eq!(
            extract_part(raw, &LIMITS, "2").unwrap().name.as_deref(),
            Some("Rapport été.pdf")
        );
        for bad in ["", "0", "a", "-1", "+1", " 1", "1.", ".1", "4294967296"] {
            assert_eq!(
                extract_part(raw, &LIMITS, bad),
                Err(MimeError::InvalidPartId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc2231_names_and_single_part_messages() {
        let raw = "From: a@example.org\n\
Subject: report\n\
Content-Type: application/octet-stream\n\
Content-Disposition: attachment; filename*=UTF-8''%E6%97%A5%E6%9C%AC%20report.bin\n\
Content-Transfer-Encoding: base64\n\
\n\
AAEC/w==\n";
        let view = view(raw);
        assert_eq!(view.body.source, BodySource::None);
        assert_eq!(view.attachments.len(), 1);
        assert_eq!(view.attachments[0].part_id, "1");
        assert_eq!(view.attachments[0].name.as_deref(), Some("日本 report.bin"));
        assert_eq!(view.attachments[0].size, 4);
        let part = extract_part(raw.as_bytes(), &LIMITS, "1").unwrap();
        assert_eq!(part.bytes, [0, 1, 2, 255]);
    }

    #[test]
    fn the_attachment_list_is_bounded() {
        let mut raw =
            String::from("From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n");
        for i in 0..MAX_LISTED_ATTACHMENTS + 5 {
            raw.push_str(&format!(
                "--b\nContent-Type: application/octet-stream; name=\"f{i}\"\n\nx\n"
            ));
        }
        raw.push_str("--b--\n");
        let view = view(&raw);
        assert_eq!(view.attachments.len(), MAX_LISTED_ATTACHMENTS);
        assert!(view.attachments_truncated);
        assert_eq!(
            view.attachments.last().unwrap().part_id,
            MAX_LISTED_ATTACHMENTS.to_string()
        );
        // Parts past the list are still reachable.
        let last = (MAX_LISTED_ATTACHMENTS + 5).to_string();
        assert_eq!(
            extract_part(raw.as_bytes(), &LIMITS, &last)
                .unwrap()
                .name
                .as_deref(),
            Some(format!("f{}", MAX_LISTED_ATTACHMENTS + 4).as_str())
        );
        assert!(
            !super::parse_message(NESTED.as_bytes(), &LIMITS, &WHOLE)
                .unwrap()
                .attachments_truncated
        );
    }

    #[test]
    fn embedded_messages_number_their_parts_under_them() {
        let raw = "From: a@example.org\n\
Subject: fwd\n\
Content-Type: multipart/mixed; boundary=\"o\"\n\
\n\
--o\n\
Content-Type: text/plain\n\
\n\
see below\n\
--o\n\
Content-Type: message/rfc822\n\
\n\
From: b@example.org\n\
Subject: inner\n\
Content-Type: multipart/mixed; boundary=\"i\"\n\
\n\
--i\n\
Content-Type: text/plain\n\
\n\
inner text\n\
--i\n\
Content-Type: text/csv; name=\"data.csv\"\n\
\n\
a,b\n\
--i--\n\
--o--\n";
        let view = view(raw);
        assert_eq!(view.body.text.trim(), "see below");
        let ids: Vec<_> = view
            .attachments
            .iter()
            .map(|a| {
                (
                    a.part_id.as_str(),
                    a.content_type.as_str(),
                    a.name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("2", "message/rfc822", None),
                ("2.2", "text/csv", Some("data.csv"))
            ]
        );
        let inner = extract_part(raw.as_bytes(), &LIMITS, "2").unwrap();
        assert!(inner.bytes.starts_with(b"From: b@example.org"));
        let inner_text = extract_part(raw.as_bytes(), &LIMITS, "2.1").unwrap();
        assert_eq!(inner_text.bytes.trim_ascii(), b"inner text");
        assert_eq!(
            extract_part(raw.as_bytes(), &LIMITS, "2.2")
                .unwrap()
                .bytes
                .trim_ascii(),
            b"a,b"
        );
    }

    #[test]
    fn html_becomes_readable_text() {
        let raw = "From: a@example.org\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<html><head><style>p { color: red }</style><script>alert('x')</script></head>\n\
<body><p>Hello <b>there</b>, read <a href=\"https://example.org/doc\">the doc</a>.</p>\n\
<img src=\"https://tracker.example/pixel.gif\" alt=\"\">\n\
<img src=\"https://example.org/logo.png\" alt=\"Logo\">\n\
<ul><li>one</li><li>two</li></ul><a href=\"#top\">top</a></body></html>\n";
        let view = view(raw);
        assert_eq!(view.body.source, BodySource::Html);
        let text = &view.body.text;
        assert!(
            text.contains("Hello there, read the doc (https://example.org/doc)."),
            "{text}"
        );
        assert!(text.contains("- one\n- two"), "{text}");
        assert!(text.contains("[image: Logo]"), "{text}");
        for absent in [
            "alert", "color", "tracker", "pixel", "logo.png", "#top", "<", "[1]",
        ] {
            assert!(!text.contains(absent), "{absent:?} in {text}");
        }
    }

    #[test]
    fn the_body_is_windowed_in_characters() {
        let raw = "From: a@example.org\nContent-Type: text/plain; charset=utf-8\n\nééééé12345";
        let at = |offset, max_chars| {
            let options = ViewOptions {
                window: BodyWindow { offset, max_chars },
                trusted_authserv_id: None,
            };
            parse_message(raw.as_bytes(), &LIMITS, &options)
                .unwrap()
                .body
        };
        let cases = [
            (0, 3, "ééé", 0, true),
            (3, 4, "éé12", 3, true),
            (6, 100, "2345", 6, false),
            (10, 5, "", 10, false),
            (99, 5, "", 10, false),
            (0, 0, "", 0, true),
        ];
        for (offset, max, text, start, more) in cases {
            let body = at(offset, max);
            assert_eq!(
                (
                    body.text.as_str(),
                    body.offset,
                    body.total_chars,
                    body.has_more
                ),
                (text, start, Some(10), more),
                "offset {offset} max {max}"
            );
        }
    }

    #[test]
    fn authentication_results_topmost_or_trusted() {
        let topmost = view(NESTED).authentication.unwrap();
        assert_eq!(
            topmost,
            AuthResults {
                authserv_id: "mx.example.net".into(),
                spf: Some(Verdict::Pass),
                dkim: Some(Verdict::Pass),
                dmarc: Some(Verdict::Pass),
            }
        );
        let options = ViewOptions {
            trusted_authserv_id: Some("MX.ATTACKER.TEST"),
            ..WHOLE
        };
        let chosen = parse_message(NESTED.as_bytes(), &LIMITS, &options)
            .unwrap()
            .authentication
            .unwrap();
        assert_eq!(chosen.spf, Some(Verdict::Fail));
        let options = ViewOptions {
            trusted_authserv_id: Some("mx.other"),
            ..WHOLE
        };
        assert_eq!(
            parse_message(NESTED.as_bytes(), &LIMITS, &options)
                .unwrap()
                .authentication,
            None
        );
    }

    #[test]
    fn authentication_results_are_read_loosely() {
        let table: [(&str, Option<Verdicts<'_>>); 7] = [
            ("example.com; none", Some(("example.com", None, None, None))),
            (
                "example.com 1; spf=SoftFail (sender not permitted) smtp.mailfrom=x; dkim=none",
                Some((
                    "example.com",
                    Some(Verdict::SoftFail),
                    Some(Verdict::None),
                    None,
                )),
            ),
            (
                "(comment (nested) ) mx.example; dmarc=temperror; spf=permerror",
                Some((
                    "mx.example",
                    Some(Verdict::PermError),
                    None,
                    Some(Verdict::TempError),
                )),
            ),
            (
                "mx; dkim/1=policy; spf=weird",
                Some(("mx", Some(Verdict::Other), Some(Verdict::Policy), None)),
            ),
            (
                "mx; spf=pass; spf=fail",
                Some(("mx", Some(Verdict::Pass), None, None)),
            ),
            ("", None),
            ("spf=pass", None),
        ];
        for (value, expected) in table {
            let got = parse_authentication_results(value)
                .map(|r| (r.authserv_id, r.spf, r.dkim, r.dmarc));
            let expected = expected.map(|(id, spf, dkim, dmarc)| (id.to_owned(), spf, dkim, dmarc));
            assert_eq!(got, expected, "{value:?}");
        }
    }

    #[test]
    fn reply_headers_thread() {
        let reply = reply_headers(&view(NESTED));
        assert_eq!(
            reply,
            ReplyHeaders {
                in_reply_to: Some("<m2@example.org>".into()),
                references: Some("<m0@example.org> <m1@example.org> <m2@example.org>".into()),
                subject: "Re: Réunion".into(),
            }
        );
        let first = view("From: a@example.org\nSubject: RE: hi\nMessage-ID: <only@x>\n\nbody");
        let reply = reply_headers(&first);
        assert_eq!(reply.references.as_deref(), Some("<only@x>"));
        assert_eq!(reply.subject, "RE: hi");
        let bare = reply_headers(&view("From: a@example.org\n\nbody"));
        assert_eq!(
            (bare.in_reply_to, bare.references, bare.subject.as_str()),
            (None, None, "Re: ")
        );

        let mut long = view(NESTED);
        long.references = (0..30).map(|i| format!("r{i}@x")).collect();
        let references = reply_headers(&long).references.unwrap();
        let ids: Vec<_> = references.split(' ').collect();
        assert_eq!(ids.len(), MAX_REFERENCES);
        assert_eq!(ids[0], "<r0@x>");
        assert_eq!(ids[1], "<r12@x>");
        assert_eq!(ids[MAX_REFERENCES - 1], "<m2@example.org>");
    }

    #[test]
    fn preview_collapses_white_space() {
        let raw = b"From: a@example.org\n\nHello,\n\n   this  is\ta  long body";
        assert_eq!(preview(raw, &LIMITS, 15).unwrap(), "Hello, this is ");
        assert_eq!(
            preview(raw, &LIMITS, 100).unwrap(),
            "Hello, this is a long body"
        );
        assert_eq!(preview(raw, &LIMITS, 0).unwrap(), "");
        // A partial fetch: the start of a multipart message, boundary never closed.
        let truncated = &NESTED.as_bytes()[..NESTED.find("--rel\n").unwrap()];
        assert_eq!(preview(truncated, &LIMITS, 40).unwrap(), "Bonjour à tous");
    }

    #[test]
    fn limits_are_checked_before_parsing() {
        let limits = Limits {
            max_message_bytes: 100,
        };
        let big = vec![b'a'; 101];
        assert_eq!(
            parse_message(&big, &limits, &WHOLE),
            Err(MimeError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        assert_eq!(
            extract_part(&big, &limits, "1"),
            Err(MimeError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        assert_eq!(
            extract_part(&big, &limits, "x"),
            Err(MimeError::InvalidPartId)
        );
        assert_eq!(
            parse_message(b"", &LIMITS, &WHOLE),
            Err(MimeError::Unparseable)
        );
    }

    #[test]
    fn truncations_of_a_real_message_never_panic() {
        let raw = NESTED.as_bytes();
        for end in 0..raw.len() {
            let _ = parse_message(&raw[..end], &LIMITS, &WHOLE);
            let _ = extract_part(&raw[..end], &LIMITS, "1.2.2");
            let _ = preview(&raw[..end], &LIMITS, 20);
        }
    }

    #[test]
    fn an_invite_part_is_listed_not_read_as_body() {
        let raw = "From: a@example.org\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain body\n--b\nContent-Type: text/html\n\n<p>html body</p>\n--b\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n--b--\n";
        let view = view(raw);
        assert_eq!(view.body.text, "plain body");
        let listed: Vec<_> = view
            .attachments
            .iter()
            .map(|a| (a.part_id.as_str(), a.content_type.as_str()))
            .collect();
        assert_eq!(listed, [("3", "text/calendar")]);
        let invite = extract_part(raw.as_bytes(), &LIMITS, "3").unwrap();
        assert!(invite.bytes.starts_with(b"BEGIN:VCALENDAR"));
    }

    #[test]
    fn charsets_and_text_attachments() {
        let raw = "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.org>\n\
Subject: =?iso-8859-1?q?caf=E9?=\n\
Content-Type: multipart/mixed; boundary=b\n\
\n\
--b\n\
Content-Type: text/plain; charset=iso-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
caf=E9 cr=E8me\n\
--b\n\
Content-Type: text/plain; name=\"notes.txt\"\n\
Content-Disposition: attachment; filename=\"notes.txt\"\n\
\n\
secret notes\n\
--b\n\
Content-Type: text/plain\n\
Content-Disposition: attachment\n\
\n\
unnamed attached text\n\
--b--\n";
        let view = view(raw);
        assert_eq!(view.from[0].name.as_deref(), Some("André"));
        assert_eq!(view.subject.as_deref(), Some("café"));
        // Attached text is listed, not read as the body.
        assert_eq!(view.body.text, "café crème");
        let listed: Vec<_> = view
            .attachments
            .iter()
            .map(|a| (a.part_id.as_str(), a.name.as_deref(), a.size))
            .collect();
        assert_eq!(listed, [("2", Some("notes.txt"), 12), ("3", None, 21)]);
    }

    #[test]
    fn deeply_nested_html_is_read_in_bounded_time_and_stack() {
        // Each of these overflowed the stack or ran for minutes before the
        // nesting bound (see html_to_text); run on a 2 MiB stack, like a
        // runtime's worker thread.
        let deep_tail = "<script>alert(1)</script><style>p{}</style><title>t</title>hello &amp; <a href=\"https://e.example\">link</a>";
        let cases = [
            ("<ul><li>", 5_000),
            ("<div>", 20_000),
            ("<blockquote>", 5_000),
            ("<pre>", 5_000),
            ("<table><tr><td>", 2_000),
            ("<font><i><u>", 10_000),
        ];
        for (tag, count) in cases {
            let html = format!("{}{deep_tail}", tag.repeat(count));
            let text = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || html_to_text(&html))
                .unwrap()
                .join()
                .expect("no stack overflow");
            assert!(text.contains("hello & link"), "{tag}: {text:?}");
            for hidden in ["alert", "p{}", "<"] {
                assert!(!text.contains(hidden), "{tag}: {hidden} in {text:?}");
            }
        }
        // Moderate nesting keeps its formatting, and unclosed <p>, <li> and
        // cells do not count as nesting.
        let lists = format!("{}x", "<ul><li>".repeat(100));
        assert!(html_to_text(&lists).starts_with("- - "));
        for flat in [
            "<p>a<p>b",
            "<ul><li>a<li>b</ul>",
            "<table><tr><td>c<td>d</table>",
        ] {
            assert!(scan_html(&flat.repeat(10_000)).max_depth <= 3, "{flat}");
        }
        let flattened = format!("{}<b>deep</b> text", "<span>".repeat(MAX_HTML_DEPTH + 10));
        assert_eq!(html_to_text(&flattened), "deep text");
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = parse_message(&bytes, &LIMITS, &WHOLE);
            let _ = extract_part(&bytes, &LIMITS, "1");
        }

        #[test]
        fn mime_shaped_garbage_never_panics(
            body in "(--b\n|Content-Type: (multipart/mixed; boundary=b|message/rfc822|text/html)\n|\n|<a href=x>|=?UTF-8?B?w6k=?=|[a-z ]{0,8})*",
        ) {
            let raw = format!("From: a@b\nContent-Type: multipart/mixed; boundary=b\n\n{body}");
            if let Ok(view) = parse_message(raw.as_bytes(), &LIMITS, &WHOLE) {
                for attachment in &view.attachments {
                    proptest::prop_assert!(extract_part(raw.as_bytes(), &LIMITS, &attachment.part_id).is_ok());
                }
            }
        }
    }
}
