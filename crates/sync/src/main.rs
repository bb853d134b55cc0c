//! `llmbasedos-sync`: the sync service as a process. Loads the
//! configuration, opens the history, starts the engine (and with it the
//! private rclone rcd) and hands the server to `server_kit::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sync::config::Config;
use sync::engine::Engine;

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-sync",
    about = "The llmbasedos sync service: rclone jobs with progress and a persistent history"
)]
struct Args {
    #[command(flatten)]
    serve: server_kit::ServeArgs,
    /// Configuration file (default: /etc/llmbasedos/sync.yaml; a missing
    /// default file means the defaults).
    #[arg(long, env = "LLMBASEDOS_SYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Run the named jobs' schedules in this process (`llmbasedos up`).
    #[arg(long)]
    scheduler: bool,
    /// Print the service's caps.json and exit.
    #[arg(long)]
    print_caps: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_caps {
        print!("{}", sync::CAPS);
        return ExitCode::SUCCESS;
    }
    let config_path = args.config.clone();
    let own_socket = own_socket(args.serve.socket.as_deref());
    let scheduler = args.scheduler;
    server_kit::run("llmbasedos-sync", &args.serve, move || {
        let mut config = Config::load(config_path.as_deref()).map_err(|error| error.to_string())?;
        config.scheduler |= scheduler;
        tracing::info!(
            state_dir = %config.state_dir.display(),
            roots = ?config.local_roots,
            named_jobs = config.jobs.as_ref().map_or(0, |jobs| jobs.len()),
            "sync service"
        );
        if let Err(error) = &config.jobs {
            tracing::error!("named jobs unavailable: {error}");
        }
        let engine = Engine::start(config).map_err(|error| error.to_string())?;
        engine.set_own_socket(own_socket);
        if let Some(problem) = engine.rclone_problem() {
            tracing::error!("{problem}");
        }
        sync::server(engine).map_err(|error| error.to_string())
    })
}

/// The path of the socket this server serves: `--socket`, or the one
/// systemd passed (fd 3), read with getsockname.
fn own_socket(bound: Option<&std::path::Path>) -> Option<PathBuf> {
    if std::env::var_os("LISTEN_FDS").is_none() {
        return bound.map(std::path::Path::to_path_buf);
    }
    // SAFETY: getsockname writes at most `length` bytes into `address`.
    unsafe {
        let mut address: libc::sockaddr_un = std::mem::zeroed();
        let mut length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::getsockname(3, (&raw mut address).cast(), &raw mut length) != 0
            || address.sun_family != libc::AF_UNIX as libc::sa_family_t
        {
            return None;
        }
        let bytes: Vec<u8> = address
            .sun_path
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if bytes.is_empty() {
            return None;
        }
        use std::os::unix::ffi::OsStringExt;
        Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
}
