//! The thin JSON-RPC layer: typed params → confined operations → results,
//! and the one mapping from [`FsError`] to [`HandlerError`] (semantic
//! search and its errors are in [`search`]). Each method is an async fn of
//! the server's state [`Fs`]; its params type takes the caps' defaults as
//! plain fields (server-kit fills them in) and enumerated params as enums.
//!
//! Every operation is blocking file I/O, so each runs on the blocking pool
//! through [`Context::blocking`]; walks get a [`Watch`] wired to the
//! request's progress token and cancellation. Heavy operations (walks,
//! content and semantic searches, copies, deletes, read_many) wait for
//! one of the [`Heavy`] slots first, so that a burst of them queues
//! instead of multiplying the server's memory and descriptors.

use std::sync::Arc;

use base64::Engine;
use proto::ErrorData;
use proto::ServiceCodes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use server_kit::{Context, HandlerError, ServerBuilder, State};

use crate::indexing::Semantic;
use crate::ops::read::{Encoding, ReadResult, Selection};
use crate::ops::walk::{ListOptions, SortKey};
use crate::ops::write::{Edit, WriteMode};
use crate::ops::{FsError, Root, Watch, grep, manage, read, walk, write};
use crate::uri;
use crate::vpath::VirtualPath;

pub mod complete;
pub mod search;
pub mod watch;

/// The fs service's error codes (DESIGN.md 4.1).
pub const CODES: ServiceCodes = ServiceCodes::new(proto::code::FS_BASE);
/// Offsets of the further codes documented in fs.cap.json.
const ALREADY_EXISTS: i32 = 4;
const TOO_LARGE: i32 = 5;
const NOT_EMPTY: i32 = 6;
pub(crate) const SEMANTIC_UNAVAILABLE: i32 = 7;

/// The one place a file-operation error becomes a handler error: its kind
/// and hint go into the wire error's `data` ([`ErrorData`]), and the
/// message gets the hint in method names for classic callers (an MCP
/// host's gateway renders it in tool names instead, from `data`).
pub fn handler_error(error: FsError) -> HandlerError {
    let hint = error.hint();
    let data = ErrorData {
        kind: error.kind().to_owned(),
        hint: hint.clone(),
    };
    let mut message = error.to_string();
    if let Some(hint) = &hint {
        message = hint.classic_message(&message);
    }
    let handler = match error.unhinted() {
        FsError::NotFound { .. } | FsError::MissingParent { .. } => HandlerError::NotFound(message),
        FsError::Denied { .. } => HandlerError::PermissionDenied(message),
        FsError::InvalidPath { .. } | FsError::InvalidValue(_) => {
            HandlerError::InvalidValue(message)
        }
        FsError::AlreadyExists { .. } => service(ALREADY_EXISTS, message),
        FsError::TooLarge { .. } => service(TOO_LARGE, message),
        FsError::NotEmpty { .. } => service(NOT_EMPTY, message),
        FsError::TooDeep { .. } => HandlerError::InvalidValue(message),
        FsError::Cancelled | FsError::NoSpace { .. } | FsError::PartlyAppended { .. } => {
            HandlerError::Failed(message)
        }
        FsError::Io { source, .. } => {
            tracing::warn!(error = %source, "{message}");
            HandlerError::Failed(message)
        }
        FsError::Hinted { .. } => unreachable!("unhinted returns no hinted error"),
    };
    handler.with_data(&data)
}

/// What every fs handler shares: the root, its semantic index, and the
/// slots of heavy operations and of watches. The server's state
/// ([`ServerBuilder::with_state`]): each handler receives it as
/// [`State<Fs>`].
#[derive(Debug)]
pub struct Fs {
    root: Arc<Root>,
    semantic: Arc<Semantic>,
    heavy: Heavy,
    /// Files watched at once (`mcp.fs.watch_resource`).
    watches: Arc<tokio::sync::Semaphore>,
}

