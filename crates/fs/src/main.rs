//! `llmbasedos-fs`: the file service as a process. Loads the configuration,
//! opens the root, and hands the server to `server_kit::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fs::config::Config;
use fs::ops::Root;

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-fs",
    about = "The llmbasedos file service: file operations confined to one root directory"
)]
struct Args {
    #[command(flatten)]
    serve: server_kit::ServeArgs,
    /// Configuration file (default: /etc/llmbasedos/fs.yaml; a missing
    /// default file means the defaults).
    #[arg(long, env = "LLMBASEDOS_FS_CONFIG")]
    config: Option<PathBuf>,
    /// Print the service's caps.json and exit.
    #[arg(long)]
    print_caps: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_caps {
        print!("{}", fs::CAPS);
        return ExitCode::SUCCESS;
    }
    let config = args.config.clone();
    server_kit::run("llmbasedos-fs", &args.serve, move || {
        let config = Config::load(config.as_deref()).map_err(|error| error.to_string())?;
        let root = Root::open(&config.root, config.policy)
            .map_err(|error| format!("cannot open the root {}: {error}", config.root.display()))?;
        tracing::info!(root = %config.root.display(), "file service root");
        fs::server(root, config.semantic).map_err(|error| error.to_string())
    })
}
