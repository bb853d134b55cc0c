//! What Tab offers at a point of the line: command names, method and tool
//! names, a method's param names (`key=`), remote paths. Pure: the
//! gateway's catalog and a directory lister are passed in, so the rules
//! are tested without a gateway.
//!
//! The word under the cursor is read as [`crate::words`] reads it (quotes
//! and escapes removed), matched against names, and replaced whole by
//! each candidate written back as a word ([`crate::words::word`]): a name
//! with spaces or quotes completes to text that runs as that name.

use crate::command::{BUILTINS, PATH_COMMANDS};
use crate::gateway::Catalog;
use crate::path::resolve;
use crate::words::{last_statement, word};

/// One entry of a remote directory: its name and whether it is a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) directory: bool,
}

/// Where the replaced text starts (a byte offset of `line`, as `cursor`),
/// and the candidates as words to type, sorted by name.
pub(crate) fn complete(
    line: &str,
    cursor: usize,
    catalog: Option<&Catalog>,
    cwd: &str,
    list: &mut dyn FnMut(&str) -> Vec<Entry>,
) -> (usize, Vec<String>) {
    let Some(before) = line.get(..cursor) else {
        return (cursor, Vec::new());
    };
    let (start, names) = complete_names(before, catalog, cwd, list);
    (start, names.iter().map(|name| word(name)).collect())
}

