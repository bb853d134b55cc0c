//! The systemd notify protocol: READY, STATUS, WATCHDOG, STOPPING.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (not started by
//! systemd), so servers call them unconditionally.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// READY=1 with a status line: the server accepts connections.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A STATUS= line shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// STOPPING=1, with a status line saying why (`None` keeps the last one,
/// which the service itself wrote).
pub fn stopping(status: Option<&str>) {
    match status {
        Some(status) => send(&[NotifyState::Stopping, NotifyState::Status(status)]),
        None => send(&[NotifyState::Stopping]),
    }
}

/// The interval at which to send WATCHDOG=1: half of `WATCHDOG_USEC`, as
/// sd_watchdog_enabled(3) recommends. `None` when no watchdog is set up.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

/// Pets the watchdog forever at `interval`. Run it as a task on the same
/// runtime as the server: if the runtime stalls, the pings stop and systemd
/// restarts the service.
pub async fn watchdog(interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
