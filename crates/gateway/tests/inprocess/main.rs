//! The gateway in process: its dispatcher and its HTTP router driven
//! directly (the router with `tower::ServiceExt::oneshot`, no socket),
//! against a real `llmbasedos-test-server` on a UNIX socket. One table of
//! cases ([`cases`]) covers every MCP method in both eras, the classic
//! vocabulary and the errors, and runs through both the dispatcher and
//! the router; the other tests cover what a table cannot: pagination,
//! progress, log records, list changes, sessions, cancellation, the guard.
//!
//! Needs the test server built next to the gateway:
//! `cargo build -p test-server` (a workspace build does it).

mod cases;
mod dispatcher;
mod expect;
mod http;
mod licence;
mod licence_midnight;
mod licence_reload;
mod support;

use std::future::Future;
use std::time::Duration;

/// The longest any wait may take before a test fails. It bounds liveness,
/// it does not measure speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for `condition`, polling, at most [`PATIENCE`].
pub(crate) async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails with every failed case at once, so that one run shows all that broke.
pub(crate) fn report(surface: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed through the {surface}:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
