//! Protocol revisions, the era each belongs to, and version negotiation.
//!
//! The two eras negotiate differently. A legacy (2025-03-26, 2025-06-18,
//! 2025-11-25) client proposes a version in `initialize` and the server
//! answers with the same when it speaks it, else its newest legacy one, so
//! negotiation never fails. A modern (2026-07-28) client names its version
//! on every request and the server either accepts it or answers
//! `-32022 UnsupportedProtocolVersion` with the list it speaks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::code;
use crate::error::ErrorObject;

/// The first Streamable HTTP revision (no `MCP-Protocol-Version` header:
/// a server that receives none assumes it).
pub const PROTOCOL_2025_03_26: &str = "2025-03-26";
/// Adds `structuredContent`, `outputSchema`, `title`, resource links,
/// elicitation, the `MCP-Protocol-Version` header.
pub const PROTOCOL_2025_06_18: &str = "2025-06-18";
/// The newest stateful revision: `initialize` handshake, then a session;
/// adds icons, tasks, URL elicitation.
pub const PROTOCOL_2025_11_25: &str = "2025-11-25";
/// The stateless revision: version and capabilities in every request's `_meta`.
pub const PROTOCOL_2026_07_28: &str = "2026-07-28";
/// Every revision llmbasedos speaks, newest first: the order advertised in
/// `server/discover` and in `-32022` errors.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] = [
    PROTOCOL_2026_07_28,
    PROTOCOL_2025_11_25,
    PROTOCOL_2025_06_18,
    PROTOCOL_2025_03_26,
];

/// How a revision learns who it is talking to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2025-11-25 and earlier: an `initialize` handshake opens a session.
    Legacy,
    /// 2026-07-28 and later: every request carries its version, client
    /// capabilities and client info in `_meta`; there is no session.
    Modern,
}

/// A protocol revision llmbasedos speaks. Ordered oldest to newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProtocolVersion {
    #[serde(rename = "2025-03-26")]
    V2025_03_26,
    #[serde(rename = "2025-06-18")]
    V2025_06_18,
    #[serde(rename = "2025-11-25")]
    V2025_11_25,
    #[serde(rename = "2026-07-28")]
    V2026_07_28,
}

impl ProtocolVersion {
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2026_07_28;
    /// The newest revision that uses the `initialize` handshake.
    pub const LATEST_LEGACY: ProtocolVersion = ProtocolVersion::V2025_11_25;
    /// Newest first, like [`SUPPORTED_PROTOCOL_VERSIONS`].
    pub const SUPPORTED: [ProtocolVersion; 4] = [
        ProtocolVersion::V2026_07_28,
        ProtocolVersion::V2025_11_25,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_03_26,
    ];
    /// What a Streamable HTTP server assumes of a request without an
    /// `MCP-Protocol-Version` header.
    pub const WITHOUT_HEADER: ProtocolVersion = ProtocolVersion::V2025_03_26;

    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2025_03_26 => PROTOCOL_2025_03_26,
            ProtocolVersion::V2025_06_18 => PROTOCOL_2025_06_18,
            ProtocolVersion::V2025_11_25 => PROTOCOL_2025_11_25,
            ProtocolVersion::V2026_07_28 => PROTOCOL_2026_07_28,
        }
    }

    pub const fn era(self) -> Era {
        match self {
            ProtocolVersion::V2025_03_26
            | ProtocolVersion::V2025_06_18
            | ProtocolVersion::V2025_11_25 => Era::Legacy,
            ProtocolVersion::V2026_07_28 => Era::Modern,
        }
    }

    /// Whether results may carry `structuredContent` and tools an
    /// `outputSchema`, and tools, resources and prompts a `title`
    /// (2025-06-18 on).
    pub fn has_structured_content(self) -> bool {
        self >= ProtocolVersion::V2025_06_18
    }

    /// Whether a server must accept JSON-RPC batches (2025-03-26 only:
    /// 2025-06-18 removed them).
    pub fn has_batches(self) -> bool {
        self == ProtocolVersion::V2025_03_26
    }

    /// Whether tools, resources, prompts and implementations may carry
    /// `icons`, and tools `execution` (2025-11-25 on).
    pub fn has_icons(self) -> bool {
        self >= ProtocolVersion::V2025_11_25
    }

    /// The answer to an `initialize` request (2025-11-25 lifecycle rules):
    /// echo the requested version when we speak it, otherwise offer our
    /// newest legacy version and let the client decide whether to disconnect.
    ///
    /// A modern version is never the answer: `initialize` selects legacy
    /// semantics, so a client that asks for 2026-07-28 through `initialize`
    /// is offered 2025-11-25.
    pub fn negotiate_legacy(requested: &str) -> ProtocolVersion {
        match requested.parse::<ProtocolVersion>() {
            Ok(version) if version.era() == Era::Legacy => version,
            _ => ProtocolVersion::LATEST_LEGACY,
        }
    }

    /// Checks the version named in a modern request's `_meta`. Only modern
    /// versions are served statelessly; a legacy version there is refused
    /// like an unknown one, and the error lists every version we speak so
    /// that a dual-era client can choose (a legacy choice means
    /// `initialize`).
    pub fn accept_modern(requested: &str) -> Result<ProtocolVersion, UnsupportedProtocolVersion> {
        match requested.parse::<ProtocolVersion>() {
            Ok(version) if version.era() == Era::Modern => Ok(version),
            _ => Err(UnsupportedProtocolVersion {
                requested: requested.to_owned(),
            }),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProtocolVersion {
    type Err = UnsupportedProtocolVersion;

    fn from_str(text: &str) -> Result<ProtocolVersion, UnsupportedProtocolVersion> {
        ProtocolVersion::SUPPORTED
            .into_iter()
            .find(|version| version.as_str() == text)
            .ok_or_else(|| UnsupportedProtocolVersion {
                requested: text.to_owned(),
            })
    }
}

/// A request named a protocol version we do not serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported protocol version {requested:?}: retry with one of {}",
    SUPPORTED_PROTOCOL_VERSIONS.join(", ")
)]
pub struct UnsupportedProtocolVersion {
    pub requested: String,
}

impl From<UnsupportedProtocolVersion> for ErrorObject {
    /// The 2026-07-28 `UnsupportedProtocolVersionError`: code `-32022` with
    /// `data: {supported, requested}`.
    fn from(error: UnsupportedProtocolVersion) -> ErrorObject {
        let data = json!({
            "supported": SUPPORTED_PROTOCOL_VERSIONS,
            "requested": error.requested,
        });
        ErrorObject::new(code::UNSUPPORTED_PROTOCOL_VERSION, error.to_string()).with_data(data)
    }
}