impl Fs {
    /// The state of a server on `root`; at most `max_heavy_operations`
    /// walks, searches and copies run at once.
    pub fn new(root: Arc<Root>, semantic: Arc<Semantic>, max_heavy_operations: usize) -> Fs {
        Fs {
            root,
            semantic,
            heavy: Heavy::new(max_heavy_operations),
            watches: Arc::new(tokio::sync::Semaphore::new(watch::MAX_WATCHES)),
        }
    }
}

/// The slots of heavy operations: at most this many run at once, the rest
/// wait for a slot in the order they came (none is refused).
#[derive(Clone, Debug)]
struct Heavy(Arc<tokio::sync::Semaphore>);

impl Heavy {
    fn new(slots: usize) -> Heavy {
        Heavy(Arc::new(tokio::sync::Semaphore::new(slots.max(1))))
    }
}

/// Whether blocking work waits for one of the [`Heavy`] slots first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Heavy,
    Free,
}

/// Runs `work` on the blocking pool with the server's state, once a heavy
/// slot is free if it takes one. The slot is held until the work ends,
/// even if the request is cancelled meanwhile (blocking work cannot be
/// dropped, only asked to stop).
async fn blocking<T, F>(
    context: &Context,
    fs: State<Fs>,
    slot: Slot,
    work: F,
) -> Result<T, HandlerError>
where
    F: FnOnce(&Fs) -> T + Send + 'static,
    T: Send + 'static,
{
    let held = match slot {
        Slot::Heavy => Some(
            fs.heavy
                .0
                .clone()
                .acquire_owned()
                .await
                .map_err(HandlerError::internal)?,
        ),
        Slot::Free => None,
    };
    context
        .blocking(move || {
            let _held = held;
            work(&fs)
        })
        .await
}

/// Runs a heavy confined operation on the blocking pool, in a heavy slot.
async fn run_heavy<T, F>(context: &Context, fs: State<Fs>, work: F) -> Result<T, HandlerError>
where
    F: FnOnce(&Fs) -> Result<T, FsError> + Send + 'static,
    T: Send + 'static,
{
    blocking(context, fs, Slot::Heavy, work)
        .await?
        .map_err(handler_error)
}

fn service(offset: i32, message: String) -> HandlerError {
    HandlerError::Service {
        offset,
        message,
        data: None,
    }
}

/// The wire code of an error, for per-item errors inside a result
/// (read_many). Follows [`handler_error`].
fn code_of(error: &FsError) -> i32 {
    match error.unhinted() {
        FsError::NotFound { .. } | FsError::MissingParent { .. } => CODES.not_found(),
        FsError::Denied { .. } => CODES.permission_denied(),
        FsError::InvalidPath { .. } | FsError::InvalidValue(_) | FsError::TooDeep { .. } => {
            CODES.invalid_value()
        }
        FsError::AlreadyExists { .. } => CODES.custom(ALREADY_EXISTS),
        FsError::TooLarge { .. } => CODES.custom(TOO_LARGE),
        FsError::NotEmpty { .. } => CODES.custom(NOT_EMPTY),
        FsError::Cancelled
        | FsError::NoSpace { .. }
        | FsError::PartlyAppended { .. }
        | FsError::Io { .. } => CODES.failed(),
        FsError::Hinted { .. } => unreachable!("unhinted returns no hinted error"),
    }
}

fn path(text: &str) -> Result<VirtualPath, HandlerError> {
    crate::ops::parse_path(text).map_err(handler_error)
}

fn optional_path(text: Option<&str>) -> Result<VirtualPath, HandlerError> {
    text.map_or_else(|| Ok(VirtualPath::root()), path)
}

/// Runs a confined operation on the blocking pool.
async fn run<T, F>(context: &Context, fs: State<Fs>, work: F) -> Result<T, HandlerError>
where
    F: FnOnce(&Fs) -> Result<T, FsError> + Send + 'static,
    T: Send + 'static,
{
    blocking(context, fs, Slot::Free, work)
        .await?
        .map_err(handler_error)
}

