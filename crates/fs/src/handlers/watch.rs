//! `mcp.fs.watch_resource`: the backend half of the gateway's
//! `resources/subscribe` (the caps' `resources` section names it as
//! `subscribe`). A long-running call on one `file:///` URI: the file is
//! checked through the root handle first (missing, outside the root or not
//! a regular file is refused like a read), then one progress says the watch
//! is in place and one more follows each change, until the caller cancels.
//! It never answers otherwise.
//!
//! The watch is on the file's directory, opened beneath the root and named
//! to inotify by its descriptor (`/proc/self/fd/N`), so no host path is
//! resolved again; events are filtered on the file's name, so a replacement
//! by atomic rename is seen as well as a write in place.

use std::os::fd::AsRawFd;
use std::time::Duration;

use serde_json::{Value, json};
use server_kit::{Context, HandlerError, ServerBuilder, State};
use tokio::sync::mpsc;

use super::{Fs, UriParams, path, run};
use crate::uri;

/// Changes this close together are one notification (an editor's save is
/// several events).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Files watched at once. Each watch is one inotify instance (a user has
/// 128 by default, shared with watch mode and every other program) and
/// holds one of a connection's request slots for as long as it runs, so
/// the watches of many subscribers must not starve the other calls.
pub(super) const MAX_WATCHES: usize = 32;

/// Registers `mcp.fs.watch_resource` on `builder`.
pub(super) fn register(builder: ServerBuilder<Fs>) -> ServerBuilder<Fs> {
    builder.method("mcp.fs.watch_resource", watch_resource)
}

async fn watch_resource(
    context: Context,
    fs: State<Fs>,
    params: UriParams,
) -> Result<Value, HandlerError> {
    let Ok(_watching) = fs.watches.clone().try_acquire_owned() else {
        return Err(HandlerError::Failed(format!(
            "the file service is watching as many files as it may ({MAX_WATCHES}); unsubscribe from one and retry"
        )));
    };
    let text = uri::to_path(&params.uri).map_err(HandlerError::InvalidValue)?;
    let path = path(&text)?;
    let (dir, name) = run(&context, fs, move |fs| {
        // What a read would refuse, a watch refuses too.
        fs.root.open_read(&path)?;
        fs.root.parent_of(&path)
    })
    .await?;
    let (sender, mut events) = mpsc::unbounded_channel::<()>();
    let wanted = std::ffi::OsString::from(&name);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event
            .paths
            .iter()
            .any(|changed| changed.file_name() == Some(wanted.as_os_str()))
        {
            let _ = sender.send(());
        }
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|error| {
        HandlerError::Failed(format!(
            "cannot watch for changes: {error}; the system may be out of inotify instances (sysctl fs.inotify.max_user_instances)"
        ))
    })?;
    let by_descriptor = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    {
        use notify::Watcher as _;
        watcher
            .watch(&by_descriptor, notify::RecursiveMode::NonRecursive)
            .map_err(|error| {
                HandlerError::Failed(format!(
                    "cannot watch the file's directory: {error}; the system may be out of inotify watches (sysctl fs.inotify.max_user_watches)"
                ))
            })?;
    }
    context.progress(0.0, None, Some("watching")).await;
    let mut changes = 0_u32;
    loop {
        tokio::select! {
            () = context.cancelled() => break,
            event = events.recv() => {
                if event.is_none() {
                    break;
                }
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
                changes = changes.saturating_add(1);
                context.progress(f64::from(changes), None, Some("changed")).await;
            }
        }
    }
    drop(watcher);
    drop(dir);
    Ok(json!({}))
}
