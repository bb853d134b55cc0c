//! The thin JSON-RPC layer: typed params → confined operations → results,
//! and the one mapping from [`FsError`] to [`HandlerError`].
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
use semantic::SemanticError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use server_kit::{Context, HandlerError, ServerBuilder};

use crate::indexing::{IndexingError, Semantic};
use crate::ops::read::{Encoding, ReadResult, Selection};
use crate::ops::walk::{ListOptions, SortKey, WALK_LIMIT};
use crate::ops::write::{Edit, WriteMode};
use crate::ops::{EntryType, FsError, Root, Watch, grep, manage, read, walk, write};
use crate::uri;
use crate::vpath::VirtualPath;

pub mod complete;
pub mod watch;

/// The fs service's error codes (DESIGN.md 4.1).
pub const CODES: ServiceCodes = ServiceCodes::new(proto::code::FS_BASE);
/// Offsets of the further codes documented in fs.cap.json.
const ALREADY_EXISTS: i32 = 4;
const TOO_LARGE: i32 = 5;
const NOT_EMPTY: i32 = 6;
const SEMANTIC_UNAVAILABLE: i32 = 7;

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

/// The one place a semantic-search error becomes a handler error.
pub fn semantic_error(error: SemanticError) -> HandlerError {
    let message = error.to_string();
    match error {
        SemanticError::RuntimeMissing { .. }
        | SemanticError::ModelMissing { .. }
        | SemanticError::ModelInvalid { .. } => service(SEMANTIC_UNAVAILABLE, message),
        SemanticError::InvalidValue(_) => HandlerError::InvalidValue(message),
        SemanticError::SourceMissing { path } => handler_error(FsError::NotFound { path }),
        SemanticError::Source { .. } => HandlerError::InvalidValue(message),
        SemanticError::Cancelled => HandlerError::Failed("the operation was cancelled".to_owned()),
        SemanticError::Index { .. } => {
            tracing::warn!("{message}");
            HandlerError::Failed(format!(
                "{message}; check index_dir in fs.yaml (or LLMBASEDOS_FS_INDEX_DIR)"
            ))
        }
        SemanticError::Inference(_) => {
            tracing::warn!("{message}");
            HandlerError::Failed(message)
        }
    }
}

/// The slots of heavy operations: at most this many run at once, the rest
/// wait for a slot in the order they came (none is refused).
#[derive(Clone, Debug)]
pub struct Heavy(Arc<tokio::sync::Semaphore>);

impl Heavy {
    pub fn new(slots: usize) -> Heavy {
        Heavy(Arc::new(tokio::sync::Semaphore::new(slots.max(1))))
    }

    /// Runs `work` on the blocking pool once a slot is free. The slot is
    /// held until the work ends, even if the request is cancelled meanwhile
    /// (blocking work cannot be dropped, only asked to stop).
    async fn run<T, F>(&self, context: &Context, work: F) -> Result<T, HandlerError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = self
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(HandlerError::internal)?;
        context
            .blocking(move || {
                let _slot = slot;
                work()
            })
            .await
    }
}

/// The one place an error of the root's index becomes a handler error.
pub fn indexing_error(error: IndexingError) -> HandlerError {
    match error {
        IndexingError::Semantic(error) => semantic_error(error),
        IndexingError::Path(error) => handler_error(error),
        IndexingError::Owner(error) => {
            let message = error.to_string();
            tracing::warn!("{message}");
            HandlerError::Failed(message)
        }
    }
}

/// Runs semantic work on the blocking pool, in a heavy slot if given.
///
/// An embed takes no slot: embeds run one at a time anyway (the index's
/// writer lock), each bounds its own memory (files up to the read limit,
/// batches of chunks), and one can last hours on a large root: holding a
/// slot, it (and a second embed waiting for the lock) would keep every
/// grep and glob waiting that long.
async fn run_semantic<T, F>(
    heavy: Option<&Heavy>,
    context: &Context,
    work: F,
) -> Result<T, HandlerError>
where
    F: FnOnce() -> Result<T, IndexingError> + Send + 'static,
    T: Send + 'static,
{
    let outcome = match heavy {
        Some(heavy) => heavy.run(context, work).await?,
        None => context.blocking(work).await?,
    };
    outcome.map_err(indexing_error)
}

