//! The first stage: a statement's words become a [`Command`], a plain value
//! with no gateway, no file and no terminal behind it. Everything that can
//! be wrong with what was typed is found here, with the command's usage.

pub(crate) use client::cli::{Params, parse_params};

/// One built-in command of the shell: its name, usage line and summary.
#[derive(Debug)]
pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    pub(crate) usage: &'static str,
    pub(crate) summary: &'static str,
}

/// Every built-in command, in the order `help` lists them.
pub(crate) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "ls",
        usage: "ls [-l] [PATH]",
        summary: "list a directory (-l: type, size, modification time)",
    },
    Builtin {
        name: "cd",
        usage: "cd [PATH]",
        summary: "change the current directory (no PATH: /)",
    },
    Builtin {
        name: "pwd",
        usage: "pwd",
        summary: "print the current directory",
    },
    Builtin {
        name: "cat",
        usage: "cat PATH...",
        summary: "print files",
    },
    Builtin {
        name: "head",
        usage: "head [-n N] PATH",
        summary: "print the first N lines of a file (default 10)",
    },
    Builtin {
        name: "tail",
        usage: "tail [-n N] PATH",
        summary: "print the last N lines of a file (default 10)",
    },
    Builtin {
        name: "write",
        usage: "write PATH [TEXT...]",
        summary: "write TEXT (or standard input when it is not a terminal) to a file, replacing it",
    },
    Builtin {
        name: "mkdir",
        usage: "mkdir [-p] PATH...",
        summary: "create directories (-p: with their parents)",
    },
    Builtin {
        name: "rm",
        usage: "rm [-r] PATH...",
        summary: "delete files (-r: directories with their contents)",
    },
    Builtin {
        name: "mv",
        usage: "mv [-f] FROM TO",
        summary: "move or rename (-f: replace an existing TO)",
    },
    Builtin {
        name: "cp",
        usage: "cp [-r] [-f] FROM TO",
        summary: "copy a file (-r: a directory with its contents, -f: replace existing files)",
    },
    Builtin {
        name: "grep",
        usage: "grep [-i] [-F] PATTERN [PATH]",
        summary: "search file contents for a regular expression (-i: ignore case, -F: literal text)",
    },
    Builtin {
        name: "edit",
        usage: "edit PATH",
        summary: "edit a file in $VISUAL or $EDITOR (default vi) and write it back",
    },
    Builtin {
        name: "search",
        usage: "search QUERY...",
        summary: "search the files by meaning, from the current directory (the fs service's index: `mcp.fs.embed` builds it)",
    },
    Builtin {
        name: "llm",
        usage: "llm PROMPT...",
        summary: "ask the language model (the gateway's llm proxy, mcp.llm.chat)",
    },
    Builtin {
        name: "tools",
        usage: "tools",
        summary: "list the tools the gateway offers",
    },
    Builtin {
        name: "licence",
        usage: "licence",
        summary: "the licence's tier, this client's limits, token usage and what remains (mcp.licence.check)",
    },
    Builtin {
        name: "call",
        usage: "call METHOD-OR-TOOL [KEY=VALUE... | VALUE... | '{JSON}']",
        summary: "call a method (mcp.fs.read) or a tool (fs_read); the name alone works too",
    },
    Builtin {
        name: "help",
        usage: "help [COMMAND]",
        summary: "list the commands, or explain one",
    },
    Builtin {
        name: "history",
        usage: "history",
        summary: "show the commands typed so far",
    },
    Builtin {
        name: "exit",
        usage: "exit [STATUS]",
        summary: "leave the shell (also quit, or Ctrl-D)",
    },
];

/// The built-in commands that take remote paths, for completion.
pub(crate) const PATH_COMMANDS: &[&str] = &[
    "ls", "cd", "cat", "head", "tail", "write", "edit", "mkdir", "rm", "mv", "cp", "grep",
];

pub(crate) fn builtin(name: &str) -> Option<&'static Builtin> {
    let name = if name == "quit" { "exit" } else { name };
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

/// Which end of a file `head` and `tail` print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Head,
    Tail,
}

/// One command, as typed. Paths are still as typed (relative or not).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Command {
    List {
        long: bool,
        path: Option<String>,
    },
    ChangeDir {
        path: Option<String>,
    },
    PrintDir,
    Cat {
        paths: Vec<String>,
    },
    Lines {
        end: End,
        count: u64,
        path: String,
    },
    Write {
        path: String,
        /// `None`: the content comes from standard input.
        text: Option<String>,
    },
    MakeDir {
        parents: bool,
        paths: Vec<String>,
    },
    Remove {
        recursive: bool,
        paths: Vec<String>,
    },
    Move {
        overwrite: bool,
        from: String,
        to: String,
    },
    Copy {
        recursive: bool,
        overwrite: bool,
        from: String,
        to: String,
    },
    Grep {
        pattern: String,
        path: Option<String>,
        case_insensitive: bool,
        fixed_strings: bool,
    },
    Edit {
        path: String,
    },
    Search {
        query: String,
    },
    Llm {
        prompt: String,
    },
    Tools,
    Licence,
    /// `call NAME …`, or a name typed as the command (`explicit` false).
    Call {
        name: String,
        params: Params,
        explicit: bool,
    },
    Help {
        topic: Option<String>,
    },
    History,
    Exit {
        status: u8,
    },
}

