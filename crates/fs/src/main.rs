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
        raise_open_file_limit();
        fs::server(root, config.semantic, config.max_heavy_operations)
            .map_err(|error| error.to_string())
    })
}

/// Raises the soft limit of open descriptors to the hard one. A deep walk
/// holds one directory descriptor per level (up to
/// `ops::walk::DEPTH_LIMIT`, two for a copy), times the heavy operations
/// running at once; the usual soft limit of 1024 is too tight for that
/// beside the connections.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill and read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const wanted) != 0 {
                tracing::warn!(
                    soft = limit.rlim_cur,
                    "cannot raise the limit of open files; deep walks may fail"
                );
            }
        }
    }
}