/// [`complete`] before the names are written as words.
fn complete_names(
    before: &str,
    catalog: Option<&Catalog>,
    cwd: &str,
    list: &mut dyn FnMut(&str) -> Vec<Entry>,
) -> (usize, Vec<String>) {
    let cursor = before.len();
    let (mut words, in_word) = last_statement(before);
    let (start, partial) = match words.pop_if(|_| in_word) {
        Some(word) => (word.start, word.text),
        None => (cursor, String::new()),
    };
    let position = words.len();
    let first = words.first().map(|word| word.text.as_str());
    let mut candidates: Vec<String> = match (position, first) {
        (0, _) => names(catalog, true),
        (1, Some("call" | "help")) => names(catalog, first == Some("help")),
        (_, Some(command)) if PATH_COMMANDS.contains(&command) => {
            return (start, paths(&partial, cwd, list));
        }
        (_, Some(command)) => {
            let target = if command == "call" {
                words.get(1).map(|word| word.text.as_str())
            } else {
                Some(command)
            };
            let (Some(target), Some(catalog)) = (target, catalog) else {
                return (start, Vec::new());
            };
            if partial.contains('=') {
                return (start, Vec::new());
            }
            let given: Vec<&str> = words
                .iter()
                .filter_map(|word| word.text.split_once('=').map(|(key, _)| key))
                .collect();
            let method = catalog
                .method(target)
                .map(|method| method.name.clone())
                .or_else(|| {
                    catalog
                        .method_of_tool(target)
                        .map(|method| method.name.clone())
                })
                .unwrap_or_else(|| target.to_owned());
            catalog
                .param_names(&method)
                .into_iter()
                .filter(|name| !given.contains(&name.as_str()))
                .map(|name| format!("{name}="))
                .collect()
        }
        (_, None) => Vec::new(),
    };
    candidates.retain(|candidate| candidate.starts_with(&partial));
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// Built-in commands (with `builtins`), and every method and tool.
fn names(catalog: Option<&Catalog>, builtins: bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if builtins {
        names.extend(BUILTINS.iter().map(|builtin| builtin.name.to_owned()));
        names.push("quit".to_owned());
    }
    if let Some(catalog) = catalog {
        names.extend(catalog.methods.iter().map(|method| method.name.clone()));
        names.extend(catalog.tools.iter().map(|tool| tool.name.clone()));
    }
    names
}

/// Remote paths: the entries of the directory the partial path names,
/// completed as typed (relative stays relative), directories with `/`.
fn paths(partial: &str, cwd: &str, list: &mut dyn FnMut(&str) -> Vec<Entry>) -> Vec<String> {
    let (typed_dir, prefix) = match partial.rfind('/') {
        Some(slash) => partial.split_at(slash + 1),
        None => ("", partial),
    };
    let directory = resolve(cwd, if typed_dir.is_empty() { "." } else { typed_dir });
    let mut candidates: Vec<String> = list(&directory)
        .into_iter()
        .filter(|entry| entry.name.starts_with(prefix))
        // Hidden files only when asked for, as shells do.
        .filter(|entry| prefix.starts_with('.') || !entry.name.starts_with('.'))
        .map(|entry| {
            let slash = if entry.directory { "/" } else { "" };
            format!("{typed_dir}{}{slash}", entry.name)
        })
        .collect();
    candidates.sort();
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::caps::MethodSpec;
    use serde_json::json;

    fn catalog() -> Catalog {
        let method: MethodSpec = serde_json::from_value(json!({
            "name": "mcp.test.echo",
            "description": "Echo.",
            "params_schema": {"type": "object", "properties": {"text": {}, "repeat": {}}},
        }))
        .expect("method");
        let tool = serde_json::from_value(json!({
            "name": "test_echo",
            "description": "Echo.",
            "inputSchema": {"type": "object", "properties": {"text": {}, "repeat": {}}},
        }))
        .expect("tool");
        Catalog {
            methods: vec![method],
            tools: vec![tool],
        }
    }

    fn lister(directory: &str) -> Vec<Entry> {
        let entry = |name: &str, directory: bool| Entry {
            name: name.to_owned(),
            directory,
        };
        match directory {
            "/" => vec![
                entry("notes", true),
                entry("hello.txt", false),
                entry(".hidden", false),
                entry("my file.txt", false),
                entry("my; 'odd'", false),
                entry("café", true),
            ],
            "/café" => vec![entry("crème brûlée.md", false)],
            "/notes" => vec![entry("todo.md", false), entry("ideas.md", false)],
            _ => Vec::new(),
        }
    }

    #[test]
    fn tab_offers_what_fits_where_the_cursor_is() {
        let catalog = catalog();
        let cases: &[(&str, &str, usize, &[&str])] = &[
            // line, cwd, replaced from, candidates
            ("l", "/", 0, &["licence", "llm", "ls"]),
            ("mcp.t", "/", 0, &["mcp.test.echo"]),
            ("test_", "/", 0, &["test_echo"]),
            ("call te", "/", 5, &["test_echo"]),
            ("help hi", "/", 5, &["history"]),
            ("mcp.test.echo ", "/", 14, &["repeat=", "text="]),
            ("call mcp.test.echo text=hi ", "/", 27, &["repeat="]),
            ("test_echo r", "/", 10, &["repeat="]),
            ("test_echo text=", "/", 10, &[]),
            (
                "cat ",
                "/",
                4,
                &[
                    "café/",
                    "hello.txt",
                    r"my\ file.txt",
                    r"my\;\ \'odd\'",
                    "notes/",
                ],
            ),
            ("cat n", "/", 4, &["notes/"]),
            ("cat notes/t", "/", 4, &["notes/todo.md"]),
            (
                "cat /notes/",
                "/",
                4,
                &["/notes/ideas.md", "/notes/todo.md"],
            ),
            ("cat t", "/notes", 4, &["todo.md"]),
            ("cat ../h", "/notes", 4, &["../hello.txt"]),
            ("cat .h", "/", 4, &[".hidden"]),
            ("ls; cat h", "/", 8, &["hello.txt"]),
            // Names are read as typed, quotes and escapes removed, and
            // written back escaped; the whole word is replaced.
            ("cat 'no", "/", 4, &["notes/"]),
            ("cat \"notes/t", "/", 4, &["notes/todo.md"]),
            ("cat my", "/", 4, &[r"my\ file.txt", r"my\;\ \'odd\'"]),
            (r"cat my\ ", "/", 4, &[r"my\ file.txt"]),
            (r"cat my\", "/", 4, &[r"my\ file.txt", r"my\;\ \'odd\'"]),
            ("cat 'my f", "/", 4, &[r"my\ file.txt"]),
            ("cat \"my f", "/", 4, &[r"my\ file.txt"]),
            ("cat café/", "/", 4, &[r"café/crème\ brûlée.md"]),
            ("cat café/crè", "/", 4, &[r"café/crème\ brûlée.md"]),
            ("cat ü", "/", 4, &[]),
        ];
        for (line, cwd, start, expected) in cases {
            let (from, candidates) = complete(line, line.len(), Some(&catalog), cwd, &mut |dir| {
                lister(dir)
            });
            assert_eq!(
                (from, candidates),
                (
                    *start,
                    expected.iter().map(|name| (*name).to_owned()).collect()
                ),
                "{line:?} in {cwd}"
            );
        }
    }
}
