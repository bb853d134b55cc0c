//! How far int8 strays from fp32, measured on a real corpus no one here
//! wrote: the reStructuredText sources of the Python documentation
//! (Debian's python3-doc, `/usr/share/doc/python3/html/_sources`; Arch's
//! python-docs; or `SEMANTIC_BENCH_CORPUS`).
//!
//! The files, sorted by path, are dealt out deterministically: every
//! fourth is a document (chunked like the index chunks, up to
//! `SEMANTIC_BENCH_FIDELITY_CHUNKS` chunks), the others give the queries.
//! Two query sets of `SEMANTIC_BENCH_FIDELITY_QUERIES` each: a prose
//! sentence of a file that is not indexed (no chunk contains it: the
//! nearest neighbours are a real ranking decision), and a sentence of an
//! indexed document (the chunk that holds it should come first). Both
//! models embed every chunk and every query; the top 10 of each query is
//! exact (every cosine computed), so what differs is the model, not the
//! approximate graph. Printed: the cosine of each chunk's two vectors,
//! the top-10 overlap (mean, in %) and top-1 agreement (%) per set, and
//! both models' chunks/s over the corpus (sorted by length, in batches of
//! `embed::BATCH`, as the index embeds) beside the fp32 ceiling.

use std::path::PathBuf;
use std::time::Instant;

use bench_support::corpus::{self, sentences, text_files};
use semantic::Embedder;
use semantic::chunk::{ChunkOptions, chunk};

/// The nearest neighbours compared.
const TOP: usize = 10;

/// What the decision of the default precision reads.
pub(crate) struct Fidelity {
    /// Top-1 agreement of the harder set (held-out sentences), in %.
    pub(crate) top1_held_out: f64,
    /// Top-1 agreement of the in-corpus sentences, in %.
    pub(crate) top1_in_corpus: f64,
}

/// The corpus: `SEMANTIC_BENCH_CORPUS` (a directory of text files), else
/// the Python documentation.
fn corpus_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SEMANTIC_BENCH_CORPUS").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    corpus::python_docs().map_err(|error| {
        format!("{error}, or set SEMANTIC_BENCH_CORPUS to a directory of text files")
    })
}

/// Up to `wanted` distinct sentences, taken a few from each text in turn.
fn draw_queries(texts: &[String], wanted: usize) -> Vec<String> {
    let per_text: Vec<Vec<String>> = texts.iter().map(|text| sentences(text)).collect();
    let mut seen = std::collections::HashSet::new();
    let mut queries = Vec::new();
    for round in 0.. {
        let mut any = false;
        for sentences in &per_text {
            if let Some(sentence) = sentences.get(round) {
                any = true;
                if seen.insert(sentence.clone()) {
                    queries.push(sentence.clone());
                    if queries.len() == wanted {
                        return queries;
                    }
                }
            }
        }
        if !any {
            break;
        }
    }
    queries
}

/// Embeds `texts` (already sorted by length) and returns the vectors and
/// the chunks per second.
fn embed_all(embedder: &Embedder, texts: &[&str]) -> (Vec<Vec<f32>>, f64) {
    let started = Instant::now();
    let vectors = embedder.embed(texts).expect("embed the corpus");
    #[allow(clippy::cast_precision_loss)]
    let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
    (vectors, rate)
}

/// Indexes of the `TOP` vectors nearest to `query` (exact).
fn top(corpus: &[Vec<f32>], query: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = corpus
        .iter()
        .enumerate()
        .map(|(index, vector)| (semantic::embed::cosine(query, vector), index))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(TOP)
        .map(|(_, index)| index)
        .collect()
}

/// (mean top-10 overlap in %, top-1 agreement in %) of `queries`.
fn compare(
    fp32: (&Embedder, &[Vec<f32>]),
    int8: (&Embedder, &[Vec<f32>]),
    queries: &[String],
) -> (f64, f64) {
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let fp32_queries = fp32.0.embed(&refs).expect("embed the queries");
    let int8_queries = int8.0.embed(&refs).expect("embed the queries");
    let mut overlap = 0_usize;
    let mut agree = 0_usize;
    for (a, b) in fp32_queries.iter().zip(&int8_queries) {
        let expected = top(fp32.1, a);
        let got = top(int8.1, b);
        overlap += got.iter().filter(|index| expected.contains(index)).count();
        agree += usize::from(expected.first() == got.first());
    }
    #[allow(clippy::cast_precision_loss)]
    let count = queries.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let figures = (
        overlap as f64 / (count * TOP as f64) * 100.0,
        agree as f64 / count * 100.0,
    );
    figures
}

