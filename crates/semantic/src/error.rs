//! The one error type of the crate, and its kinds.
//!
//! Messages say what is missing or wrong; they name no package, script,
//! configuration setting or environment variable, because how a model or
//! ONNX Runtime gets onto a machine is the embedding program's business.
//! A caller matches [`SemanticError::kind`] (never the text) and adds its
//! own next step: the file service names its packages and settings, the
//! `semantic-index` tool its flags.

use std::path::PathBuf;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    /// ONNX Runtime's shared library is not where we looked.
    #[error("semantic search needs ONNX Runtime: {path} {problem}")]
    RuntimeMissing { path: PathBuf, problem: String },
    /// The model files are missing.
    #[error("model not found in {dir}: {file} is missing")]
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

/// What kind of error a [`SemanticError`] is: what callers match, and
/// what they put in an error's `data.kind` ([`ErrorKind::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// ONNX Runtime is missing or cannot be loaded: provide it.
    RuntimeMissing,
    /// The model's files are missing: install the model.
    ModelMissing,
    /// The model is there but unusable (corrupt, or another model).
    ModelInvalid,
    /// The index cannot be opened, read or written (its directory, disk or
    /// files): a place or permission to fix, not a value to change.
    IndexUnusable,
    /// Inference failed on input the model accepted before.
    InferenceFailed,
    /// A caller's value cannot be used.
    Invalid,
    /// What was to be indexed does not exist.
    NotFound,
    /// The caller gave up; what was done before is kept.
    Cancelled,
}

impl ErrorKind {
    /// The kind's wire name (`model_missing`, `not_found`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RuntimeMissing => "runtime_missing",
            ErrorKind::ModelMissing => "model_missing",
            ErrorKind::ModelInvalid => "model_invalid",
            ErrorKind::IndexUnusable => "index_unusable",
            ErrorKind::InferenceFailed => "inference_failed",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// Every kind, for callers that must word a next step for each.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::RuntimeMissing,
        ErrorKind::ModelMissing,
        ErrorKind::ModelInvalid,
        ErrorKind::IndexUnusable,
        ErrorKind::InferenceFailed,
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Cancelled,
    ];
}

impl SemanticError {
    pub(crate) fn index(dir: &std::path::Path, reason: impl std::fmt::Display) -> SemanticError {
        SemanticError::Index {
            dir: dir.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SemanticError::RuntimeMissing { .. } => ErrorKind::RuntimeMissing,
            SemanticError::ModelMissing { .. } => ErrorKind::ModelMissing,
            SemanticError::ModelInvalid { .. } => ErrorKind::ModelInvalid,
            SemanticError::Inference(_) => ErrorKind::InferenceFailed,
            SemanticError::Index { .. } => ErrorKind::IndexUnusable,
            SemanticError::InvalidValue(_) | SemanticError::Source { .. } => ErrorKind::Invalid,
            SemanticError::SourceMissing { .. } => ErrorKind::NotFound,
            SemanticError::Cancelled => ErrorKind::Cancelled,
        }
    }
}