/// What was typed cannot be a command; the message says why and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one statement (its words, at least one).
pub(crate) fn parse(words: &[String]) -> Result<Command, UsageError> {
    let Some((name, args)) = words.split_first() else {
        return Err(UsageError("empty command".to_owned()));
    };
    let name = name.as_str();
    match name {
        "ls" => {
            let (flags, operands) = split_flags(args, &['l'], &[]).map_err(usage(name))?;
            let path = at_most_one(operands).map_err(usage(name))?;
            Ok(Command::List {
                long: flags.has('l'),
                path,
            })
        }
        "cd" => {
            let (_, operands) = split_flags(args, &[], &[]).map_err(usage(name))?;
            let path = at_most_one(operands).map_err(usage(name))?;
            Ok(Command::ChangeDir { path })
        }
        "pwd" => {
            no_args(args).map_err(usage(name))?;
            Ok(Command::PrintDir)
        }
        "cat" => {
            let (_, paths) = split_flags(args, &[], &[]).map_err(usage(name))?;
            at_least_one(&paths).map_err(usage(name))?;
            Ok(Command::Cat { paths })
        }
        "head" | "tail" => {
            let (flags, operands) = split_flags(args, &[], &['n']).map_err(usage(name))?;
            let count = match flags.value('n') {
                None => 10,
                Some(count) => count.parse().map_err(|_| {
                    usage(name)(format!("-n needs a number of lines, not {count:?}"))
                })?,
            };
            let path = exactly_one(operands).map_err(usage(name))?;
            let end = if name == "head" { End::Head } else { End::Tail };
            Ok(Command::Lines { end, count, path })
        }
        "write" => {
            // Everything after the path is text, dashes included.
            let Some((path, text)) = args.split_first() else {
                return Err(usage(name)("a path is needed".to_owned()));
            };
            let text = (!text.is_empty()).then(|| format!("{}\n", text.join(" ")));
            Ok(Command::Write {
                path: path.clone(),
                text,
            })
        }
        "mkdir" => {
            let (flags, paths) = split_flags(args, &['p'], &[]).map_err(usage(name))?;
            at_least_one(&paths).map_err(usage(name))?;
            Ok(Command::MakeDir {
                parents: flags.has('p'),
                paths,
            })
        }
        "rm" => {
            let (flags, paths) = split_flags(args, &['r', 'R', 'f'], &[]).map_err(usage(name))?;
            at_least_one(&paths).map_err(usage(name))?;
            Ok(Command::Remove {
                recursive: flags.has('r') || flags.has('R'),
                paths,
            })
        }
        "mv" | "cp" => {
            let switches: &[char] = if name == "mv" {
                &['f']
            } else {
                &['r', 'R', 'f']
            };
            let (flags, operands) = split_flags(args, switches, &[]).map_err(usage(name))?;
            let [from, to] = <[String; 2]>::try_from(operands)
                .map_err(|_| usage(name)("give FROM and TO".to_owned()))?;
            let overwrite = flags.has('f');
            Ok(if name == "mv" {
                Command::Move {
                    overwrite,
                    from,
                    to,
                }
            } else {
                Command::Copy {
                    recursive: flags.has('r') || flags.has('R'),
                    overwrite,
                    from,
                    to,
                }
            })
        }
        "grep" => {
            let (flags, operands) = split_flags(args, &['i', 'F'], &[]).map_err(usage(name))?;
            let mut operands = operands.into_iter();
            let Some(pattern) = operands.next() else {
                return Err(usage(name)("a pattern is needed".to_owned()));
            };
            let path = at_most_one(operands.collect()).map_err(usage(name))?;
            Ok(Command::Grep {
                pattern,
                path,
                case_insensitive: flags.has('i'),
                fixed_strings: flags.has('F'),
            })
        }
        "edit" => {
            let path = at_most_one(args.to_vec()).map_err(usage(name))?;
            let Some(path) = path else {
                return Err(usage(name)("a path is needed".to_owned()));
            };
            Ok(Command::Edit { path })
        }
        "search" | "llm" => {
            if args.is_empty() {
                return Err(usage(name)("say what to look for".to_owned()));
            }
            let text = args.join(" ");
            Ok(if name == "search" {
                Command::Search { query: text }
            } else {
                Command::Llm { prompt: text }
            })
        }
        "tools" => {
            no_args(args).map_err(usage(name))?;
            Ok(Command::Tools)
        }
        "licence" => {
            no_args(args).map_err(usage(name))?;
            Ok(Command::Licence)
        }
        "call" => {
            let Some((target, rest)) = args.split_first() else {
                return Err(usage(name)("name a method or a tool".to_owned()));
            };
            Ok(Command::Call {
                name: target.clone(),
                params: parse_params(rest).map_err(usage(name))?,
                explicit: true,
            })
        }
        "help" => Ok(Command::Help {
            topic: at_most_one(args.to_vec()).map_err(usage(name))?,
        }),
        "history" => {
            no_args(args).map_err(usage(name))?;
            Ok(Command::History)
        }
        "exit" | "quit" => {
            let status = match at_most_one(args.to_vec()).map_err(usage("exit"))? {
                None => 0,
                Some(status) => status.parse().map_err(|_| {
                    usage("exit")(format!(
                        "the status is a number from 0 to 255, not {status:?}"
                    ))
                })?,
            };
            Ok(Command::Exit { status })
        }
        other => Ok(Command::Call {
            name: other.to_owned(),
            params: parse_params(args)
                .map_err(|problem| UsageError(format!("{other}: {problem}")))?,
            explicit: false,
        }),
    }
}

