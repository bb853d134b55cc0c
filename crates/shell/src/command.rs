//! The first stage: a statement's words become a [`Command`], a plain value
//! with no gateway, no file and no terminal behind it. Everything that can
//! be wrong with what was typed is found here, with the command's usage.

pub(crate) use client::cli::{Params, parse_params};

/// What `mail` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MailCommand {
    Folders {
        account: String,
    },
    List {
        account: String,
        folder: String,
        limit: u64,
    },
    Read {
        account: String,
        folder: String,
        uid: u64,
    },
    /// Without `confirmed` the message is only shown, with what to type
    /// to send it: a send is always a second, deliberate command.
    Send {
        account: String,
        to: String,
        subject: String,
        body: String,
        confirmed: bool,
    },
}

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
        name: "sync",
        usage: "sync remotes | sync run [-n] [-m MODE] (JOB | SOURCE DESTINATION) | sync status ID | sync stop ID | sync history [STATE]",
        summary: "rclone jobs through the sync service: remotes, run one with a live progress line (-n: dry run; MODE: sync, copy, move, check; Ctrl-C stops it), its status, stop it, the history",
    },
    Builtin {
        name: "mail",
        usage: "mail ACTION ACCOUNT ...",
        summary: "mail: folders ACCOUNT, list ACCOUNT [FOLDER] [-n N], read ACCOUNT UID [FOLDER], send [-y] ACCOUNT TO SUBJECT BODY... (shown first; sent only with -y)",
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
        name: "wf",
        usage: "wf list | wf run ID [KEY=VALUE... | '{JSON}'] | wf status EXECUTION | wf logs EXECUTION [STEP] | wf stop EXECUTION | wf approve EXECUTION STEP [no]",
        summary: "workflows of the agent server: list them, run one (its steps shown as they finish), its status and logs, stop it, answer an approval",
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
    Sync(SyncCommand),
    Mail(MailCommand),
    Tools,
    Licence,
    /// `call NAME …`, or a name typed as the command (`explicit` false).
    Call {
        name: String,
        params: Params,
        explicit: bool,
    },
    /// `wf …`: the agent server's workflows.
    Workflow(Workflow),
    Help {
        topic: Option<String>,
    },
    History,
    Exit {
        status: u8,
    },
}

/// A `sync` subcommand.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SyncCommand {
    Remotes,
    /// A named job (`job`) or the two ends.
    Run {
        job: Option<String>,
        ends: Option<(String, String)>,
        mode: Option<String>,
        dry_run: bool,
    },
    Status {
        id: String,
    },
    Stop {
        id: String,
    },
    History {
        state: Option<String>,
    },
}

/// One `wf` subcommand.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Workflow {
    List,
    Run {
        id: String,
        inputs: serde_json::Value,
    },
    Status {
        execution: String,
    },
    Logs {
        execution: String,
        step: Option<String>,
    },
    Stop {
        execution: String,
    },
    Approve {
        execution: String,
        step: String,
        approved: bool,
    },
}

