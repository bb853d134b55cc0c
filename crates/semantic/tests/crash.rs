//! Crash safety: `semantic-index` is killed with SIGKILL at random moments
//! while it indexes (files also change and disappear between runs, so
//! removals happen too); after every kill the index opens, reconciles and
//! passes its invariants (every chunk has its vector in the database and
//! in the graph, and the graph holds nothing else; every chunk is listed
//! under its content address and the chunks of one address share one
//! vector); a last run finishes. A second case kills updates that mostly
//! reuse vectors: long files with one paragraph edited per round, and
//! copies of them.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_semantic-index");
/// Kill cycles (each costs a model load and some embedding).
const KILLS: usize = 12;
const FILES: usize = 160;

fn write_tree(root: &Path, generation: usize) {
    for file in 0..FILES {
        // Each round rewrites a few files, so work remains to be killed.
        let version = if file % 7 == generation % 7 {
            generation
        } else {
            0
        };
        let path = root.join(format!("d{}/f{file:03}.md", file % 8));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let text = format!(
            "# Note {file} version {version}\n\n{}\n\nParagraph {file} about topic {} with details.\n",
            "Some words that fill the note. ".repeat(1 + file % 5),
            file * 31 % 97
        );
        std::fs::write(path, text).expect("write");
    }
}

fn check(index_dir: &Path) -> String {
    let output = Command::new(BINARY)
        .arg("--check")
        .arg(index_dir)
        .output()
        .expect("run semantic-index --check");
    assert!(
        output.status.success(),
        "the index is not consistent after a kill: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn indexer(index_dir: &Path, root: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg(index_dir)
        .arg(root)
        .env("LLMBASEDOS_FS_MODEL_DIR", support::model_dir())
        .env("ORT_DYLIB_PATH", support::runtime())
        // Small commits and frequent saves: kills land between and inside both.
        .env("SEMANTIC_INDEX_FILES_PER_COMMIT", "4")
        .env("SEMANTIC_INDEX_SAVE_INTERVAL_MS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A pseudo-random delay from the clock (no dependency for one number).
fn random_delay(round: usize) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |duration| duration.subsec_nanos());
    let mixed = (u64::from(nanos) ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    // Between 0.2 s (model loading) and 2.2 s (deep in indexing).
    Duration::from_millis(200 + mixed % 2000)
}

/// Files of many sections; each round edits one paragraph of some, and
/// every file has a copy, so most chunks of an update reuse a vector.
fn write_reusing_tree(root: &Path, round: usize) {
    for file in 0..REUSING_FILES {
        let mut text = format!("# Long note {file}\n\n");
        for section in 0..12 {
            let edited = if (file + section) % 5 == round % 5 {
                format!(" Edited in round {round}.")
            } else {
                String::new()
            };
            text.push_str(&format!(
                "## Part {section}\n\nSection {section} of note {file} about topic {}.{edited} {}\n\n",
                (file * 13 + section) % 41,
                "Words that make the section long enough to matter. ".repeat(1 + section % 4)
            ));
        }
        for copy in ["a", "b"] {
            let path = root.join(format!("{copy}/n{file:02}.md"));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, &text).expect("write");
        }
    }
}

const REUSING_FILES: usize = 24;

#[test]
fn sigkill_during_updates_that_reuse_vectors_leaves_a_consistent_index() {
    let root = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("temp dir");
    let index_dir = state.path().join("index");
    write_reusing_tree(root.path(), 0);
    let output = indexer(&index_dir, root.path())
        .output()
        .expect("run semantic-index");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generation = |status: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(status).expect("status JSON")["generation"]
            .as_u64()
            .expect("generation")
    };
    let mut before = generation(&check(&index_dir));
    let mut killed_after_commits = 0;
    for round in 1..=8 {
        write_reusing_tree(root.path(), round);
        let mut child = indexer(&index_dir, root.path())
            .spawn()
            .expect("start semantic-index");
        // Later than the other case: past the model's load and into the
        // commits of reused vectors.
        let deadline = Instant::now() + Duration::from_millis(800) + 2 * random_delay(round);
        let mut finished = false;
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let status = child.wait().expect("reap");
        assert!(
            status.code().is_none_or(|code| code == 0),
            "semantic-index failed by itself: {status}"
        );
        let status = check(&index_dir);
        eprintln!("reusing round {round} (killed: {}): {status}", !finished);
        let after = generation(&status);
        if !finished && after > before {
            killed_after_commits += 1;
        }
        before = after;
    }
    assert!(
        killed_after_commits > 0,
        "no run was killed after it had committed reused vectors: the test killed nothing that matters"
    );
    // A run to the end reuses what the killed runs committed.
    write_reusing_tree(root.path(), 9);
    let output = indexer(&index_dir, root.path())
        .output()
        .expect("run semantic-index");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counters: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("counters JSON");
    assert!(
        counters["chunks_reused"].as_u64() > counters["chunks_embedded"].as_u64(),
        "{counters}"
    );
    let status: serde_json::Value = serde_json::from_str(&check(&index_dir)).expect("status JSON");
    assert_eq!(status["files"], 2 * REUSING_FILES, "{status}");
}

#[test]
fn sigkill_at_any_moment_leaves_a_consistent_index() {
    let root = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("temp dir");
    let index_dir = state.path().join("index");
    let mut finished_early = 0;
    let mut reconciled_after_a_save = 0;
    for round in 0..KILLS {
        write_tree(root.path(), round);
        if round % 3 == 2 {
            // Deletions make tombstones.
            let _ = std::fs::remove_dir_all(root.path().join(format!("d{}", round % 8)));
        }
        let mut child = indexer(&index_dir, root.path())
            .spawn()
            .expect("start semantic-index");
        let deadline = Instant::now() + random_delay(round);
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                finished_early += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let status = child.wait().expect("reap");
        assert!(
            status.code().is_none_or(|code| code == 0),
            "semantic-index failed by itself: {status}"
        );
        let status: serde_json::Value =
            serde_json::from_str(&check(&index_dir)).expect("status JSON");
        eprintln!("round {round}: {status}");
        if status["saved_generation"].as_u64() > Some(0)
            && status["reconciled_vectors"].as_u64() > Some(0)
        {
            reconciled_after_a_save += 1;
        }
    }
    assert!(
        finished_early < KILLS,
        "every run finished before its kill: the test killed nothing"
    );
    eprintln!("{reconciled_after_a_save} kills left a saved graph behind its database");

    // A run to the end indexes everything; the index stays consistent.
    write_tree(root.path(), 0);
    let output = indexer(&index_dir, root.path())
        .output()
        .expect("run semantic-index");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&check(&index_dir)).expect("status JSON");
    assert_eq!(status["files"], FILES, "{status}");
    assert_eq!(status["generation"], status["saved_generation"], "{status}");
    // And a run after it has nothing to do.
    let output = indexer(&index_dir, root.path())
        .output()
        .expect("run semantic-index");
    let counters: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("counters JSON");
    assert_eq!(counters["files_embedded"], 0, "{counters}");
    assert_eq!(counters["files_unchanged"], FILES, "{counters}");
}