/// Runs a short confined operation on one file in place (see
/// [`Context::blocking_in_place`]): no thread hand-off on the way back.
fn run_in_place<T>(
    context: &Context,
    work: impl FnOnce() -> Result<T, FsError>,
) -> Result<T, HandlerError> {
    context.blocking_in_place(work).map_err(handler_error)
}

/// Progress and cancellation of this request, for walks.
fn watch(context: &Context) -> Watch {
    let token = context.cancellation_token();
    let progress = context.progress_handle();
    Watch::new(
        move || token.is_cancelled(),
        move |count, what| {
            let message = format!("{what}: {count} entries so far");
            #[allow(clippy::cast_precision_loss)]
            progress.report_blocking(count as f64, None, Some(&message));
        },
    )
}

// The params of each method. A param with a `default` in fs.cap.json is a
// plain field: server-kit fills the default in before these are
// deserialized, so the caps file is the one place it is written (the
// `defaults_live_in_the_caps_file` test checks every method). An `Option`
// is a param whose absence means something the schema cannot say.

#[derive(Deserialize)]
struct ListParams {
    /// Absent: the root.
    path: Option<String>,
    recursive: bool,
    /// Absent: 1, or [`RECURSIVE_DEPTH`] with `recursive`.
    depth: Option<usize>,
    sort: SortKey,
    descending: bool,
    cursor: Option<String>,
    limit: usize,
}

/// How deep a recursive listing goes when no depth is given (fs.cap.json's
/// description of `recursive` says so; a schema cannot make one param's
/// default depend on another's value).
const RECURSIVE_DEPTH: usize = 10;

#[derive(Deserialize)]
struct ReadParams {
    path: String,
    encoding: Encoding,
    offset: Option<u64>,
    length: Option<u64>,
    head: Option<usize>,
    tail: Option<usize>,
}

#[derive(Deserialize)]
struct ReadManyParams {
    paths: Vec<String>,
    encoding: Encoding,
}

#[derive(Serialize)]
struct ReadManyItem {
    path: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ReadResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ItemError>,
}

#[derive(Serialize)]
struct ItemError {
    code: i32,
    message: String,
}

#[derive(Serialize)]
struct ReadManyResult {
    results: Vec<ReadManyItem>,
}

/// How a write's `content` is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ContentEncoding {
    Text,
    Base64,
}

#[derive(Deserialize)]
struct WriteParams {
    path: String,
    content: String,
    encoding: ContentEncoding,
    mode: WriteMode,
    create_parents: bool,
}

#[derive(Deserialize)]
struct EditItem {
    old_text: String,
    new_text: String,
    replace_all: bool,
}

#[derive(Deserialize)]
struct EditParams {
    path: String,
    edits: Vec<EditItem>,
    dry_run: bool,
}

#[derive(Deserialize)]
struct MkdirParams {
    path: String,
    parents: bool,
}

#[derive(Deserialize)]
struct MoveParams {
    from: String,
    to: String,
    overwrite: bool,
}

#[derive(Deserialize)]
struct CopyParams {
    from: String,
    to: String,
    recursive: bool,
    overwrite: bool,
}

#[derive(Deserialize)]
struct DeleteParams {
    path: String,
    recursive: bool,
}

#[derive(Deserialize)]
struct PathParams {
    path: String,
}

