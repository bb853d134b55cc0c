//! `luca-shell`: the llmbasedos shell, what a person sees on TTY1 of the
//! live system and the quickest way to use llmbasedos from a terminal.
//!
//! It talks to the gateway over its UNIX socket or its WebSocket endpoint
//! (`gateway`), keeps a
//! current directory of the file service (`path`), and runs commands in
//! two stages, as ripgrep parses its arguments: a typed line becomes plain
//! [`command::Command`] values (`words`, `command`: no I/O), which then run
//! against the gateway (`execute`, printed by `render`). Interactively
//! (`interactive`) it adds rustyline: history, Tab completion (`complete`)
//! and Ctrl-C that cancels the running call. With `-c` or a script on
//! standard input it runs the commands and stops at the first failure.

mod command;
mod complete;
mod execute;
mod gateway;
mod interactive;
mod path;
mod render;
mod words;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::command::{Command, parse};
use crate::execute::{ErrorKind, Flow, Shell, ShellError};
use crate::gateway::{Endpoint, Gateway};

#[derive(Parser, Debug)]
#[command(
    name = "luca-shell",
    version,
    // The last of a repeated option counts, as in most shells' tools.
    args_override_self = true,
    about = "The llmbasedos shell: files, tools and methods of the gateway",
    after_help = "Exit status: 0 when every command succeeded (or `exit N`), 1 when a command \
failed, 2 for a mistyped command, 69 when the gateway cannot be reached, 77 when it refused \
the token (or its socket is not the user's or root's). \
Scripts (-c, standard input) stop at the first failing command."
)]
struct Cli {
    /// The gateway's UNIX socket [default: <runtime dir>/gateway.sock; without
    /// --runtime-dir, /run/llmbasedos/gateway.sock while that one is absent].
    #[arg(long, env = "LLMBASEDOS_GATEWAY_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The gateway's WebSocket endpoint instead of its UNIX socket, e.g.
    /// ws://127.0.0.1:8000/ws. The bearer token comes from $LLMBASEDOS_TOKEN,
    /// else --token-file, else <runtime dir>/gateway.token when readable.
    #[arg(long, env = "LLMBASEDOS_GATEWAY_URL", value_name = "URL")]
    url: Option<String>,
    /// A file holding the bearer token for --url (first line).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The runtime directory of `llmbasedos up` [default: $XDG_RUNTIME_DIR/llmbasedos,
    /// or /tmp/llmbasedos-<uid>].
    #[arg(long, env = "LLMBASEDOS_RUNTIME_DIR", value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// Run these commands (separated by `;` or newlines) and exit.
    #[arg(short = 'c', value_name = "COMMANDS")]
    commands: Option<String>,
    /// Print results as raw JSON, one per line, for scripts.
    #[arg(long)]
    json: bool,
}

/// Where the packaged units (`llmbasedos-gateway.socket`) put the system
/// gateway's socket.
const SYSTEM_SOCKET: &str = "/run/llmbasedos/gateway.sock";

