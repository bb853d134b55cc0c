//! The interactive shell: rustyline with a persistent history, completion
//! from the gateway, and Ctrl-C that cancels the running call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustyline::completion::Completer;
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::complete::{Entry, complete};
use crate::execute::{Flow, Shell};
use crate::gateway::Gateway;
use crate::{emit, parse_line};

/// How long completion waits for the gateway before offering nothing.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(2);

/// The history file: `$XDG_STATE_HOME/llmbasedos/history`, or
/// `~/.local/state/llmbasedos/history`.
pub(crate) fn history_file() -> Option<PathBuf> {
    let state_home = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))?;
    Some(state_home.join("llmbasedos").join("history"))
}

/// Runs the shell on the terminal until `exit` or Ctrl-D; returns the
/// exit status.
pub(crate) fn run(mut shell: Shell, runtime: &Runtime) -> anyhow::Result<u8> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper {
        gateway: shell.gateway.clone(),
        runtime: runtime.handle().clone(),
        cwd: shell.cwd.clone(),
    }));
    let history = history_file();
    if let Some(history) = &history {
        if let Some(dir) = history.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if history.exists()
            && let Err(error) = editor.load_history(history)
        {
            eprintln!("cannot read the history {}: {error}", history.display());
        }
    }
    shell.history = editor.history().iter().cloned().collect();

    // Say at once whether the gateway is there, rather than at the first
    // command; the shell stays usable either way.
    if let Err(failure) = runtime.block_on(shell.gateway.catalog()) {
        eprintln!("{failure}");
    }
    println!("luca-shell: `help` lists the commands, Tab completes, Ctrl-D leaves");

    loop {
        if let Some(helper) = editor.helper_mut() {
            helper.cwd.clone_from(&shell.cwd);
        }
        let line = match editor.readline(&format!("luca:{}$ ", shell.cwd)) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(0),
            Err(error) => return Err(error.into()),
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        if let Some(history) = &history
            && let Err(error) = editor.append_history(history)
        {
            eprintln!("cannot save the history {}: {error}", history.display());
        }
        shell.history.push(line.clone());
        let commands = match parse_line(&line) {
            Ok(commands) => commands,
            Err(error) => {
                error.print();
                continue;
            }
        };
        for command in commands {
            let mut out = String::new();
            let outcome = runtime.block_on(async {
                tokio::select! {
                    outcome = shell.run(command, &mut out) => Some(outcome),
                    // Dropping the call cancels it at the gateway and the
                    // server (notifications/cancelled).
                    _ = tokio::signal::ctrl_c() => None,
                }
            });
            emit(&out);
            match outcome {
                Some(Ok(Flow::Continue)) => {}
                Some(Ok(Flow::Exit(status))) => return Ok(status),
                Some(Err(error)) => {
                    error.print();
                    break;
                }
                None => {
                    eprintln!("cancelled");
                    break;
                }
            }
        }
    }
}

/// Completion for rustyline; the rules are in [`crate::complete`].
struct ShellHelper {
    gateway: Arc<Gateway>,
    runtime: tokio::runtime::Handle,
    cwd: String,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _context: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let catalog = self.runtime.block_on(async {
            tokio::time::timeout(COMPLETION_TIMEOUT, self.gateway.catalog())
                .await
                .ok()
                .and_then(Result::ok)
        });
        let mut list = |directory: &str| self.list(directory);
        Ok(complete(
            line,
            pos,
            catalog.as_deref(),
            &self.cwd,
            &mut list,
        ))
    }
}

impl ShellHelper {
    fn list(&self, directory: &str) -> Vec<Entry> {
        let call = self
            .gateway
            .call("mcp.fs.list", Some(json!({ "path": directory })));
        let Ok(Ok(listing)) = self
            .runtime
            .block_on(async { tokio::time::timeout(COMPLETION_TIMEOUT, call).await })
        else {
            return Vec::new();
        };
        listing
            .get("entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                Some(Entry {
                    name: entry.get("name")?.as_str()?.to_owned(),
                    directory: entry.get("type").and_then(Value::as_str) == Some("directory"),
                })
            })
            .collect()
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}
