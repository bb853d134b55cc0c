//! The one error type of the crate.

use std::path::PathBuf;

/// What can go wrong. Messages are for people: they say what is missing or
/// wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    /// ONNX Runtime's shared library is not where we looked.
    #[error(
        "semantic search needs ONNX Runtime: {path} {problem}; install the onnxruntime package (pacman -S onnxruntime), or set ORT_DYLIB_PATH to a libonnxruntime.so (scripts/fetch-onnxruntime gets one)"
    )]
    RuntimeMissing { path: PathBuf, problem: String },
    /// The model files are missing.
    #[error(
        "model not found in {dir}: {file} is missing; install llmbasedos-model-minilm, or run scripts/fetch-model and point model_dir (or LLMBASEDOS_FS_MODEL_DIR) at what it prints"
    )]
    ModelMissing { dir: PathBuf, file: &'static str },
    /// The model or tokenizer exists but cannot be used.
    #[error("the model in {dir} cannot be used: {reason}")]
    ModelInvalid { dir: PathBuf, reason: String },
    /// ONNX Runtime failed while embedding.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// The index files cannot be opened, read or written.
    #[error("the index in {dir} cannot be used: {reason}")]
    Index { dir: PathBuf, reason: String },
    /// A caller's value is wrong (an empty query, a bad scope).
    #[error("{0}")]
    InvalidValue(String),
    /// The path to index does not exist.
    #[error("{path} does not exist")]
    SourceMissing { path: String },
    /// The path to index is not a directory/file, or cannot be inspected.
    #[error("{path} {reason}")]
    Source { path: String, reason: String },
    /// The caller gave up.
    #[error("cancelled")]
    Cancelled,
}

impl SemanticError {
    pub(crate) fn index(dir: &std::path::Path, reason: impl std::fmt::Display) -> SemanticError {
        SemanticError::Index {
            dir: dir.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