/// Measures and prints; `ceiling` is the fp32 ceiling of this run
/// (chunks/s of 256 tokens), when it was measured.
pub(crate) fn run(
    fp32: &Embedder,
    int8: &Embedder,
    ceiling: Option<f64>,
    smoke: bool,
) -> Result<Fidelity, String> {
    let dir = corpus_dir()?;
    let files = text_files(&dir)?;
    if files.len() < 8 {
        return Err(format!(
            "{}: {} text files, too few for the fidelity corpus",
            dir.display(),
            files.len()
        ));
    }
    let chunk_limit = if smoke {
        40
    } else {
        bench_support::measure::env_number("SEMANTIC_BENCH_FIDELITY_CHUNKS", 3000)
    };
    let query_count = if smoke {
        10
    } else {
        bench_support::measure::env_number("SEMANTIC_BENCH_FIDELITY_QUERIES", 500)
    };
    let options = ChunkOptions::default();
    let count = |text: &str| fp32.count_tokens(text);
    let mut documents = 0;
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut indexed_texts = Vec::new();
    let mut held_out_texts = Vec::new();
    for (position, path) in files.iter().enumerate() {
        // Not UTF-8 (none is, in python3-doc): left out.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if position % 4 != 0 {
            held_out_texts.push(text);
            continue;
        }
        if chunks.len() >= chunk_limit {
            continue;
        }
        documents += 1;
        for piece in chunk(&text, &options, &count) {
            chunks.push((count(&piece.text), piece.text));
        }
        indexed_texts.push(text);
    }
    chunks.truncate(chunk_limit);
    chunks.sort_by_key(|(tokens, _)| *tokens);
    let texts: Vec<&str> = chunks.iter().map(|(_, text)| text.as_str()).collect();
    let tokens: usize = chunks.iter().map(|(tokens, _)| tokens).sum();
    let held_out = draw_queries(&held_out_texts, query_count);
    // Only sentences whose chunk made it into the (truncated) corpus.
    let flat: Vec<String> = texts
        .iter()
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let in_corpus: Vec<String> = draw_queries(&indexed_texts, query_count * 2)
        .into_iter()
        .filter(|sentence| {
            let probe: String = sentence.chars().take(60).collect();
            flat.iter().any(|text| text.contains(&probe))
        })
        .take(query_count)
        .collect();

    let (fp32_vectors, fp32_rate) = embed_all(fp32, &texts);
    let (int8_vectors, int8_rate) = embed_all(int8, &texts);
    let cosines: Vec<f32> = fp32_vectors
        .iter()
        .zip(&int8_vectors)
        .map(|(a, b)| semantic::embed::cosine(a, b))
        .collect();
    let min_cosine = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    #[allow(clippy::cast_precision_loss)]
    let mean_cosine = cosines.iter().sum::<f32>() / cosines.len().max(1) as f32;
    let (held_overlap, held_top1) =
        compare((fp32, &fp32_vectors), (int8, &int8_vectors), &held_out);
    let (in_overlap, in_top1) = compare((fp32, &fp32_vectors), (int8, &int8_vectors), &in_corpus);

    #[allow(clippy::cast_precision_loss)]
    let mean_tokens = tokens as f64 / chunks.len().max(1) as f64;
    println!(
        "fidelity corpus            {documents} of {} files of {}: {} chunks of {mean_tokens:.0} tokens on average",
        files.len(),
        dir.display(),
        chunks.len()
    );
    let ceiling_text = ceiling.map_or_else(
        || "fp32 ceiling not measured".to_owned(),
        |ceiling| format!("fp32 ceiling {ceiling:.1} chunks/s of 256 tokens"),
    );
    println!(
        "corpus chunks/s            fp32 {fp32_rate:.1}, int8 {int8_rate:.1} ({:.2}× fp32; {ceiling_text}; one run each)",
        int8_rate / fp32_rate
    );
    println!(
        "int8 against fp32          chunk vectors: cosine min {min_cosine:.4}, mean {mean_cosine:.4}"
    );
    println!(
        "  held-out sentences       {} queries: top-10 overlap {held_overlap:.1}%, top-1 agreement {held_top1:.1}%",
        held_out.len()
    );
    println!(
        "  in-corpus sentences      {} queries: top-10 overlap {in_overlap:.1}%, top-1 agreement {in_top1:.1}%",
        in_corpus.len()
    );
    if held_out.len() < query_count || in_corpus.len() < query_count {
        return Err(format!(
            "the corpus gave {} held-out and {} in-corpus queries, fewer than {query_count}",
            held_out.len(),
            in_corpus.len()
        ));
    }
    Ok(Fidelity {
        top1_held_out: held_top1,
        top1_in_corpus: in_top1,
    })
}
