//! Semantic search's figures, in one run (`cargo bench -p semantic`):
//! - embedding throughput for 256-token chunks (the chunker's largest), in
//!   batches of `embed::BATCH` (target ≥ 40 chunks/s on 2 cores);
//! - query latency, query embedding included, p50/p99 over an index of 10k
//!   and of 100k chunks (synthetic unit vectors; real query embeddings;
//!   target p50 ≤ 10 ms), and the search alone;
//! - an update over an unchanged tree of 10,000 files (target ≤ 2 s);
//! - the process's RSS with the model loaded.
//!
//! Each figure is the median of three runs. Without `--bench` (as under
//! `cargo test --all-targets`) it runs a smoke version on small sizes that
//! takes every path in seconds. The model and ONNX Runtime are found like
//! the tests find them (LLMBASEDOS_FS_MODEL_DIR, ORT_DYLIB_PATH, else the
//! caches of scripts/fetch-model and scripts/fetch-onnxruntime); missing,
//! the run fails and says how to get them. Options (environment):
//! `SEMANTIC_BENCH_CHUNKS` (default 96), `SEMANTIC_BENCH_QUERIES` (200),
//! `SEMANTIC_BENCH_FILES` (10000).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use semantic::embed::DIMENSIONS;
use semantic::{DirSource, Embedder, Index, Settings, Target};

const CHUNKS_PER_SECOND_TARGET: f64 = 40.0;
const P50_TARGET: Duration = Duration::from_millis(10);
const RERUN_TARGET: Duration = Duration::from_secs(2);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn locate() -> Result<(PathBuf, PathBuf), String> {
    let model = std::env::var_os("LLMBASEDOS_FS_MODEL_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(semantic::locate::cached_model)
        .ok_or(
            "the model is missing: run ./scripts/fetch-model (or set LLMBASEDOS_FS_MODEL_DIR)",
        )?;
    let runtime = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .or_else(semantic::locate::cached_runtime)
        .ok_or(
            "ONNX Runtime is missing: run ./scripts/fetch-onnxruntime (or set ORT_DYLIB_PATH)",
        )?;
    Ok((model, runtime))
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

const WORDS: &[&str] = &[
    "index",
    "kernel",
    "garden",
    "invoice",
    "river",
    "protocol",
    "harvest",
    "socket",
    "memory",
    "violin",
    "mortgage",
    "glacier",
    "compiler",
    "recipe",
    "theatre",
    "battery",
    "orbit",
    "lantern",
    "quarrel",
    "meadow",
    "algorithm",
    "passport",
    "thunder",
    "biscuit",
];

/// A text of `tokens` word pieces or just under, varied by `seed`.
fn text_of_tokens(embedder: &Embedder, tokens: usize, seed: usize) -> String {
    let mut words = Vec::new();
    let mut state = seed;
    // Every word here is one or two pieces: overshoot, then trim.
    for _ in 0..tokens {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        words.push(WORDS[(state >> 8) % WORDS.len()]);
    }
    let mut text = words.join(" ");
    while embedder.count_tokens(&text) > tokens {
        let cut = text.rfind(' ').unwrap_or(0);
        text.truncate(cut);
    }
    text
}

/// Deterministic pseudo-random unit vectors (xorshift, Box-Muller-free:
/// uniform in [-1, 1] then normalised; fine for latency).
fn synthetic_vectors(count: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            let mut vector: Vec<f32> = (0..DIMENSIONS)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    #[allow(clippy::cast_precision_loss)]
                    let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                    unit * 2.0 - 1.0
                })
                .collect();
            semantic::embed::normalise(&mut vector);
            vector
        })
        .collect()
}

