//! A message's `BODYSTRUCTURE` (RFC 3501 §7.4.2) as the list of its parts
//! with their IMAP section numbers: where each part's MIME header is, its
//! type, charset, transfer encoding and stored size. With it a read fetches
//! only what it shows (`BODY.PEEK[2.1]`, a text's first bytes) and refuses
//! a part by its size before fetching it.
//!
//! Numbering follows RFC 3501 §6.4.5, as [`crate::mime`] does: a message
//! whose body is not multipart has one part, `1`, whose MIME header is the
//! message's header; the children of a multipart are `1`, `2`, … under
//! their parent's id; a `message/rfc822` part `n` holds a message whose
//! body's parts are numbered under `n` the same way (its non-multipart
//! body is `n.1`, with the header `n.HEADER`).
//!
//! The structure comes from the server, which read it from a message
//! written by a stranger: it is bounded (depth, number of parts) and a
//! structure that cannot describe a message (a multipart without parts)
//! is refused as such, never guessed around.

use async_imap::imap_proto::{
    BodyContentCommon, BodyContentSinglePart, BodyStructure, ContentEncoding, MessageSection,
    SectionPath,
};

/// A section of a message FETCH can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// The message's header: `HEADER`.
    Header,
    /// The header of the message embedded in part `n`: `n.HEADER`.
    EmbeddedHeader(Vec<u32>),
    /// The MIME header of part `n`: `n.MIME`.
    Mime(Vec<u32>),
    /// The body of part `n`: `n`.
    Body(Vec<u32>),
}

impl Section {
    /// As FETCH names it: `HEADER`, `2.HEADER`, `1.2.MIME`, `1.2`.
    pub fn text(&self) -> String {
        match self {
            Section::Header => "HEADER".to_owned(),
            Section::EmbeddedHeader(id) => format!("{}.HEADER", id_text(id)),
            Section::Mime(id) => format!("{}.MIME", id_text(id)),
            Section::Body(id) => id_text(id),
        }
    }

    /// As the server's answer names it.
    pub fn path(&self) -> SectionPath {
        match self {
            Section::Header => SectionPath::Full(MessageSection::Header),
            Section::EmbeddedHeader(id) => {
                SectionPath::Part(id.clone(), Some(MessageSection::Header))
            }
            Section::Mime(id) => SectionPath::Part(id.clone(), Some(MessageSection::Mime)),
            Section::Body(id) => SectionPath::Part(id.clone(), None),
        }
    }
}

/// How deep parts may nest (as [`crate::mime`] walks them).
pub const MAX_DEPTH: usize = 32;
/// Most parts read from one structure.
pub const MAX_PARTS: usize = 2000;

/// A part's content transfer encoding (RFC 2045 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `7bit`, `8bit` or `binary`: the stored bytes are the content.
    Identity,
    QuotedPrintable,
    Base64,
    /// An encoding RFC 2045 does not define.
    Other,
}

/// One part, as the structure describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Its IMAP section number (`[1, 2]` is `1.2`).
    pub id: Vec<u32>,
    /// `type/subtype`, lower case.
    pub content_type: String,
    /// The `charset` parameter, lower case.
    pub charset: Option<String>,
    pub encoding: Encoding,
    /// Bytes of its body as stored (transfer-encoded); 0 for a multipart.
    pub octets: u64,
    pub multipart: bool,
    /// `Content-Disposition: attachment`.
    pub attachment: bool,
    /// The section of its MIME header: the message's `HEADER`, an embedded
    /// message's `n.HEADER`, or the part's own `id.MIME`.
    pub header: Section,
}

impl PartInfo {
    /// Its id as text: `1.2`.
    pub fn id_text(&self) -> String {
        id_text(&self.id)
    }
}

/// Why a structure cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    #[error("it has a multipart part with no parts in it")]
    EmptyMultipart,
    #[error("its parts nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("it has more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// Every part of `root` that has a section number, in section order
/// (a multipart before its children).
pub fn parts(root: &BodyStructure<'_>) -> Result<Vec<PartInfo>, StructureError> {
    let mut out = Vec::new();
    walk_body(root, &mut Vec::new(), Section::Header, 0, &mut out)?;
    Ok(out)
}

/// The parts of a message's body: the children of a multipart, or the one
/// non-multipart body as part `prefix.1`, whose header is `header`.
fn walk_body(
    body: &BodyStructure<'_>,
    prefix: &mut Vec<u32>,
    header: Section,
    depth: usize,
    out: &mut Vec<PartInfo>,
) -> Result<(), StructureError> {
    match body {
        BodyStructure::Multipart { bodies, .. } => children(bodies, prefix, depth, out),
        single => {
            prefix.push(1);
            let result = visit(single, prefix, header, depth + 1, out);
            prefix.pop();
            result
        }
    }
}

