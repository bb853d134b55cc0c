//! Logging: journald with structured fields when the service runs under
//! systemd, otherwise stderr as text or JSON.
//!
//! - `LLMBASEDOS_LOG` sets the filter (`info` by default; any
//!   `tracing_subscriber::EnvFilter` directive, e.g. `server_kit=debug`).
//! - `LLMBASEDOS_LOG_FORMAT` is `journald`, `json` or `text`; unset means
//!   journald when stderr is connected to the journal (`JOURNAL_STREAM`),
//!   text otherwise.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Journald,
    Json,
    Text,
}

/// Whether stderr is the journal stream systemd set up for this service.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.split_once(':') else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(metadata) = std::fs::File::from(stderr).metadata() else {
        return false;
    };
    device.parse() == Ok(metadata.dev()) && inode.parse() == Ok(metadata.ino())
}

/// Installs the global subscriber. `identifier` is the syslog identifier in
/// the journal (`llmbasedos-fs`).
pub fn init(identifier: &str) {
    let filter =
        EnvFilter::try_from_env("LLMBASEDOS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let requested = std::env::var("LLMBASEDOS_LOG_FORMAT").ok();
    let (format, unknown) = match requested.as_deref() {
        Some("journald") => (Format::Journald, None),
        Some("json") => (Format::Json, None),
        Some("text") => (Format::Text, None),
        None | Some("") => (
            if stderr_is_journal() {
                Format::Journald
            } else {
                Format::Text
            },
            None,
        ),
        Some(other) => (Format::Text, Some(other.to_owned())),
    };
    let mut fallback = None;
    let journald = match format {
        Format::Journald => match tracing_journald::layer() {
            Ok(layer) => Some(
                layer
                    .with_syslog_identifier(identifier.to_owned())
                    .with_field_prefix(None),
            ),
            Err(error) => {
                fallback = Some(format!(
                    "journald is not available ({error}); logging to stderr"
                ));
                None
            }
        },
        Format::Json | Format::Text => None,
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests, or a binary that set up logging itself) is not an error.
    let _ = match (journald, format) {
        (Some(layer), _) => registry.with(layer).try_init(),
        (None, Format::Json) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        (None, _) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            .try_init(),
    };
    if let Some(message) = fallback {
        tracing::warn!("{message}");
    }
    if let Some(other) = unknown {
        tracing::warn!(
            "LLMBASEDOS_LOG_FORMAT={other:?} is not one of journald, json, text; using text"
        );
    }
}
