//! The real `llmbasedos-fs` started for a benchmark: on `socket`, with
//! `config`, serving `root`, no idle exit, its log in `log`; returned once
//! its socket answers.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bench_support::ChildProcess;

pub(crate) fn start(
    binary: &str,
    socket: &Path,
    config: &Path,
    root: &Path,
    log: PathBuf,
) -> ChildProcess {
    let mut process = ChildProcess::spawn(
        "file service",
        Command::new(binary)
            .arg("--socket")
            .arg(socket)
            .arg("--config")
            .arg(config)
            .args(["--idle-timeout", "0"])
            .env("LLMBASEDOS_FS_ROOT", root)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        log,
    );
    process.wait_until("its socket", || UnixStream::connect(socket).is_ok());
    process
}