/// Where the gateway's socket is: `--socket`, else `gateway.sock` in the
/// runtime directory as `llmbasedos up` lays it out. With neither
/// `--socket` nor `--runtime-dir`, the system gateway's socket is the
/// fallback, used while `up`'s is absent (a system installed from the
/// packages, where nothing runs `up`).
fn gateway_socket(
    socket: Option<&Path>,
    runtime_dir: Option<&Path>,
    xdg_runtime_dir: Option<OsString>,
    uid: u32,
) -> (PathBuf, Option<PathBuf>) {
    if let Some(socket) = socket {
        return (socket.to_owned(), None);
    }
    match runtime_dir {
        Some(dir) => (client::cli::gateway_socket(dir), None),
        None => (
            client::cli::gateway_socket(&client::cli::runtime_dir_from(xdg_runtime_dir, uid)),
            Some(PathBuf::from(SYSTEM_SOCKET)),
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("luca-shell: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let gateway = Arc::new(Gateway::new(endpoint(cli)?));
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let shell = |stdin_content: bool| {
        let mut shell = Shell::new(gateway.clone(), cli.json, stdin_content);
        shell.show_progress = std::io::stderr().is_terminal();
        shell
    };
    if let Some(commands) = &cli.commands {
        return Ok(run_script(
            &mut shell(!stdin_is_terminal),
            &runtime,
            [commands.clone()],
        ));
    }
    if !stdin_is_terminal {
        let lines = std::io::stdin().lock().lines().map_while(Result::ok);
        return Ok(run_script(&mut shell(false), &runtime, lines));
    }
    interactive::run(shell(false), &runtime)
}

/// The gateway to talk to: `--url` (with a token) or the UNIX socket.
fn endpoint(cli: &Cli) -> anyhow::Result<Endpoint> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let xdg_runtime_dir = std::env::var_os("XDG_RUNTIME_DIR");
    let Some(url) = &cli.url else {
        let (socket, fallback) = gateway_socket(
            cli.socket.as_deref(),
            cli.runtime_dir.as_deref(),
            xdg_runtime_dir,
            uid,
        );
        return Ok(Endpoint::Unix { socket, fallback });
    };
    let token = match (std::env::var("LLMBASEDOS_TOKEN"), &cli.token_file) {
        (Ok(token), _) if !token.trim().is_empty() => Some(token.trim().to_owned()),
        (_, Some(file)) => Some(read_token(file)?),
        (_, None) => {
            let runtime_dir = match &cli.runtime_dir {
                Some(dir) => dir.clone(),
                None => client::cli::runtime_dir_from(xdg_runtime_dir, uid),
            };
            read_token(&runtime_dir.join("gateway.token")).ok()
        }
    };
    Ok(Endpoint::WebSocket {
        url: url.clone(),
        token,
    })
}

/// A token file's first line.
fn read_token(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).map_err(|error| {
        anyhow::anyhow!("cannot read the token file {}: {error}", file.display())
    })?;
    let token = text.lines().next().unwrap_or_default().trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the token file {} is empty",
        file.display()
    );
    Ok(token.to_owned())
}

/// Runs script lines until the end, `exit`, or the first failure; returns
/// the exit status.
fn run_script(
    shell: &mut Shell,
    runtime: &tokio::runtime::Runtime,
    lines: impl IntoIterator<Item = String>,
) -> u8 {
    for line in lines {
        let commands = match parse_line(&line) {
            Ok(commands) => commands,
            Err(error) => {
                error.print();
                return error.kind.exit_status();
            }
        };
        if !commands.is_empty() {
            shell.history.push(line.clone());
        }
        for command in commands {
            let mut out = String::new();
            let outcome = runtime.block_on(shell.run(command, &mut out));
            if !emit(&out) {
                return 0;
            }
            match outcome {
                Ok(Flow::Continue) => {}
                Ok(Flow::Exit(status)) => return status,
                Err(error) => {
                    error.print();
                    return error.kind.exit_status();
                }
            }
        }
    }
    0
}

/// The commands of one line (several with `;`, none for a comment).
pub(crate) fn parse_line(line: &str) -> Result<Vec<Command>, ShellError> {
    let statements = words::statements(line).map_err(ShellError::usage)?;
    statements
        .into_iter()
        .map(|words| {
            let words: Vec<String> = words.into_iter().map(|word| word.text).collect();
            // A usage error names its command already.
            parse(&words).map_err(|error| ShellError {
                kind: ErrorKind::Usage,
                message: error.0,
                framed: true,
            })
        })
        .collect()
}

/// Prints a command's output; false when standard output is gone (a
/// closed pipe), which ends a script quietly.
pub(crate) fn emit(out: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_found_where_llmbasedos_up_lays_it_out() {
        let path = |text: &str| Some(PathBuf::from(text));
        let system = Some(SYSTEM_SOCKET);
        let cases = [
            (path("/s.sock"), path("/r"), Some("/x"), "/s.sock", None),
            (None, path("/r"), Some("/x"), "/r/gateway.sock", None),
            (
                None,
                None,
                Some("/run/user/1000"),
                "/run/user/1000/llmbasedos/gateway.sock",
                system,
            ),
            (
                None,
                None,
                Some(""),
                "/tmp/llmbasedos-1000/gateway.sock",
                system,
            ),
            (
                None,
                None,
                None,
                "/tmp/llmbasedos-1000/gateway.sock",
                system,
            ),
        ];
        for (socket, runtime_dir, xdg, expected, fallback) in cases {
            let found = gateway_socket(
                socket.as_deref(),
                runtime_dir.as_deref(),
                xdg.map(OsString::from),
                1000,
            );
            assert_eq!(
                found,
                (PathBuf::from(expected), fallback.map(PathBuf::from)),
                "{socket:?} {runtime_dir:?} {xdg:?}"
            );
        }
    }
}
