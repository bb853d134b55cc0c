//! Splitting a command line into statements and words, as a POSIX shell
//! would for the small part of its syntax the shell needs: whitespace
//! separates words, `'…'` is literal, `"…"` and `\` escape, `;` ends a
//! statement and `#` at the start of a word begins a comment. [`word`]
//! is the inverse: the text Tab completion writes for a name, which this
//! module reads back as that name.

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
    let Lexed {
        statements,
        open_quote,
        ..
    } = lex(line);
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

/// The words of the statement the end of `line` is in, for completion,
/// and whether the end of `line` is inside the last of them (not after a
/// separator). Never fails: an open quote is taken as closed, and a
/// backslash at the very end as the escape of what is typed next.
pub(crate) fn last_statement(line: &str) -> (Vec<Word>, bool) {
    let lexed = lex(line);
    let mut words = lexed.statements.into_iter().last().unwrap_or_default();
    if lexed.dangling_escape
        && let Some(word) = words.last_mut()
    {
        word.text.pop();
    }
    (words, lexed.in_word)
}

/// The text of a word that [`statements`] reads back as `text`: special
/// characters escaped with `\`, as shells complete names; a name with a
/// line break (which `\` cannot escape: it joins lines) in `'…'`.
pub(crate) fn word(text: &str) -> String {
    if text.contains(['\n', '\r']) {
        return format!("'{}'", text.replace('\'', r"'\''"));
    }
    let mut word = String::with_capacity(text.len());
    for (index, character) in text.chars().enumerate() {
        let special = matches!(character, ' ' | '\t' | ';' | '\'' | '"' | '\\')
            || (index == 0 && character == '#');
        if special {
            word.push('\\');
        }
        word.push(character);
    }
    if word.is_empty() {
        word.push_str("''");
    }
    word
}

/// What [`lex`] found.
struct Lexed {
    statements: Vec<Vec<Word>>,
    /// The quote left open at the end.
    open_quote: Option<char>,
    /// Whether the line ends inside a word.
    in_word: bool,
    /// Whether the line ends with a lone `\` (taken as itself).
    dangling_escape: bool,
}

fn lex(line: &str) -> Lexed {
    let mut dangling_escape = false;
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
                None => {
                    dangling_escape = true;
                    push(&mut current, index, '\\');
                }
            },
            other => push(&mut current, index, other),
        }
        if character == '\n' {
            statements.push(Vec::new());
        }
    }
    let in_word = current.is_some();
    finish(&mut current, &mut statements);
    Lexed {
        statements,
        open_quote: quote,
        in_word,
        dangling_escape,
    }
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
        let (words, in_word) = last_statement("ls; cat 'my fi");
        assert!(in_word);
        assert_eq!(words.len(), 2);
        assert_eq!(words[1].text, "my fi");
        assert_eq!(words[1].start, 8);
        let (words, in_word) = last_statement(r"cat my\");
        assert!(in_word);
        assert_eq!(words[1].text, "my");
        assert!(last_statement(r"cat my\ ").1);
        assert!(!last_statement("cat my ").1);
        assert!(!last_statement("cat my;").1);
    }

    #[test]
    fn a_completed_word_reads_back_as_the_name() {
        let names = [
            "plain.txt",
            "name with spaces.txt",
            "café crème.md",
            "it's; \"odd\" \\ #1.txt",
            "#hash",
            "tab\there",
            "line\nbreak's",
            "Ünïcödé/résumé.txt",
            "",
        ];
        for name in names {
            let typed = word(name);
            assert_eq!(
                texts(&format!("cat {typed} x")).expect(&typed),
                vec![vec!["cat".to_owned(), name.to_owned(), "x".to_owned()]],
                "{name:?} as {typed:?}"
            );
        }
        assert_eq!(word("name with spaces.txt"), r"name\ with\ spaces.txt");
        assert_eq!(word("a#b"), "a#b");
    }
}
