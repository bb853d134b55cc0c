//! What loading a caps file costs a process that has just started, as a
//! socket-activated server or gateway does on its first call.
//!
//! `cargo bench -p proto --bench caps` runs, for each shipped caps file,
//! fresh copies of this benchmark (the first compile in a process pays for
//! what jsonschema builds once, so each figure is a process's first) and
//! prints the medians of: parsing the file; checking and compiling it
//! whole ([`CompiledCaps::from_json`], what both the gateway and the
//! server did at start before); loading it as the gateway does now
//! ([`CompiledCaps::load_for_routing`]: meta-schema checks, no compiling);
//! as a server does ([`CompiledCaps::embedded`]: the shape only), and that
//! plus compiling its first method's params, as its first call does. Without `--bench` (as under `cargo test
//! --all-targets`) each file is loaded once, so the benchmark cannot rot.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use proto::{Caps, CompiledCaps};

/// The environment variable that makes a copy measure one file and print
/// its figures (µs, space-separated) instead of running the benchmark.
const ONE: &str = "CAPS_BENCH_ONE";
const RUNS: usize = 15;
const FIGURES: [&str; 5] = [
    "parse the file",
    "check and compile it whole (load)",
    "for routing: meta-schema checks (gateway)",
    "embedded: shape only (server start)",
    "+ the first method's params compiled",
];

fn shipped() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        "fs/fs.cap.json",
        "mail/mail.cap.json",
        "sync/sync.cap.json",
        "agent/agent.cap.json",
    ]
    .iter()
    .map(|file| crates.join(file))
    .collect()
}

/// One process's figure number `figure` for `path`, in µs (see
/// [`FIGURES`]). Each is measured in a copy of its own: what jsonschema
/// builds once would make a second measurement in a process look cheap.
fn measure(path: &Path, figure: usize) -> f64 {
    let text = std::fs::read_to_string(path).expect("the caps file reads");
    let started = Instant::now();
    match figure {
        0 => drop(std::hint::black_box(
            serde_json::from_str::<Caps>(&text).expect("parses"),
        )),
        1 => drop(std::hint::black_box(
            CompiledCaps::from_json(&text, "bench").expect("compiles"),
        )),
        2 => drop(std::hint::black_box(
            CompiledCaps::load_for_routing(path).expect("valid"),
        )),
        3 => drop(std::hint::black_box(
            CompiledCaps::embedded(&text, "bench").expect("valid"),
        )),
        _ => {
            let caps = CompiledCaps::embedded(&text, "bench").expect("valid");
            let first = caps.method_names().next().expect("a method");
            let method = caps.method(first).expect("declared");
            method.params().expect("compiles");
        }
    }
    started.elapsed().as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> ExitCode {
    if let Ok(one) = std::env::var(ONE) {
        let (figure, path) = one.split_once(':').expect("FIGURE:PATH");
        println!(
            "{}",
            measure(Path::new(path), figure.parse().expect("a figure number"))
        );
        return ExitCode::SUCCESS;
    }
    let bench = std::env::args().any(|arg| arg == "--bench");
    let runs = if bench { RUNS } else { 1 };
    let me = std::env::current_exe().expect("the benchmark's own path");
    println!("caps loading in a fresh process: median of {runs} processes per figure (µs)");
    for path in shipped() {
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        println!(
            "\n{name} ({} bytes)",
            std::fs::metadata(&path).expect("exists").len()
        );
        for (figure, label) in FIGURES.iter().enumerate() {
            let values: Vec<f64> = (0..runs)
                .map(|_| {
                    let output = Command::new(&me)
                        .env(ONE, format!("{figure}:{}", path.display()))
                        .output()
                        .expect("the benchmark runs a copy of itself");
                    assert!(
                        output.status.success(),
                        "{name}: {label}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    String::from_utf8_lossy(&output.stdout)
                        .trim()
                        .parse()
                        .expect("a figure")
                })
                .collect();
            println!("  {label:<40} {:>9.0}", median(values));
        }
    }
    ExitCode::SUCCESS
}
