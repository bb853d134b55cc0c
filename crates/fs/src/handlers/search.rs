//! `mcp.fs.embed`, `mcp.fs.search` and `mcp.fs.index_status`: semantic
//! search over the root ([`crate::indexing`]), and the one place its
//! errors become handler errors. The `semantic` library's errors carry a
//! kind and name no package or setting; here each gets its `data.kind` and
//! the next step in the file service's terms.

use proto::ErrorData;
use semantic::{ErrorKind as SemanticKind, SemanticError};
use serde::Deserialize;
use server_kit::{Context, HandlerError, ServerBuilder, State};

use super::{
    Fs, SEMANTIC_UNAVAILABLE, Slot, blocking, handler_error, optional_path, path, service,
};
use crate::indexing::{EmbedResult, IndexingError, SearchResult, StatusResult};
use crate::ops::FsError;
use crate::root_index::OwnerError;

/// Registers the semantic methods on `builder`.
pub(super) fn register(builder: ServerBuilder<Fs>) -> ServerBuilder<Fs> {
    builder
        .method("mcp.fs.embed", embed)
        .method("mcp.fs.search", search)
        .method("mcp.fs.index_status", index_status)
}

/// The one place a semantic-search error becomes a handler error: its
/// kind goes into `data.kind`, and the next step, which the library leaves
/// to the program that ships it, is worded here in the service's packages
/// and settings.
pub fn semantic_error(error: SemanticError) -> HandlerError {
    let kind = error.kind();
    if let SemanticError::SourceMissing { path } = error {
        // Not found like any other path of the service (kind and hint).
        return handler_error(FsError::NotFound { path });
    }
    let message = match semantic_next_step(kind) {
        Some(next) => format!("{error}; {next}"),
        None => error.to_string(),
    };
    let handler = match kind {
        SemanticKind::RuntimeMissing | SemanticKind::ModelMissing | SemanticKind::ModelInvalid => {
            service(SEMANTIC_UNAVAILABLE, message)
        }
        SemanticKind::Invalid => HandlerError::InvalidValue(message),
        SemanticKind::NotFound => HandlerError::NotFound(message),
        SemanticKind::Cancelled => HandlerError::Failed("the operation was cancelled".to_owned()),
        SemanticKind::IndexUnusable | SemanticKind::InferenceFailed => {
            tracing::warn!("{message}");
            HandlerError::Failed(message)
        }
    };
    handler.with_data(&ErrorData {
        kind: kind.as_str().to_owned(),
        hint: None,
    })
}

/// What to do about a semantic error of `kind`, in the file service's
/// terms: the packages that provide the model and ONNX Runtime, and the
/// settings that point at them.
fn semantic_next_step(kind: SemanticKind) -> Option<String> {
    use crate::config::{INDEX_DIR_VARIABLE, MODEL_DIR_VARIABLE};
    let runtime = semantic::embed::RUNTIME_VARIABLE;
    match kind {
        SemanticKind::RuntimeMissing => Some(format!(
            "install the onnxruntime package (pacman -S onnxruntime), or set {runtime} to a libonnxruntime.so (scripts/fetch-onnxruntime gets one)"
        )),
        SemanticKind::ModelMissing => Some(format!(
            "install llmbasedos-model-minilm, or run scripts/fetch-model and point model_dir (or {MODEL_DIR_VARIABLE}) at what it prints"
        )),
        SemanticKind::ModelInvalid => Some(format!(
            "reinstall llmbasedos-model-minilm, or point model_dir (or {MODEL_DIR_VARIABLE}) at the model scripts/fetch-model builds"
        )),
        SemanticKind::IndexUnusable => Some(format!(
            "check index_dir in fs.yaml (or {INDEX_DIR_VARIABLE})"
        )),
        SemanticKind::InferenceFailed
        | SemanticKind::Invalid
        | SemanticKind::NotFound
        | SemanticKind::Cancelled => None,
    }
}

/// The one place an error about whose index this is becomes a handler
/// error: `busy` while another fs server holds it, `index_unusable` when
/// it belongs to another root or cannot be prepared.
fn owner_error(error: &OwnerError) -> HandlerError {
    let mut message = error.to_string();
    let kind = match error {
        OwnerError::InUse { .. } => "busy",
        OwnerError::OtherRoot { .. } | OwnerError::Unrecorded { .. } => {
            SemanticKind::IndexUnusable.as_str()
        }
        OwnerError::Io { .. } => {
            // The others say what to do; a directory that cannot be made
            // is a setting to check.
            if let Some(next) = semantic_next_step(SemanticKind::IndexUnusable) {
                message = format!("{message}; {next}");
            }
            SemanticKind::IndexUnusable.as_str()
        }
    };
    tracing::warn!("{message}");
    HandlerError::Failed(message).with_data(&ErrorData {
        kind: kind.to_owned(),
        hint: None,
    })
}

/// The one place an error of the root's index becomes a handler error.
pub fn indexing_error(error: IndexingError) -> HandlerError {
    match error {
        IndexingError::Semantic(error) => semantic_error(error),
        IndexingError::Path(error) => handler_error(error),
        IndexingError::Owner(error) => owner_error(&error),
    }
}

/// Runs semantic work on the blocking pool.
///
/// An embed takes no slot ([`Slot::Free`]): embeds run one at a time
/// anyway (the index's writer lock), each bounds its own memory (files up
/// to the read limit, batches of chunks), and one can last hours on a
/// large root: holding a slot, it (and a second embed waiting for the
/// lock) would keep every grep and glob waiting that long.
async fn run_semantic<T, F>(
    context: &Context,
    fs: State<Fs>,
    slot: Slot,
    work: F,
) -> Result<T, HandlerError>
where
    F: FnOnce(&Fs) -> Result<T, IndexingError> + Send + 'static,
    T: Send + 'static,
{
    blocking(context, fs, slot, work)
        .await?
        .map_err(indexing_error)
}

#[derive(Deserialize)]
pub(super) struct EmbedParams {
    path: Option<String>,
    recursive: bool,
}

#[derive(Deserialize)]
pub(super) struct SearchParams {
    query: String,
    top_k: usize,
    scope: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NoParams {}

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

async fn embed(
    context: Context,
    fs: State<Fs>,
    params: EmbedParams,
) -> Result<EmbedResult, HandlerError> {
    let path = optional_path(params.path.as_deref())?;
    let recursive = params.recursive;
    let token = context.cancellation_token();
    let mut progress = embed_progress(&context);
    run_semantic(&context, fs, Slot::Free, move |fs| {
        fs.semantic
            .embed(&path, recursive, &mut progress, &|| token.is_cancelled())
    })
    .await
}

async fn search(
    context: Context,
    fs: State<Fs>,
    params: SearchParams,
) -> Result<SearchResult, HandlerError> {
    let scope = params.scope.as_deref().map(path).transpose()?;
    run_semantic(&context, fs, Slot::Heavy, move |fs| {
        fs.semantic
            .search(&params.query, params.top_k, scope.as_ref())
    })
    .await
}

async fn index_status(
    context: Context,
    fs: State<Fs>,
    _params: NoParams,
) -> Result<StatusResult, HandlerError> {
    run_semantic(&context, fs, Slot::Free, |fs| fs.semantic.status()).await
}
