//! Sentence embeddings with all-MiniLM-L6-v2 on ONNX Runtime: the BERT
//! tokenizer, the transformer (`model.onnx`), mean pooling over the
//! attention mask and L2 normalisation — what sentence-transformers does,
//! reproduced to a cosine of 0.9999 (tests/embeddings.rs).
//!
//! Two builds of the same weights sit side by side in the model directory
//! ([`Precision`]): `model.onnx` (fp32, as trained) and `model-int8.onnx`
//! (the dense weights in int8, their inputs quantized at run time; made
//! by the same scripts/build_minilm_onnx.py). How far int8 strays from
//! fp32 is measured, not assumed: `cargo bench -p semantic` prints its
//! top-10 overlap and top-1 agreement with fp32 over the Python
//! documentation, and tests/retrieval.rs runs with both.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`): from
//! `ORT_DYLIB_PATH`, else from Arch's `/usr/lib/libonnxruntime.so`. Nothing
//! is linked at build time, so an upgrade of the system library never
//! breaks the binary.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::Tensor;
use serde::{Deserialize, Serialize};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, pad_encodings};

use crate::error::SemanticError;

/// Dimensions of an embedding.
pub const DIMENSIONS: usize = 384;
/// Word pieces the model sees, special tokens included (sentence-transformers'
/// `max_seq_length` for this model).
pub const MAX_SEQUENCE: usize = 256;
/// Texts per ONNX Runtime call. Measured on 2 cores with 256-token texts
/// (chunks/s by batch size, spinning off): 1: 25.5, 2: 27.1, 4: 24.5,
/// 8: 23.8 — larger batches only cost memory and cache.
pub const BATCH: usize = 2;
/// The model's name, as the index records it.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// The numeric format the model computes in: which of the two model files
/// is loaded. Part of a chunk's content address and of every file's record
/// in the index (the same text through another precision is another
/// vector, and vectors of the two never answer one search).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `model.onnx`: the weights as trained.
    #[default]
    Fp32,
    /// `model-int8.onnx`: faster, close to fp32 (see the bench).
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::Fp32, Precision::Int8];

    /// The name written in fs.yaml and in the index.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// The model's file in the model directory.
    pub fn model_file(self) -> &'static str {
        match self {
            Precision::Fp32 => "model.onnx",
            Precision::Int8 => "model-int8.onnx",
        }
    }

    /// The precision named `name` (`fp32` or `int8`).
    pub fn from_name(name: &str) -> Option<Precision> {
        Precision::ALL
            .into_iter()
            .find(|precision| precision.name() == name)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
/// Where Arch's onnxruntime package puts the library.
pub const DEFAULT_RUNTIME: &str = "/usr/lib/libonnxruntime.so";
/// The variable that names the library (ort's own).
pub const RUNTIME_VARIABLE: &str = "ORT_DYLIB_PATH";

/// The library to load: `ORT_DYLIB_PATH` if set, else Arch's location.
pub fn runtime_path() -> PathBuf {
    match std::env::var_os(RUNTIME_VARIABLE) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_RUNTIME),
    }
}

