//! What Tab offers at a point of the line: command names, method and tool
//! names, a method's param names (`key=`), remote paths. Pure: the
//! gateway's catalog and a directory lister are passed in, so the rules
//! are tested without a gateway.

use crate::command::{BUILTINS, PATH_COMMANDS};
use crate::gateway::Catalog;
use crate::path::resolve;
use crate::words::last_statement;

/// One entry of a remote directory: its name and whether it is a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) directory: bool,
}

/// Where the replaced text starts, and the candidates, sorted.
pub(crate) fn complete(
    line: &str,
    cursor: usize,
    catalog: Option<&Catalog>,
    cwd: &str,
    list: &mut dyn FnMut(&str) -> Vec<Entry>,
) -> (usize, Vec<String>) {
    let before = &line[..cursor];
    let mut words = last_statement(before);
    let at_new_word = before.ends_with([' ', '\t', ';']) || words.is_empty();
    let (start, partial) = if at_new_word {
        (cursor, String::new())
    } else {
        let Some(word) = words.pop() else {
            return (cursor, Vec::new());
        };
        // A word typed with quotes is left alone: its offsets and its text
        // no longer match.
        if line[word.start..cursor] != word.text {
            return (cursor, Vec::new());
        }
        (word.start, word.text)
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
            ],
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
            ("cat ", "/", 4, &["hello.txt", "notes/"]),
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
            ("cat 'no", "/", 7, &[]),
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