fn workflow(args: &[String]) -> Result<Workflow, String> {
    let Some((action, rest)) = args.split_first() else {
        return Err("say what to do: list, run, status, logs, stop or approve".to_owned());
    };
    let execution = |rest: &[String]| -> Result<String, String> {
        rest.first()
            .cloned()
            .ok_or_else(|| format!("wf {action} needs an execution id (wf run prints it)"))
    };
    let extra = |rest: &[String], allowed: usize| match rest.get(allowed) {
        Some(extra) => Err(format!("unexpected {extra:?}")),
        None => Ok(()),
    };
    match action.as_str() {
        "list" => {
            extra(rest, 0)?;
            Ok(Workflow::List)
        }
        "run" => {
            let Some((id, words)) = rest.split_first() else {
                return Err("wf run needs a workflow id (wf list lists them)".to_owned());
            };
            let inputs = match parse_params(words)? {
                Params::Json(value @ serde_json::Value::Object(_)) => value,
                Params::Json(_) => return Err("the inputs are one JSON object".to_owned()),
                Params::Words { positional, named } => {
                    if let Some(value) = positional.first() {
                        return Err(format!(
                            "inputs are KEY=VALUE (or one JSON object), not {value}"
                        ));
                    }
                    serde_json::Value::Object(named)
                }
            };
            Ok(Workflow::Run {
                id: id.clone(),
                inputs,
            })
        }
        "status" => {
            extra(rest, 1)?;
            Ok(Workflow::Status {
                execution: execution(rest)?,
            })
        }
        "logs" => {
            extra(rest, 2)?;
            Ok(Workflow::Logs {
                execution: execution(rest)?,
                step: rest.get(1).cloned(),
            })
        }
        "stop" => {
            extra(rest, 1)?;
            Ok(Workflow::Stop {
                execution: execution(rest)?,
            })
        }
        "approve" => {
            extra(rest, 3)?;
            let step = rest
                .get(1)
                .cloned()
                .ok_or_else(|| "wf approve needs the execution id and the step".to_owned())?;
            let approved = match rest.get(2).map(String::as_str) {
                None | Some("yes") => true,
                Some("no") => false,
                Some(other) => return Err(format!("say yes or no, not {other:?}")),
            };
            Ok(Workflow::Approve {
                execution: execution(rest)?,
                step,
                approved,
            })
        }
        other => Err(format!(
            "unknown wf action {other:?}: use list, run, status, logs, stop or approve"
        )),
    }
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
        "sync" => parse_sync(args).map(Command::Sync).map_err(usage(name)),
        "mail" => mail(args).map(Command::Mail).map_err(usage(name)),
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
        "wf" => Ok(Command::Workflow(workflow(args).map_err(usage(name))?)),
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

fn parse_sync(args: &[String]) -> Result<SyncCommand, String> {
    let Some((verb, rest)) = args.split_first() else {
        return Err("say what to do: remotes, run, status, stop or history".to_owned());
    };
    match verb.as_str() {
        "remotes" => {
            no_args(rest)?;
            Ok(SyncCommand::Remotes)
        }
        "run" => {
            let (flags, operands) = split_flags(rest, &['n'], &['m'])?;
            let mode = flags.value('m').map(str::to_owned);
            let dry_run = flags.has('n');
            match <[String; 2]>::try_from(operands) {
                Ok([source, destination]) => Ok(SyncCommand::Run {
                    job: None,
                    ends: Some((source, destination)),
                    mode,
                    dry_run,
                }),
                Err(operands) if operands.len() == 1 && mode.is_none() => Ok(SyncCommand::Run {
                    job: operands.into_iter().next(),
                    ends: None,
                    mode,
                    dry_run,
                }),
                Err(_) => Err(
                    "give a named job, or SOURCE and DESTINATION (a named job has its own mode)"
                        .to_owned(),
                ),
            }
        }
        "status" | "stop" => {
            let id = at_most_one(rest.to_vec())?.ok_or_else(|| "a job id is needed".to_owned())?;
            Ok(if verb == "status" {
                SyncCommand::Status { id }
            } else {
                SyncCommand::Stop { id }
            })
        }
        "history" => Ok(SyncCommand::History {
            state: at_most_one(rest.to_vec())?,
        }),
        other => Err(format!(
            "{other:?} is not a sync command: remotes, run, status, stop or history"
        )),
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

fn mail(args: &[String]) -> Result<MailCommand, String> {
    let Some((action, rest)) = args.split_first() else {
        return Err("say folders, list, read or send".to_owned());
    };
    match action.as_str() {
        "folders" => {
            let account = exactly_one(rest.to_vec())?;
            Ok(MailCommand::Folders { account })
        }
        "list" => {
            let (flags, operands) = split_flags(rest, &[], &['n'])?;
            let limit = match flags.value('n') {
                None => 20,
                Some(count) => count
                    .parse()
                    .ok()
                    .filter(|count| (1..=100).contains(count))
                    .ok_or_else(|| {
                        format!("-n needs a number of messages from 1 to 100, not {count:?}")
                    })?,
            };
            let mut operands = operands.into_iter();
            let Some(account) = operands.next() else {
                return Err("name the account".to_owned());
            };
            let folder = at_most_one(operands.collect())?.unwrap_or_else(|| "INBOX".to_owned());
            Ok(MailCommand::List {
                account,
                folder,
                limit,
            })
        }
        "read" => {
            let (account, uid, folder) = match rest {
                [account, uid] => (account, uid, "INBOX".to_owned()),
                [account, uid, folder] => (account, uid, folder.clone()),
                _ => return Err("give ACCOUNT UID [FOLDER]".to_owned()),
            };
            let uid = uid.parse().ok().filter(|uid| *uid > 0).ok_or_else(|| {
                format!("UID is a message's number from `mail list`, not {uid:?}")
            })?;
            Ok(MailCommand::Read {
                account: account.clone(),
                folder,
                uid,
            })
        }
        "send" => {
            let (confirmed, rest) = match rest.split_first() {
                Some((flag, rest)) if flag == "-y" => (true, rest),
                _ => (false, rest),
            };
            let [account, to, subject, body @ ..] = rest else {
                return Err("give ACCOUNT TO SUBJECT BODY...".to_owned());
            };
            if body.is_empty() {
                return Err("the message needs a body".to_owned());
            }
            Ok(MailCommand::Send {
                account: account.clone(),
                to: to.clone(),
                subject: subject.clone(),
                body: format!("{}\n", body.join(" ")),
                confirmed,
            })
        }
        other => Err(format!(
            "{other:?} is not a mail command; say folders, list, read or send"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn mail_commands_parse_and_a_send_needs_its_y() {
        let cases = [
            (
                "mail folders work",
                Some(MailCommand::Folders {
                    account: "work".into(),
                }),
            ),
            (
                "mail list work -n 5",
                Some(MailCommand::List {
                    account: "work".into(),
                    folder: "INBOX".into(),
                    limit: 5,
                }),
            ),
            (
                "mail read work 42 Archive",
                Some(MailCommand::Read {
                    account: "work".into(),
                    folder: "Archive".into(),
                    uid: 42,
                }),
            ),
            (
                "mail send work a@example.org Hi see you",
                Some(MailCommand::Send {
                    account: "work".into(),
                    to: "a@example.org".into(),
                    subject: "Hi".into(),
                    body: "see you\n".into(),
                    confirmed: false,
                }),
            ),
            ("mail read work zero", None),
            ("mail list work -n 0", None),
            ("mail send work a@example.org Hi", None),
            ("mail delete work", None),
        ];
        for (line, expected) in cases {
            let parsed = parse(&words(line));
            match expected {
                Some(expected) => assert_eq!(parsed.ok(), Some(Command::Mail(expected)), "{line}"),
                None => assert!(parsed.is_err(), "{line}"),
            }
        }
        let Ok(Command::Mail(MailCommand::Send { confirmed, .. })) =
            parse(&words("mail send -y work a@b.c S body"))
        else {
            panic!("send -y does not parse");
        };
        assert!(confirmed);
    }

    fn named(value: Value) -> Params {
        Params::Words {
            positional: Vec::new(),
            named: value.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn wf_subcommands_parse_and_bad_ones_say_how() {
        assert_eq!(
            parse(&words("wf list")),
            Ok(Command::Workflow(Workflow::List))
        );
        assert_eq!(
            parse(&words("wf run summarize path=/a.txt n=3")),
            Ok(Command::Workflow(Workflow::Run {
                id: "summarize".to_owned(),
                inputs: json!({"path": "/a.txt", "n": 3}),
            }))
        );
        assert_eq!(
            parse(&words("wf approve e1 gate no")),
            Ok(Command::Workflow(Workflow::Approve {
                execution: "e1".to_owned(),
                step: "gate".to_owned(),
                approved: false,
            }))
        );
        assert_eq!(
            parse(&words("wf logs e1 read")),
            Ok(Command::Workflow(Workflow::Logs {
                execution: "e1".to_owned(),
                step: Some("read".to_owned()),
            }))
        );
        for (line, problem) in [
            ("wf", "say what to do"),
            ("wf frob", "unknown wf action"),
            ("wf status", "needs an execution id"),
            ("wf run", "needs a workflow id"),
            ("wf run x loose", "inputs are KEY=VALUE"),
            ("wf approve e1 gate maybe", "yes or no"),
        ] {
            let Err(UsageError(message)) = parse(&words(line)) else {
                panic!("{line} parsed");
            };
            assert!(
                message.contains(problem) && message.contains("usage: wf list"),
                "{line}: {message}"
            );
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
