//! `llmbasedos`: the command for running llmbasedos without systemd.
//!
//! - `llmbasedos up` starts the gateway and every built server as child
//!   processes in a private runtime directory laid out like `/run` on an
//!   installed system (caps files and sockets in `mcp/`, the gateway's socket,
//!   configuration and bearer token beside them), supervises them, prints the
//!   endpoints and a ready-to-paste host configuration, and stops them all on
//!   Ctrl-C or SIGTERM (they die with it on SIGKILL too). The runtime
//!   directory must be the user's alone, and one `up` at a time runs in it.
//!   `--fs-config FILE` gives the fs server an fs.yaml, checked first.
//!   It is the "try it now" and development path; packaged installs use
//!   systemd socket activation instead.
//! - `llmbasedos call METHOD key=value…` sends one request through the
//!   gateway's UNIX socket, once it knows the socket is served by the user
//!   or root, and prints the result.
//! - `llmbasedos licence keygen | issue | verify | show` makes signing
//!   keys and signed licences and checks one; `llmbasedos status` shows
//!   every client's tier, limits and token usage.
//! - `llmbasedos logs` prints (and with `-f` follows) what the services of
//!   a running `up` wrote, through its control socket; `llmbasedos web`
//!   prints a one-time sign-in URL for the web console.

mod call;
mod control;
mod licence;
mod logs;
mod runtime_dir;
mod stack;
mod up;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos",
    version,
    about = "Run and talk to the llmbasedos stack"
)]
struct Cli {
    /// Directory for sockets and caps files [default: $XDG_RUNTIME_DIR/llmbasedos,
    /// or /tmp/llmbasedos-<uid>].
    #[arg(long, env = "LLMBASEDOS_RUNTIME_DIR", global = true)]
    runtime_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the whole stack as child processes and supervise it until Ctrl-C.
    Up(up::UpArgs),
    /// Call one method through the gateway: `llmbasedos call mcp.fs.list path=/`.
    Call(call::CallArgs),
    /// Make signing keys, issue signed licences, check one.
    Licence(licence::LicenceArgs),
    /// The licence, and every client's tier, limits and token usage.
    Status,
    /// The lines `llmbasedos up` captured from its services, filtered.
    Logs(logs::LogsArgs),
    /// Print a one-time sign-in URL for the web console (valid 5 minutes, once).
    Web(web::WebArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime_dir = cli
        .runtime_dir
        .unwrap_or_else(client::cli::default_runtime_dir);
    let result = match cli.command {
        Command::Up(args) => up::run(&runtime_dir, &args),
        Command::Call(args) => call::run(&runtime_dir, &args),
        Command::Licence(args) => licence::run(&runtime_dir, &args),
        Command::Status => licence::status(&runtime_dir),
        Command::Logs(args) => logs::run(&runtime_dir, &args),
        Command::Web(args) => web::run(&runtime_dir, &args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("llmbasedos: {error:#}");
            ExitCode::FAILURE
        }
    }
}
