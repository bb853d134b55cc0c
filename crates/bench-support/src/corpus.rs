//! A real corpus that no one here wrote: the reStructuredText sources of
//! the Python documentation (Debian's python3-doc, which
//! `scripts/install-test-deps` installs; Arch's python-docs), read as prose
//! sentences. The semantic benchmark measures int8 against fp32 on it and
//! the retrieval test checks the compact graph's answers on it.

use std::path::{Path, PathBuf};

/// Where the sources are on Debian and on Arch.
pub const PYTHON_DOCS: &[&str] = &[
    "/usr/share/doc/python3/html/_sources",
    "/usr/share/doc/python/html/_sources",
];

/// The first of [`PYTHON_DOCS`] that exists, or what installs it.
pub fn python_docs() -> Result<PathBuf, String> {
    PYTHON_DOCS
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.is_dir())
        .ok_or_else(|| {
            format!(
                "the Python documentation is missing ({}): run ./scripts/install-test-deps (it installs python3-doc)",
                PYTHON_DOCS.join(" or ")
            )
        })
}

/// Every `.txt` file beneath `dir`, sorted by path.
pub fn text_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|error| format!("{}: {error}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "txt") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The prose sentences of a reStructuredText file: paragraphs that are not
/// markup (directives, field lists, headings' underlines, indented code or
/// tables), split at full stops, with 8 to 40 words of mostly letters.
pub fn sentences(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for paragraph in text.split("\n\n") {
        let lines: Vec<&str> = paragraph.lines().collect();
        let prose = !lines.is_empty()
            && lines.iter().all(|line| {
                let trimmed = line.trim_end();
                !trimmed.is_empty()
                    && !line.starts_with([' ', '\t'])
                    && !trimmed.starts_with("..")
                    && !trimmed.starts_with(':')
                    && !trimmed.starts_with(['*', '-', '+', '#', '|', '>', '='])
                    && !trimmed.chars().all(|c| "=-~^*+#`'\".:_".contains(c))
            });
        if !prose {
            continue;
        }
        let joined = lines.join(" ");
        for sentence in joined.split(". ") {
            let sentence = sentence.trim();
            let words = sentence.split_whitespace().count();
            let letters = sentence.chars().filter(|c| c.is_alphabetic()).count();
            if (8..=40).contains(&words) && letters * 10 >= sentence.len() * 7 {
                found.push(format!("{}.", sentence.trim_end_matches('.')));
            }
        }
    }
    found
}