fn children(
    bodies: &[BodyStructure<'_>],
    prefix: &mut Vec<u32>,
    depth: usize,
    out: &mut Vec<PartInfo>,
) -> Result<(), StructureError> {
    if bodies.is_empty() {
        return Err(StructureError::EmptyMultipart);
    }
    for (index, child) in bodies.iter().enumerate() {
        prefix.push(u32::try_from(index + 1).map_err(|_| StructureError::TooManyParts)?);
        let header = Section::Mime(prefix.clone());
        let result = visit(child, prefix, header, depth + 1, out);
        prefix.pop();
        result?;
    }
    Ok(())
}

fn visit(
    node: &BodyStructure<'_>,
    id: &mut Vec<u32>,
    header: Section,
    depth: usize,
    out: &mut Vec<PartInfo>,
) -> Result<(), StructureError> {
    if depth > MAX_DEPTH {
        return Err(StructureError::TooDeep);
    }
    if out.len() >= MAX_PARTS {
        return Err(StructureError::TooManyParts);
    }
    let (common, single): (&BodyContentCommon<'_>, Option<&BodyContentSinglePart<'_>>) = match node
    {
        BodyStructure::Basic { common, other, .. }
        | BodyStructure::Text { common, other, .. }
        | BodyStructure::Message { common, other, .. } => (common, Some(other)),
        BodyStructure::Multipart { common, .. } => (common, None),
    };
    out.push(PartInfo {
        id: id.clone(),
        content_type: format!("{}/{}", common.ty.ty, common.ty.subtype).to_ascii_lowercase(),
        charset: common.ty.params.as_ref().and_then(|params| {
            params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("charset"))
                .map(|(_, value)| value.to_ascii_lowercase())
        }),
        encoding: single.map_or(Encoding::Identity, |single| {
            match &single.transfer_encoding {
                ContentEncoding::SevenBit | ContentEncoding::EightBit | ContentEncoding::Binary => {
                    Encoding::Identity
                }
                ContentEncoding::Base64 => Encoding::Base64,
                ContentEncoding::QuotedPrintable => Encoding::QuotedPrintable,
                ContentEncoding::Other(_) => Encoding::Other,
            }
        }),
        octets: single.map_or(0, |single| u64::from(single.octets)),
        multipart: single.is_none(),
        attachment: common
            .disposition
            .as_ref()
            .is_some_and(|disposition| disposition.ty.eq_ignore_ascii_case("attachment")),
        header,
    });
    match node {
        BodyStructure::Multipart { bodies, .. } => children(bodies, id, depth, out),
        BodyStructure::Message { body, .. } => {
            let header = Section::EmbeddedHeader(id.clone());
            walk_body(body, id, header, depth, out)
        }
        _ => Ok(()),
    }
}

