//! Splitting a command line into statements and words, as a POSIX shell
//! would for the small part of its syntax the shell needs: whitespace
//! separates words, `'…'` is literal, `"…"` and `\` escape, `;` ends a
//! statement and `#` at the start of a word begins a comment.

/// One word after quote removal, and where it started in the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    /// Byte offset of the word's first character (a quote included).
    pub(crate) start: usize,
}

/// The statements of a line, each a list of words; empty statements are
/// dropped. Fails on an unterminated quote.
pub(crate) fn statements(line: &str) -> Result<Vec<Vec<Word>>, String> {
    let (statements, open_quote) = lex(line);
    if let Some(quote) = open_quote {
        return Err(format!(
            "unterminated {quote} quote; close it or escape it with \\"
        ));
    }
    Ok(statements
        .into_iter()
        .filter(|words| !words.is_empty())
        .collect())
}

/// The words of the statement the end of `line` is in, for completion:
/// never fails, an open quote is taken as closed.
pub(crate) fn last_statement(line: &str) -> Vec<Word> {
    lex(line).0.pop().unwrap_or_default()
}

fn lex(line: &str) -> (Vec<Vec<Word>>, Option<char>) {
    let mut statements = vec![Vec::new()];
    let mut current: Option<Word> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((index, character)) = chars.next() {
        if let Some(open) = quote {
            if character == open {
                quote = None;
            } else if open == '"' && character == '\\' {
                match chars.peek() {
                    Some(&(_, next @ ('"' | '\\' | '$' | '`'))) => {
                        chars.next();
                        push(&mut current, index, next);
                    }
                    _ => push(&mut current, index, character),
                }
            } else {
                push(&mut current, index, character);
            }
            continue;
        }
        match character {
            ' ' | '\t' | '\n' | '\r' => finish(&mut current, &mut statements),
            ';' => {
                finish(&mut current, &mut statements);
                statements.push(Vec::new());
            }
            '#' if current.is_none() => {
                // A comment runs to the end of the line (or of this line of
                // a multi-line script).
                for (_, skipped) in chars.by_ref() {
                    if skipped == '\n' {
                        statements.push(Vec::new());
                        break;
                    }
                }
            }
            '\'' | '"' => {
                current.get_or_insert_with(|| Word {
                    text: String::new(),
                    start: index,
                });
                quote = Some(character);
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, escaped)) => push(&mut current, index, escaped),
                None => push(&mut current, index, '\\'),
            },
            other => push(&mut current, index, other),
        }
        if character == '\n' {
            statements.push(Vec::new());
        }
    }
    finish(&mut current, &mut statements);
    (statements, quote)
}

fn push(current: &mut Option<Word>, index: usize, character: char) {
    current
        .get_or_insert_with(|| Word {
            text: String::new(),
            start: index,
        })
        .text
        .push(character);
}

fn finish(current: &mut Option<Word>, statements: &mut [Vec<Word>]) {
    if let Some(word) = current.take()
        && let Some(last) = statements.last_mut()
    {
        last.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Result<Vec<Vec<String>>, String> {
        statements(line).map(|statements| {
            statements
                .into_iter()
                .map(|words| words.into_iter().map(|word| word.text).collect())
                .collect()
        })
    }

    #[test]
    fn lines_become_statements_of_words() {
        let cases: &[(&str, &[&[&str]])] = &[
            ("", &[]),
            ("  ls  ", &[&["ls"]]),
            ("ls -l /notes", &[&["ls", "-l", "/notes"]]),
            ("cd a; ls;; pwd", &[&["cd", "a"], &["ls"], &["pwd"]]),
            ("ls\ncat x", &[&["ls"], &["cat", "x"]]),
            ("write a.md 'it''s'", &[&["write", "a.md", "its"]]),
            (r#"write a "x; \"y\"""#, &[&["write", "a", r#"x; "y""#]]),
            (r"cat my\ file", &[&["cat", "my file"]]),
            ("ls # a comment; not run", &[&["ls"]]),
            ("# only a comment\nls", &[&["ls"]]),
            ("echo a#b", &[&["echo", "a#b"]]),
            (
                r#"call mcp.test.echo '{"text": "a b"}'"#,
                &[&["call", "mcp.test.echo", r#"{"text": "a b"}"#]],
            ),
            ("write a ''", &[&["write", "a", ""]]),
        ];
        for (line, expected) in cases {
            let expected: Vec<Vec<String>> = expected
                .iter()
                .map(|words| words.iter().map(|word| (*word).to_owned()).collect())
                .collect();
            assert_eq!(texts(line).expect(line), expected, "{line:?}");
        }
    }

    #[test]
    fn an_open_quote_is_an_error_but_not_for_completion() {
        assert!(texts("cat 'a b").is_err());
        let words = last_statement("ls; cat 'my fi");
        assert_eq!(words.len(), 2);
        assert_eq!(words[1].text, "my fi");
        assert_eq!(words[1].start, 8);
    }
}
