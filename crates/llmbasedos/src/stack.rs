//! What the stack is made of, and where its files live.

use std::path::{Path, PathBuf};

/// One server of the stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Service {
    /// The service name: its socket is `<runtime dir>/<name>.sock`.
    pub(crate) name: &'static str,
    /// The server binary, looked up beside the `llmbasedos` binary.
    pub(crate) binary: &'static str,
}

/// The servers `llmbasedos up` starts. Each server issue adds its line here.
pub(crate) const SERVICES: &[Service] = &[
    // The framework's test service (echo, sleep, progress, failures).
    Service {
        name: "test",
        binary: "llmbasedos-test-server",
    },
];

pub(crate) fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("llmbasedos"),
        // SAFETY: getuid cannot fail.
        _ => PathBuf::from(format!("/tmp/llmbasedos-{}", unsafe { libc::getuid() })),
    }
}

pub(crate) fn socket_path(runtime_dir: &Path, service: &str) -> PathBuf {
    runtime_dir.join(format!("{service}.sock"))
}

pub(crate) fn caps_path(runtime_dir: &Path, service: &str) -> PathBuf {
    runtime_dir.join(format!("{service}.cap.json"))
}
