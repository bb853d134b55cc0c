//! `mcp.fs.resource_complete`: completes the `path` of the `file:///{+path}`
//! template for the gateway's `completion/complete` (the caps' `resources`
//! section names it as `complete`). One directory level at a time: the value
//! up to its last `/` is the directory listed, the rest the prefix its
//! entries are matched against. Directories end in `/` so a host can go on.

use serde::{Deserialize, Serialize};
use server_kit::{Context, HandlerError, ServerBuilder, State};

use super::{Fs, run_heavy, watch};
use crate::ops::walk::{self, ListOptions, SortKey};
use crate::ops::{EntryType, FsError, Root};

/// The most suggestions in one answer (MCP's limit).
const MAX_VALUES: usize = 100;
/// The most entries of one directory looked at for one completion.
const MAX_SCANNED: usize = 10_000;

#[derive(Deserialize)]
pub(super) struct CompleteParams {
    argument: Argument,
}

#[derive(Deserialize)]
struct Argument {
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompleteResult {
    completion: Completion,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Completion {
    values: Vec<String>,
    total: u64,
    has_more: bool,
}

/// Registers `mcp.fs.resource_complete` on `builder`.
pub(super) fn register(builder: ServerBuilder<Fs>) -> ServerBuilder<Fs> {
    builder.method("mcp.fs.resource_complete", resource_complete)
}

async fn resource_complete(
    context: Context,
    fs: State<Fs>,
    params: CompleteParams,
) -> Result<CompleteResult, HandlerError> {
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        complete(&fs.root, &params.argument.value, &watch)
    })
    .await
}

fn complete(
    root: &Root,
    value: &str,
    watch: &crate::ops::Watch,
) -> Result<CompleteResult, FsError> {
    let (directory, prefix) = match value.rfind('/') {
        Some(slash) => value.split_at(slash + 1),
        None => ("", value),
    };
    let nothing = || CompleteResult {
        completion: Completion {
            values: Vec::new(),
            total: 0,
            has_more: false,
        },
    };
    // A path being typed is often not a directory (yet): no suggestions,
    // not an error.
    let Ok(path) = crate::ops::parse_path(&format!("/{}", directory.trim_start_matches('/')))
    else {
        return Ok(nothing());
    };
    let options = ListOptions {
        depth: 1,
        sort: SortKey::Name,
        descending: false,
        cursor: None,
        limit: MAX_SCANNED,
        files_only: false,
    };
    let listing = match walk::list(root, &path, &options, watch) {
        Ok(listing) => listing,
        Err(FsError::NotFound { .. } | FsError::Denied { .. } | FsError::InvalidPath { .. }) => {
            return Ok(nothing());
        }
        Err(error) => return Err(error),
    };
    // Hidden entries only when asked for by a leading dot.
    let hidden = prefix.starts_with('.');
    let matches: Vec<String> = listing
        .entries
        .iter()
        .filter(|entry| entry.name.starts_with(prefix) && (hidden || !entry.name.starts_with('.')))
        .map(|entry| {
            let slash = if entry.entry_type == EntryType::Directory {
                "/"
            } else {
                ""
            };
            format!("{directory}{}{slash}", entry.name)
        })
        .collect();
    let total = matches.len() as u64;
    let has_more = matches.len() > MAX_VALUES || listing.next_cursor.is_some() || listing.truncated;
    Ok(CompleteResult {
        completion: Completion {
            values: matches.into_iter().take(MAX_VALUES).collect(),
            total,
            has_more,
        },
    })
}
