//! A small pool of connections to one socket, reconnecting as needed.
//!
//! A socket-activated server exits when idle, and a crashed one comes back
//! under a new process: the pool connects lazily, replaces closed
//! connections, retries a call once when the request could not even be
//! written, and closes connections unused for a while so that the server
//! can go idle.
//!
//! One connect per slot at a time: callers that find a slot empty while its
//! connection is being opened wait for that one and share it. Without this,
//! a burst of concurrent calls opened a socket per call, and the ones that
//! lost the race for the slot stayed open with nobody to close them (the
//! gateway's descriptors grew by 28 per burst of 32 calls, and their
//! connections kept a socket-activated server from ever going idle). A
//! connection leaving the pool is closed, and dropping the last handle of
//! a [`Connection`] closes its socket in any case.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::connection::{CallError, ConnectOptions, Connection, ProgressSender, parse_result};

struct Slot {
    connection: Connection,
    last_used: Instant,
}

/// Connections to one socket.
pub struct Pool {
    path: PathBuf,
    slots: Mutex<Vec<Option<Slot>>>,
    /// Held while a slot's connection is being opened, one per slot.
    connecting: Box<[tokio::sync::Mutex<()>]>,
    next: AtomicUsize,
    max_message: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of up to `size` connections to `path`, none opened yet.
    pub fn new(path: &Path, size: usize, max_message: usize) -> Pool {
        let size = size.max(1);
        Pool {
            path: path.to_owned(),
            slots: Mutex::new((0..size).map(|_| None).collect()),
            connecting: (0..size).map(|_| tokio::sync::Mutex::new(())).collect(),
            next: AtomicUsize::new(0),
            max_message,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Slot>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A live connection, opened if the chosen slot has none.
    pub async fn connection(&self) -> Result<Connection, CallError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connecting.len();
        if let Some(connection) = self.live(index) {
            return Ok(connection);
        }
        let _connecting = self.connecting[index].lock().await;
        // Another caller may have opened it while this one waited.
        if let Some(connection) = self.live(index) {
            return Ok(connection);
        }
        let options = ConnectOptions {
            max_message: Some(self.max_message),
            notifications: None,
        };
        let connection = Connection::connect(&self.path, options)
            .await
            .map_err(CallError::Connect)?;
        let replaced = self.lock()[index].replace(Slot {
            connection: connection.clone(),
            last_used: Instant::now(),
        });
        if let Some(replaced) = replaced {
            replaced.connection.close().await;
        }
        Ok(connection)
    }

    /// The slot's connection if it is open, marked as used.
    fn live(&self, index: usize) -> Option<Connection> {
        let mut slots = self.lock();
        let slot = slots[index]
            .as_mut()
            .filter(|slot| !slot.connection.is_closed())?;
        slot.last_used = Instant::now();
        Some(slot.connection.clone())
    }

    /// Calls through the pool. A request that could not be written on a
    /// stale connection is sent once more on a fresh one; a request that was
    /// sent is never repeated (it may have had effects).
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Value, CallError> {
        parse_result(&self.call_raw(method, params, progress).await?)
    }

    /// [`Pool::call`], with the result as the server's JSON text.
    pub async fn call_raw(
        &self,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressSender>,
    ) -> Result<Box<RawValue>, CallError> {
        let connection = self.connection().await?;
        match connection
            .call_raw(method, params.clone(), progress.clone())
            .await
        {
            Err(CallError::Send(_)) => {
                self.connection()
                    .await?
                    .call_raw(method, params, progress)
                    .await
            }
            outcome => outcome,
        }
    }

    /// Closes connections unused for `idle` with no call in flight.
    pub async fn close_idle(&self, idle: Duration) {
        let stale: Vec<Connection> = {
            let mut slots = self.lock();
            slots
                .iter_mut()
                .filter(|slot| {
                    slot.as_ref().is_some_and(|slot| {
                        slot.connection.is_closed()
                            || (slot.last_used.elapsed() >= idle && slot.connection.is_idle())
                    })
                })
                .filter_map(|slot| slot.take().map(|slot| slot.connection))
                .collect()
        };
        for connection in stale {
            connection.close().await;
        }
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.lock()
            .iter()
            .flatten()
            .filter(|slot| !slot.connection.is_closed())
            .count()
    }
}
