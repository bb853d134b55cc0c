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
    /// Ask the running service (at --socket) to start the named job NAME,
    /// print its id and exit: what the timer template
    /// `llmbasedos-sync-job@NAME.timer` runs.
    #[arg(long, value_name = "NAME")]
    run_job: Option<String>,
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
    if let Some(name) = &args.run_job {
        return run_named_job(args.serve.socket.as_deref(), name);
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

/// One `runJob {job: name}` request to the service's socket.
fn run_named_job(socket: Option<&std::path::Path>, name: &str) -> ExitCode {
    use std::io::{BufRead, Write};
    let socket = socket.unwrap_or(std::path::Path::new("/run/mcp/sync.sock"));
    let request = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "mcp.sync.runJob", "params": { "job": name }
    });
    let answer = (|| -> std::io::Result<Vec<u8>> {
        let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
        let mut frame = serde_json::to_vec(&request)?;
        frame.push(0);
        stream.write_all(&frame)?;
        let mut answer = Vec::new();
        std::io::BufReader::new(stream).read_until(0, &mut answer)?;
        answer.pop();
        Ok(answer)
    })();
    let answer: serde_json::Value = match answer.map(|bytes| serde_json::from_slice(&bytes)) {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            eprintln!("llmbasedos-sync: the service answered something unreadable: {error}");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!(
                "llmbasedos-sync: cannot reach the sync service at {}: {error}",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(id) = answer
        .pointer("/result/job_id")
        .and_then(serde_json::Value::as_str)
    {
        println!("started {name} as {id}");
        ExitCode::SUCCESS
    } else {
        let message = answer
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no answer");
        eprintln!("llmbasedos-sync: {name}: {message}");
        ExitCode::FAILURE
    }
}