#[derive(Deserialize)]
struct CursorParams {
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct UriParams {
    uri: String,
}

#[derive(Deserialize)]
struct TreeParams {
    path: Option<String>,
    depth: usize,
    exclude: Vec<String>,
}

#[derive(Deserialize)]
struct GlobParams {
    pattern: String,
    path: Option<String>,
    max_results: usize,
}

#[derive(Deserialize)]
struct GrepParams {
    pattern: String,
    path: Option<String>,
    case_insensitive: bool,
    fixed_strings: bool,
    /// Glob patterns, an array like every list of globs of the service
    /// (`mcp.fs.tree`'s exclude): one shape for one kind of value.
    include: Vec<String>,
    ignore_files: bool,
    max_results: usize,
}

fn selection(params: &ReadParams) -> Result<Selection, HandlerError> {
    let ranged = params.offset.is_some() || params.length.is_some();
    match (ranged, params.head, params.tail) {
        (false, None, None) => Ok(Selection::Whole),
        (true, None, None) => Ok(Selection::Range {
            offset: params.offset.unwrap_or(0),
            length: params.length,
        }),
        (false, Some(lines), None) => Ok(Selection::Head(lines)),
        (false, None, Some(lines)) => Ok(Selection::Tail(lines)),
        _ => Err(HandlerError::InvalidValue(
            "give at most one of offset/length, head and tail".to_owned(),
        )),
    }
}

/// Registers every fs method on `builder`.
pub fn register(builder: ServerBuilder<Fs>) -> ServerBuilder<Fs> {
    let builder = complete::register(search::register(watch::register(builder)));
    builder
        .method("mcp.fs.list", list)
        .method("mcp.fs.read", read)
        .method("mcp.fs.read_many", read_many)
        .method("mcp.fs.write", write)
        .method("mcp.fs.edit", edit)
        .method("mcp.fs.mkdir", mkdir)
        .method("mcp.fs.move", rename)
        .method("mcp.fs.copy", copy)
        .method("mcp.fs.delete", delete)
        .method("mcp.fs.stat", stat)
        .method("mcp.fs.tree", tree)
        .method("mcp.fs.glob", glob)
        .method("mcp.fs.grep", grep)
        .method("mcp.fs.resources_list", resources_list)
        .method("mcp.fs.resource_read", resource_read)
}

async fn list(
    context: Context,
    fs: State<Fs>,
    params: ListParams,
) -> Result<walk::ListResult, HandlerError> {
    let path = optional_path(params.path.as_deref())?;
    let default_depth = if params.recursive { RECURSIVE_DEPTH } else { 1 };
    let options = ListOptions {
        depth: params.depth.unwrap_or(default_depth),
        sort: params.sort,
        descending: params.descending,
        cursor: params.cursor,
        limit: params.limit,
        files_only: false,
    };
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        walk::list(&fs.root, &path, &options, &watch)
    })
    .await
}

async fn read(
    context: Context,
    fs: State<Fs>,
    params: ReadParams,
) -> Result<ReadAnswer, HandlerError> {
    let path = path(&params.path)?;
    let selection = selection(&params)?;
    let requested = params.encoding;
    let blocks = context
        .meta()
        .is_some_and(|meta| meta.contains_key(proto::mcp::meta_key::CONTENT_BLOCKS));
    // A small file is read right here; a large one after the worker's
    // other tasks moved to another thread.
    let open = read::open(&fs.root, &path).map_err(handler_error)?;
    let result = if open.size() <= read::INLINE_READ_BYTES {
        open.read(&fs.root, requested, selection)
            .map_err(handler_error)?
    } else {
        run_in_place(&context, || open.read(&fs.root, requested, selection))?
    };
    Ok(if blocks {
        with_media_content(result, requested)
    } else {
        ReadAnswer::Plain(result)
    })
}

async fn read_many(
    context: Context,
    fs: State<Fs>,
    params: ReadManyParams,
) -> Result<ReadManyResult, HandlerError> {
    let encoding = params.encoding;
    let results = blocking(&context, fs, Slot::Heavy, move |fs| {
        read_each(&fs.root, &params.paths, encoding)
    })
    .await?;
    Ok(ReadManyResult { results })
}

async fn write(
    context: Context,
    fs: State<Fs>,
    params: WriteParams,
) -> Result<write::WriteResult, HandlerError> {
    let path = path(&params.path)?;
    let content = match params.encoding {
        ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(params.content.as_bytes())
            .map_err(|error| {
                HandlerError::InvalidValue(format!(
                    "content is not valid base64 ({error}); send standard base64, or text with encoding \"text\""
                ))
            })?,
        ContentEncoding::Text => params.content.into_bytes(),
    };
    let mode = params.mode;
    let create_parents = params.create_parents;
    run(&context, fs, move |fs| {
        write::write(&fs.root, &path, &content, mode, create_parents)
    })
    .await
}

