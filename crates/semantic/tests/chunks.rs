//! Content-addressed chunks, with the real model: an edit re-embeds only
//! the chunks it changed, identical chunks are embedded once (within one
//! update and across updates), a removed copy leaves the other's vector
//! searchable, and vectors embedded in batches sorted by length come back
//! to exactly their own chunks.

mod support;

use std::path::Path;

use semantic::{Counters, DirSource, Index, Settings, Target};

const TOPICS: &[&str] = &[
    "the harbour",
    "a mountain railway",
    "the village bakery",
    "an old observatory",
    "the river ferry",
    "a beekeeper's year",
    "the night market",
    "a lighthouse on the cape",
    "the winter orchard",
    "a clockmaker's shop",
];

const SENTENCES: &[&str] = &[
    "The morning began with fog that lifted slowly over the water.",
    "Visitors arrived by the early train and walked up the hill.",
    "Records from the last century describe the same routine.",
    "Nobody remembers exactly when the tradition started.",
    "In summer the work doubles and everyone helps in turn.",
    "A small museum keeps the tools that were used at the time.",
    "The accounts were written by hand in a large green ledger.",
    "Children from the school come every spring to watch.",
    "Repairs are made in autumn, when the weather is still mild.",
    "The council debated the cost for three long evenings.",
    "Local musicians play on the square every Saturday evening.",
    "Prices rose after the bridge was rebuilt in stone.",
];

/// A long note of `sections` sections, each a heading and four to nine
/// paragraphs of varied length: a section is two or three chunks, most of
/// them packed with several paragraphs, so an edit that changes a
/// paragraph's length moves the cuts after it.
fn long_note(sections: usize) -> String {
    let mut text = String::from("# A long note\n\n");
    let mut state = 7_usize;
    let mut next = |modulus: usize| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (1 << 31);
        (state >> 8) % modulus
    };
    for section in 0..sections {
        let topic = TOPICS[section % TOPICS.len()];
        text.push_str(&format!("## Section {section}: {topic}\n\n"));
        for paragraph in 0..4 + next(6) {
            let sentences = 1 + next(6);
            let body: Vec<String> = (0..sentences)
                .map(|_| SENTENCES[next(SENTENCES.len())].to_owned())
                .collect();
            text.push_str(&format!(
                "Paragraph {paragraph} of section {section} about {topic}. {}\n\n",
                body.join(" ")
            ));
        }
    }
    text
}

fn update(index: &Index, root: &Path) -> Counters {
    let embedder = support::embedder();
    let source = DirSource::new(root);
    index
        .update(
            &embedder,
            Target {
                source: &source,
                path: "/",
                recursive: true,
            },
            &Settings::default(),
            &mut |_| {},
            &|| false,
        )
        .expect("update")
}