/// Turns a problem with a built-in's arguments into its usage error.
fn usage(builtin: &str) -> impl Fn(String) -> UsageError + '_ {
    move |problem| {
        UsageError(format!(
            "{builtin}: {problem}; usage: {}",
            builtin_usage(builtin)
        ))
    }
}

fn builtin_usage(name: &str) -> &'static str {
    builtin(name).map_or("", |builtin| builtin.usage)
}

/// Flags given, with the values of those that take one.
#[derive(Debug, Default)]
struct Flags(Vec<(char, Option<String>)>);

impl Flags {
    fn has(&self, flag: char) -> bool {
        self.0.iter().any(|(given, _)| *given == flag)
    }

    fn value(&self, flag: char) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(given, _)| *given == flag)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Separates `-x` flags (combinable: `-rf`; `-n 5` or `-n5` for those
/// taking a value) from operands; `--` ends the flags, and `-` alone is an
/// operand.
fn split_flags(
    args: &[String],
    switches: &[char],
    with_value: &[char],
) -> Result<(Flags, Vec<String>), String> {
    let mut flags = Flags::default();
    let mut operands = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            operands.extend(words.cloned());
            break;
        }
        let Some(letters) = word.strip_prefix('-').filter(|letters| !letters.is_empty()) else {
            operands.push(word.clone());
            continue;
        };
        for (index, letter) in letters.char_indices() {
            if switches.contains(&letter) {
                flags.0.push((letter, None));
            } else if with_value.contains(&letter) {
                let rest = &word[1 + index + letter.len_utf8()..];
                let value = if rest.is_empty() {
                    words
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("-{letter} needs a value"))?
                } else {
                    rest.to_owned()
                };
                flags.0.push((letter, Some(value)));
                break;
            } else {
                return Err(format!("unknown option -{letter}"));
            }
        }
    }
    Ok((flags, operands))
}

fn no_args(args: &[String]) -> Result<(), String> {
    match args.first() {
        None => Ok(()),
        Some(extra) => Err(format!("unexpected {extra:?}")),
    }
}

fn at_most_one(operands: Vec<String>) -> Result<Option<String>, String> {
    let mut operands = operands.into_iter();
    let first = operands.next();
    match operands.next() {
        None => Ok(first),
        Some(extra) => Err(format!("unexpected {extra:?}")),
    }
}

fn exactly_one(operands: Vec<String>) -> Result<String, String> {
    at_most_one(operands)?.ok_or_else(|| "a path is needed".to_owned())
}