/// The session options of the embedder: full graph optimisation, one
/// intra-op thread per core, no spinning. Public so that the benchmark
/// measures the machine's MatMul rate with the same options.
pub fn session_builder(runtime: &Path) -> Result<SessionBuilder, SemanticError> {
    let environment = environment(runtime)?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    Session::builder(&environment)
        .and_then(|builder| Ok(builder.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|builder| Ok(builder.with_intra_threads(threads)?))
        // Spinning threads fight whatever else runs on the machine: on
        // 2 busy cores a short query took 20 ms spinning, 4 ms not.
        .and_then(|builder| Ok(builder.with_intra_op_spinning(false)?))
        .map_err(|error| SemanticError::Inference(format!("session options: {error}")))
}

/// The one ONNX Runtime environment of the process (ort allows one). A
/// failed load is not remembered, so installing the library later works
/// without a restart.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

fn environment(runtime: &Path) -> Result<Environment, SemanticError> {
    let mut slot = ENVIRONMENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    let missing = |problem: String| SemanticError::RuntimeMissing {
        path: runtime.to_path_buf(),
        problem,
    };
    match std::fs::metadata(runtime) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(missing("is not a file".to_owned())),
        Err(error) => return Err(missing(format!("cannot be used ({error})"))),
    }
    let environment = ort::init_from(runtime)
        .map_err(|error| missing(format!("does not load ({error})")))?
        .with_name("llmbasedos")
        .build()
        .map_err(|error| missing(format!("does not start ({error})")))?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// A loaded model: its tokenizer and an ONNX Runtime session.
pub struct Embedder {
    /// ONNX Runtime's `run` takes the session mutably.
    session: Mutex<Session>,
    /// Truncates to [`MAX_SEQUENCE`].
    tokenizer: Tokenizer,
    /// Pads a batch to its longest text.
    padding: PaddingParams,
    /// Counts the word pieces of any text, without truncation.
    counter: Tokenizer,
    dir: PathBuf,
    precision: Precision,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model of `precision` ([`Precision::model_file`]) and
    /// `tokenizer.json` from `dir`, on the ONNX Runtime library at
    /// `runtime` (see [`runtime_path`]).
    pub fn load(
        dir: &Path,
        runtime: &Path,
        precision: Precision,
    ) -> Result<Embedder, SemanticError> {
        let model_file = precision.model_file();
        for file in [model_file, "tokenizer.json"] {
            if !dir.join(file).is_file() {
                return Err(SemanticError::ModelMissing {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let invalid = |reason: String| SemanticError::ModelInvalid {
            dir: dir.to_path_buf(),
            reason,
        };
        let counter = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|error| invalid(format!("tokenizer.json: {error}")))?;
        let mut counter = counter;
        counter
            .with_truncation(None)
            .map_err(|error| invalid(format!("tokenizer.json: {error}")))?;
        counter.with_padding(None);
        let mut tokenizer = counter.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_SEQUENCE,
                ..TruncationParams::default()
            }))
            .map_err(|error| invalid(format!("tokenizer.json: {error}")))?;
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        };

        let session = session_builder(runtime)?
            .commit_from_file(dir.join(model_file))
            .map_err(|error| invalid(format!("{model_file}: {error}")))?;
        let names: Vec<&str> = session.inputs().iter().map(|input| input.name()).collect();
        for expected in ["input_ids", "attention_mask", "token_type_ids"] {
            if !names.contains(&expected) {
                return Err(invalid(format!(
                    "{model_file} has no input {expected} (it has {names:?}): it is not an all-MiniLM-L6-v2 export"
                )));
            }
        }
        Ok(Embedder {
            session: Mutex::new(session),
            tokenizer,
            padding,
            counter,
            dir: dir.to_path_buf(),
            precision,
        })
    }

    /// The directory the model came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The precision this embedder computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Word pieces of `text`, without the special tokens and without
    /// truncation (for the chunker's budget).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.counter
            .encode_fast(text, false)
            .map_or(text.len() / 3, |encoding| encoding.len())
    }

    /// One unit-length embedding per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
        let failed = |error: &dyn std::fmt::Display| SemanticError::Inference(error.to_string());
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // One by one: a batch is at most 8 texts, and tokenizers' parallel
        // batch would wake a thread pool for microseconds of work.
        let mut encodings = texts
            .iter()
            .map(|text| self.tokenizer.encode_fast(*text, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| failed(&*error))?;
        pad_encodings(&mut encodings, &self.padding).map_err(|error| failed(&*error))?;
        let batch = encodings.len();
        let sequence = encodings.first().map_or(0, tokenizers::Encoding::len);
        let mut ids = Vec::with_capacity(batch * sequence);
        let mut mask = Vec::with_capacity(batch * sequence);
        let mut types = Vec::with_capacity(batch * sequence);
        for encoding in &encodings {
            ids.extend(encoding.get_ids().iter().map(|&id| i64::from(id)));
            mask.extend(encoding.get_attention_mask().iter().map(|&m| i64::from(m)));
            types.extend(encoding.get_type_ids().iter().map(|&t| i64::from(t)));
        }
        let shape = [batch, sequence];
        let tensor =
            |data: Vec<i64>| Tensor::from_array((shape, data)).map_err(|error| failed(&error));
        let inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask.clone())?,
            "token_type_ids" => tensor(types)?,
        ];
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(|error| failed(&error))?;
        let (output_shape, hidden) = outputs["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(|error| failed(&error))?;
        let expected = [batch, sequence, DIMENSIONS].map(|n| i64::try_from(n).unwrap_or(-1));
        if output_shape[..] != expected[..] {
            return Err(SemanticError::Inference(format!(
                "the model answered shape {output_shape:?}, expected {expected:?}"
            )));
        }
        Ok((0..batch)
            .map(|row| {
                let states =
                    &hidden[row * sequence * DIMENSIONS..(row + 1) * sequence * DIMENSIONS];
                let weights = &mask[row * sequence..(row + 1) * sequence];
                mean_pool(states, weights)
            })
            .collect())
    }
}

/// Mean of the token states where the mask is 1, then L2-normalised.
fn mean_pool(states: &[f32], mask: &[i64]) -> Vec<f32> {
    let mut sum = vec![0.0_f32; DIMENSIONS];
    let mut count = 0.0_f32;
    for (token, &weight) in states.chunks_exact(DIMENSIONS).zip(mask) {
        if weight != 0 {
            count += 1.0;
            for (total, value) in sum.iter_mut().zip(token) {
                *total += value;
            }
        }
    }
    // sentence-transformers clamps the count at 1e-9.
    let count = count.max(1e-9);
    for value in &mut sum {
        *value /= count;
    }
    normalise(&mut sum);
    sum
}

/// Scales to unit length (sentence-transformers' normalize: eps 1e-12).
pub fn normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for value in vector {
        *value /= norm;
    }
}

/// Cosine of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