/// `[1, 2]` as `1.2`.
pub fn id_text(id: &[u32]) -> String {
    id.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use async_imap::imap_proto::{
        BodyContentCommon, BodyContentSinglePart, BodyStructure, ContentDisposition,
        ContentEncoding, ContentType, Envelope,
    };

    use super::*;

    fn common(ty: &'static str, subtype: &'static str) -> BodyContentCommon<'static> {
        BodyContentCommon {
            ty: ContentType {
                ty: Cow::Borrowed(ty),
                subtype: Cow::Borrowed(subtype),
                params: None,
            },
            disposition: None,
            language: None,
            location: None,
        }
    }

    fn single(encoding: ContentEncoding<'static>, octets: u32) -> BodyContentSinglePart<'static> {
        BodyContentSinglePart {
            id: None,
            md5: None,
            description: None,
            transfer_encoding: encoding,
            octets,
        }
    }

    fn text(subtype: &'static str, octets: u32) -> BodyStructure<'static> {
        let mut common = common("TEXT", subtype);
        common.ty.params = Some(vec![(Cow::Borrowed("CHARSET"), Cow::Borrowed("UTF-8"))]);
        BodyStructure::Text {
            common,
            other: single(ContentEncoding::QuotedPrintable, octets),
            lines: 1,
            extension: None,
        }
    }

    fn basic(ty: &'static str, subtype: &'static str, octets: u32) -> BodyStructure<'static> {
        let mut common = common(ty, subtype);
        common.disposition = Some(ContentDisposition {
            ty: Cow::Borrowed("ATTACHMENT"),
            params: None,
        });
        BodyStructure::Basic {
            common,
            other: single(ContentEncoding::Base64, octets),
            extension: None,
        }
    }

    fn multipart(
        subtype: &'static str,
        bodies: Vec<BodyStructure<'static>>,
    ) -> BodyStructure<'static> {
        BodyStructure::Multipart {
            common: common("MULTIPART", subtype),
            bodies,
            extension: None,
        }
    }

    fn message(body: BodyStructure<'static>) -> BodyStructure<'static> {
        BodyStructure::Message {
            common: common("MESSAGE", "RFC822"),
            other: single(ContentEncoding::SevenBit, 900),
            envelope: Envelope {
                date: None,
                subject: None,
                from: None,
                sender: None,
                reply_to: None,
                to: None,
                cc: None,
                bcc: None,
                in_reply_to: None,
                message_id: None,
            },
            body: Box::new(body),
            lines: 20,
            extension: None,
        }
    }

    fn listed(root: &BodyStructure<'_>) -> Vec<(String, String, String)> {
        parts(root)
            .unwrap()
            .iter()
            .map(|part| {
                (
                    part.id_text(),
                    part.content_type.clone(),
                    part.header.text(),
                )
            })
            .collect()
    }

    #[test]
    fn a_single_part_is_part_1_under_the_message_header() {
        let parts = parts(&text("PLAIN", 5000)).unwrap();
        assert_eq!(parts.len(), 1);
        let part = &parts[0];
        assert_eq!(part.id, [1]);
        assert_eq!(part.content_type, "text/plain");
        assert_eq!(part.charset.as_deref(), Some("utf-8"));
        assert_eq!(part.encoding, Encoding::QuotedPrintable);
        assert_eq!(part.octets, 5000);
        assert!(!part.multipart && !part.attachment);
        assert_eq!(part.header.text(), "HEADER");
    }

    #[test]
    fn nested_multiparts_related_and_embedded_messages_are_numbered_as_imap_does() {
        // mixed[ alternative[ plain, related[ html, image ] ], pdf,
        //        message[ mixed[ plain, zip ] ], message[ plain ] ]
        let root = multipart(
            "MIXED",
            vec![
                multipart(
                    "ALTERNATIVE",
                    vec![
                        text("PLAIN", 10),
                        multipart("RELATED", vec![text("HTML", 20), basic("IMAGE", "PNG", 30)]),
                    ],
                ),
                basic("APPLICATION", "PDF", 40),
                message(multipart(
                    "MIXED",
                    vec![text("PLAIN", 50), basic("APPLICATION", "ZIP", 60)],
                )),
                message(text("PLAIN", 70)),
            ],
        );
        let expected = [
            ("1", "multipart/alternative", "1.MIME"),
            ("1.1", "text/plain", "1.1.MIME"),
            ("1.2", "multipart/related", "1.2.MIME"),
            ("1.2.1", "text/html", "1.2.1.MIME"),
            ("1.2.2", "image/png", "1.2.2.MIME"),
            ("2", "application/pdf", "2.MIME"),
            ("3", "message/rfc822", "3.MIME"),
            ("3.1", "text/plain", "3.1.MIME"),
            ("3.2", "application/zip", "3.2.MIME"),
            ("4", "message/rfc822", "4.MIME"),
            ("4.1", "text/plain", "4.HEADER"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect();
        assert_eq!(listed(&root), expected);
        let parts = parts(&root).unwrap();
        let image = parts.iter().find(|part| part.id == [1, 2, 2]).unwrap();
        assert_eq!(
            (image.encoding, image.octets, image.attachment),
            (Encoding::Base64, 30, true)
        );
        assert!(parts[0].multipart && parts[0].octets == 0);
    }

    #[test]
    fn unusable_structures_are_refused_as_such() {
        let empty = multipart("MIXED", vec![text("PLAIN", 1), multipart("MIXED", vec![])]);
        assert_eq!(parts(&empty), Err(StructureError::EmptyMultipart));
        let mut deep = text("PLAIN", 1);
        for _ in 0..MAX_DEPTH + 1 {
            deep = multipart("MIXED", vec![deep]);
        }
        assert_eq!(parts(&deep), Err(StructureError::TooDeep));
        let mut shallow = text("PLAIN", 1);
        for _ in 0..MAX_DEPTH {
            shallow = multipart("MIXED", vec![shallow]);
        }
        assert_eq!(parts(&shallow).unwrap().len(), MAX_DEPTH);
        let many = multipart("MIXED", (0..=MAX_PARTS).map(|_| text("PLAIN", 1)).collect());
        assert_eq!(parts(&many), Err(StructureError::TooManyParts));
        assert!(
            StructureError::EmptyMultipart
                .to_string()
                .contains("multipart part with no parts")
        );
    }
}
