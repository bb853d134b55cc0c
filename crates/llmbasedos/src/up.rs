//! `llmbasedos up`: the whole stack as supervised child processes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::stack::{self, SERVICES, Service};

#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// Directory holding the server binaries [default: the directory of
    /// this binary, where cargo and pacman both put them].
    #[arg(long, env = "LLMBASEDOS_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Seconds each server gets to finish its requests when the stack stops.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,
}

/// A server that exits within this long after starting is restarted with a
/// growing delay; one that ran longer starts again at once.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) fn run(runtime_dir: &Path, args: &UpArgs) -> anyhow::Result<ExitCode> {
    server_kit::logging::init("llmbasedos");
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's directory; pass --bin-dir")?
            .parent()
            .map(Path::to_owned)
            .context("this binary has no parent directory; pass --bin-dir")?,
    };
    let mut binaries = Vec::with_capacity(SERVICES.len());
    for service in SERVICES {
        let binary = bin_dir.join(service.binary);
        if !binary.is_file() {
            bail!(
                "cannot find the {} server at {}; build the workspace first (`cargo build --release --workspace`) or pass --bin-dir",
                service.name,
                binary.display()
            );
        }
        binaries.push((*service, binary));
    }
    prepare_runtime_dir(runtime_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(supervise(
        runtime_dir,
        binaries,
        Duration::from_secs(args.drain_timeout),
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the directory with mode 0700: the sockets in it are reachable
/// only by this user.
fn prepare_runtime_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {} to mode 0700", dir.display()))?;
    Ok(())
}

/// Writes the server's caps next to its socket, as tmpfiles.d links them
/// into /run/mcp on an installed system. Written to a temporary file and
/// renamed, so that a watcher never reads half a file.
async fn publish_caps(
    runtime_dir: &Path,
    service: &Service,
    binary: &Path,
) -> anyhow::Result<PathBuf> {
    let output = Command::new(binary)
        .arg("--print-caps")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {} --print-caps", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} --print-caps failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    proto::CompiledCaps::from_json(
        &String::from_utf8_lossy(&output.stdout),
        &binary.display().to_string(),
    )?;
    let path = stack::caps_path(runtime_dir, service.name);
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, &output.stdout)?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}

async fn supervise(
    runtime_dir: &Path,
    binaries: Vec<(Service, PathBuf)>,
    drain: Duration,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut published = Vec::new();
    let mut supervisors = Vec::new();
    for (service, binary) in binaries {
        published.push(publish_caps(runtime_dir, &service, &binary).await?);
        let socket = stack::socket_path(runtime_dir, service.name);
        let stop = stop_rx.clone();
        supervisors.push(tokio::spawn(supervise_one(
            service, binary, socket, drain, stop,
        )));
    }
    println!(
        "llmbasedos is up in {} — Ctrl-C stops it",
        runtime_dir.display()
    );
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    println!("stopping llmbasedos");
    let _ = stop_tx.send(true);
    for supervisor in supervisors {
        let _ = supervisor.await;
    }
    for path in published {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Keeps one server running until `stop` turns true, then stops it with
/// SIGTERM (SIGKILL after the drain time and a grace second).
async fn supervise_one(
    service: Service,
    binary: PathBuf,
    socket: PathBuf,
    drain: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let mut child = match Command::new(&binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--idle-timeout")
            .arg("0")
            .arg("--drain-timeout")
            .arg(drain.as_secs().to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(service = service.name, %error, "cannot start {}", binary.display());
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        println!(
            "started {} (pid {pid}) on {}",
            service.name,
            socket.display()
        );
        let status = tokio::select! {
            status = child.wait() => status,
            () = stopped(&mut stop) => {
                stop_child(&mut child, pid, drain).await;
                return;
            }
        };
        let ran = started.elapsed();
        match status {
            Ok(status) => {
                tracing::warn!(service = service.name, %status, "server exited; restarting");
            }
            Err(error) => {
                tracing::warn!(service = service.name, %error, "lost track of the server; restarting");
            }
        }
        backoff = if ran >= STABLE_AFTER {
            Duration::from_millis(500)
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Completes once the stack is stopping.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn stop_child(child: &mut tokio::process::Child, pid: u32, drain: Duration) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill only sends a signal, to a child this process started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if tokio::time::timeout(drain + Duration::from_secs(1), child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "server did not stop in time; killing it");
        let _ = child.kill().await;
    }
}
