//! Chunking by text structure: a text becomes pieces of at most a token
//! budget, cut at markdown headings first, then at blank lines
//! (paragraphs), then at line ends, and inside a line only when one line
//! alone is over the budget. Consecutive chunks overlap by a few lines when
//! a paragraph had to be cut, so a sentence at the cut is found from
//! either side. Each chunk keeps the 1-based range of lines it covers.

/// One piece of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, inclusive.
    pub end_line: u32,
    pub text: String,
}

/// How big chunks are, in tokens as the counter counts them.
#[derive(Clone, Copy, Debug)]
pub struct ChunkOptions {
    /// Largest chunk. The model sees 256 word pieces with its two special
    /// tokens; 254 leaves room for them.
    pub max_tokens: usize,
    /// Tokens repeated from the end of a chunk cut inside a paragraph.
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> ChunkOptions {
        ChunkOptions {
            max_tokens: 254,
            overlap_tokens: 32,
        }
    }
}

struct Line<'a> {
    number: u32,
    text: &'a str,
    tokens: usize,
}

/// Cuts `text` into chunks; `count` gives a string's token count.
pub fn chunk(text: &str, options: &ChunkOptions, count: &dyn Fn(&str) -> usize) -> Vec<Chunk> {
    let budget = options.max_tokens.max(8);
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let trimmed = raw.trim_end();
        if trimmed.trim().is_empty() {
            lines.push(Line {
                number,
                text: "",
                tokens: 0,
            });
            continue;
        }
        let tokens = count(trimmed);
        if tokens <= budget {
            lines.push(Line {
                number,
                text: trimmed,
                tokens,
            });
        } else {
            // One over-long line (minified code, a table): cut it between
            // words, and failing that between characters.
            for piece in split_long_line(trimmed, budget, count) {
                let tokens = count(piece);
                lines.push(Line {
                    number,
                    text: piece,
                    tokens,
                });
            }
        }
    }

    let mut chunks = Vec::new();
    let mut current: Vec<&Line<'_>> = Vec::new();
    let mut tokens = 0;
    let mut index = 0;
    while index < lines.len() {
        let line = &lines[index];
        if line.text.is_empty() {
            // A paragraph ends; keep the blank as a break.
            index += 1;
            if !current.is_empty() {
                current.push(line);
            }
            continue;
        }
        let heading = is_heading(line.text);
        if heading && tokens > 0 {
            flush(&mut chunks, &current);
            current.clear();
            tokens = 0;
        }
        // The paragraph this line starts (or continues).
        let paragraph_tokens: usize = lines[index..]
            .iter()
            .take_while(|line| !line.text.is_empty())
            .map(|line| line.tokens + 1)
            .sum();
        let starts_paragraph = index == 0 || lines[index - 1].text.is_empty() || heading;
        if starts_paragraph && tokens > 0 && tokens + paragraph_tokens > budget {
            // The next paragraph does not fit: cut between paragraphs, no overlap.
            flush(&mut chunks, &current);
            current.clear();
            tokens = 0;
        }
        if tokens + line.tokens + 1 > budget && tokens > 0 {
            // Cut inside a paragraph: carry the last lines over.
            flush(&mut chunks, &current);
            let mut carried = Vec::new();
            let mut carried_tokens = 0;
            for previous in current.iter().rev() {
                if previous.text.is_empty()
                    || carried_tokens + previous.tokens + 1 > options.overlap_tokens
                {
                    break;
                }
                carried_tokens += previous.tokens + 1;
                carried.push(*previous);
            }
            carried.reverse();
            current = carried;
            tokens = carried_tokens;
        }
        current.push(line);
        tokens += line.tokens + 1;
        index += 1;
    }
    flush(&mut chunks, &current);
    chunks
}

