//! Where `scripts/fetch-model` and `scripts/fetch-onnxruntime` cache the
//! model and the runtime library, for development setups (`llmbasedos up`,
//! the tests) that have no system packages.

use std::path::PathBuf;

/// `${XDG_CACHE_HOME:-$HOME/.cache}/llmbasedos`.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("llmbasedos")),
        _ => std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".cache/llmbasedos")),
    }
}

/// The model `scripts/fetch-model` made, if it is there.
pub fn cached_model() -> Option<PathBuf> {
    let dir = cache_dir()?.join("models/all-MiniLM-L6-v2");
    dir.join("model.onnx").is_file().then_some(dir)
}

/// The library `scripts/fetch-onnxruntime` extracted (the newest, if
/// several), if it is there.
pub fn cached_runtime() -> Option<PathBuf> {
    let dir = cache_dir()?.join("onnxruntime");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libonnxruntime.so."))
                && path.is_file()
        })
        .collect();
    found.sort_by_key(|path| {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        name.unwrap_or_default()
            .trim_start_matches("libonnxruntime.so.")
            .split('.')
            .map(|part| part.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    found.pop()
}