async fn edit(
    context: Context,
    fs: State<Fs>,
    params: EditParams,
) -> Result<write::EditResult, HandlerError> {
    let path = path(&params.path)?;
    let edits: Vec<Edit> = params
        .edits
        .into_iter()
        .map(|edit| Edit {
            old_text: edit.old_text,
            new_text: edit.new_text,
            replace_all: edit.replace_all,
        })
        .collect();
    let dry_run = params.dry_run;
    run(&context, fs, move |fs| {
        write::edit(&fs.root, &path, &edits, dry_run)
    })
    .await
}

async fn mkdir(
    context: Context,
    fs: State<Fs>,
    params: MkdirParams,
) -> Result<manage::MkdirResult, HandlerError> {
    let path = path(&params.path)?;
    run(&context, fs, move |fs| {
        manage::mkdir(&fs.root, &path, params.parents)
    })
    .await
}

async fn rename(
    context: Context,
    fs: State<Fs>,
    params: MoveParams,
) -> Result<manage::MoveResult, HandlerError> {
    let from = path(&params.from)?;
    let to = path(&params.to)?;
    run(&context, fs, move |fs| {
        manage::rename(&fs.root, &from, &to, params.overwrite)
    })
    .await
}

async fn copy(
    context: Context,
    fs: State<Fs>,
    params: CopyParams,
) -> Result<manage::CopyResult, HandlerError> {
    let from = path(&params.from)?;
    let to = path(&params.to)?;
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        manage::copy(
            &fs.root,
            &from,
            &to,
            params.recursive,
            params.overwrite,
            &watch,
        )
    })
    .await
}

async fn delete(
    context: Context,
    fs: State<Fs>,
    params: DeleteParams,
) -> Result<manage::DeleteResult, HandlerError> {
    let path = path(&params.path)?;
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        manage::delete(&fs.root, &path, params.recursive, &watch)
    })
    .await
}

async fn stat(
    context: Context,
    fs: State<Fs>,
    params: PathParams,
) -> Result<manage::StatResult, HandlerError> {
    let path = path(&params.path)?;
    run_in_place(&context, || manage::stat(&fs.root, &path))
}

async fn tree(
    context: Context,
    fs: State<Fs>,
    params: TreeParams,
) -> Result<walk::TreeResult, HandlerError> {
    let path = optional_path(params.path.as_deref())?;
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        walk::tree(&fs.root, &path, params.depth, &params.exclude, &watch)
    })
    .await
}

async fn glob(
    context: Context,
    fs: State<Fs>,
    params: GlobParams,
) -> Result<walk::GlobResult, HandlerError> {
    let path = optional_path(params.path.as_deref())?;
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        walk::glob(&fs.root, &path, &params.pattern, params.max_results, &watch)
    })
    .await
}

async fn grep(
    context: Context,
    fs: State<Fs>,
    params: GrepParams,
) -> Result<grep::GrepResult, HandlerError> {
    let path = optional_path(params.path.as_deref())?;
    let options = grep::GrepOptions {
        pattern: params.pattern,
        case_insensitive: params.case_insensitive,
        fixed_strings: params.fixed_strings,
        include: params.include,
        max_results: params.max_results,
        honour_ignore_files: params.ignore_files,
    };
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        grep::grep(&fs.root, &path, &options, &watch)
    })
    .await
}

async fn resources_list(
    context: Context,
    fs: State<Fs>,
    params: CursorParams,
) -> Result<Value, HandlerError> {
    let watch = watch(&context);
    run_heavy(&context, fs, move |fs| {
        resource_page(&fs.root, params.cursor, &watch)
    })
    .await
}

async fn resource_read(
    context: Context,
    fs: State<Fs>,
    params: UriParams,
) -> Result<Value, HandlerError> {
    let text = uri::to_path(&params.uri).map_err(HandlerError::InvalidValue)?;
    let path = path(&text)?;
    let result = run(&context, fs, move |fs| {
        read::read(&fs.root, &path, Encoding::Auto, Selection::Whole)
    })
    .await?;
    Ok(resource_contents(result))
}

