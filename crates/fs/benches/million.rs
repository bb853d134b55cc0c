//! The file service on a tree of a million files: `list` (one page),
//! `tree` (bounded), `glob` and `grep`, against the real `llmbasedos-fs`
//! on its backend socket, beside the floor of the same run: plain `std::fs`
//! (`read_dir`, `lstat`, `read`) doing the same work with nothing else.
//!
//! The tree is generated in a temp dir: `dirs` directories of
//! `files_per_dir` small files (one `.rs` per directory, the rest `.txt`;
//! a rare line in one file of every tenth directory), and one directory
//! `wide` of `wide` entries. Three sizes:
//! - without `--bench` (as under `cargo test --all-targets`): a smoke run
//!   of a few thousand files that checks every answer, in seconds;
//! - `cargo bench -p fs --bench million`: 100 × 1,000 files and a
//!   100,000-entry directory;
//! - `FS_BENCH_MILLION=full`: 1,000 × 1,000 files (a million) and the
//!   100,000-entry directory.
//!
//! For each call it prints the p50 of a few runs, the floor's p50, their
//! ratio, the server's peak RSS during those runs (VmHWM, reset before
//! each call through /proc/PID/clear_refs) and the progress notifications
//! the call sent (every call carries a progressToken); then the server's
//! RSS idle before and after. The page cache is warm (the tree was just
//! written): these are CPU and syscall figures, not disk ones. Each
//! answer is checked against what the generator made, so the smoke run
//! fails if a walk stops early or a page is wrong; no figure is asserted.

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench_support::measure::smoke;
use bench_support::{ChildProcess, Client, Figures, Memory};
use proto::Message;
use serde_json::{Value, json};

#[path = "fs/server.rs"]
mod server;

const FS_BINARY: &str = env!("CARGO_BIN_EXE_llmbasedos-fs");
/// The rare line grep looks for.
const NEEDLE: &str = "rare-needle-7f3a";
/// The most entries one `list` page or one search answers (fs.cap.json's
/// `maximum` of `limit` and `max_results`).
const CAPS_MAXIMUM: usize = 10_000;
/// The most nodes a tree answer holds (`ops::walk::TREE_LIMIT`).
const TREE_LIMIT: u64 = 20_000;
const PAGE: usize = 1000;

/// What is generated, and how often each call is timed.
struct Shape {
    name: &'static str,
    dirs: usize,
    files_per_dir: usize,
    wide: usize,
    runs: usize,
}

impl Shape {
    fn chosen() -> Shape {
        if smoke() {
            Shape {
                name: "smoke",
                dirs: 10,
                files_per_dir: 200,
                wide: 1000,
                runs: 1,
            }
        } else if std::env::var("FS_BENCH_MILLION").is_ok_and(|value| value == "full") {
            Shape {
                name: "full (FS_BENCH_MILLION=full)",
                dirs: 1000,
                files_per_dir: 1000,
                wide: 100_000,
                runs: 3,
            }
        } else {
            Shape {
                name: "default (FS_BENCH_MILLION=full for a million)",
                dirs: 100,
                files_per_dir: 1000,
                wide: 100_000,
                runs: 5,
            }
        }
    }

    fn files(&self) -> usize {
        self.dirs * self.files_per_dir
    }

    /// Directories with the rare line, and the one in `wide`.
    fn needles(&self) -> usize {
        self.dirs.div_ceil(10) + 1
    }
}