fn flush(chunks: &mut Vec<Chunk>, lines: &[&Line<'_>]) {
    let content: Vec<&&Line<'_>> = lines.iter().filter(|line| !line.text.is_empty()).collect();
    let (Some(first), Some(last)) = (content.first(), content.last()) else {
        return;
    };
    let mut text = String::new();
    let mut previous: Option<&Line<'_>> = None;
    for line in lines {
        if let Some(previous) = previous {
            // Pieces of one cut line join with a space, lines with a newline.
            text.push(if previous.number == line.number && !line.text.is_empty() {
                ' '
            } else {
                '\n'
            });
        }
        text.push_str(line.text);
        previous = Some(line);
    }
    chunks.push(Chunk {
        start_line: first.number,
        end_line: last.number,
        text: text.trim().to_owned(),
    });
}

/// A markdown ATX heading: `#` to `######` then a space.
fn is_heading(line: &str) -> bool {
    let hashes = line.bytes().take_while(|&byte| byte == b'#').count();
    (1..=6).contains(&hashes) && line.as_bytes().get(hashes).is_none_or(|&byte| byte == b' ')
}

/// Cuts one line into pieces of at most `budget` tokens, at spaces when it
/// can, else at character boundaries.
fn split_long_line<'a>(
    line: &'a str,
    budget: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if count(rest) <= budget {
            pieces.push(rest);
            break;
        }
        // Binary search the longest prefix that fits, on char boundaries.
        let boundaries: Vec<usize> = rest
            .char_indices()
            .map(|(at, _)| at)
            .skip(1)
            .chain(std::iter::once(rest.len()))
            .collect();
        let (mut low, mut high) = (0, boundaries.len() - 1);
        while low < high {
            let middle = (low + high).div_ceil(2);
            if count(&rest[..boundaries[middle]]) <= budget {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        let mut end = boundaries[low];
        // Prefer the last space in the fitting prefix.
        if let Some(space) = rest[..end].rfind(' ')
            && space > end / 2
        {
            end = space;
        }
        pieces.push(rest[..end].trim_end());
        rest = rest[end..].trim_start();
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word is a token, as near enough for testing the cuts.
    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn ranges(text: &str, max_tokens: usize, overlap_tokens: usize) -> Vec<(u32, u32)> {
        let options = ChunkOptions {
            max_tokens,
            overlap_tokens,
        };
        chunk(text, &options, &words)
            .into_iter()
            .map(|chunk| (chunk.start_line, chunk.end_line))
            .collect()
    }

    #[test]
    fn cuts_follow_the_structure() {
        // (text, max tokens, overlap tokens, line ranges of the chunks)
        type Case = (&'static str, usize, usize, &'static [(u32, u32)]);
        let cases: &[Case] = &[
            ("", 10, 0, &[]),
            ("\n\n  \n", 10, 0, &[]),
            ("one line", 10, 0, &[(1, 1)]),
            // Small paragraphs share a chunk.
            ("a b\n\nc d\n\ne f", 10, 0, &[(1, 5)]),
            // A heading starts a chunk.
            ("intro text\n# Title\nbody", 10, 0, &[(1, 1), (2, 3)]),
            ("#hashtag is not a heading\nmore", 10, 0, &[(1, 2)]),
            // Paragraphs that do not fit together are cut between them.
            ("a b c d\ne f\n\ng h i j\nk", 10, 4, &[(1, 2), (4, 5)]),
            // A long paragraph is cut between lines, with overlap.
            (
                "a b c\nd e f\ng h i\nj k l",
                8,
                4,
                &[(1, 2), (2, 3), (3, 4)],
            ),
            // A long line is cut inside.
            ("a b c d e f g h i j k l", 8, 0, &[(1, 1), (1, 1)]),
        ];
        for (text, max_tokens, overlap, expected) in cases {
            assert_eq!(
                ranges(text, *max_tokens, *overlap),
                *expected,
                "{text:?} max {max_tokens} overlap {overlap}"
            );
        }
    }

    #[test]
    fn chunks_stay_within_budget_and_cover_every_line() {
        let text: String = (1..=200)
            .map(|line| {
                if line % 17 == 0 {
                    "\n## Section\n".to_owned()
                } else {
                    format!("line {line} has some words in it\n")
                }
            })
            .collect();
        let options = ChunkOptions {
            max_tokens: 40,
            overlap_tokens: 8,
        };
        let chunks = chunk(&text, &options, &words);
        let mut covered = std::collections::BTreeSet::new();
        for chunk in &chunks {
            assert!(
                words(&chunk.text) + chunk.text.lines().count() <= 40 + 1,
                "{chunk:?}"
            );
            covered.extend(chunk.start_line..=chunk.end_line);
        }
        for (index, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                assert!(covered.contains(&(u32::try_from(index).expect("small") + 1)));
            }
        }
    }

    #[test]
    fn long_line_pieces_fit() {
        let line = "x".repeat(1000);
        let count = |text: &str| text.len().div_ceil(10);
        let pieces = split_long_line(&line, 16, &count);
        assert!(pieces.iter().all(|piece| count(piece) <= 16));
        assert_eq!(pieces.concat(), line);
    }
}