/// Reads each file on its own; the combined size is bounded by the read
/// limit, so the answer always fits one message.
fn read_each(root: &Root, paths: &[String], encoding: Encoding) -> Vec<ReadManyItem> {
    let limit = root.policy().max_read_bytes;
    let mut total = 0_u64;
    paths
        .iter()
        .map(|text| {
            let outcome = crate::ops::parse_path(text).and_then(|path| {
                if total >= limit {
                    return Err(FsError::InvalidValue(format!(
                        "{path} was not read: the files before it already reached the {limit}-byte limit of one call; read it in another call"
                    )));
                }
                let result = read::read(root, &path, encoding, Selection::Whole)?;
                total += result.bytes;
                if total > limit {
                    return Err(FsError::InvalidValue(format!(
                        "{path} was not read: with it the call would pass the {limit}-byte limit; read it in another call"
                    )));
                }
                Ok(result)
            });
            match outcome {
                Ok(result) => ReadManyItem {
                    path: text.clone(),
                    ok: true,
                    result: Some(result),
                    error: None,
                },
                Err(error) => ReadManyItem {
                    path: text.clone(),
                    ok: false,
                    result: None,
                    error: Some(ItemError {
                        code: code_of(&error),
                        message: error.to_string(),
                    }),
                },
            }
        })
        .collect()
}

/// How deep `resources/list` walks; deeper files are reached through the
/// `file:///{+path}` template.
const RESOURCE_DEPTH: usize = 4;
/// Resources per `resources/list` page.
const RESOURCE_PAGE: usize = 200;

/// A read result for an MCP host (the gateway's `tools/call` says so with
/// `_meta` [`proto::mcp::meta_key::CONTENT_BLOCKS`]). An image or audio
/// file read with encoding `auto` travels as an MCP content block in
/// `_content` (the gateway hands it to the host as image/audio content)
/// instead of as base64 text in `content`, which a host would show the
/// model as text. Classic callers get `content` for every file.
fn with_media_content(result: ReadResult, requested: Encoding) -> ReadAnswer {
    let media_kind = if result.mime_type.starts_with("image/") {
        Some("image")
    } else if result.mime_type.starts_with("audio/") {
        Some("audio")
    } else {
        None
    };
    match (media_kind, requested, result.encoding) {
        (Some(kind), Encoding::Auto, "base64") => ReadAnswer::Media(MediaRead {
            path: result.path,
            encoding: result.encoding,
            mime_type: result.mime_type.clone(),
            size: result.size,
            offset: result.offset,
            bytes: result.bytes,
            truncated: result.truncated,
            content: [MediaBlock {
                kind,
                data: result.content,
                mime_type: result.mime_type,
            }],
        }),
        _ => ReadAnswer::Plain(result),
    }
}

/// What `mcp.fs.read` answers: the read, or for an MCP host reading an
/// image or audio file, the read with its bytes as a content block
/// (`_content`) instead of `content`.
#[derive(Serialize)]
#[serde(untagged)]
enum ReadAnswer {
    Plain(ReadResult),
    Media(MediaRead),
}

/// In the order of the names, as [`ReadResult`].
#[derive(Serialize)]
struct MediaRead {
    #[serde(rename = "_content")]
    content: [MediaBlock; 1],
    bytes: u64,
    encoding: &'static str,
    mime_type: String,
    offset: u64,
    path: String,
    size: u64,
    truncated: bool,
}