fn main() -> ExitCode {
    let shape = Shape::chosen();
    let dir = tempfile::tempdir().expect("create a temp dir");
    let root = dir.path().join("root");
    let started = Instant::now();
    generate(&root, &shape);
    println!(
        "{} run: {} files in {} directories of {}, and /wide with {} entries; generated in {:.1} s",
        shape.name,
        shape.files(),
        shape.dirs,
        shape.files_per_dir,
        shape.wide,
        started.elapsed().as_secs_f64()
    );

    let mut server = Server::start(dir.path(), &root);
    let idle_before = server.memory();
    println!(
        "llmbasedos-fs idle: RSS {:.1} MiB; p50 of {} runs per call, the floor (std::fs doing the same) of the same run\n",
        mib(idle_before.rss_kib),
        shape.runs
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>7} {:>10} {:>9}",
        "call", "p50 ms", "floor ms", "ratio", "peak RSS", "progress"
    );

    // list: the first page, and one from the middle of /wide.
    let first = server.measure(
        &shape,
        "mcp.fs.list",
        json!({"path": "/wide", "limit": PAGE}),
    );
    check_page(&first.result, &shape, 0);
    let wide = root.join("wide");
    let floor = floor_runs(&shape, || floor_page(&wide, None, PAGE));
    assert_eq!(
        floor.value,
        page_names(&first.result),
        "the floor's first page"
    );
    first.print(&format!("list /wide, first page of {PAGE}"), &floor.figures);

    let middle_cursor = server.cursor_at(&shape, shape.wide / 2);
    let middle = server.measure(
        &shape,
        "mcp.fs.list",
        json!({"path": "/wide", "limit": PAGE, "cursor": middle_cursor}),
    );
    check_page(&middle.result, &shape, shape.wide / 2);
    let after = wide_name(shape.wide / 2 - 1);
    let floor = floor_runs(&shape, || floor_page(&wide, Some(&after), PAGE));
    assert_eq!(
        floor.value,
        page_names(&middle.result),
        "the floor's middle page"
    );
    middle.print(
        &format!("list /wide, page of {PAGE} at entry {}", shape.wide / 2),
        &floor.figures,
    );

    // tree: bounded by its node limit whatever the depth.
    for depth in [3, 10] {
        let tree = server.measure(&shape, "mcp.fs.tree", json!({"depth": depth}));
        let floor = floor_runs(&shape, || floor_tree(&root, depth));
        assert_eq!(tree.result["nodes"], floor.value, "tree nodes: {}", depth);
        let whole = shape.files() + shape.dirs + shape.wide + 2;
        assert_eq!(
            tree.result["truncated"],
            whole as u64 > TREE_LIMIT,
            "tree truncated"
        );
        tree.print(&format!("tree depth {depth}"), &floor.figures);
    }

    // glob: every name of the tree; one .rs per directory.
    let glob = server.measure(
        &shape,
        "mcp.fs.glob",
        json!({"pattern": "*.rs", "max_results": CAPS_MAXIMUM}),
    );
    let matches = glob.result["matches"].as_array().map_or(0, Vec::len);
    assert_eq!(
        (matches, &glob.result["truncated"]),
        (shape.dirs, &json!(false)),
        "glob *.rs"
    );
    let floor = floor_runs(&shape, || {
        floor_walk(&root, &mut |_, name| name.ends_with(".rs"))
    });
    assert_eq!(floor.value, shape.dirs as u64, "the floor's glob");
    glob.print(
        &format!("glob *.rs ({} entries walked)", shape.files() + shape.wide),
        &floor.figures,
    );

    // grep: every file read, a rare line.
    let grep = server.measure(
        &shape,
        "mcp.fs.grep",
        json!({"pattern": NEEDLE, "fixed_strings": true, "max_results": CAPS_MAXIMUM}),
    );
    let found = grep.result["matches"].as_array().map_or(0, Vec::len);
    assert_eq!(
        (found, &grep.result["files_searched"]),
        (shape.needles(), &json!(shape.files() + shape.wide)),
        "grep {NEEDLE}"
    );
    let floor = floor_runs(&shape, || {
        floor_walk(&root, &mut |path, _| {
            let bytes = std::fs::read(path).expect("read a file");
            bytes
                .windows(NEEDLE.len())
                .any(|window| window == NEEDLE.as_bytes())
        })
    });
    assert_eq!(floor.value, shape.needles() as u64, "the floor's grep");
    grep.print(
        &format!("grep a rare string ({} files)", shape.files() + shape.wide),
        &floor.figures,
    );

    let idle_after = server.memory();
    println!(
        "\nllmbasedos-fs RSS idle: {:.1} MiB before the calls, {:.1} MiB after; peak over the run {:.1} MiB",
        mib(idle_before.rss_kib),
        mib(idle_after.rss_kib),
        mib(server.peak_over_run)
    );
    if smoke() {
        println!(
            "\nsmoke run (cargo test): every answer checked; `cargo bench -p fs --bench million` gives the figures"
        );
    }
    ExitCode::SUCCESS
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn wide_name(index: usize) -> String {
    format!("w{index:06}.txt")
}