/// Runs a heavy confined operation on the blocking pool, in a heavy slot.
async fn run_heavy<T, F>(heavy: &Heavy, context: &Context, work: F) -> Result<T, HandlerError>
where
    F: FnOnce() -> Result<T, FsError> + Send + 'static,
    T: Send + 'static,
{
    heavy.run(context, work).await?.map_err(handler_error)
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
async fn run<T, F>(context: &Context, work: F) -> Result<T, HandlerError>
where
    F: FnOnce() -> Result<T, FsError> + Send + 'static,
    T: Send + 'static,
{
    context.blocking(work).await?.map_err(handler_error)
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

#[derive(Deserialize)]
struct ListParams {
    path: Option<String>,
    #[serde(default)]
    recursive: bool,
    depth: Option<usize>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    descending: bool,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct ReadParams {
    path: String,
    encoding: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
    head: Option<usize>,
    tail: Option<usize>,
}

#[derive(Deserialize)]
struct ReadManyParams {
    paths: Vec<String>,
    encoding: Option<String>,
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

#[derive(Deserialize)]
struct WriteParams {
    path: String,
    content: String,
    encoding: Option<String>,
    mode: Option<String>,
    #[serde(default)]
    create_parents: bool,
}

#[derive(Deserialize)]
struct EditItem {
    old_text: String,
    new_text: String,
    #[serde(default)]
    replace_all: bool,
}

#[derive(Deserialize)]
struct EditParams {
    path: String,
    edits: Vec<EditItem>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct MkdirParams {
    path: String,
    #[serde(default)]
    parents: bool,
}

#[derive(Deserialize)]
struct MoveParams {
    from: String,
    to: String,
    #[serde(default)]
    overwrite: bool,
}

#[derive(Deserialize)]
struct CopyParams {
    from: String,
    to: String,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    overwrite: bool,
}

#[derive(Deserialize)]
struct DeleteParams {
    path: String,
    #[serde(default)]
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
    depth: Option<usize>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
struct GlobParams {
    pattern: String,
    path: Option<String>,
    max_results: Option<usize>,
}

#[derive(Deserialize)]
struct GrepParams {
    pattern: String,
    path: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
    #[serde(default)]
    fixed_strings: bool,
    /// Glob patterns, an array like every list of globs of the service
    /// (`mcp.fs.tree`'s exclude): one shape for one kind of value.
    #[serde(default)]
    include: Vec<String>,
    ignore_files: Option<bool>,
    max_results: Option<usize>,
}

#[derive(Deserialize)]
struct EmbedParams {
    path: Option<String>,
    recursive: Option<bool>,
}

#[derive(Deserialize)]
struct SearchParams {
    query: String,
    top_k: Option<usize>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct NoParams {}

/// Results of a search unless the caller says otherwise.
const DEFAULT_TOP_K: usize = 10;

fn encoding(name: Option<&str>) -> Encoding {
    match name {
        Some("text") => Encoding::Text,
        Some("base64") => Encoding::Base64,
        _ => Encoding::Auto,
    }
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
pub fn register(
    builder: ServerBuilder,
    root: Arc<Root>,
    semantic: Arc<Semantic>,
    heavy: Heavy,
) -> ServerBuilder {
    let builder = register_semantic(builder, semantic, heavy.clone());
    let heavy_list = heavy.clone();
    let heavy_read_many = heavy.clone();
    let heavy_copy = heavy.clone();
    let heavy_delete = heavy.clone();
    let heavy_tree = heavy.clone();
    let heavy_glob = heavy.clone();
    let heavy_resources = heavy.clone();
    let for_list = root.clone();
    let for_read = root.clone();
    let for_read_many = root.clone();
    let for_write = root.clone();
    let for_edit = root.clone();
    let for_mkdir = root.clone();
    let for_move = root.clone();
    let for_copy = root.clone();
    let for_delete = root.clone();
    let for_stat = root.clone();
    let for_tree = root.clone();
    let for_glob = root.clone();
    let for_resources = root.clone();
    let for_resource = root.clone();
    builder
        .method("mcp.fs.list", move |context: Context, params: ListParams| {
            let root = for_list.clone();
            let heavy_list = heavy_list.clone();
            async move {
                let path = optional_path(params.path.as_deref())?;
                let default_depth = if params.recursive { 10 } else { 1 };
                let options = walk::ListOptions {
                    depth: params.depth.unwrap_or(default_depth),
                    sort: match params.sort.as_deref() {
                        Some("size") => SortKey::Size,
                        Some("modified") => SortKey::Modified,
                        _ => SortKey::Name,
                    },
                    descending: params.descending,
                    cursor: params.cursor,
                    limit: params.limit.unwrap_or(1000),
                };
                let watch = watch(&context);
                run_heavy(&heavy_list, &context, move || {
                    walk::list(&root, &path, &options, &watch)
                })
                .await
            }
        })
        .method("mcp.fs.read", move |context: Context, params: ReadParams| {
            let root = for_read.clone();
            async move {
                let path = path(&params.path)?;
                let selection = selection(&params)?;
                let requested = encoding(params.encoding.as_deref());
                let blocks = context
                    .meta()
                    .is_some_and(|meta| meta.contains_key(proto::mcp::meta_key::CONTENT_BLOCKS));
                let result =
                    run_in_place(&context, move || read::read(&root, &path, requested, selection))?;
                Ok(if blocks {
                    with_media_content(result, requested)
                } else {
                    serde_json::to_value(&result).unwrap_or(Value::Null)
                })
            }
        })
        .method(
            "mcp.fs.read_many",
            move |context: Context, params: ReadManyParams| {
                let root = for_read_many.clone();
                let heavy_read_many = heavy_read_many.clone();
                async move {
                    let encoding = encoding(params.encoding.as_deref());
                    let results = heavy_read_many
                        .run(&context, move || read_many(&root, &params.paths, encoding))
                        .await?;
                    Ok(ReadManyResult { results })
                }
            },
        )
        .method("mcp.fs.write", move |context: Context, params: WriteParams| {
            let root = for_write.clone();
            async move {
                let path = path(&params.path)?;
                let content = match params.encoding.as_deref() {
                    Some("base64") => base64::engine::general_purpose::STANDARD
                        .decode(params.content.as_bytes())
                        .map_err(|error| {
                            HandlerError::InvalidValue(format!(
                                "content is not valid base64 ({error}); send standard base64, or text with encoding \"text\""
                            ))
                        })?,
                    _ => params.content.into_bytes(),
                };
                let mode = match params.mode.as_deref() {
                    Some("create") => WriteMode::Create,
                    Some("append") => WriteMode::Append,
                    _ => WriteMode::Overwrite,
                };
                let create_parents = params.create_parents;
                run(&context, move || {
                    write::write(&root, &path, &content, mode, create_parents)
                })
                .await
            }
        })
        .method("mcp.fs.edit", move |context: Context, params: EditParams| {
            let root = for_edit.clone();
            async move {
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
                run(&context, move || write::edit(&root, &path, &edits, dry_run)).await
            }
        })
        .method("mcp.fs.mkdir", move |context: Context, params: MkdirParams| {
            let root = for_mkdir.clone();
            async move {
                let path = path(&params.path)?;
                run(&context, move || manage::mkdir(&root, &path, params.parents)).await
            }
        })
        .method("mcp.fs.move", move |context: Context, params: MoveParams| {
            let root = for_move.clone();
            async move {
                let from = path(&params.from)?;
                let to = path(&params.to)?;
                run(&context, move || {
                    manage::rename(&root, &from, &to, params.overwrite)
                })
                .await
            }
        })
        .method("mcp.fs.copy", move |context: Context, params: CopyParams| {
            let root = for_copy.clone();
            let heavy_copy = heavy_copy.clone();
            async move {
                let from = path(&params.from)?;
                let to = path(&params.to)?;
                let watch = watch(&context);
                run_heavy(&heavy_copy, &context, move || {
                    manage::copy(
                        &root,
                        &from,
                        &to,
                        params.recursive,
                        params.overwrite,
                        &watch,
                    )
                })
                .await
            }
        })
        .method(
            "mcp.fs.delete",
            move |context: Context, params: DeleteParams| {
                let root = for_delete.clone();
                let heavy_delete = heavy_delete.clone();
                async move {
                    let path = path(&params.path)?;
                    let watch = watch(&context);
                    run_heavy(&heavy_delete, &context, move || {
                        manage::delete(&root, &path, params.recursive, &watch)
                    })
                    .await
                }
            },
        )
        .method("mcp.fs.stat", move |context: Context, params: PathParams| {
            let root = for_stat.clone();
            async move {
                let path = path(&params.path)?;
                run_in_place(&context, move || manage::stat(&root, &path))
            }
        })
        .method("mcp.fs.tree", move |context: Context, params: TreeParams| {
            let root = for_tree.clone();
            let heavy_tree = heavy_tree.clone();
            async move {
                let path = optional_path(params.path.as_deref())?;
                let depth = params.depth.unwrap_or(3);
                let watch = watch(&context);
                run_heavy(&heavy_tree, &context, move || {
                    walk::tree(&root, &path, depth, &params.exclude, &watch)
                })
                .await
            }
        })
        .method("mcp.fs.glob", move |context: Context, params: GlobParams| {
            let root = for_glob.clone();
            let heavy_glob = heavy_glob.clone();
            async move {
                let path = optional_path(params.path.as_deref())?;
                let max_results = params.max_results.unwrap_or(1000);
                let watch = watch(&context);
                run_heavy(&heavy_glob, &context, move || {
                    walk::glob(&root, &path, &params.pattern, max_results, &watch)
                })
                .await
            }
        })
        .method(
            "mcp.fs.resources_list",
            move |context: Context, params: CursorParams| {
                let root = for_resources.clone();
                let heavy_resources = heavy_resources.clone();
                async move {
                    let watch = watch(&context);
                    run_heavy(&heavy_resources, &context, move || {
                        resources_list(&root, params.cursor, &watch)
                    })
                    .await
                }
            },
        )
        .method(
            "mcp.fs.resource_read",
            move |context: Context, params: UriParams| {
                let root = for_resource.clone();
                async move {
                    let text = uri::to_path(&params.uri).map_err(HandlerError::InvalidValue)?;
                    let path = path(&text)?;
                    let result = run(&context, move || {
                        read::read(&root, &path, Encoding::Auto, Selection::Whole)
                    })
                    .await?;
                    Ok(resource_contents(result))
                }
            },
        )
        .method("mcp.fs.grep", move |context: Context, params: GrepParams| {
            let root = root.clone();
            let heavy = heavy.clone();
            async move {
                let path = optional_path(params.path.as_deref())?;
                let options = grep::GrepOptions {
                    pattern: params.pattern,
                    case_insensitive: params.case_insensitive,
                    fixed_strings: params.fixed_strings,
                    include: params.include,
                    max_results: params.max_results.unwrap_or(200),
                    honour_ignore_files: params.ignore_files.unwrap_or(true),
                };
                let watch = watch(&context);
                run_heavy(&heavy, &context, move || {
                    grep::grep(&root, &path, &options, &watch)
                })
                .await
            }
        })
}

/// Progress of an embed job: at most a few reports a second, and the last.
fn embed_progress(context: &Context) -> impl FnMut(&semantic::Progress<'_>) + Send + 'static {
    let progress = context.progress_handle();
    let mut last = std::time::Instant::now();
    let mut first = true;
    move |state: &semantic::Progress<'_>| {
        let finished = state.files_done == state.files_total;
        if !progress.is_requested()
            || !(first || finished || last.elapsed() >= std::time::Duration::from_millis(250))
        {
            return;
        }
        first = false;
        last = std::time::Instant::now();
        let message = format!(
            "{} of {} files, {} chunks embedded; {}",
            state.files_done, state.files_total, state.chunks_embedded, state.path
        );
        #[allow(clippy::cast_precision_loss)]
        progress.report_blocking(
            state.files_done as f64,
            Some(state.files_total as f64),
            Some(&message),
        );
    }
}

fn register_semantic(
    builder: ServerBuilder,
    semantic: Arc<Semantic>,
    heavy: Heavy,
) -> ServerBuilder {
    let for_embed = semantic.clone();
    let for_search = semantic.clone();
    builder
        .method(
            "mcp.fs.embed",
            move |context: Context, params: EmbedParams| {
                let semantic = for_embed.clone();
                async move {
                    let path = optional_path(params.path.as_deref())?;
                    let recursive = params.recursive.unwrap_or(true);
                    let token = context.cancellation_token();
                    let mut progress = embed_progress(&context);
                    run_semantic(None, &context, move || {
                        semantic.embed(&path, recursive, &mut progress, &|| token.is_cancelled())
                    })
                    .await
                }
            },
        )
        .method(
            "mcp.fs.search",
            move |context: Context, params: SearchParams| {
                let semantic = for_search.clone();
                let heavy = heavy.clone();
                async move {
                    let scope = params.scope.as_deref().map(path).transpose()?;
                    let top_k = params.top_k.unwrap_or(DEFAULT_TOP_K);
                    if params.query.trim().is_empty() {
                        return Err(HandlerError::InvalidValue(
                            "query is empty; say in words what you are looking for".to_owned(),
                        ));
                    }
                    run_semantic(Some(&heavy), &context, move || {
                        semantic.search(&params.query, top_k, scope.as_ref())
                    })
                    .await
                }
            },
        )
        .method(
            "mcp.fs.index_status",
            move |context: Context, _params: NoParams| {
                let semantic = semantic.clone();
                async move { run_semantic(None, &context, move || semantic.status()).await }
            },
        )
}

/// Reads each file on its own; the combined size is bounded by the read
/// limit, so the answer always fits one message.
fn read_many(root: &Root, paths: &[String], encoding: Encoding) -> Vec<ReadManyItem> {
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
fn with_media_content(result: ReadResult, requested: Encoding) -> Value {
    let media_kind = if result.mime_type.starts_with("image/") {
        Some("image")
    } else if result.mime_type.starts_with("audio/") {
        Some("audio")
    } else {
        None
    };
    let mut value = serde_json::to_value(&result).unwrap_or(Value::Null);
    if let (Some(kind), Encoding::Auto, "base64", Value::Object(object)) =
        (media_kind, requested, result.encoding, &mut value)
    {
        object.remove("content");
        object.insert(
            "_content".to_owned(),
            json!([{ "type": kind, "data": result.content, "mimeType": result.mime_type }]),
        );
    }
    value
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
fn resources_list(root: &Root, cursor: Option<String>, watch: &Watch) -> Result<Value, FsError> {
    let start = match cursor.as_deref() {
        None => 0,
        Some(cursor) => cursor.parse::<usize>().map_err(|_| {
            FsError::InvalidValue(format!(
                "cursor {cursor:?} is not one this server gave; pass the nextCursor of the previous page"
            ))
        })?,
    };
    let options = ListOptions {
        depth: RESOURCE_DEPTH,
        sort: SortKey::Name,
        descending: false,
        cursor: None,
        limit: WALK_LIMIT,
    };
    let listing = walk::list(root, &VirtualPath::root(), &options, watch)?;
    let files: Vec<_> = listing
        .entries
        .into_iter()
        .filter(|entry| entry.entry_type == EntryType::File)
        .collect();
    let end = start.saturating_add(RESOURCE_PAGE).min(files.len());
    let resources: Vec<Value> = files
        .get(start..end)
        .unwrap_or_default()
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
    if end < files.len() {
        page["nextCursor"] = json!(end.to_string());
    }
    Ok(page)
}