#[derive(Serialize)]
struct MediaBlock {
    #[serde(serialize_with = "proto::json::fast_str")]
    data: String,
    #[serde(rename = "mimeType")]
    mime_type: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A `resources/read` result for one file.
fn resource_contents(result: ReadResult) -> Value {
    let mut contents = Map::new();
    contents.insert("uri".to_owned(), json!(uri::from_path(&result.path)));
    contents.insert("mimeType".to_owned(), json!(result.mime_type));
    let key = if result.encoding == "text" {
        "text"
    } else {
        "blob"
    };
    contents.insert(key.to_owned(), json!(result.content));
    json!({ "contents": [contents] })
}

/// A `resources/list` page: the files beneath the root, down to
/// [`RESOURCE_DEPTH`] levels, by path.
fn resource_page(root: &Root, cursor: Option<String>, watch: &Watch) -> Result<Value, FsError> {
    let options = ListOptions {
        depth: RESOURCE_DEPTH,
        sort: SortKey::Name,
        descending: false,
        cursor,
        limit: RESOURCE_PAGE,
        files_only: true,
    };
    let listing = walk::list(root, &VirtualPath::root(), &options, watch)?;
    let resources: Vec<Value> = listing
        .entries
        .iter()
        .map(|entry| {
            let mime_type = mime_guess::from_path(&entry.name).first().map_or_else(
                || "application/octet-stream".to_owned(),
                |mime| mime.essence_str().to_owned(),
            );
            json!({
                "uri": uri::from_path(&entry.path),
                "name": entry.name,
                "title": entry.path,
                "mimeType": mime_type,
                "size": entry.size,
            })
        })
        .collect();
    let mut page = json!({ "resources": resources });
    if let Some(next) = listing.next_cursor {
        page["nextCursor"] = json!(next);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use server_kit::Defaults;

    use super::*;

    type Parse = fn(Value) -> Result<(), String>;

    fn parse<P: DeserializeOwned>(params: Value) -> Result<(), String> {
        serde_json::from_value::<P>(params)
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// Each method's params type, as registered.
    const PARAMS: &[(&str, Parse)] = &[
        ("mcp.fs.list", parse::<ListParams>),
        ("mcp.fs.read", parse::<ReadParams>),
        ("mcp.fs.read_many", parse::<ReadManyParams>),
        ("mcp.fs.write", parse::<WriteParams>),
        ("mcp.fs.edit", parse::<EditParams>),
        ("mcp.fs.mkdir", parse::<MkdirParams>),
        ("mcp.fs.move", parse::<MoveParams>),
        ("mcp.fs.copy", parse::<CopyParams>),
        ("mcp.fs.delete", parse::<DeleteParams>),
        ("mcp.fs.stat", parse::<PathParams>),
        ("mcp.fs.tree", parse::<TreeParams>),
        ("mcp.fs.glob", parse::<GlobParams>),
        ("mcp.fs.grep", parse::<GrepParams>),
        ("mcp.fs.resources_list", parse::<CursorParams>),
        ("mcp.fs.resource_read", parse::<UriParams>),
        ("mcp.fs.embed", parse::<search::EmbedParams>),
        ("mcp.fs.search", parse::<search::SearchParams>),
        ("mcp.fs.index_status", parse::<search::NoParams>),
        (
            "mcp.fs.resource_complete",
            parse::<complete::CompleteParams>,
        ),
        ("mcp.fs.watch_resource", parse::<UriParams>),
    ];

    /// A value `schema` accepts, with only the required properties of
    /// objects.
    fn sample(schema: &Value) -> Value {
        if let Some(first) = schema.get("enum").and_then(|values| values.get(0)) {
            return first.clone();
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("string") => json!("/a"),
            Some("integer") => json!(schema.get("minimum").and_then(Value::as_u64).unwrap_or(1)),
            Some("boolean") => json!(false),
            Some("array") => json!([sample(&schema["items"])]),
            Some("object") => {
                let mut object = Map::new();
                for name in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    object.insert(name.to_owned(), sample(&schema["properties"][name]));
                }
                Value::Object(object)
            }
            other => panic!("no sample for a schema of type {other:?}: {schema}"),
        }
    }

    fn caps() -> proto::CompiledCaps {
        proto::CompiledCaps::from_json(crate::CAPS, crate::CAPS_ORIGIN).expect("the caps compile")
    }

    #[test]
    fn defaults_live_in_the_caps_file() {
        let caps = caps();
        let mut declared: Vec<&str> = caps.method_names().collect();
        let mut listed: Vec<&str> = PARAMS.iter().map(|(name, _)| *name).collect();
        declared.sort_unstable();
        listed.sort_unstable();
        assert_eq!(declared, listed, "PARAMS lists every method of the caps");
        for (method, parse) in PARAMS {
            let compiled = caps.method(method).expect("declared");
            let schema = &compiled.spec.params_schema;
            let defaults = Defaults::of(schema);
            let mut params = sample(schema);
            defaults.apply(&mut params);
            // The defaults are values the schema accepts, and with them the
            // required params are all the code needs.
            assert!(
                compiled.params().expect("compiles").is_valid(&params),
                "{method}: {params}"
            );
            parse(params.clone()).unwrap_or_else(|error| {
                panic!("{method}: the params type needs more than the caps' defaults: {error}")
            });
            // And the code has no default of its own for a param the caps
            // give one: without it, the params do not parse.
            for name in defaults.names() {
                let mut without = params.clone();
                without.as_object_mut().expect("object").remove(name);
                assert!(
                    parse(without).is_err(),
                    "{method}: {name} has a default in the code as well as in the caps file"
                );
            }
        }
        // The nested default: an edit's replace_all.
        let schema = &caps
            .method("mcp.fs.edit")
            .expect("declared")
            .spec
            .params_schema;
        let mut params = sample(schema);
        assert!(
            parse::<EditParams>(params.clone()).is_err(),
            "replace_all has a code default"
        );
        Defaults::of(schema).apply(&mut params);
        assert_eq!(params["edits"][0]["replace_all"], json!(false));
        // The one default a schema cannot state (it depends on
        // `recursive`) is the code's, and the caps say what it is.
        let list = &caps
            .method("mcp.fs.list")
            .expect("declared")
            .spec
            .params_schema;
        for name in ["recursive", "depth"] {
            let description = list["properties"][name]["description"]
                .as_str()
                .expect("described");
            assert!(
                description.contains(&format!("default {RECURSIVE_DEPTH})"))
                    || description.contains(&format!("{RECURSIVE_DEPTH} with recursive")),
                "mcp.fs.list {name}: {description:?} does not state the depth {RECURSIVE_DEPTH}"
            );
        }
    }

    #[test]
    fn errors_quote_a_long_client_value_in_part() {
        let long = "x".repeat(100_000);
        let messages = [
            uri::to_path(&long).expect_err("not a file URI"),
            uri::to_path(&format!("file://{long}")).expect_err("names a host"),
            crate::ops::parse_path(&format!("/{long}\0"))
                .expect_err("a NUL")
                .to_string(),
        ];
        for message in messages {
            assert!(
                message.len() < 2 * proto::text::ECHO_LIMIT + 200,
                "{} bytes: {}",
                message.len(),
                &message[..200]
            );
        }
    }

    #[test]
    fn enumerated_params_are_the_caps_enums_and_nothing_else() {
        let caps = caps();
        let mut enums = 0;
        for (method, parse) in PARAMS {
            let schema = &caps.method(method).expect("declared").spec.params_schema;
            let mut params = sample(schema);
            Defaults::of(schema).apply(&mut params);
            for (name, property) in schema["properties"].as_object().expect("properties") {
                let Some(values) = property.get("enum").and_then(Value::as_array) else {
                    continue;
                };
                enums += 1;
                for value in values {
                    let mut each = params.clone();
                    each[name] = value.clone();
                    parse(each).unwrap_or_else(|error| {
                        panic!("{method} {name}: the caps' {value} does not parse: {error}")
                    });
                }
                // A value the caps do not list is refused by the code too
                // (no `_ =>` that quietly picks one).
                let mut unknown = params.clone();
                unknown[name] = json!("bogus");
                assert!(parse(unknown).is_err(), "{method} {name} takes any string");
            }
        }
        assert_eq!(enums, 5, "sort, encoding (read, read_many, write), mode");
    }
}