/// Writes the tree (see the module's doc).
fn generate(root: &Path, shape: &Shape) {
    for dir in 0..shape.dirs {
        let path = root.join(format!("d{dir:04}"));
        std::fs::create_dir_all(&path).expect("create a directory");
        for file in 0..shape.files_per_dir {
            let extension = if file == 0 { "rs" } else { "txt" };
            let mut content = format!("file {file} of directory {dir}\nsecond line\n");
            if dir % 10 == 0 && file == shape.files_per_dir / 2 {
                content.push_str(NEEDLE);
                content.push('\n');
            }
            std::fs::write(path.join(format!("f{file:04}.{extension}")), content)
                .expect("write a file");
        }
    }
    let wide = root.join("wide");
    std::fs::create_dir_all(&wide).expect("create /wide");
    for index in 0..shape.wide {
        let mut content = format!("entry {index}\n");
        if index == shape.wide / 2 {
            content.push_str(NEEDLE);
            content.push('\n');
        }
        std::fs::write(wide.join(wide_name(index)), content).expect("write a wide entry");
    }
}

/// The server on its backend socket, with a config of its own (no index
/// watching) in the run's temp dir.
struct Server {
    process: ChildProcess,
    client: Client,
    peak_over_run: u64,
}

/// One call's figures.
struct Measured {
    result: Value,
    figures: Figures,
    peak_kib: Option<u64>,
    progress: u64,
}

impl Server {
    fn start(dir: &Path, root: &Path) -> Server {
        let socket = dir.join("fs.sock");
        let config = dir.join("fs.yaml");
        std::fs::write(
            &config,
            format!("watch: false\nindex_dir: {}\n", dir.join("index").display()),
        )
        .expect("write the fs config");
        let process = server::start(FS_BINARY, &socket, &config, root, dir.join("fs.log"));
        let client = Client::connect(&socket);
        Server {
            process,
            client,
            peak_over_run: 0,
        }
    }

    fn pid(&mut self) -> u32 {
        self.process.process().id()
    }

    fn memory(&mut self) -> Memory {
        let memory = Memory::of(self.pid());
        self.peak_over_run = self.peak_over_run.max(memory.peak_kib);
        memory
    }

