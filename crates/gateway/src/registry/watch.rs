//! Watching the caps directory: which events start a reload, debounced.

use std::sync::Arc;
use std::time::Duration;

use super::Registry;

impl Registry {
    /// Watches the directory and reloads on every change (debounced), until
    /// the process ends. Logs and keeps the last snapshot if watching fails.
    pub async fn watch(self: Arc<Self>) {
        use notify::{RecursiveMode, Watcher};
        // Services whose tools change at run time are followed beside.
        tokio::spawn(self.clone().follow_dynamic_tools());
        let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| is_caps_change(&event)) {
                let _ = sender.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::error!(%error, "cannot watch the caps directory; services will not update live");
                return;
            }
        };
        if let Err(error) = watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %self.dir.display(), %error, "cannot watch the caps directory; services will not update live");
            return;
        }
        while events.recv().await.is_some() {
            // Let a burst of events (a write then a rename) settle.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while events.try_recv().is_ok() {}
            if self.reload() {
                let snapshot = self.snapshot();
                tracing::info!(
                    services = ?snapshot.services.keys().collect::<Vec<_>>(),
                    tools = snapshot.tools.len(),
                    "services changed"
                );
            }
        }
    }
}

/// Whether an event can change what the caps files say. Reading the files
/// (a reload does) produces open, access and close events: reacting to
/// those would reload forever. Sockets come and go with their servers and
/// say nothing about methods.
fn is_caps_change(event: &notify::Event) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    // The watcher lost track (e.g. an overflowed queue): rescan.
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".cap.json"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_CAPS: &str = include_str!("../../../test-server/test.cap.json");

    async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Regression: reading the caps files raised access events that started
    /// the next reload, so an idle gateway re-read and re-compiled every
    /// schema about twenty times a second, forever.
    #[tokio::test(flavor = "current_thread")]
    async fn a_quiet_directory_is_read_once_and_a_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.cap.json"), TEST_CAPS).unwrap();
        let registry = Arc::new(Registry::new(dir.path(), 1, proto::DEFAULT_MAX_MESSAGE));
        assert_eq!(registry.scans(), 1);
        assert!(registry.snapshot().services.contains_key("test"));
        tokio::spawn(registry.clone().watch());
        // Sockets come and go in the same directory; they are not caps.
        let socket = std::os::unix::net::UnixListener::bind(dir.path().join("x.sock")).unwrap();
        drop(socket);
        std::fs::remove_file(dir.path().join("x.sock")).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            registry.scans(),
            1,
            "the registry re-read a directory whose caps did not change"
        );

        let renamed = TEST_CAPS.replace("\"service\": \"test\"", "\"service\": \"other\"");
        std::fs::write(
            dir.path().join("other.cap.json"),
            renamed.replace("mcp.test.", "mcp.other."),
        )
        .unwrap();
        wait_for("the new service", || {
            registry.snapshot().services.contains_key("other")
        })
        .await;
        let after_change = registry.scans();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            registry.scans(),
            after_change,
            "a change was followed by more reloads"
        );
    }
}