fn at_least_one(operands: &[String]) -> Result<(), String> {
    if operands.is_empty() {
        Err("a path is needed".to_owned())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn named(value: Value) -> Params {
        Params::Words {
            positional: Vec::new(),
            named: value.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn statements_parse_into_commands() {
        let text = |value: &str| value.to_owned();
        let cases = [
            (
                "ls",
                Command::List {
                    long: false,
                    path: None,
                },
            ),
            (
                "ls -l notes",
                Command::List {
                    long: true,
                    path: Some(text("notes")),
                },
            ),
            ("cd", Command::ChangeDir { path: None }),
            ("pwd", Command::PrintDir),
            (
                "cat a b",
                Command::Cat {
                    paths: vec![text("a"), text("b")],
                },
            ),
            (
                "head a",
                Command::Lines {
                    end: End::Head,
                    count: 10,
                    path: text("a"),
                },
            ),
            (
                "tail -n 3 a",
                Command::Lines {
                    end: End::Tail,
                    count: 3,
                    path: text("a"),
                },
            ),
            (
                "head -n2 a",
                Command::Lines {
                    end: End::Head,
                    count: 2,
                    path: text("a"),
                },
            ),
            (
                "write a.md hello -n world",
                Command::Write {
                    path: text("a.md"),
                    text: Some(text("hello -n world\n")),
                },
            ),
            (
                "write a.md",
                Command::Write {
                    path: text("a.md"),
                    text: None,
                },
            ),
            (
                "rm -rf d",
                Command::Remove {
                    recursive: true,
                    paths: vec![text("d")],
                },
            ),
            (
                "rm -- -odd",
                Command::Remove {
                    recursive: false,
                    paths: vec![text("-odd")],
                },
            ),
            (
                "cp -r a b",
                Command::Copy {
                    recursive: true,
                    overwrite: false,
                    from: text("a"),
                    to: text("b"),
                },
            ),
            (
                "mv -f a b",
                Command::Move {
                    overwrite: true,
                    from: text("a"),
                    to: text("b"),
                },
            ),
            (
                "mkdir -p a/b c",
                Command::MakeDir {
                    parents: true,
                    paths: vec![text("a/b"), text("c")],
                },
            ),
            (
                "grep -i -F todo notes",
                Command::Grep {
                    pattern: text("todo"),
                    path: Some(text("notes")),
                    case_insensitive: true,
                    fixed_strings: true,
                },
            ),
            (
                "search where is my invoice",
                Command::Search {
                    query: text("where is my invoice"),
                },
            ),
            ("tools", Command::Tools),
            ("licence", Command::Licence),
            (
                "call mcp.test.echo text=hi repeat=2",
                Command::Call {
                    name: text("mcp.test.echo"),
                    params: named(json!({"text": "hi", "repeat": 2})),
                    explicit: true,
                },
            ),
            (
                "fs_read path=/a",
                Command::Call {
                    name: text("fs_read"),
                    params: named(json!({"path": "/a"})),
                    explicit: false,
                },
            ),
            (
                "mcp.test.echo hi 2",
                Command::Call {
                    name: text("mcp.test.echo"),
                    params: Params::Words {
                        positional: vec![json!("hi"), json!(2)],
                        named: Map::new(),
                    },
                    explicit: false,
                },
            ),
            (
                r#"call x {"a":1}"#,
                Command::Call {
                    name: text("x"),
                    params: Params::Json(json!({"a": 1})),
                    explicit: true,
                },
            ),
            (
                "help ls",
                Command::Help {
                    topic: Some(text("ls")),
                },
            ),
            ("history", Command::History),
            ("exit", Command::Exit { status: 0 }),
            ("quit 3", Command::Exit { status: 3 }),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(&words(line)), Ok(expected), "{line}");
        }
    }

    #[test]
    fn mistakes_name_the_command_and_its_usage() {
        let cases = [
            ("ls a b", "ls: unexpected \"b\"; usage: ls [-l] [PATH]"),
            ("ls -x", "ls: unknown option -x; usage: ls [-l] [PATH]"),
            ("cat", "cat: a path is needed; usage: cat PATH..."),
            (
                "head -n many a",
                "head: -n needs a number of lines, not \"many\"; usage: head [-n N] PATH",
            ),
            ("tail -n", "tail: -n needs a value; usage: tail [-n N] PATH"),
            ("mv a", "mv: give FROM and TO; usage: mv [-f] FROM TO"),
            ("mv -r a b", "mv: unknown option -r; usage: mv [-f] FROM TO"),
            (
                "call",
                "call: name a method or a tool; usage: call METHOD-OR-TOOL [KEY=VALUE... | VALUE... | '{JSON}']",
            ),
            (
                "mcp.test.echo text=a b",
                "mcp.test.echo: \"b\" comes after key=value params; give it as key=value too",
            ),
            (
                "call x {broken",
                "call: the params are not valid JSON: key must be a string at line 1 column 2; usage: call METHOD-OR-TOOL [KEY=VALUE... | VALUE... | '{JSON}']",
            ),
            (
                "exit now",
                "exit: the status is a number from 0 to 255, not \"now\"; usage: exit [STATUS]",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse(&words(line)),
                Err(UsageError(expected.to_owned())),
                "{line}"
            );
        }
    }

    #[test]
    fn help_lists_only_commands_the_shell_has() {
        for builtin in BUILTINS {
            // A name that is not a built-in is taken as a method or tool
            // of the gateway; every listed one must be the shell's own.
            let parsed = parse(&words(builtin.name));
            assert!(
                !matches!(parsed, Ok(Command::Call { .. })),
                "help lists {} but the shell has no such command",
                builtin.name
            );
        }
        assert!(matches!(
            parse(&words("whoami")),
            Ok(Command::Call {
                explicit: false,
                ..
            })
        ));
    }
}
