//! `semantic-index`: indexes a host directory with the semantic library, or
//! checks an index — for the crash-safety test (killed at random moments,
//! then restarted) and for trying the library by hand.
//!
//! ```text
//! semantic-index INDEX_DIR ROOT            index ROOT (incrementally), print the counters
//! semantic-index INDEX_DIR ROOT QUERY...   then search, print the hits
//! semantic-index --check INDEX_DIR         open (reconciling), check the invariants, print the status
//! ```
//!
//! The model comes from `LLMBASEDOS_FS_MODEL_DIR` (else the cache of
//! scripts/fetch-model), ONNX Runtime from `ORT_DYLIB_PATH` (else the cache
//! of scripts/fetch-onnxruntime, else /usr/lib/libonnxruntime.so), the
//! precision from `LLMBASEDOS_FS_MODEL_PRECISION` (`fp32` or `int8`, else
//! the default), as the fs server takes them.

use std::path::PathBuf;
use std::process::ExitCode;

use semantic::{DirSource, Embedder, Index, Precision, Settings, Target};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("semantic-index: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The defaults, with `SEMANTIC_INDEX_FILES_PER_COMMIT` and
/// `SEMANTIC_INDEX_SAVE_INTERVAL_MS` (the crash test makes both small).
fn settings() -> Result<Settings, String> {
    let mut settings = Settings::default();
    let number = |name: &str| -> Result<Option<u64>, String> {
        std::env::var(name)
            .ok()
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| format!("{name}={value:?} is not a number"))
            })
            .transpose()
    };
    if let Some(files) = number("SEMANTIC_INDEX_FILES_PER_COMMIT")? {
        settings.files_per_commit = usize::try_from(files).unwrap_or(usize::MAX).max(1);
    }
    if let Some(milliseconds) = number("SEMANTIC_INDEX_SAVE_INTERVAL_MS")? {
        settings.save_interval = std::time::Duration::from_millis(milliseconds);
    }
    Ok(settings)
}

fn run(args: Vec<String>) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--check") {
        let dir = args
            .get(1)
            .ok_or("usage: semantic-index --check INDEX_DIR")?;
        let index = Index::open(&PathBuf::from(dir)).map_err(|error| error.to_string())?;
        index.check()?;
        let status = index.status().map_err(|error| error.to_string())?;
        println!(
            "{}",
            serde_json::to_string(&status).map_err(|error| error.to_string())?
        );
        return Ok(());
    }
    let [dir, root, query @ ..] = args.as_slice() else {
        return Err(
            "usage: semantic-index INDEX_DIR ROOT [QUERY...] | --check INDEX_DIR".to_owned(),
        );
    };
    let model = std::env::var_os("LLMBASEDOS_FS_MODEL_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(semantic::locate::cached_model)
        .ok_or("no model: set LLMBASEDOS_FS_MODEL_DIR or run scripts/fetch-model")?;
    let runtime = match std::env::var_os("ORT_DYLIB_PATH").filter(|path| !path.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => semantic::locate::cached_runtime().unwrap_or_else(semantic::embed::runtime_path),
    };
    let precision = match std::env::var("LLMBASEDOS_FS_MODEL_PRECISION") {
        Ok(name) if !name.is_empty() => Precision::from_name(&name).ok_or_else(|| {
            format!("LLMBASEDOS_FS_MODEL_PRECISION={name:?} is not a precision; use fp32 or int8")
        })?,
        _ => Precision::default(),
    };
    let embedder =
        Embedder::load(&model, &runtime, precision).map_err(|error| with_next_step(&error))?;
    let index = Index::open(&PathBuf::from(dir)).map_err(|error| error.to_string())?;
    let source = DirSource::new(root);
    let counters = index
        .update(
            &embedder,
            Target {
                source: &source,
                path: "/",
                recursive: true,
            },
            &settings()?,
            &mut |_| {},
            &|| false,
        )
        .map_err(|error| error.to_string())?;
    println!(
        "{}",
        serde_json::to_string(&counters).map_err(|error| error.to_string())?
    );
    if !query.is_empty() {
        let hits = index
            .search_text(&embedder, &query.join(" "), 5, None)
            .map_err(|error| error.to_string())?;
        for hit in hits {
            println!(
                "{:.3}  {}:{}-{}  {}",
                hit.score,
                hit.path,
                hit.start_line,
                hit.end_line,
                hit.snippet.lines().next().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// The error with what to do next, in this tool's terms (the library's
/// texts name no variable or script).
fn with_next_step(error: &semantic::SemanticError) -> String {
    let next = match error.kind() {
        semantic::ErrorKind::ModelMissing | semantic::ErrorKind::ModelInvalid => {
            "; run scripts/fetch-model and set LLMBASEDOS_FS_MODEL_DIR to what it prints"
        }
        semantic::ErrorKind::RuntimeMissing => {
            "; run scripts/fetch-onnxruntime, or set ORT_DYLIB_PATH to a libonnxruntime.so"
        }
        _ => "",
    };
    format!("{error}{next}")
}
