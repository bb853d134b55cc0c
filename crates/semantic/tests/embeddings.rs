//! The embedding pipeline reproduces sentence-transformers: every sentence
//! of the reference fixture (made with sentence-transformers 6.2.0 from the
//! same weights; the empty and a 2,700-character sentence included) comes
//! out with a cosine of at least 0.9999 to its reference, and the pairwise
//! cosines match.

mod support;

use serde_json::Value;

const FIXTURE: &str = include_str!("data/minilm-reference.json");

#[test]
fn reproduces_the_reference_embeddings() {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("fixture parses");
    let sentences: Vec<&str> = fixture["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|sentence| sentence.as_str().expect("a string"))
        .collect();
    let references: Vec<Vec<f32>> = fixture["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(|vector| {
            vector
                .as_array()
                .expect("a vector")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect();
    let embedder = support::embedder();
    // One at a time and as one batch (padding must not change anything).
    let batched = embedder.embed(&sentences).expect("embed");
    for (index, sentence) in sentences.iter().enumerate() {
        let alone = embedder.embed(&[sentence]).expect("embed").remove(0);
        for (how, vector) in [("alone", &alone), ("batched", &batched[index])] {
            assert_eq!(vector.len(), semantic::embed::DIMENSIONS);
            let cosine = semantic::embed::cosine(vector, &references[index]);
            assert!(
                cosine >= 0.9999,
                "sentence {index} ({how}) {:?}: cosine {cosine}",
                &sentence[..sentence.len().min(40)]
            );
        }
    }
    for (pair, expected) in fixture["cosine"].as_object().expect("cosines") {
        let (a, b) = pair.split_once(',').expect("a pair");
        let (a, b): (usize, usize) = (a.parse().expect("index"), b.parse().expect("index"));
        let cosine = semantic::embed::cosine(&batched[a], &batched[b]);
        let expected = expected.as_f64().expect("a number") as f32;
        assert!(
            (cosine - expected).abs() < 1e-3,
            "{pair}: {cosine} vs {expected}"
        );
    }
}

#[test]
fn long_texts_are_truncated_at_256_word_pieces() {
    let embedder = support::embedder();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(60);
    assert!(embedder.count_tokens(&long) > 256);
    // What lies beyond the first 254 pieces does not change the embedding.
    let more = format!("{long} Completely different words about tax law and shipping.");
    let vectors = embedder.embed(&[&long, &more]).expect("embed");
    assert!(semantic::embed::cosine(&vectors[0], &vectors[1]) > 0.99999);
}