#[test]
fn editing_one_paragraph_of_a_long_file_embeds_at_most_three_chunks() {
    let embedder = support::embedder();
    let root = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("temp dir");
    let file = root.path().join("long.md");
    let original = long_note(104);
    std::fs::write(&file, &original).expect("write");
    let index = Index::open(state.path()).expect("open");
    let first = update(&index, root.path());
    let chunks = index.status().expect("status").chunks;
    assert!((180..=260).contains(&chunks), "{chunks} chunks: {first:?}");

    // One sentence of one paragraph in the middle changes.
    let marker = "Paragraph 2 of section 52 about";
    let at = original.find(marker).expect("section 52");
    let end = at + original[at..].find("\n\n").expect("paragraph end");
    let edited = format!(
        "{}{marker} the lighthouse keeper who painted the spiral staircase turquoise.{}",
        &original[..at],
        &original[end..]
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&file, &edited).expect("write");
    let started = std::time::Instant::now();
    let after = update(&index, root.path());
    eprintln!(
        "{chunks} chunks; after a one-paragraph edit: {} embedded, {} reused, {:.2} s",
        after.chunks_embedded,
        after.chunks_reused,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(after.files_embedded, 1, "{after:?}");
    assert!(
        (1..=3).contains(&after.chunks_embedded),
        "{} chunks embedded for a one-paragraph edit: {after:?}",
        after.chunks_embedded
    );
    let now = index.status().expect("status");
    assert_eq!(
        after.chunks_embedded + after.chunks_reused,
        now.chunks,
        "{after:?}"
    );
    assert_eq!(
        (now.last_chunks_embedded, now.last_chunks_reused),
        (after.chunks_embedded, after.chunks_reused)
    );
    let hits = index
        .search_text(
            &embedder,
            "keeper painting a spiral staircase turquoise",
            1,
            None,
        )
        .expect("search");
    // The snippet is the chunk's start; the edited line lies in its range.
    let line = u32::try_from(original[..at].lines().count() + 1).expect("small");
    assert!(
        hits[0].start_line <= line && line <= hits[0].end_line,
        "line {line}: {hits:?}"
    );
    index.check().expect("consistent");
}

#[test]
fn identical_chunks_are_embedded_once_and_outlive_one_copy() {
    let embedder = support::embedder();
    let root = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("temp dir");
    let shared = "## Shared\n\nThe ferry to the island leaves at dawn and returns when the tide turns in the afternoon.";
    std::fs::write(
        root.path().join("a.md"),
        format!("# Notes A\n\nCats sleep most of the day in a warm spot.\n\n{shared}\n"),
    )
    .expect("write");
    std::fs::write(
        root.path().join("b.md"),
        format!("# Notes B\n\nCompilers turn source code into machine code.\n\n{shared}\n"),
    )
    .expect("write");
    let index = Index::open(state.path()).expect("open");
    let first = update(&index, root.path());
    // Four chunks, three texts: the shared section is embedded once.
    assert_eq!(index.status().expect("status").chunks, 4);
    assert_eq!(
        (first.chunks_embedded, first.chunks_reused),
        (3, 1),
        "{first:?}"
    );

    // A later file with the same section reuses the stored vector.
    std::fs::write(
        root.path().join("c.md"),
        format!("# Notes C\n\nGlaciers carve valleys over thousands of years.\n\n{shared}\n"),
    )
    .expect("write");
    let later = update(&index, root.path());
    assert_eq!(
        (
            later.files_embedded,
            later.chunks_embedded,
            later.chunks_reused
        ),
        (1, 1, 1),
        "{later:?}"
    );
    index.check().expect("consistent");

    // Removing two copies keeps the third's vector searchable.
    std::fs::remove_file(root.path().join("a.md")).expect("remove");
    std::fs::remove_file(root.path().join("c.md")).expect("remove");
    let removed = update(&index, root.path());
    assert_eq!(removed.files_removed, 2, "{removed:?}");
    index.check().expect("consistent");
    let vector = embedder.embed(&[shared]).expect("embed").remove(0);
    let hits = index
        .search(&vector, embedder.precision(), 1, None)
        .expect("search");
    assert_eq!(hits[0].path, "/b.md", "{hits:?}");
    assert!(hits[0].score > 0.9999, "{hits:?}");

    // And a file brought back after its copies are gone embeds nothing
    // new for the section the index still holds.
    std::fs::write(
        root.path().join("a.md"),
        format!("# Notes A\n\nCats sleep most of the day in a warm spot.\n\n{shared}\n"),
    )
    .expect("write");
    let back = update(&index, root.path());
    assert_eq!(
        (back.chunks_embedded, back.chunks_reused),
        (1, 1),
        "{back:?}"
    );
    drop(index);
    let index = Index::open(state.path()).expect("reopen");
    index.check().expect("consistent after a reopen");
}

#[test]
fn vectors_embedded_in_length_sorted_batches_map_back_to_their_chunks() {
    let embedder = support::embedder();
    let root = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("temp dir");
    // Sections of very different lengths, in an order that sorting by
    // length reshuffles; each section is one chunk.
    let lengths = [3, 12, 1, 9, 5, 11, 2, 7, 10, 4, 8, 6];
    let mut expected = Vec::new();
    for (file, group) in lengths.chunks(4).enumerate() {
        let mut text = String::new();
        let mut line = 1;
        for (section, &sentences) in group.iter().enumerate() {
            let body: Vec<&str> = (0..sentences)
                .map(|n| SENTENCES[(n + section + file) % SENTENCES.len()])
                .collect();
            let heading = format!("## Part {section} of file {file}");
            let chunk = format!("{heading}\n\n{}", body.join(" "));
            text.push_str(&chunk);
            text.push_str("\n\n");
            expected.push((format!("/f{file}.md"), line, chunk));
            line += 4;
        }
        std::fs::write(root.path().join(format!("f{file}.md")), text).expect("write");
    }
    let index = Index::open(state.path()).expect("open");
    let counters = update(&index, root.path());
    assert_eq!(
        counters.chunks_embedded,
        lengths.len() as u64,
        "{counters:?}"
    );
    for (path, start_line, chunk) in &expected {
        let alone = embedder.embed(&[chunk.as_str()]).expect("embed").remove(0);
        let hits = index
            .search(&alone, embedder.precision(), 1, None)
            .expect("search");
        assert_eq!(
            (&hits[0].path, hits[0].start_line),
            (path, *start_line),
            "{chunk:?}: {hits:?}"
        );
        assert!(hits[0].score > 0.9999, "{chunk:?}: {hits:?}");
    }
    index.check().expect("consistent");
}