fn main() -> ExitCode {
    let smoke = !std::env::args().any(|argument| argument == "--bench");
    let (model, runtime) = match locate() {
        Ok(found) => found,
        Err(message) => {
            eprintln!("semantic bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    let chunk_count = if smoke {
        8
    } else {
        env_number("SEMANTIC_BENCH_CHUNKS", 96)
    };
    let query_count = if smoke {
        10
    } else {
        env_number("SEMANTIC_BENCH_QUERIES", 200)
    };
    let file_count = if smoke {
        200
    } else {
        env_number("SEMANTIC_BENCH_FILES", 10_000)
    };
    let index_sizes: &[usize] = if smoke { &[1_000] } else { &[10_000, 100_000] };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "semantic bench{} — {threads} cores",
        if smoke { " (smoke)" } else { "" }
    );

    let rss_before = rss_mib();
    let started = Instant::now();
    let embedder = Embedder::load(&model, &runtime).unwrap_or_else(|error| panic!("{error}"));
    let load = started.elapsed();
    embedder.embed(&["warm up"]).expect("embed");
    println!(
        "model load                 {:.0} ms; RSS {:.0} MiB with the model loaded ({:.0} MiB before)",
        load.as_secs_f64() * 1000.0,
        rss_mib(),
        rss_before
    );

    // Throughput at the largest chunk.
    let texts: Vec<String> = (0..chunk_count)
        .map(|seed| text_of_tokens(&embedder, 254, seed))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rates: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            embedder.embed(&refs).expect("embed");
            #[allow(clippy::cast_precision_loss)]
            let rate = chunk_count as f64 / started.elapsed().as_secs_f64();
            rate
        })
        .collect();
    let rate = median(rates);
    println!(
        "embedding 256-token chunks {rate:.1} chunks/s (batches of {}; target ≥ {CHUNKS_PER_SECOND_TARGET}) {}",
        semantic::embed::BATCH,
        if rate >= CHUNKS_PER_SECOND_TARGET {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );
    println!("RSS after embedding        {:.0} MiB", rss_mib());

    // Query latency over synthetic indexes.
    let queries: Vec<String> = (0..query_count)
        .map(|index| {
            format!(
                "notes about {} and the {}",
                WORDS[index % WORDS.len()],
                WORDS[(index * 7 + 3) % WORDS.len()]
            )
        })
        .collect();
    for &size in index_sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = Index::open(dir.path()).expect("open");
        let started = Instant::now();
        let per_file = 10_000.min(size);
        for (file, offset) in (0..size).step_by(per_file).enumerate() {
            let vectors = synthetic_vectors(per_file.min(size - offset), file as u64 + 7);
            let chunks = vectors
                .into_iter()
                .enumerate()
                .map(|(line, vector)| (format!("synthetic chunk {line}"), vector))
                .collect();
            index
                .insert_vectors(&format!("/synthetic/{file:04}.txt"), chunks)
                .expect("insert");
        }
        let built = started.elapsed();
        let mut runs_p50 = Vec::new();
        let mut runs_p99 = Vec::new();
        let mut runs_search = Vec::new();
        for _ in 0..3 {
            let mut total = Vec::with_capacity(query_count);
            let mut search_only = Vec::with_capacity(query_count);
            for query in &queries {
                let started = Instant::now();
                let vector = embedder.embed(&[query.as_str()]).expect("embed").remove(0);
                let searched = Instant::now();
                let hits = index.search(&vector, 10, None).expect("search");
                assert_eq!(hits.len(), 10);
                search_only.push(searched.elapsed());
                total.push(started.elapsed());
            }
            total.sort();
            search_only.sort();
            runs_p50.push(percentile(&total, 0.5).as_secs_f64());
            runs_p99.push(percentile(&total, 0.99).as_secs_f64());
            runs_search.push(percentile(&search_only, 0.5).as_secs_f64());
        }
        let p50 = median(runs_p50);
        println!(
            "query at {size:>6} chunks      p50 {:.2} ms, p99 {:.2} ms (embedding included; target p50 ≤ {} ms) {}; search alone p50 {:.3} ms; built in {:.1} s",
            p50 * 1000.0,
            median(runs_p99) * 1000.0,
            P50_TARGET.as_millis(),
            if p50 <= P50_TARGET.as_secs_f64() {
                "ok"
            } else {
                "ABOVE TARGET"
            },
            median(runs_search) * 1000.0,
            built.as_secs_f64()
        );
        println!("RSS with {size} chunks      {:.0} MiB", rss_mib());
    }

    // An update over an unchanged tree.
    let tree = tempfile::tempdir().expect("temp dir");
    for file in 0..file_count {
        let path = tree
            .path()
            .join(format!("d{:02}/f{file:05}.md", file % 100));
        if file % 100 == file {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        }
        std::fs::write(path, format!("note {file}: {}", WORDS[file % WORDS.len()])).expect("write");
    }
    let state = tempfile::tempdir().expect("temp dir");
    let index = Index::open(state.path()).expect("open");
    let source = DirSource::new(tree.path());
    let target = Target {
        source: &source,
        path: "/",
        recursive: true,
    };
    let started = Instant::now();
    let first = index
        .update(
            &embedder,
            target,
            &Settings::default(),
            &mut |_| {},
            &|| false,
        )
        .expect("update");
    let first_time = started.elapsed();
    let reruns: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let counters = index
                .update(
                    &embedder,
                    target,
                    &Settings::default(),
                    &mut |_| {},
                    &|| false,
                )
                .expect("update");
            assert_eq!(counters.files_embedded, 0);
            assert_eq!(counters.files_unchanged as usize, file_count);
            started.elapsed().as_secs_f64()
        })
        .collect();
    let rerun = median(reruns);
    println!(
        "unchanged tree of {file_count} files re-run {:.3} s (target ≤ {} s) {}; first run {:.1} s ({} chunks)",
        rerun,
        RERUN_TARGET.as_secs(),
        if rerun <= RERUN_TARGET.as_secs_f64() {
            "ok"
        } else {
            "ABOVE TARGET"
        },
        first_time.as_secs_f64(),
        first.chunks_embedded
    );
    ExitCode::SUCCESS
}