    /// Resets the server's VmHWM to its RSS now (Linux ≥ 4.0); false when
    /// the kernel refuses.
    fn reset_peak(&mut self) -> bool {
        self.memory();
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// One call with a progressToken: its result (which must be one), how
    /// long it took and how many progress notifications came first. Each
    /// frame has `PATIENCE` to come, so a long walk that reports keeps
    /// the call alive.
    fn call(&mut self, method: &str, params: &Value) -> (Value, Duration, u64) {
        let mut params = params.clone();
        params["_meta"] = json!({"progressToken": "million"});
        let started = Instant::now();
        let id = self.client.send_request(method, params.clone());
        let mut progress = 0;
        loop {
            match self.client.receive() {
                Message::Notification(notification) => {
                    assert_eq!(notification.method, "notifications/progress");
                    progress += 1;
                }
                Message::Response(response) if response.id.as_ref() == Some(&id) => {
                    let result = response
                        .outcome
                        .unwrap_or_else(|error| panic!("{method} {params} failed: {error}"));
                    return (result, started.elapsed(), progress);
                }
                other => panic!("expected the answer to {method}, got {other:?}"),
            }
        }
    }

    /// `shape.runs` calls; the last one's result.
    fn measure(&mut self, shape: &Shape, method: &str, params: Value) -> Measured {
        let reset = self.reset_peak();
        let mut samples = Vec::with_capacity(shape.runs);
        let mut last = None;
        let started = Instant::now();
        for _ in 0..shape.runs {
            let (result, took, progress) = self.call(method, &params);
            samples.push(took);
            last = Some((result, progress));
        }
        let figures = Figures::of(samples, started.elapsed());
        let peak = self.memory().peak_kib;
        let (result, progress) = last.expect("at least one run");
        Measured {
            result,
            figures,
            peak_kib: reset.then_some(peak),
            progress,
        }
    }

    /// The cursor of the page that starts at entry `index` of /wide, from
    /// pages as large as the caps allow.
    fn cursor_at(&mut self, shape: &Shape, index: usize) -> String {
        let limit = CAPS_MAXIMUM.min(index).max(1);
        let mut cursor: Option<String> = None;
        let mut at = 0;
        // Bounded: each page moves `limit` entries on.
        while at < index {
            let limit = limit.min(index - at);
            let mut params = json!({"path": "/wide", "limit": limit});
            if let Some(cursor) = &cursor {
                params["cursor"] = json!(cursor);
            }
            let (page, _, _) = self.call("mcp.fs.list", &params);
            check_page(&page, shape, at);
            cursor = Some(
                page["next_cursor"]
                    .as_str()
                    .expect("a next page")
                    .to_owned(),
            );
            at += limit;
        }
        cursor.expect("a cursor past the first page")
    }
}

impl Measured {
    fn print(&self, name: &str, floor: &Figures) {
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        let peak = self
            .peak_kib
            .map_or_else(|| "n/a".to_owned(), |kib| format!("{:.1} MiB", mib(kib)));
        println!(
            "  {name:<44} {:>10.1} {:>10.1} {:>6.2}× {peak:>10} {:>9}",
            ms(self.figures.p50),
            ms(floor.p50),
            self.figures.p50.as_secs_f64() / floor.p50.as_secs_f64(),
            self.progress
        );
    }
}

/// A page of /wide starting at entry `from`, as the generator named them.
fn check_page(page: &Value, shape: &Shape, from: usize) {
    let names = page_names(page);
    assert!(!names.is_empty(), "an empty page: {page}");
    for (offset, name) in names.iter().enumerate() {
        assert_eq!(
            *name,
            wide_name(from + offset),
            "entry {} of /wide",
            from + offset
        );
    }
    assert_eq!(page["total"], shape.wide, "the total of /wide");
    assert_eq!(
        page["next_cursor"].is_string(),
        from + names.len() < shape.wide,
        "whether a next page is offered"
    );
}

fn page_names(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {page}"))
        .iter()
        .map(|entry| entry["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// The floor's figures, and what its last run found.
struct Floor<T> {
    figures: Figures,
    value: T,
}

fn floor_runs<T>(shape: &Shape, mut run: impl FnMut() -> T) -> Floor<T> {
    let mut samples = Vec::with_capacity(shape.runs);
    let mut value = None;
    let started = Instant::now();
    for _ in 0..shape.runs {
        let start = Instant::now();
        value = Some(run());
        samples.push(start.elapsed());
    }
    Floor {
        figures: Figures::of(samples, started.elapsed()),
        value: value.expect("at least one run"),
    }
}

/// What any page of a directory costs: every name read and `lstat`ed (the
/// answer counts sizes and types), the first `limit` after `after` kept.
fn floor_page(dir: &Path, after: Option<&str>, limit: usize) -> Vec<String> {
    let mut page = BinaryHeap::with_capacity(limit + 1);
    for entry in std::fs::read_dir(dir).expect("read /wide") {
        let entry = entry.expect("an entry");
        let metadata = std::fs::symlink_metadata(entry.path()).expect("lstat");
        std::hint::black_box(metadata.len());
        let name = entry.file_name().into_string().expect("a UTF-8 name");
        if after.is_some_and(|after| name.as_str() <= after) {
            continue;
        }
        page.push(name);
        if page.len() > limit {
            page.pop();
        }
    }
    page.into_sorted_vec()
}

/// The nodes a bounded tree holds: directories read in name order, down
/// to `depth` levels, stopping at [`TREE_LIMIT`] nodes.
fn floor_tree(root: &Path, depth: usize) -> u64 {
    fn children(dir: &Path, depth: usize, nodes: &mut u64) {
        if depth == 0 {
            return;
        }
        let mut entries: Vec<(String, bool)> = std::fs::read_dir(dir)
            .expect("read a directory")
            .map(|entry| {
                let entry = entry.expect("an entry");
                let is_dir = entry.file_type().expect("a type").is_dir();
                (entry.file_name().into_string().expect("UTF-8"), is_dir)
            })
            .collect();
        entries.sort();
        for (name, is_dir) in entries {
            if *nodes >= TREE_LIMIT {
                return;
            }
            *nodes += 1;
            if is_dir {
                children(&dir.join(name), depth - 1, nodes);
            }
        }
    }
    let mut nodes = 1;
    children(root, depth, &mut nodes);
    nodes
}

/// Walks every directory (types from `read_dir`, no `lstat`), calling
/// `matches` on each file; the count of those that match.
fn floor_walk(root: &Path, matches: &mut dyn FnMut(&Path, &str) -> bool) -> u64 {
    let mut found = 0;
    let mut pending: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory") {
            let entry = entry.expect("an entry");
            let path = entry.path();
            if entry.file_type().expect("a type").is_dir() {
                pending.push(path);
            } else {
                let name = entry.file_name();
                if matches(&path, name.to_str().expect("UTF-8")) {
                    found += 1;
                }
            }
        }
    }
    found
}
