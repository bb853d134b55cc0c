//! What the integration tests share: the model and the runtime, found
//! where `scripts/install-test-deps` puts them. A test that cannot find
//! them fails and says how to get them.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use semantic::Embedder;
use semantic::embed::Precision;

/// The model: `LLMBASEDOS_FS_MODEL_DIR`, else the cache of scripts/fetch-model.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLMBASEDOS_FS_MODEL_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    semantic::locate::cached_model().unwrap_or_else(|| {
        panic!(
            "the all-MiniLM-L6-v2 model is missing: run ./scripts/install-test-deps (or ./scripts/fetch-model), or set LLMBASEDOS_FS_MODEL_DIR"
        )
    })
}

/// The runtime: `ORT_DYLIB_PATH`, else the cache of scripts/fetch-onnxruntime.
pub fn runtime() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    semantic::locate::cached_runtime().unwrap_or_else(|| {
        panic!(
            "ONNX Runtime is missing: run ./scripts/install-test-deps (or ./scripts/fetch-onnxruntime), or set ORT_DYLIB_PATH"
        )
    })
}

/// One embedder per test binary (loading costs about a second), in the
/// default precision.
pub fn embedder() -> Arc<Embedder> {
    embedder_of(Precision::default())
}

/// One embedder per precision and test binary.
pub fn embedder_of(precision: Precision) -> Arc<Embedder> {
    static EMBEDDERS: [OnceLock<Arc<Embedder>>; Precision::ALL.len()] =
        [OnceLock::new(), OnceLock::new()];
    let slot = Precision::ALL
        .iter()
        .position(|candidate| *candidate == precision)
        .expect("a precision of Precision::ALL");
    EMBEDDERS[slot]
        .get_or_init(|| {
            Arc::new(
                Embedder::load(&model_dir(), &runtime(), precision)
                    .unwrap_or_else(|error| panic!("{error}")),
            )
        })
        .clone()
}
